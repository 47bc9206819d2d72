"""WAL capture: every committed transaction, replayed from the log, reproduces the database exactly.

The key property (``test_replay_of_captured_commits_reproduces_the_database``): for a random SQL
workload, after every transaction the captured commits, encoded as log entries and replayed onto
the base image, give a database byte-identical to SQLite's own, with the checksum the entries carry
and a clean ``PRAGMA integrity_check``. Rolled-back and empty transactions capture nothing.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
from hypothesis import event, given, settings
from hypothesis.control import currently_in_test_context

from strategies import (
    AddColumn,
    Checkpoint,
    CreateIndex,
    CreateTable,
    Delete,
    DropTable,
    Insert,
    Op,
    Savepoint,
    Select,
    Step,
    Txn,
    Update,
    Vacuum,
    Workload,
    examples,
    seeded_bytes,
    workloads,
)
from walrelay.capture import Commit, ShadowVFS, ShadowWalFile, WalCapture
from walrelay.entry import GENESIS_CHAIN, Entry, decode, encode
from walrelay.errors import CaptureError
from walrelay.pagehash import DbChecksum, page_hash
from walrelay.replay import Replayer
from walrelay.walformat import FRAME_HEADER, FRAME_HEADER_SIZE, WAL_HEADER_SIZE

# -- helpers --------------------------------------------------------------------------------------


def create_db(path: Path, page_size: int) -> None:
    """An empty WAL-mode database with the given page size (WalCapture forbids PRAGMA page_size)."""
    conn = apsw.Connection(str(path))
    try:
        conn.pragma("page_size", page_size)
        assert conn.pragma("journal_mode", "wal") == "wal"
        assert conn.pragma("page_size") == page_size
    finally:
        conn.close()


def page_diff(got: bytes, want: bytes, page_size: int) -> str:
    """Which pages differ between two images, for assertion messages."""
    n = max(len(got), len(want)) // page_size
    differ = [
        p
        for p in range(1, n + 1)
        if page_hash(p, got[(p - 1) * page_size : p * page_size])
        != page_hash(p, want[(p - 1) * page_size : p * page_size])
    ]
    return (
        f"replayed image has {len(got) // page_size} pages, SQLite has {len(want) // page_size}; "
        f"pages that differ: {differ[:40]}{' ...' if len(differ) > 40 else ''}"
    )


def integrity_check(image: bytes | bytearray) -> list[str]:
    """``PRAGMA integrity_check`` on an image, loaded into an in-memory database.

    The memory VFS cannot open a WAL-mode file, so the copy gets header bytes 18-19 (file format
    write/read version) set to 1, legacy journal mode; nothing else in the image changes.
    """
    data = bytearray(image)
    if len(data) >= 20:
        data[18:20] = b"\x01\x01"
    mem = apsw.Connection(":memory:")
    try:
        mem.deserialize("main", bytes(data))
        return [str(row[0]) for row in mem.execute("PRAGMA integrity_check")]
    finally:
        mem.close()


class Harness:
    """A WalCapture plus the log built from its commits and a Replayer following that log."""

    def __init__(
        self,
        path: Path,
        *,
        cache_size: int | None = None,
        checkpoint_frames: int = 1000,
        synchronous: str = "NORMAL",
    ) -> None:
        self.commits: list[Commit] = []
        self.cap = WalCapture(
            str(path),
            self._on_commit,
            cache_size=cache_size,
            checkpoint_frames=checkpoint_frames,
            synchronous=synchronous,
        )
        self.conn = self.cap.conn
        self.page_size = self.cap.page_size
        self.base = self.cap.image()
        self.replayer = Replayer(self.base, self.page_size)
        self.entries: list[Entry] = []
        self.chain = GENESIS_CHAIN
        self.names = 0  # counter for fresh table / column names
        self._last: tuple[object, object] = (None, None)

    def _on_commit(self, commit: Commit) -> None:
        self.commits.append(commit)
        if currently_in_test_context():
            self._note_coverage(commit)

    def _note_coverage(self, commit: Commit) -> None:
        """Statistics for --hypothesis-show-statistics only; peeks at WalCapture internals if present."""
        if len(commit.pages) > 50:
            event("commit of > 50 pages")
        now = (getattr(self.cap, "_salts", None), getattr(self.cap, "_consumed", None))
        (salts, consumed), self._last = self._last, now
        if isinstance(now[1], int):
            frames = now[1] - (consumed if salts == now[0] and isinstance(consumed, int) else 0)
            if frames > len(commit.pages):
                event("commit with a page in several frames (spilled, then dirtied again)")

    def sql(self, statement: str, bindings: apsw.Bindings | None = None) -> list[tuple[apsw.SQLiteValue, ...]]:
        """Execute; if the WAL hook failed, raise its CaptureError rather than SQLite's bare error."""
        try:
            return list(self.conn.execute(statement, bindings))
        except apsw.Error as e:
            if self.cap.error is not None:
                raise self.cap.error from e
            raise

    def close(self) -> None:
        self.cap.close()

    def new_commits(self, since: int) -> Sequence[Commit]:
        return self.commits[since:]

    def log_and_verify(self) -> None:
        """Turn new commits into entries, replay them, and compare with SQLite's image."""
        self.cap.check()
        for c in self.commits[len(self.entries) :]:
            assert c.page_size == self.page_size
            assert all(1 <= p <= c.db_pages for p in c.pages), "commit carries pages past its end"
            e = encode(
                epoch=1,
                seq=len(self.entries) + 1,
                timestamp_us=1_700_000_000_000_000 + len(self.entries),
                page_size=c.page_size,
                db_pages=c.db_pages,
                db_checksum=c.db_checksum,
                frames=c.pages,
                prev_chain=self.chain,
            )
            e = decode(e.raw)  # what a replica receives
            self.replayer.apply(e)  # checks seq, chain and the commit's db_checksum
            self.entries.append(e)
            self.chain = e.chain
        image = self.cap.image()
        replayed = bytes(self.replayer.image)
        assert replayed == image, page_diff(replayed, image, self.page_size)
        if self.entries:
            assert DbChecksum.of_image(image, self.page_size).value == self.entries[-1].db_checksum
            assert self.entries[-1].db_pages * self.page_size == len(image)
        assert integrity_check(replayed) == ["ok"]

    def full_replay(self) -> bytes:
        """Replay the whole log from the base image with a fresh Replayer."""
        r = Replayer(self.base, self.page_size)
        r.apply_all(decode(e.raw) for e in self.entries)
        return bytes(r.image)


