"""Archive object formats judged exactly (the mutation triage of archive/format, issue 16).

Every decoder names the object and what is wrong with it (docs/archive-format.md): verify and
restore print these errors, so a wrong version, offset or entry number in them sends the reader
to the wrong place, and a check that is off by a byte lets a malformed object through. Each test
builds a valid object, changes one field (with a valid trailer, so the field itself is judged),
and compares the error.
"""

from __future__ import annotations

import hashlib

import pytest

from test_mutants_archive_verify import DAY, PAGE, Log
from walrelay.archive.format import (
    SEGMENT_HEADER,
    SNAPSHOT_HEADER,
    ArchiveFormatError,
    ArchiveKey,
    bookmark,
    decode_segment,
    decode_snapshot,
    encode_segment,
    encode_snapshot,
    parse_bookmark,
    parse_key,
    snapshot_key,
)
from walrelay.archive.manifest import floor_key
from walrelay.entry import GENESIS_CHAIN
from walrelay.pagehash import DbChecksum

LOG = Log()


def sealed(body: bytes) -> bytes:
    """``body`` with a valid BLAKE2b trailer: the decoder gets past the checksum to the field."""
    return body + hashlib.blake2b(body, digest_size=16).digest()


def segment(**fields: object) -> bytes:
    """Segment 1..3 of the log, with header fields replaced (names as in SEGMENT_HEADER)."""
    data = LOG.segment(1, 3)[:-16]
    names = [
        "magic",
        "version",
        "flags",
        "branch",
        "first",
        "last",
        "count",
        "first_ts",
        "last_ts",
        "prev",
        "last_chain",
    ]
    values = dict(zip(names, SEGMENT_HEADER.unpack_from(data), strict=True))
    values.update(fields)
    return sealed(SEGMENT_HEADER.pack(*values.values()) + data[SEGMENT_HEADER.size :])


def entries_body(*seqs: int, log: Log = LOG) -> bytes:
    return b"".join(len(log.entries[s].raw).to_bytes(4, "big") + log.entries[s].raw for s in seqs)


