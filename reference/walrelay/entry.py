"""The log entry: one committed SQLite transaction, as the pages it wrote. Format v1.

Byte layout (all integers big-endian; documented with rationale in docs/protocol.md):

    off  size  field
      0     4  magic  b"WRLE"
      4     2  version (1)
      6     2  flags (0; reserved, must be 0)
      8     8  epoch           epoch of the primary that created the entry (never rewritten)
     16     8  seq             contiguous from 1
     24     8  timestamp_us    commit time, microseconds since the Unix epoch, non-decreasing in seq
     32     4  page_size
     36     4  db_pages        database size in pages after the commit
     40     4  frame_count
     44     8  db_checksum     XOR of page hashes of the whole database after the commit (pagehash.py)
     52    16  chain           blake2b-128(prev_chain || bytes[0:52] || frames)
     68     *  frames          frame_count x (u32 pgno, page_size bytes), pgno strictly increasing
    end     4  crc32           zlib CRC-32 of every byte before it

``chain`` links each entry to the one before it (the chain of seq 0 is 16 zero bytes), so a
replica can check that an entry follows from the last one it holds without holding the database,
and two logs that differ anywhere at or before seq n have different chains at n. ``crc32`` catches
torn or flipped bytes before anything else is parsed.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from walrelay.errors import ChainError, EntryFormatError, UnsupportedVersionError

MAGIC = b"WRLE"
VERSION = 1
HEADER = struct.Struct(">4sHHQQQIIIQ16s")
HEADER_SIZE = HEADER.size  # 68
CHAIN_INPUT_PREFIX = 52  # bytes of the header covered by the chain hash (everything before chain)
CRC_SIZE = 4
GENESIS_CHAIN = bytes(16)
MIN_PAGE_SIZE = 512
MAX_PAGE_SIZE = 65536
MAX_PAGES = 0xFFFFFFFE


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded log entry. ``frames`` maps page number to page bytes."""

    epoch: int
    seq: int
    timestamp_us: int
    page_size: int
    db_pages: int
    db_checksum: int
    frames: Mapping[int, bytes]
    chain: bytes
    raw: bytes  # the exact encoded bytes; what replicas store and forward

    @property
    def size(self) -> int:
        return len(self.raw)


def _valid_page_size(n: int) -> bool:
    return MIN_PAGE_SIZE <= n <= MAX_PAGE_SIZE and n & (n - 1) == 0


def chain_hash(prev_chain: bytes, header_prefix: bytes | memoryview, frames: bytes | memoryview) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(prev_chain)
    h.update(header_prefix)
    h.update(frames)
    return h.digest()


def encode(
    *,
    epoch: int,
    seq: int,
    timestamp_us: int,
    page_size: int,
    db_pages: int,
    db_checksum: int,
    frames: Mapping[int, bytes],
    prev_chain: bytes,
) -> Entry:
    """Encode an entry that follows ``prev_chain``. Raises ValueError on impossible field values."""
    if not _valid_page_size(page_size):
        raise ValueError(f"page size {page_size} is not a power of two in [512, 65536]")
    if seq < 1:
        raise ValueError(f"seq {seq} must be >= 1")
    for name, value, bits in (
        ("epoch", epoch, 64),
        ("seq", seq, 64),
        ("timestamp_us", timestamp_us, 64),
        ("db_pages", db_pages, 32),
        ("db_checksum", db_checksum, 64),
    ):
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{name} {value} does not fit an unsigned {bits}-bit field")
    if len(prev_chain) != 16:
        raise ValueError("prev_chain must be 16 bytes")
    pgnos = sorted(frames)
    parts: list[bytes] = []
    for pgno in pgnos:
        page = frames[pgno]
        if not 1 <= pgno <= MAX_PAGES:
            raise ValueError(f"page number {pgno} out of range")
        if len(page) != page_size:
            raise ValueError(f"page {pgno} has {len(page)} bytes, page size is {page_size}")
        parts.append(pgno.to_bytes(4, "big"))
        parts.append(bytes(page))
    body = b"".join(parts)
    prefix = HEADER.pack(
        MAGIC,
        VERSION,
        0,
        epoch,
        seq,
        timestamp_us,
        page_size,
        db_pages,
        len(pgnos),
        db_checksum,
        GENESIS_CHAIN,
    )[:CHAIN_INPUT_PREFIX]
    chain = chain_hash(prev_chain, prefix, body)
    without_crc = prefix + chain + body
    raw = without_crc + zlib.crc32(without_crc).to_bytes(4, "big")
    return Entry(
        epoch=epoch,
        seq=seq,
        timestamp_us=timestamp_us,
        page_size=page_size,
        db_pages=db_pages,
        db_checksum=db_checksum,
        frames={p: bytes(frames[p]) for p in pgnos},
        chain=chain,
        raw=raw,
    )


def decode(raw: bytes, *, what: str = "entry") -> Entry:
    """Decode and verify one entry (magic, version, lengths, crc32). ``what`` names it in errors."""
    raw = bytes(raw)
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise EntryFormatError(f"{what}: {len(raw)} bytes is shorter than the {HEADER_SIZE + CRC_SIZE}-byte minimum")
    (magic, version, flags, epoch, seq, ts, page_size, db_pages, count, db_checksum, chain) = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise EntryFormatError(f"{what}: bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise UnsupportedVersionError(
            f"{what}: unsupported entry format version {version} (this build reads {VERSION})"
        )
    stored_crc = int.from_bytes(raw[-CRC_SIZE:], "big")
    if zlib.crc32(memoryview(raw)[:-CRC_SIZE]) != stored_crc:
        raise EntryFormatError(f"{what}: crc32 mismatch (corrupt or truncated bytes)")
    if flags != 0:
        raise EntryFormatError(f"{what}: unknown flags {flags:#x}")
    if not _valid_page_size(page_size):
        raise EntryFormatError(f"{what}: invalid page size {page_size}")
    if seq < 1:
        raise EntryFormatError(f"{what}: seq {seq} < 1")
    expected = HEADER_SIZE + count * (4 + page_size) + CRC_SIZE
    if len(raw) != expected:
        raise EntryFormatError(
            f"{what}: length {len(raw)} does not match {count} frames of {page_size}-byte pages ({expected})"
        )
    frames: dict[int, bytes] = {}
    off = HEADER_SIZE
    last = 0
    for _ in range(count):
        pgno = int.from_bytes(raw[off : off + 4], "big")
        if pgno <= last:
            raise EntryFormatError(f"{what}: page numbers not strictly increasing ({pgno} after {last})")
        frames[pgno] = raw[off + 4 : off + 4 + page_size]
        last = pgno
        off += 4 + page_size
    return Entry(
        epoch=epoch,
        seq=seq,
        timestamp_us=ts,
        page_size=page_size,
        db_pages=db_pages,
        db_checksum=db_checksum,
        frames=frames,
        chain=chain,
        raw=raw,
    )


def follows(entry: Entry, prev_chain: bytes) -> bool:
    """True when ``entry`` was encoded on top of a log whose last chain is ``prev_chain``."""
    view = memoryview(entry.raw)
    return chain_hash(prev_chain, view[:CHAIN_INPUT_PREFIX], view[HEADER_SIZE:-CRC_SIZE]) == entry.chain


def check_follows(entry: Entry, prev_chain: bytes) -> None:
    if not follows(entry, prev_chain):
        raise ChainError(
            f"entry seq {entry.seq} (epoch {entry.epoch}) does not follow the previous entry: chain mismatch"
        )
