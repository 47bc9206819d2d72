"""The simulation runs the real S3 store code (walrelay.archive.s3_store) on odd seeds, over a
deterministic fake of the minio client (walrelay_chaos.fakes3): its retries, error mapping and
listings meet the simulation's store faults, and a bug there is caught."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import urllib3
from minio.error import S3Error, ServerError

import walrelay_chaos.sim as sim
from walrelay.archive.s3_store import S3Store
from walrelay.archive.store import ObjectNotFoundError, TransientStoreError
from walrelay_chaos.fakes3 import FakeMinio
from walrelay_chaos.mutants import STORE_DOWN_THEN_FAILOVER
from walrelay_chaos.schedule import Op, Settle, StoreDown, StoreUp, Write


def _store(client: FakeMinio, attempts: int = 3) -> tuple[S3Store, list[float]]:
    slept: list[float] = []
    store = S3Store(
        "http://s3.sim.invalid/bkt/pre", client=client, sleep=slept.append, create_bucket=True, attempts=attempts
    )
    return store, slept


def test_the_store_retries_every_kind_of_transient_failure_and_then_names_the_last() -> None:
    client = FakeMinio()
    store, slept = _store(client)
    store.put("o/k", b"v")
    assert client.objects == {("bkt", "pre/o/k"): b"v"}  # the prefix is applied
    assert store.get("o/k") == b"v" and [o.key for o in store.list("o/")] == ["o/k"]
    client.down, client.ambiguous = True, False
    with pytest.raises(TransientStoreError, match=r"put o/x .* no answer after 3 attempts \(SlowDown: Please"):
        store.put("o/x", b"w")  # a bare 502, a dropped connection, then an S3 SlowDown
    assert client.failed == 3 and len(slept) == 2 and slept[1] > slept[0] * 0.9  # backoff grows
    with pytest.raises(ObjectNotFoundError):
        store.get("o/x")


def test_an_ambiguous_put_is_stored_and_reported_as_failed() -> None:
    client = FakeMinio()
    store, _ = _store(client, attempts=1)
    client.down = True
    with pytest.raises(TransientStoreError):
        store.put("o/k", b"v")
    assert client.stored_ambiguously == 1 and client.objects[("bkt", "pre/o/k")] == b"v"


def test_a_listing_that_fails_part_way_is_retried_whole() -> None:
    client = FakeMinio()
    store, _ = _store(client, attempts=2)
    for i in range(7):
        store.put(f"o/{i}", b"x")
    client.down = True
    with pytest.raises(TransientStoreError, match="list"):
        store.list("o/")
    client.down = False
    assert [o.key for o in store.list("o/")] == [f"o/{i}" for i in range(7)]


def test_the_fake_raises_what_minio_raises() -> None:
    client = FakeMinio()
    client.make_bucket("b")
    client.down = True
    kinds = []
    for _ in range(3):
        try:
            client.put_object("b", "k", io.BytesIO(b"x"), 1)
        except (S3Error, ServerError, urllib3.exceptions.HTTPError) as e:
            kinds.append(type(e).__name__)
    assert kinds == ["ServerError", "ProtocolError", "S3Error"]  # by turns, from the first failure


AMBIGUOUS_OUTAGE: list[Op] = [Settle(300), StoreDown(ambiguous=True), Write(3), Settle(3000), StoreUp(), Write(1)]


def test_odd_seeds_archive_through_the_s3_store_and_reach_its_ambiguous_puts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(sim, "EVENT_HOOK", seen.append)
    stores: list[object] = []
    real_init = sim.World.__init__

    def init(self: sim.World, *a: object, **kw: object) -> None:
        real_init(self, *a, **kw)  # type: ignore[arg-type]
        stores.append(self.archive)

    monkeypatch.setattr(sim.World, "__init__", init)
    sim.run_schedule(str(tmp_path / "odd"), AMBIGUOUS_OUTAGE, seed=1)
    sim.run_schedule(str(tmp_path / "even"), AMBIGUOUS_OUTAGE, seed=2)
    assert [type(s).__name__ for s in stores] == ["FlakyS3", "FlakyStore"]
    assert "ambiguous-put" in seen


def test_a_bug_in_the_s3_store_code_is_caught_by_the_simulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PUT that gives up after its retries but reports success (the store's error swallowed):
    the archiver counts a segment the store never got, replicas truncate it, and the archive has
    a gap. The reference passes the same schedule on the same (odd: S3) seed."""
    sim.run_schedule(str(tmp_path / "ref"), STORE_DOWN_THEN_FAILOVER, seed=1)
    real = S3Store._retrying

    def swallowed(self: S3Store, what: str, op: object) -> object:
        try:
            return real(self, what, op)  # type: ignore[arg-type]
        except TransientStoreError:
            if what.startswith("put"):
                return None
            raise

    monkeypatch.setattr(S3Store, "_retrying", swallowed)
    with pytest.raises(AssertionError):
        sim.run_schedule(str(tmp_path / "mut"), STORE_DOWN_THEN_FAILOVER, seed=1)