@contextmanager
def harness(
    path: Path, *, cache_size: int | None = None, checkpoint_frames: int = 1000, synchronous: str = "NORMAL"
) -> Iterator[Harness]:
    h = Harness(path, cache_size=cache_size, checkpoint_frames=checkpoint_frames, synchronous=synchronous)
    try:
        yield h
    finally:
        h.close()


# -- interpreting generated workloads -------------------------------------------------------------


def tables(h: Harness) -> list[str]:
    rows = h.sql("SELECT name FROM sqlite_schema WHERE type = 'table' AND name GLOB 't[0-9]*' ORDER BY name")
    return [str(r[0]) for r in rows]


def pick(h: Harness, index: int) -> str | None:
    names = tables(h)
    return names[index % len(names)] if names else None


def run_op(h: Harness, op: Op, depth: int = 0) -> None:
    if isinstance(op, CreateTable):
        h.names += 1
        extra = "".join(f", x{i} TEXT DEFAULT 'x{i}'" for i in range(op.extra_columns))
        h.sql(f"CREATE TABLE t{h.names}(id INTEGER PRIMARY KEY, a BLOB, b TEXT{extra})")
        return
    if isinstance(op, Savepoint):
        name = f"sp{depth}"
        h.sql(f"SAVEPOINT {name}")
        for inner in op.ops:
            run_op(h, inner, depth + 1)
        if op.rollback:
            h.sql(f"ROLLBACK TO {name}")
        h.sql(f"RELEASE {name}")
        return
    table = pick(h, op.table)
    if table is None:
        return
    if isinstance(op, Insert):
        values = ", ".join(["(?, ?)"] * op.rows)
        params: list[object] = []
        for i in range(op.rows):
            params += [seeded_bytes(op.seed + i, op.size), f"r{op.seed % 997}-{i}"]
        h.sql(f"INSERT INTO {table}(a, b) VALUES {values}", params)
    elif isinstance(op, Update):
        h.sql(
            f"UPDATE {table} SET a = ?, b = b || '+' WHERE id % ? = ?",
            (seeded_bytes(op.seed, op.size), op.modulus, op.residue),
        )
    elif isinstance(op, Delete):
        h.sql(f"DELETE FROM {table} WHERE id % ? = ?", (op.modulus, op.residue))
    elif isinstance(op, CreateIndex):
        cols = [str(r[1]) for r in h.sql(f"PRAGMA table_info({table})") if str(r[2]).upper() == "TEXT"]
        choices = [*cols, "length(a)"]
        k = op.column % len(choices)
        h.sql(f"CREATE INDEX IF NOT EXISTS {table}_i{k} ON {table}({choices[k]})")
    elif isinstance(op, AddColumn):
        h.names += 1
        h.sql(f"ALTER TABLE {table} ADD COLUMN c{h.names} TEXT DEFAULT 'v{h.names}'")
    elif isinstance(op, DropTable):
        h.sql(f"DROP TABLE {table}")
    elif isinstance(op, Select):
        h.sql(f"SELECT count(*), sum(length(a)) FROM {table}")
    else:  # pragma: no cover
        raise AssertionError(op)


