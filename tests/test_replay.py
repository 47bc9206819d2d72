"""Replayer: applies entries to an image, refusing gaps, overlaps, chain breaks and checksum lies."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import seeded_bytes, u32
from walrelay.entry import GENESIS_CHAIN, Entry, encode
from walrelay.errors import ChainError
from walrelay.pagehash import DbChecksum
from walrelay.replay import Replayer

PAGE = 512


def base_image(pages: int, seed: int = 0) -> bytes:
    return seeded_bytes(seed, pages * PAGE)


class Log:
    """Builds a valid log over a base image, tracking the expected image and checksum."""

    def __init__(self, base: bytes, page_size: int = PAGE) -> None:
        self.page_size = page_size
        self.image = bytearray(base)
        self.checksum = DbChecksum.of_image(base, page_size)
        self.entries: list[Entry] = []
        self.chain = GENESIS_CHAIN

    def commit(self, pages: dict[int, bytes], db_pages: int, *, db_checksum: int | None = None) -> Entry:
        need = db_pages * self.page_size
        self.image.extend(bytes(max(0, need - len(self.image))))
        del self.image[need:]
        for pgno, page in pages.items():
            if pgno <= db_pages:
                self.image[(pgno - 1) * self.page_size : pgno * self.page_size] = page
        value = self.checksum.apply(pages, db_pages)
        e = encode(
            epoch=3,
            seq=len(self.entries) + 1,
            timestamp_us=1000 + len(self.entries),
            page_size=self.page_size,
            db_pages=db_pages,
            db_checksum=value if db_checksum is None else db_checksum,
            frames=pages,
            prev_chain=self.chain,
        )
        self.entries.append(e)
        self.chain = e.chain
        return e


def page(seed: int) -> bytes:
    return seeded_bytes(seed, PAGE)


def five_entry_log() -> tuple[bytes, Log]:
    base = base_image(3)
    log = Log(base)
    log.commit({1: page(1), 3: page(3)}, 3)
    log.commit({4: page(4), 5: page(5)}, 5)  # grows
    log.commit({2: page(2)}, 5)
    log.commit({1: page(11)}, 2)  # shrinks
    log.commit({7: page(7)}, 7)  # grows past a gap: page 3..6 read as zeros / old
    return base, log


def expect_chain_error(r: Replayer, e: Entry, *fragments: str) -> None:
    seq, chain, image = r.last_seq, r.last_chain, bytes(r.image)
    with pytest.raises(ChainError) as info:
        r.apply(e)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, msg
    # A refused entry does not move the log position.
    assert (r.last_seq, r.last_chain) == (seq, chain)
    if "checksum" not in msg:
        assert bytes(r.image) == image  # refused before touching the image


# -- the happy path -------------------------------------------------------------------------------


def test_replay_reproduces_the_image_and_checksum() -> None:
    base, log = five_entry_log()
    r = Replayer(base, PAGE)
    r.apply_all(log.entries)
    assert bytes(r.image) == bytes(log.image)
    assert len(r.image) == 7 * PAGE
    assert r.image[2 * PAGE : 6 * PAGE] == bytes(4 * PAGE)  # truncated, then regrown as zeros
    assert r.last_seq == 5 and r.last_chain == log.entries[-1].chain
    assert r.checksum.value == log.entries[-1].db_checksum == DbChecksum.of_image(bytes(r.image), PAGE).value


def test_replay_can_resume_from_a_snapshot() -> None:
    base, log = five_entry_log()
    r = Replayer(base, PAGE)
    r.apply_all(log.entries[:2])
    resumed = Replayer(bytes(r.image), PAGE, last_seq=2, last_chain=log.entries[1].chain)
    resumed.apply_all(log.entries[2:])
    assert bytes(resumed.image) == bytes(log.image)


# -- refusals -------------------------------------------------------------------------------------


def test_replay_rejects_a_gap() -> None:
    base, log = five_entry_log()
    r = Replayer(base, PAGE)
    r.apply_all(log.entries[:2])
    expect_chain_error(r, log.entries[3], "entry seq 4 does not follow seq 2", "gap")
    expect_chain_error(r, log.entries[4], "entry seq 5 does not follow seq 2")
    r.apply_all(log.entries[2:])  # the right entry still applies afterwards
    assert bytes(r.image) == bytes(log.image)


def test_replay_rejects_a_gap_at_the_start() -> None:
    base, log = five_entry_log()
    expect_chain_error(Replayer(base, PAGE), log.entries[1], "entry seq 2 does not follow seq 0")


def test_replay_rejects_an_overlap() -> None:
    base, log = five_entry_log()
    r = Replayer(base, PAGE)
    r.apply_all(log.entries[:3])
    expect_chain_error(r, log.entries[2], "entry seq 3 does not follow seq 3", "overlap")
    expect_chain_error(r, log.entries[0], "entry seq 1 does not follow seq 3")
    r.apply_all(log.entries[3:])
    assert bytes(r.image) == bytes(log.image)


def test_replay_rejects_a_chain_mismatch() -> None:
    base, log = five_entry_log()
    r = Replayer(base, PAGE)
    r.apply_all(log.entries[:2])
    # Same seq, same content, but encoded on another history (a divergent log).
    e = log.entries[2]
    forked = encode(
        epoch=e.epoch,
        seq=3,
        timestamp_us=e.timestamp_us,
        page_size=PAGE,
        db_pages=e.db_pages,
        db_checksum=e.db_checksum,
        frames=e.frames,
        prev_chain=log.entries[0].chain,
    )
    expect_chain_error(r, forked, "entry seq 3", "chain mismatch")
    r.apply(e)
    assert r.last_seq == 3


def test_replay_rejects_an_entry_from_another_log_with_the_right_seq() -> None:
    base, log = five_entry_log()
    other = Log(base)
    other.commit({1: page(50)}, 3)  # the logs diverge at seq 1 ...
    other.commit({4: page(4), 5: page(5)}, 5)  # ... so seq 2, identical in content, does not follow
    assert other.entries[1].frames == log.entries[1].frames
    r = Replayer(base, PAGE)
    r.apply(log.entries[0])
    expect_chain_error(r, other.entries[1], "entry seq 2", "chain mismatch")


def test_replay_rejects_a_wrong_db_checksum() -> None:
    base = base_image(3)
    log = Log(base)
    log.commit({1: page(1)}, 3)
    log.commit({2: page(2)}, 3)
    good = log.checksum.value
    bad = log.commit({3: page(3)}, 3, db_checksum=good ^ 1)
    r = Replayer(base, PAGE)
    r.apply_all(log.entries[:2])
    expect_chain_error(r, bad, "entry seq 3", "database checksum", f"{good ^ 1:#018x}")


def test_replay_refuses_to_continue_after_a_checksum_failure() -> None:
    """The checksum is checked after the pages are written, so the image then holds a rejected
    entry: even a correct next entry must not be applied on top of it."""
    base = base_image(3)
    log = Log(base)
    log.commit({1: page(1)}, 3)
    bad = log.commit({2: page(2)}, 3, db_checksum=0)
    right = DbChecksum.of_image(bytes(log.image), PAGE).value
    good = encode(
        epoch=3, seq=2, timestamp_us=2000, page_size=PAGE, db_pages=3,
        db_checksum=right, frames={2: page(2)}, prev_chain=log.entries[0].chain,
    )  # fmt: skip
    r = Replayer(base, PAGE)
    r.apply(log.entries[0])
    with pytest.raises(ChainError, match="database checksum"):
        r.apply(bad)
    with pytest.raises(ChainError, match="replay already failed"):
        r.apply(good)


def test_replay_rejects_the_wrong_base_image() -> None:
    _base, log = five_entry_log()
    r = Replayer(base_image(3, seed=1), PAGE)
    # Entry 1 does not overwrite page 2, so the wrong base shows in the checksum.
    expect_chain_error(r, log.entries[0], "entry seq 1", "database checksum", "wrong base image")


def test_replay_rejects_a_page_size_mismatch() -> None:
    _base, log = five_entry_log()
    r = Replayer(base_image(6, seed=0)[: 3 * 1024], 1024)
    expect_chain_error(r, log.entries[0], "entry seq 1", "page size 512")


# -- model check ----------------------------------------------------------------------------------

commit_steps = st.lists(
    st.tuples(
        st.dictionaries(st.integers(1, 12), u32, max_size=5),  # pgno -> page seed
        st.integers(0, 12),  # db_pages after the commit
    ),
    max_size=12,
)


@given(st.integers(0, 6), commit_steps)
def test_replay_matches_a_model_of_the_database(base_pages: int, steps: list[tuple[dict[int, int], int]]) -> None:
    base = base_image(base_pages, seed=base_pages)
    model = {i + 1: base[i * PAGE : (i + 1) * PAGE] for i in range(base_pages)}
    size = base_pages
    log = Log(base)
    r = Replayer(base, PAGE)
    for seeds, db_pages in steps:
        pages = {p: page(s) for p, s in seeds.items()}
        e = log.commit(pages, db_pages)
        r.apply(e)
        for p in range(db_pages + 1, max(size, db_pages) + 1):
            model.pop(p, None)
        size = db_pages
        model.update({p: b for p, b in pages.items() if p <= db_pages})
        expected = b"".join(model.get(p, bytes(PAGE)) for p in range(1, size + 1))
        assert bytes(r.image) == expected
        assert r.checksum.value == e.db_checksum == DbChecksum.of_image(expected, PAGE).value


def test_open_image_reads_a_wal_mode_image_without_changing_it_and_an_empty_one_is_empty(tmp_path: Path) -> None:
    """A captured image says "WAL mode" in header bytes 18-19, which an in-memory open cannot
    honour: the copy opened is switched to rollback mode, the bytes given stay as they were."""
    import apsw

    from walrelay.replay import open_image

    path = tmp_path / "w.db"
    db = apsw.Connection(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    image = path.read_bytes()
    assert image[18:20] == b"\x02\x02"  # WAL mode, as captured images are
    before = bytes(image)
    conn = open_image(image)
    assert list(conn.execute("SELECT k, v FROM kv")) == [(1, "one")]
    assert image == before
    conn.close()
    empty = open_image(b"")
    assert list(empty.execute("SELECT name FROM sqlite_master")) == []
    empty.close()