def test_the_envelope_names_length_magic_version_and_flags() -> None:
    good = segment()
    short = good[: SEGMENT_HEADER.size + 15]
    with pytest.raises(ArchiveFormatError, match=rf"^s: {len(short)} bytes is shorter than a header and trailer$"):
        decode_segment(short, what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: bad magic b'WRSN', expected b'WRSG'$"):
        decode_segment(segment(magic=b"WRSN"), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: archive format version 257, this build reads 1$"):
        decode_segment(segment(version=257), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: unknown flags 0x100$"):
        decode_segment(segment(flags=256), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^segment: unknown flags 0x1$"):
        decode_segment(segment(flags=1))  # named "segment" when the caller names nothing
    high = decode_segment(segment(branch=2**24))  # the byte after the flags is the branch's
    assert high.branch == 2**24


def test_a_segment_header_must_agree_with_its_entries() -> None:
    with pytest.raises(ArchiveFormatError, match=r"^s: header says seqs 0\.\.2 in 3 entries$"):
        decode_segment(segment(first=0, last=2), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: header says seqs 1\.\.3 in 2 entries$"):
        decode_segment(segment(count=2), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: header's last chain is not the last entry's$"):
        decode_segment(segment(last_chain=LOG.chain(2)), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: header's timestamps are not its entries'$"):
        decode_segment(segment(last_ts=4 * DAY), what="s")


def test_a_segment_body_names_the_entry_that_is_wrong() -> None:
    head = LOG.segment(1, 3)[: SEGMENT_HEADER.size]
    with pytest.raises(ArchiveFormatError, match=r"^s: ends inside entry 3 of 3$"):
        decode_segment(sealed(head + entries_body(1, 2)), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: entry 3 of 3 runs past the end$"):
        decode_segment(sealed(head + entries_body(1, 2) + (100).to_bytes(4, "big")), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: entry 3 of 3 runs past the end$"):
        decode_segment(sealed(head + entries_body(1, 2, 3)[:-1]), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: 2 bytes after the last entry$"):
        decode_segment(sealed(head + entries_body(1, 2, 3) + b"xx"), what="s")
    with pytest.raises(ArchiveFormatError, match=r"^s: entry 2 has seq 3, expected 2$"):
        decode_segment(sealed(head + entries_body(1, 3, 3)), what="s")
    other = Log(seed=4)
    with pytest.raises(ArchiveFormatError, match=r"^s: entry seq 2 does not follow the one before it \(chain\)$"):
        decode_segment(sealed(head + entries_body(1) + entries_body(2, log=other) + entries_body(3)), what="s")
    raw = bytearray(LOG.entries[2].raw)
    raw[-1] ^= 1  # its CRC
    bad = entries_body(1) + len(raw).to_bytes(4, "big") + bytes(raw) + entries_body(3)
    with pytest.raises(ArchiveFormatError, match=r"^s entry 2: ") as err:
        decode_segment(sealed(head + bad), what="s")
    assert "None" not in str(err.value)


def snapshot(**fields: object) -> bytes:
    """Snapshot 8 of the log, with header fields replaced (names as in SNAPSHOT_HEADER)."""
    data = LOG.snapshot(8)[:-16]
    names = ["magic", "version", "flags", "branch", "seq", "ts", "chain", "page_size", "db_pages", "db_checksum"]
    values = dict(zip(names, SNAPSHOT_HEADER.unpack_from(data), strict=True))
    values.update(fields)
    return sealed(SNAPSHOT_HEADER.pack(*values.values()) + data[SNAPSHOT_HEADER.size :])


def test_a_snapshot_is_whole_pages_of_a_real_page_size_with_its_checksum() -> None:
    img = LOG.images[8]  # 3 pages of 512
    snap = decode_snapshot(LOG.snapshot(8))
    assert snap.db_checksum == DbChecksum.of_image(img, PAGE).value and snap.db_pages == 3
    with pytest.raises(ArchiveFormatError, match=r"^s: 1536 image bytes is not 2 pages of 768 bytes$"):
        decode_snapshot(snapshot(page_size=768, db_pages=2), what="s")  # whole pages, not a power of two
    with pytest.raises(ArchiveFormatError, match=r"^snapshot: 1536 image bytes is not 6 pages of 256 bytes$"):
        decode_snapshot(snapshot(page_size=256, db_pages=6))  # a power of two, too small
    with pytest.raises(ArchiveFormatError, match=r"^s: a snapshot at seq 0 must carry the genesis chain$"):
        decode_snapshot(
            encode_snapshot(1, 0, 0, LOG.chain(3), PAGE, img, DbChecksum.of_image(img, PAGE).value), what="s"
        )


def test_encoders_refuse_what_no_decoder_would_read() -> None:
    with pytest.raises(ValueError, match=r"^a segment holds at least one entry$"):
        encode_segment(1, (), GENESIS_CHAIN)
    with pytest.raises(ValueError, match=r"^image of 100 bytes is not whole pages of 0 bytes \(a power of 2 >= 512\)$"):
        encode_snapshot(1, 1, 0, LOG.chain(1), 0, bytes(100), 0)
    with pytest.raises(ValueError, match=r"^image of 100 bytes is not whole pages of 512 bytes"):
        encode_snapshot(1, 1, 0, LOG.chain(1), PAGE, bytes(100), 0)


@pytest.mark.parametrize("page_size", [1, 2, 256, 511, 513, 768, 1536, 3 * 4096])
def test_the_snapshot_encoder_refuses_a_page_size_the_decoder_would_refuse(page_size: int) -> None:
    """Bug (a survivor of the mutation run): the encoder checked only ``page_size <= 0``, so the
    archiver could upload a snapshot with, say, 1-byte pages that every restore then refuses."""
    for image in (b"", bytes(page_size)):
        with pytest.raises(ValueError, match=rf"is not whole pages of {page_size} bytes \(a power of 2 >= 512\)$"):
            encode_snapshot(1, 1, 0, LOG.chain(1), page_size, image, 0)


@pytest.mark.parametrize("page_size", [512, 1024, 4096, 65536])
def test_every_sqlite_page_size_encodes_and_decodes(page_size: int) -> None:
    for image in (b"", bytes(range(256)) * (2 * page_size // 256)):
        c = DbChecksum.of_image(image, page_size).value if image else 0
        s = decode_snapshot(encode_snapshot(1, 1, 0, LOG.chain(1), page_size, image, c))
        assert (s.page_size, s.db_pages, s.image) == (page_size, len(image) // page_size, image)


def test_keys_parse_to_their_seqs() -> None:
    assert parse_key(snapshot_key("o", 3, 12)) == ArchiveKey("snapshot", "o", 3, 12, 12)
    assert parse_key(floor_key("o", 3, 12)) == ArchiveKey("floor", "o", 3, 12, 12)


@pytest.mark.parametrize(("branch", "seq"), [(0, 5), (-1, 5), (2**32, 5), (1, -1), (1, 2**64), (2**33, 0), (1, 2**65)])
def test_a_bookmark_exists_only_for_a_real_branch_and_seq(branch: int, seq: int) -> None:
    with pytest.raises(ValueError, match=rf"^no bookmark for branch {branch}, seq {seq}$"):
        bookmark(branch, seq)


def test_bookmarks_at_the_limits_and_a_malformed_one_named() -> None:
    assert bookmark(2**32 - 1, 2**64 - 1) == "ffffffff-ffffffffffffffff"
    assert parse_bookmark(bookmark(2**32 - 1, 2**64 - 1)) == (2**32 - 1, 2**64 - 1)
    with pytest.raises(
        ArchiveFormatError,
        match=r"^'00000000-000000000000002a' is not a bookmark: expected BRANCH-SEQ as 8 and 16 lowercase hex "
        r"digits, like 00000001-000000000000002a$",
    ):
        parse_bookmark("00000000-000000000000002a")