def run_step(h: Harness, step: Step) -> None:
    before = h.cap.image()
    n0 = len(h.commits)
    if isinstance(step, Checkpoint):
        if h.cap.maybe_checkpoint():
            event("checkpoint ran")
        assert not h.new_commits(n0), "a checkpoint produced a commit"
        assert h.cap.image() == before
    elif isinstance(step, Vacuum):
        h.sql("VACUUM")
        assert len(h.new_commits(n0)) <= 1
    else:
        assert isinstance(step, Txn)
        if step.explicit:
            h.sql("BEGIN")
        for op in step.ops:
            run_op(h, op)
        if step.explicit:
            h.sql(step.end)
        assert not h.conn.in_transaction
        new = h.new_commits(n0)
        if step.end == "ROLLBACK":
            assert not new, "a rolled-back transaction produced a commit"
            assert h.cap.image() == before
        else:
            assert len(new) <= 1, f"one transaction produced {len(new)} commits"
            if not new:
                assert h.cap.image() == before, "the database changed but no commit was captured"
    h.log_and_verify()


def wal_salts(h: Harness) -> tuple[int, int]:
    f = h.cap.vfs.wal_file
    assert f is not None
    return int.from_bytes(f.mirror[16:20], "big"), int.from_bytes(f.mirror[20:24], "big")


# -- the key property -----------------------------------------------------------------------------


