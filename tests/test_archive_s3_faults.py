"""S3 faults between the archiver and a real moto_server: 503 SlowDown, dropped requests, slow
answers, and ambiguous PUTs (stored, but the answer lost). Nothing acknowledged is lost, the
archived point advances only on a confirmed PUT, and the archive ends up exact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio

from walrelay.archive.format import bookmark
from walrelay.archive.s3_store import S3Store
from walrelay.archive.store import TransientStoreError
from walrelay.client import Client
from walrelay.procs import Cluster, client_transport, walrelay_argv
from walrelay.wire import ReplyStatus
from walrelay_chaos.pace import budget
from walrelay_chaos.s3proxy import FaultProxy
from walrelay_chaos.s3server import ACCESS_KEY, SECRET_KEY, S3Server

pytestmark = pytest.mark.integration


def _moto(s3_servers: list[S3Server]) -> S3Server:
    return next(s for s in s3_servers if s.name == "moto")


def test_the_store_retries_through_503_drops_and_an_ambiguous_put(s3_servers: list[S3Server]) -> None:
    plan = iter(["503", "503", "ambiguous", "drop", "slow"])  # for the object's requests, in order

    def decide(method: str, path: str, n: int) -> str:
        return next(plan, "pass") if "/obj/" in path else "pass"

    proxy = FaultProxy(_moto(s3_servers).endpoint, decide)
    try:
        url = f"{proxy.endpoint}/walrelay-faults-1"
        store = S3Store(url, create_bucket=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY, backoff_s=0.01)
        store.put("obj/x", b"payload")
        assert store.get("obj/x") == b"payload"
        on_obj = [(a, m) for a, m, path in proxy.events if "/obj/" in path]
        assert on_obj[:6] == [
            ("503", "PUT"),
            ("503", "PUT"),
            ("ambiguous", "PUT"),
            ("drop", "PUT"),
            ("slow", "PUT"),  # the slow one is answered: the PUT is done
            ("pass", "GET"),
        ]
    finally:
        proxy.close()


def test_a_store_that_never_answers_is_a_transient_error_naming_the_last_failure(s3_servers: list[S3Server]) -> None:
    proxy = FaultProxy(_moto(s3_servers).endpoint, lambda method, path, n: "503")
    try:
        store = S3Store(
            f"{proxy.endpoint}/walrelay-faults-2",
            attempts=4,
            backoff_s=0.01,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
        )
        with pytest.raises(TransientStoreError, match=r"no answer after 4 attempts.*SlowDown"):
            store.put("k", b"v")
        assert proxy.count("503") == 4
    finally:
        proxy.close()


async def _status(address: str) -> dict[str, Any]:
    async with Client.connect(client_transport(address), address) as client:
        body = (await client.call("__status__")).body
        assert isinstance(body, dict)
        return body


async def test_a_primary_archives_exactly_through_random_s3_faults(
    tmp_path: Path, s3_servers: list[S3Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every upload meets faults in this cycle: an ambiguous PUT, 503s, a dropped request, a slow one.
    cycle = ["ambiguous", "503", "pass", "drop", "503", "503", "pass", "slow", "pass"]
    puts = iter(range(10**9))

    def decide(method: str, path: str, n: int) -> str:
        return cycle[next(puts) % len(cycle)] if method == "PUT" and "/kvobj/" in path else "pass"

    moto = _moto(s3_servers)
    proxy = FaultProxy(moto.endpoint, decide, slow_s=0.2)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    cluster = Cluster(str(tmp_path))
    writes = 40
    try:
        await trio.to_thread.run_sync(cluster.start_replicas, 5)
        extra = (
            "--app",
            "kv",
            "--s3",
            f"{proxy.endpoint}/walrelay-faults-3",
            "--segment-seconds",
            "0.2",
            "--segment-mb",
            "0.01",
        )
        address = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=extra))
        async with Client.connect(client_transport(address), address) as client:
            for k in range(1, writes + 1):
                assert (await client.call("put", k, f"v{k}")).status is ReplyStatus.OK
        with trio.fail_after(budget(120)):
            while True:
                status = await _status(address)
                if status["archive"].get("archived_through") == status["durable_seq"] == writes + 1:
                    break
                await trio.sleep(0.05)
    finally:
        await trio.to_thread.run_sync(cluster.close)
        proxy.close()
    # The faults happened, on PUTs too, and an ambiguous PUT was among them.
    assert proxy.count("503", "PUT") and proxy.count("ambiguous", "PUT"), proxy.events
    # Read back straight from moto (no proxy): valid, and exact at every seq.
    direct = ("--s3", f"{moto.endpoint}/walrelay-faults-3")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    proc = await trio.run_process(walrelay_argv("archive", "verify", "kvobj", *direct), capture_stdout=True, env=env)
    assert b"valid" in proc.stdout
    out = tmp_path / "all.db"
    await trio.run_process(
        walrelay_argv("restore", "kvobj", "--to", bookmark(1, writes + 1), "--out", str(out), *direct), env=env
    )
    conn = apsw.Connection(str(out))
    try:
        assert dict(conn.execute("SELECT k, v FROM kv").fetchall()) == {k: f"v{k}" for k in range(1, writes + 1)}
    finally:
        conn.close()
