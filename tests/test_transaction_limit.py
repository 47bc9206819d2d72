"""No client can stop the object with one big transaction (issue 17, point 4).

A transaction whose log entry would exceed the entry limit used to commit in SQLite first; only
then did ``primary_commit`` refuse it, and a commit that cannot become an entry is a capture
failure: the object reset and served nothing until restarted (a 63.9 MiB ``put`` did it). The
capture now refuses the transaction's WAL writes past the limit, so SQLite fails the statement or
the COMMIT before anything commits; the runtime rolls back and answers ``TransactionTooLarge``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest

from walrelay.apps.kv import KeyValue
from walrelay.capture import Commit, WalCapture
from walrelay.entry import Entry
from walrelay.object_runtime import ObjectRuntime
from walrelay.primary import PrimaryConfig, PrimaryEffect, PrimaryState
from walrelay.replay import Replayer

PAGE = 4096


def test_the_capture_refuses_a_transaction_over_its_page_limit_and_rolls_nothing_forward(tmp_path: Path) -> None:
    commits: list[Commit] = []
    cap = WalCapture(str(tmp_path / "db"), commits.append)
    try:
        cap.limit_pages(12)
        cap.conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)")
        before, n = cap.image(), len(commits)
        cap.conn.execute("BEGIN")
        cap.conn.execute("INSERT INTO t(a) VALUES (?)", (bytes(20 * PAGE),))
        with pytest.raises(apsw.FullError):
            cap.conn.execute("COMMIT")
        assert cap.take_refused() == 13  # the 13th frame was the one refused
        assert cap.take_refused() == 0  # reported once
        if cap.conn.in_transaction:  # (SQLite rolls a COMMIT that failed with SQLITE_FULL back itself)
            cap.conn.execute("ROLLBACK")
        assert cap.image() == before and len(commits) == n and cap.error is None
        cap.conn.execute("INSERT INTO t(a) VALUES (?)", (bytes(8 * PAGE),))  # within the limit: captured
        assert len(commits) == n + 1 and len(commits[-1].pages) <= 12
    finally:
        cap.close()


def test_a_transaction_that_spills_past_the_limit_fails_in_its_statement(tmp_path: Path) -> None:
    """With a small page cache SQLite writes (spills) pages to the WAL before the COMMIT: the
    refusal then comes from the statement itself, and the same rollback applies."""
    commits: list[Commit] = []
    cap = WalCapture(str(tmp_path / "db"), commits.append, cache_size=5)
    try:
        cap.limit_pages(30)
        cap.conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)")
        before, n = cap.image(), len(commits)
        cap.conn.execute("BEGIN")
        with pytest.raises(apsw.FullError):
            for i in range(100):
                cap.conn.execute("INSERT INTO t(a) VALUES (?)", (bytes([i % 251]) * 3000,))
        assert cap.take_refused() > 0
        if cap.conn.in_transaction:
            cap.conn.execute("ROLLBACK")
        assert cap.image() == before and len(commits) == n
        cap.conn.execute("INSERT INTO t(a) VALUES (x'01')")
        assert len(commits) == n + 1
    finally:
        cap.close()


class _Object:
    """An ObjectRuntime over a PrimaryState with a small entry limit, its entries collected."""

    def __init__(self, path: Path, max_entry_bytes: int, cache_size: int | None = None) -> None:
        self.state = PrimaryState(PrimaryConfig(epoch=1, replicas=1, quorum=1, max_entry_bytes=max_entry_bytes))
        self.entries: list[Entry] = []
        self.effects: list[PrimaryEffect] = []
        self.rt = ObjectRuntime(
            str(path), KeyValue(), self.state, self.effects.extend, monotonic_us=lambda: 0, on_entry=self.entries.append
        )
        if cache_size is not None:
            self.rt.capture.conn.pragma("cache_size", cache_size)

    def put(self, k: int, v: Any) -> tuple[bool, Any]:
        out = self.rt.run("put", [k, v])
        return out.ok, out.value

    def replayed(self) -> bytes:
        r = Replayer(b"", self.entries[0].page_size)
        for e in self.entries:
            r.apply(e)
        return bytes(r.image)


@pytest.mark.parametrize("cache_size", [None, 5])
def test_a_put_over_the_entry_limit_is_answered_and_the_object_keeps_serving(
    tmp_path: Path, cache_size: int | None
) -> None:
    limit = 64 * 1024
    obj = _Object(tmp_path / "obj.db", limit, cache_size)
    try:
        assert obj.put(1, "small") == (True, None)
        seq = obj.state.last_seq
        ok, value = obj.put(2, "x" * (2 * limit))  # a value twice the limit: pages well beyond it
        assert not ok and value["type"] == "TransactionTooLarge", value
        assert f"{limit}-byte entry limit" in value["message"] and "rolled back" in value["message"]
        assert obj.state.last_seq == seq and obj.state.reset_reason is None  # nothing logged, no reset
        assert obj.rt.run("get", [2]).value is None
        assert obj.put(3, "after") == (True, None)  # the object lives on
        assert obj.rt.run("get", [3]).value == "after"
        assert obj.replayed() == obj.rt.image()  # the log still gives exactly the database
    finally:
        obj.rt.close()


def test_every_transaction_either_fits_one_entry_or_is_refused_never_a_reset(tmp_path: Path) -> None:
    """Values from tiny to over the limit, in one object: each commit's entry is within the limit
    (the page limit leaves room for the entry's own header), each refusal changes nothing."""
    limit = 40 * 1024
    obj = _Object(tmp_path / "obj.db", limit)
    try:
        refused = 0
        for i, size in enumerate(range(1000, 3 * limit, 3001)):
            ok, value = obj.put(i, "v" * size)
            if not ok:
                assert value["type"] == "TransactionTooLarge", value
                refused += 1
            assert obj.state.reset_reason is None
        assert refused and obj.entries
        sizes = [e.size for e in obj.entries]
        assert max(sizes) <= limit  # never over ...
        assert max(sizes) > limit * 3 // 4, sizes  # ... and not refusing what would have fit
        assert obj.replayed() == obj.rt.image()
    finally:
        obj.rt.close()