@settings(max_examples=examples(3))  # cheap per example; the suite's most important test
@given(w=workloads())
def test_replay_of_captured_commits_reproduces_the_database(
    w: Workload, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("capture") / "db.sqlite"
    create_db(path, w.page_size)
    with harness(path, cache_size=w.cache_size, checkpoint_frames=w.checkpoint_frames) as h:
        assert h.page_size == w.page_size
        h.log_and_verify()
        salts: set[tuple[int, int]] = set()
        for step in w.steps:
            run_step(h, step)
            if h.cap.vfs.wal_file is not None and h.commits:
                salts.add(wal_salts(h))
        if len(salts) > 1:
            event("WAL restarted")
        final = h.full_replay()
        assert final == h.cap.image()
    # After close SQLite checkpoints the WAL into the file: the file itself is the replayed image.
    on_disk = path.read_bytes()
    assert on_disk == final, page_diff(on_disk, final, w.page_size)


# -- targeted scenarios (deterministic) -----------------------------------------------------------


WalMark = tuple[tuple[int, int] | None, int]


def wal_mark(h: Harness) -> WalMark:
    """(salts, frames of the current WAL generation), read from the mirror: where the next commit's
    frames will start. Counts the leading frames that carry the header's salts; the tests using it
    never leave rolled-back frames behind, the one case where stale frames would match too."""
    f = h.cap.vfs.wal_file
    if f is None or len(f.mirror) < WAL_HEADER_SIZE:
        return None, 0
    salts = wal_salts(h)
    fsize = FRAME_HEADER_SIZE + h.page_size
    n = 0
    while WAL_HEADER_SIZE + (n + 1) * fsize <= len(f.mirror):
        _pgno, _commit, salt1, salt2, *_ = FRAME_HEADER.unpack_from(f.mirror, WAL_HEADER_SIZE + n * fsize)
        if (salt1, salt2) != salts:
            break
        n += 1
    return salts, n


def frames_since(h: Harness, mark: WalMark) -> list[tuple[int, int]]:
    """(pgno, commit size) of the frames written since ``mark`` (from 0 if the WAL restarted)."""
    f = h.cap.vfs.wal_file
    assert f is not None
    salts, count = mark
    now_salts, now_count = wal_mark(h)
    start = count if now_salts == salts else 0
    fsize = FRAME_HEADER_SIZE + h.page_size
    out: list[tuple[int, int]] = []
    for i in range(start, now_count):
        pgno, commit, *_ = FRAME_HEADER.unpack_from(f.mirror, WAL_HEADER_SIZE + i * fsize)
        out.append((pgno, commit))
    return out


def test_page_spilled_then_rewritten_is_captured_with_its_final_content(tmp_path: Path) -> None:
    """A spilled page that is dirtied again and is the highest dirty page at commit is appended a
    second time (SQLite rewrites spilled frames in place except for the commit frame). The later
    frame is the committed content."""
    with harness(tmp_path / "db", cache_size=5) as h:
        h.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)")
        h.sql("INSERT INTO t(a) VALUES " + ", ".join(["(?)"] * 50), [seeded_bytes(i, 1000) for i in range(50)])
        h.sql("CREATE TABLE hi(id INTEGER PRIMARY KEY, a BLOB)")
        h.sql("INSERT INTO hi(a) VALUES (x'00')")
        ((root,),) = h.sql("SELECT rootpage FROM sqlite_schema WHERE name = 'hi'")
        assert isinstance(root, int)
        assert root == h.conn.pragma("page_count"), "table hi must own the last page"
        h.log_and_verify()
        mark = wal_mark(h)
        n0 = len(h.commits)
        h.sql("BEGIN")
        h.sql("UPDATE hi SET a = ?", (b"first" * 20,))
        h.sql("UPDATE t SET a = ?", (seeded_bytes(99, 1000),))  # spills, hi's page included
        h.sql("UPDATE hi SET a = ?", (b"final" * 20,))
        h.sql("COMMIT")
        pgnos = [pgno for pgno, _ in frames_since(h, mark)]
        assert pgnos.count(root) == 2, f"scenario did not put page {root} in the commit twice: {pgnos}"
        (commit,) = h.new_commits(n0)
        assert b"final" * 20 in commit.pages[root]
        h.log_and_verify()


def test_large_transaction_spilling_the_cache(tmp_path: Path) -> None:
    with harness(tmp_path / "db", cache_size=5) as h:
        h.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB, b TEXT)")
        h.sql("CREATE INDEX t_b ON t(b)")
        h.log_and_verify()
        n0 = len(h.commits)
        h.sql("BEGIN")
        rng = random.Random(5)
        for i in range(300):
            h.sql("INSERT INTO t(a, b) VALUES (?, ?)", (rng.randbytes(rng.randrange(0, 9000)), f"k{i % 37}"))
        h.sql("UPDATE t SET b = b || 'x' WHERE id % 3 = 0")
        h.sql("DELETE FROM t WHERE id % 7 = 0")
        h.sql("COMMIT")
        assert len(h.new_commits(n0)) == 1
        assert len(h.commits[-1].pages) > 100
        h.log_and_verify()


def test_rolled_back_spilled_transaction_then_commit(tmp_path: Path) -> None:
    """Frames a rolled-back transaction spilled stay in the WAL file; they must not be captured."""
    with harness(tmp_path / "db", cache_size=5) as h:
        h.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)")
        h.log_and_verify()
        f = h.cap.vfs.wal_file
        assert f is not None
        wal_before = len(f.mirror)
        n0 = len(h.commits)
        before = h.cap.image()
        h.sql("BEGIN")
        h.sql("INSERT INTO t(a) VALUES " + ", ".join(["(?)"] * 40), [seeded_bytes(i, 2000) for i in range(40)])
        h.sql("ROLLBACK")
        assert len(f.mirror) > wal_before, "the transaction should have spilled frames into the WAL"
        assert not h.new_commits(n0)
        assert h.cap.image() == before
        h.sql("INSERT INTO t(a) VALUES (x'01')")
        assert len(h.new_commits(n0)) == 1
        h.log_and_verify()


