"""The demo's phase 7 check of each replica's disk (demo._replica_disk): a replica that dropped its
archived prefix is replayed on the archive's database at its first entry, never skipped, and a
wrong log still fails. Before, such a replica's log was replayed from seq 1 and the demo crashed
with ``ChainError: entry seq N does not follow seq 0`` whenever a replica had truncated.

The archive here is a stand-in for ``ArchiveReader.restore_image`` (the one call the check makes),
so these tests do not depend on how the archive's objects are laid out."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from walrelay.archive.reader import ArchiveError, ArchiveReader
from walrelay.demo import ReplicaDisk, _replica_disk
from walrelay.entry import GENESIS_CHAIN, Entry, encode
from walrelay.pagehash import DbChecksum
from walrelay.replica_store import ReplicaStore

OBJ = "o"
PAGE = 512


def grow(n: int, *, seed: int) -> tuple[list[Entry], list[bytes]]:
    """``n`` real, consistent entries from seq 1 (images[i]: the database after entries[i])."""
    rng = random.Random(seed)
    img = bytearray()
    checksum = DbChecksum.of_image(b"", PAGE)
    chain = GENESIS_CHAIN
    entries: list[Entry] = []
    images: list[bytes] = []
    for seq in range(1, n + 1):
        db_pages = min(1 + seq // 3, 6)
        pages = {rng.randint(1, db_pages): rng.randbytes(PAGE)}
        img.extend(bytes(max(0, db_pages * PAGE - len(img))))
        for p, data in pages.items():
            img[(p - 1) * PAGE : p * PAGE] = data
        e = encode(
            epoch=1, seq=seq, timestamp_us=seq, page_size=PAGE, db_pages=db_pages,
            db_checksum=checksum.apply(pages, db_pages), frames=pages, prev_chain=chain,
        )  # fmt: skip
        entries.append(e)
        images.append(bytes(img))
        chain = e.chain
    return entries, images


@dataclass(frozen=True)
class Image:
    """The fields of ArchiveReader.restore_image's answer that the check reads."""

    seq: int
    chain: bytes
    page_size: int
    image: bytes


class Archive:
    """restore_image over a log that the archive holds through ``end``."""

    def __init__(self, entries: list[Entry], images: list[bytes], end: int) -> None:
        self.entries, self.images, self.end = entries, images, end

    def restore_image(self, seq: int, branch: int | None = None) -> Image:
        if seq > self.end:
            raise ArchiveError(f"seq {seq} is beyond the archive's end (seq {self.end})")
        return Image(seq, self.entries[seq - 1].chain, PAGE, self.images[seq - 1])


def replica(root: Path, entries: list[Entry], truncated_through: int = 0) -> str:
    """A stopped replica's disk holding ``entries``, with its archived prefix dropped as TRUNCATE
    through ``truncated_through`` makes it (ReplicaStore.drop_through keeps that entry)."""
    store = ReplicaStore(str(root), OBJ, compact_min_bytes=0)
    store.load()
    store.append_durably(tuple(entries))
    store.save_state(1, truncated_through, 1, True)
    if truncated_through:
        assert store.drop_through(truncated_through)
    store.close()
    return str(root)


def check(data: str, archive: Archive) -> ReplicaDisk:
    return _replica_disk(data, OBJ, cast(ArchiveReader, archive))


def test_a_whole_log_replays_from_seq_1(tmp_path: Path) -> None:
    entries, images = grow(10, seed=1)
    got = check(replica(tmp_path, entries), Archive(entries, images, end=3))
    assert (got.problem, got.first, got.last, got.image) == (None, 1, 10, images[9])


def test_a_truncated_log_replays_on_the_archive_at_its_first_seq(tmp_path: Path) -> None:
    entries, images = grow(10, seed=1)
    data = replica(tmp_path, entries, truncated_through=6)
    assert [e.seq for e in ReplicaStore(data, OBJ).read_entries(1)] == [6, 7, 8, 9, 10]
    got = check(data, Archive(entries, images, end=8))
    assert (got.problem, got.first, got.last, got.archived_through) == (None, 6, 10, 6)
    assert got.image == images[9]  # the whole database: seq 1..5 from the archive, 6..10 its own


def test_a_truncated_log_of_another_history_than_the_archive_fails(tmp_path: Path) -> None:
    entries, _ = grow(10, seed=1)
    other, other_images = grow(10, seed=2)
    got = check(replica(tmp_path, entries, truncated_through=6), Archive(other, other_images, end=8))
    assert got.problem is not None and "is not the archive's" in got.problem and not got.image


def test_a_truncation_the_archive_does_not_hold_fails(tmp_path: Path) -> None:
    entries, images = grow(10, seed=1)
    got = check(replica(tmp_path, entries, truncated_through=6), Archive(entries, images, end=4))
    assert got.problem is not None and "the archive cannot give the database at seq 6" in got.problem


def test_a_file_starting_beyond_its_accepted_truncate_fails(tmp_path: Path) -> None:
    """Entries 1..5 gone from the file although the replica never accepted a TRUNCATE past 3."""
    entries, images = grow(10, seed=1)
    data = replica(tmp_path, entries, truncated_through=6)
    ReplicaStore(data, OBJ).save_state(1, 3, 1, True)
    got = check(data, Archive(entries, images, end=8))
    assert got.problem is not None and "accepted a TRUNCATE through 3 only" in got.problem


def test_a_wrong_entry_fails_whether_or_not_the_log_was_truncated(tmp_path: Path) -> None:
    """Entry 8 links by chain and has a good CRC, but its database checksum is not the database's:
    the file loads, the replay refuses it."""
    entries, images = grow(10, seed=1)
    e = entries[7]
    bogus = encode(
        epoch=e.epoch, seq=e.seq, timestamp_us=e.timestamp_us, page_size=e.page_size, db_pages=e.db_pages,
        db_checksum=e.db_checksum ^ 1, frames=dict(e.frames), prev_chain=entries[6].chain,
    )  # fmt: skip
    archive = Archive(entries, images, end=8)
    for name, through in (("truncated", 6), ("whole", 0)):
        got = check(replica(tmp_path / name, [*entries[:7], bogus], truncated_through=through), archive)
        assert got.problem is not None and "entry seq 8: database checksum" in got.problem and not got.image