def test_savepoint_rollback_inside_a_spilling_transaction(tmp_path: Path) -> None:
    with harness(tmp_path / "db", cache_size=5) as h:
        h.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)")
        h.sql("INSERT INTO t(a) VALUES " + ", ".join(["(?)"] * 30), [seeded_bytes(i, 900) for i in range(30)])
        h.log_and_verify()
        n0 = len(h.commits)
        h.sql("BEGIN")
        h.sql("UPDATE t SET a = ? WHERE id % 2 = 0", (seeded_bytes(1, 900),))
        h.sql("SAVEPOINT s")
        h.sql("UPDATE t SET a = ?", (seeded_bytes(2, 1500),))
        h.sql("INSERT INTO t(a) VALUES " + ", ".join(["(?)"] * 30), [seeded_bytes(i, 3000) for i in range(30)])
        h.sql("ROLLBACK TO s")
        h.sql("RELEASE s")
        h.sql("UPDATE t SET a = ? WHERE id % 5 = 0", (seeded_bytes(3, 700),))
        h.sql("COMMIT")
        assert len(h.new_commits(n0)) == 1
        h.log_and_verify()
        assert h.sql("SELECT count(*) FROM t")[0] == (30,)


def test_empty_and_read_only_transactions_capture_nothing(tmp_path: Path) -> None:
    with harness(tmp_path / "db") as h:
        h.sql("CREATE TABLE t(x)")
        h.log_and_verify()
        n0 = len(h.commits)
        h.sql("BEGIN; COMMIT")
        h.sql("BEGIN IMMEDIATE; SELECT * FROM t; COMMIT")
        h.sql("UPDATE t SET x = 1 WHERE x = 2")  # matches no row
        assert not h.new_commits(n0)
        h.sql("INSERT INTO t VALUES (1)")
        assert len(h.new_commits(n0)) == 1
        h.log_and_verify()


def test_checkpoint_restarts_the_wal_with_new_salts(tmp_path: Path) -> None:
    with harness(tmp_path / "db", checkpoint_frames=3) as h:
        h.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)")
        h.log_and_verify()
        seen = set()
        for i in range(12):
            h.sql("INSERT INTO t(a) VALUES (?)", (seeded_bytes(i, 5000),))
            seen.add(wal_salts(h))
            h.log_and_verify()
            h.cap.maybe_checkpoint()
        assert len(seen) >= 3, "the WAL should have restarted several times"
        assert len(h.entries) == 13
        assert h.full_replay() == h.cap.image()


def test_maybe_checkpoint_threshold(tmp_path: Path) -> None:
    with harness(tmp_path / "db", checkpoint_frames=4) as h:
        h.sql("CREATE TABLE t(x)")  # 2 frames
        assert h.cap.maybe_checkpoint() is False
        h.sql("INSERT INTO t VALUES (1)")
        h.sql("INSERT INTO t VALUES (2)")
        assert h.cap.maybe_checkpoint() is True
        assert h.cap.maybe_checkpoint() is False
        h.sql("BEGIN")
        for i in range(5):
            h.sql("INSERT INTO t VALUES (?)", (i,))
        assert h.cap.maybe_checkpoint() is False  # never inside a transaction
        h.sql("COMMIT")
        h.log_and_verify()


def test_vacuum_works_and_shrinks_the_database(tmp_path: Path) -> None:
    with harness(tmp_path / "db", cache_size=8) as h:
        h.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)")
        h.sql("INSERT INTO t(a) VALUES " + ", ".join(["(?)"] * 60), [seeded_bytes(i, 3000) for i in range(60)])
        h.sql("DELETE FROM t WHERE id > 5")
        h.log_and_verify()
        pages_before = len(h.cap.image()) // h.page_size
        n0 = len(h.commits)
        h.sql("VACUUM")
        assert len(h.new_commits(n0)) == 1
        assert h.commits[-1].db_pages < pages_before
        h.log_and_verify()
        assert h.sql("SELECT count(*) FROM t")[0] == (5,)


# -- the authorizer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "PRAGMA journal_mode = DELETE",
        "PRAGMA main.journal_mode = MEMORY",
        "PRAGMA JOURNAL_MODE = off",
        "PRAGMA wal_autocheckpoint = 100",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "PRAGMA locking_mode = EXCLUSIVE",
        "PRAGMA page_size = 8192",
        "PRAGMA writable_schema = ON",
    ],
)
def test_authorizer_denies_pragmas_that_would_stop_capture(tmp_path: Path, sql: str) -> None:
    with harness(tmp_path / "db") as h:
        with pytest.raises(apsw.AuthError, match="not authorized"):
            h.conn.execute(sql)
        # Capture goes on: the database is still in WAL mode and commits still replay.
        h.sql("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
        assert len(h.commits) == 2
        h.log_and_verify()
        assert h.cap.image()[18:20] == b"\x02\x02"  # WAL mode in the file header


def test_authorizer_denies_attaching_a_file(tmp_path: Path) -> None:
    with harness(tmp_path / "db") as h:
        other = tmp_path / "other.db"
        with pytest.raises(apsw.AuthError, match="not authorized"):
            h.conn.execute(f"ATTACH '{other}' AS other")
        with pytest.raises(apsw.AuthError, match="not authorized"):
            h.conn.execute(f"ATTACH 'file:{other}?mode=rwc' AS other")
        assert [r[1] for r in h.conn.execute("PRAGMA database_list")] == ["main"]


@pytest.mark.parametrize("how", ["bound parameter", "expression"])
def test_authorizer_denies_attach_whatever_the_filename_syntax(tmp_path: Path, how: str) -> None:
    """SQLite passes the authorizer a NULL filename when ATTACH's argument is not a string literal."""
    with harness(tmp_path / "db") as h:
        other = str(tmp_path / "other.db")
        with pytest.raises(apsw.AuthError):
            if how == "bound parameter":
                h.conn.execute("ATTACH ? AS other", (other,))
            else:
                h.conn.execute(f"ATTACH '{other[:-3]}' || '.db' AS other")
        assert [r[1] for r in h.conn.execute("PRAGMA database_list")] == ["main"]


def test_authorizer_allows_ordinary_work_and_vacuum(tmp_path: Path) -> None:
    with harness(tmp_path / "db") as h:
        h.sql("PRAGMA cache_size = 50")
        h.sql("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)")
        assert h.sql("PRAGMA integrity_check") == [("ok",)]
        n0 = len(h.commits)
        h.sql("VACUUM")
        assert len(h.new_commits(n0)) == 1
        h.log_and_verify()


# -- capture failures -----------------------------------------------------------------------------


def corrupt_next_wal_write(monkeypatch: pytest.MonkeyPatch, h: Harness, *, size: int, at: int) -> None:
    """After SQLite's next ``size``-byte write to the WAL, flip the byte ``at`` bytes into it in the
    capture's mirror only: the file stays intact, so SQLite commits and the WAL hook then reads the
    bad byte. SQLite writes a frame as two writes, the 24-byte header and the page."""
    f = h.cap.vfs.wal_file
    assert f is not None
    original = f.xWrite
    armed = True

    def corrupting(data: bytes, offset: int) -> None:
        nonlocal armed
        original(data, offset)
        if armed and len(data) == size:
            armed = False
            f.mirror[offset + at] ^= 0x01

    monkeypatch.setattr(f, "xWrite", corrupting)


def test_corrupt_wal_mirror_is_a_capture_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with harness(tmp_path / "db") as h:
        h.sql("CREATE TABLE t(x)")
        h.log_and_verify()
        n0 = len(h.commits)
        corrupt_next_wal_write(monkeypatch, h, size=h.page_size, at=100)
        with pytest.raises(apsw.Error):
            h.conn.execute("INSERT INTO t VALUES (1)")
        assert isinstance(h.cap.error, CaptureError)
        assert "checksum mismatch" in str(h.cap.error)
        assert not h.new_commits(n0), "a commit whose frames failed verification was delivered"
        with pytest.raises(CaptureError, match="checksum mismatch"):
            h.cap.check()
        with pytest.raises(CaptureError, match="checksum mismatch"):
            h.cap.check()  # and keeps raising
        # SQLite did commit (the file was intact): database and log now disagree, hence the error.
        assert h.conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_corrupt_frame_header_salt_is_a_capture_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with harness(tmp_path / "db") as h:
        h.sql("CREATE TABLE t(x)")
        corrupt_next_wal_write(monkeypatch, h, size=FRAME_HEADER_SIZE, at=8)  # salt-1 of the frame
        with pytest.raises(apsw.Error):
            h.conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(CaptureError, match="salt mismatch"):
            h.cap.check()


def test_no_commit_is_delivered_after_a_capture_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once capture has failed the log is missing a commit; anything captured later would be
    replayed onto the wrong database. The hook must keep refusing, even after the WAL restarts."""
    with harness(tmp_path / "db", checkpoint_frames=1) as h:
        h.sql("CREATE TABLE t(x)")
        n0 = len(h.commits)
        corrupt_next_wal_write(monkeypatch, h, size=h.page_size, at=100)
        with pytest.raises(apsw.Error):
            h.conn.execute("INSERT INTO t VALUES (1)")
        assert isinstance(h.cap.error, CaptureError)
        for i in range(3):
            h.cap.maybe_checkpoint()
            with contextlib.suppress(Exception):
                h.conn.execute("INSERT INTO t VALUES (?)", (i + 2,))
        assert not h.new_commits(n0), "commits were captured after the capture had failed"


def test_after_a_capture_error_later_writes_fail_as_sqlite_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored CaptureError must not pin a buffer export on the WAL mirror: if it does, the next
    write that grows the WAL fails inside ShadowWalFile.xWrite with a BufferError (an I/O error to
    SQLite) instead of reaching the hook, which refuses it with an ordinary SQLite error."""
    with harness(tmp_path / "db") as h:
        h.sql("CREATE TABLE t(x)")
        corrupt_next_wal_write(monkeypatch, h, size=h.page_size, at=100)
        with pytest.raises(apsw.Error):
            h.conn.execute("INSERT INTO t VALUES (1)")
        assert isinstance(h.cap.error, CaptureError)
        for i in range(3):
            with pytest.raises(apsw.Error):  # not BufferError
                h.conn.execute("INSERT INTO t VALUES (?)", (i + 2,))


def test_exception_in_on_commit_is_a_capture_error(tmp_path: Path) -> None:
    """If the owner's callback fails, the commit is in the database but not in the log: that is a
    capture failure and must be reported by check(), like any other."""
    path = tmp_path / "db"
    delivered: list[Commit] = []

    def on_commit(c: Commit) -> None:
        if delivered:
            raise RuntimeError("log append failed")
        delivered.append(c)

    cap = WalCapture(str(path), on_commit)
    try:
        cap.conn.execute("CREATE TABLE t(x)")
        with pytest.raises(Exception):  # noqa: B017 - whatever apsw turns the callback error into
            cap.conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(CaptureError):
            cap.check()
    finally:
        cap.close()


def test_sector_padding_frames_are_one_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without POWERSAFE_OVERWRITE and with synchronous=FULL, SQLite pads each commit to a sector
    boundary with copies of the commit frame; they belong to the same transaction."""

    class NoPowersafeOverwrite(apsw.VFSFile):
        def xDeviceCharacteristics(self) -> int:
            return int(super().xDeviceCharacteristics()) & ~apsw.SQLITE_IOCAP_POWERSAFE_OVERWRITE

    original = ShadowVFS.xOpen

    def x_open(self: ShadowVFS, name: Any, flags: list[int]) -> apsw.VFSFile:
        f = original(self, name, flags)
        return f if isinstance(f, ShadowWalFile) else NoPowersafeOverwrite("", name, flags)

    monkeypatch.setattr(ShadowVFS, "xOpen", x_open)
    path = tmp_path / "db"
    create_db(path, 512)
    with harness(path, cache_size=5, checkpoint_frames=50, synchronous="FULL") as h:
        padded = 0
        transactions = [
            ["CREATE TABLE t(id INTEGER PRIMARY KEY, a BLOB)"],
            ["INSERT INTO t(a) VALUES (x'01')"],
            ["BEGIN", *[f"INSERT INTO t(a) VALUES (zeroblob({300 + 97 * i}))" for i in range(40)], "COMMIT"],
            ["UPDATE t SET a = x'02' WHERE id % 3 = 0"],
            ["DELETE FROM t WHERE id % 4 = 0"],
            ["INSERT INTO t(a) VALUES (x'03')"],
        ]
        for statements in transactions:
            n0 = len(h.commits)
            mark = wal_mark(h)
            for sql in statements:
                h.sql(sql)
            assert len(h.new_commits(n0)) == 1
            if sum(1 for _pgno, commit in frames_since(h, mark) if commit) > 1:
                padded += 1
            h.log_and_verify()
            h.cap.maybe_checkpoint()
        assert padded >= 4, "the scenario should have produced sector padding"
