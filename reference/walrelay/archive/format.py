"""Archive object formats v1: segment and snapshot bytes, object keys, bookmarks.

Pure functions, no I/O. Every decoder checks everything it can from the bytes alone (magic,
version, flags, lengths, the BLAKE2b trailer, every entry's own CRC and chain link, the snapshot's
database checksum) and names the object in its error, so ``walrelay archive verify`` and restore
can say *which* object is bad. The byte layouts are in docs/archive-format.md.

Content is deterministic: a segment is exactly its entries (committed entries are the same bytes
whichever primary ships them), and a snapshot is exactly the database after its seq. So a PUT
retried after a timeout, or one that landed although its reply was lost, writes the same bytes
again, and the archive needs no conditional writes.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from walrelay.entry import GENESIS_CHAIN, Entry, decode, follows
from walrelay.errors import EntryFormatError, WalrelayError
from walrelay.pagehash import DbChecksum

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"WRSG"
SNAPSHOT_MAGIC = b"WRSN"
TRAILER_SIZE = 16  # BLAKE2b-128 of every byte before it

# magic, version, flags, branch, first, last, count, first_ts, last_ts, prev_chain, last_chain
SEGMENT_HEADER = struct.Struct(">4sHHIQQIQQ16s16s")
# magic, version, flags, branch, seq, timestamp_us, chain, page_size, db_pages, db_checksum
SNAPSHOT_HEADER = struct.Struct(">4sHHIQQ16sIIQ")
_LEN = struct.Struct(">I")


class ArchiveFormatError(WalrelayError):
    """An archive object's bytes or key are malformed, corrupt, or not what its key says."""


def _trailer(body: bytes | memoryview) -> bytes:
    return hashlib.blake2b(body, digest_size=TRAILER_SIZE).digest()


def _check_envelope(data: bytes, magic: bytes, header: struct.Struct, what: str) -> memoryview:
    """Magic, version and trailer; returns the bytes before the trailer."""
    if len(data) < header.size + TRAILER_SIZE:
        raise ArchiveFormatError(f"{what}: {len(data)} bytes is shorter than a header and trailer")
    if data[:4] != magic:
        raise ArchiveFormatError(f"{what}: bad magic {bytes(data[:4])!r}, expected {magic!r}")
    version = int.from_bytes(data[4:6], "big")
    if version != FORMAT_VERSION:
        raise ArchiveFormatError(f"{what}: archive format version {version}, this build reads {FORMAT_VERSION}")
    body = memoryview(data)[:-TRAILER_SIZE]
    if _trailer(body) != data[-TRAILER_SIZE:]:
        raise ArchiveFormatError(f"{what}: checksum mismatch (corrupt, truncated or extended object)")
    if int.from_bytes(data[6:8], "big") != 0:
        raise ArchiveFormatError(f"{what}: unknown flags {int.from_bytes(data[6:8], 'big'):#x}")
    return body


# -- segments ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """Entries ``first..last`` of one branch, in order, each following the one before."""

    branch: int
    first: int
    last: int
    prev_chain: bytes  # chain of entry first - 1 (genesis for seq 0)
    last_chain: bytes
    first_ts: int
    last_ts: int
    entries: tuple[Entry, ...]


def encode_segment(branch: int, entries: tuple[Entry, ...], prev_chain: bytes) -> bytes:
    if not entries:
        raise ValueError("a segment holds at least one entry")
    chain = prev_chain
    for i, e in enumerate(entries):
        if e.seq != entries[0].seq + i:
            raise ValueError(f"segment entries must be contiguous: seq {e.seq} at position {i}")
        if not follows(e, chain):
            raise ValueError(f"entry seq {e.seq} does not follow the entry before it (or the given prev_chain)")
        chain = e.chain
    first, last = entries[0], entries[-1]
    header = SEGMENT_HEADER.pack(
        SEGMENT_MAGIC,
        FORMAT_VERSION,
        0,
        branch,
        first.seq,
        last.seq,
        len(entries),
        first.timestamp_us,
        last.timestamp_us,
        prev_chain,
        last.chain,
    )
    body = b"".join([header, *(_LEN.pack(len(e.raw)) + e.raw for e in entries)])
    return body + _trailer(body)


def decode_segment(data: bytes, *, what: str = "segment") -> Segment:
    body = _check_envelope(data, SEGMENT_MAGIC, SEGMENT_HEADER, what)
    (_, _, _, branch, first, last, count, first_ts, last_ts, prev_chain, last_chain) = SEGMENT_HEADER.unpack_from(body)
    if first < 1 or last < first or count != last - first + 1:
        raise ArchiveFormatError(f"{what}: header says seqs {first}..{last} in {count} entries")
    entries: list[Entry] = []
    off = SEGMENT_HEADER.size
    chain = prev_chain
    for i in range(count):
        if off + _LEN.size > len(body):
            raise ArchiveFormatError(f"{what}: ends inside entry {i + 1} of {count}")
        (n,) = _LEN.unpack_from(body, off)
        off += _LEN.size
        if off + n > len(body):
            raise ArchiveFormatError(f"{what}: entry {i + 1} of {count} runs past the end")
        try:
            e = decode(bytes(body[off : off + n]), what=f"{what} entry {i + 1}")
        except EntryFormatError as err:
            raise ArchiveFormatError(str(err)) from None
        off += n
        if e.seq != first + i:
            raise ArchiveFormatError(f"{what}: entry {i + 1} has seq {e.seq}, expected {first + i}")
        if not follows(e, chain):
            raise ArchiveFormatError(f"{what}: entry seq {e.seq} does not follow the one before it (chain)")
        chain = e.chain
        entries.append(e)
    if off != len(body):
        raise ArchiveFormatError(f"{what}: {len(body) - off} bytes after the last entry")
    if chain != last_chain:
        raise ArchiveFormatError(f"{what}: header's last chain is not the last entry's")
    if (entries[0].timestamp_us, entries[-1].timestamp_us) != (first_ts, last_ts):
        raise ArchiveFormatError(f"{what}: header's timestamps are not its entries'")
    return Segment(branch, first, last, prev_chain, last_chain, first_ts, last_ts, tuple(entries))


# -- snapshots --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole database right after entry ``seq`` of a branch (seq 0: the empty database)."""

    branch: int
    seq: int
    timestamp_us: int  # of entry seq (0 for seq 0)
    chain: bytes  # of entry seq (genesis for seq 0)
    page_size: int
    db_pages: int
    db_checksum: int
    image: bytes


def encode_snapshot(
    branch: int, seq: int, timestamp_us: int, chain: bytes, page_size: int, image: bytes, db_checksum: int
) -> bytes:
    if not valid_page_size(page_size) or len(image) % page_size:
        # The decoder's rule: the archive must never hold a snapshot no restore can read.
        raise ValueError(f"image of {len(image)} bytes is not whole pages of {page_size} bytes (a power of 2 >= 512)")
    header = SNAPSHOT_HEADER.pack(
        SNAPSHOT_MAGIC,
        FORMAT_VERSION,
        0,
        branch,
        seq,
        timestamp_us,
        chain,
        page_size,
        len(image) // page_size,
        db_checksum,
    )
    body = header + image
    return body + _trailer(body)


def valid_page_size(page_size: int) -> bool:
    """SQLite's page sizes: a power of two from 512 (the format's header field is wider)."""
    return page_size >= 512 and not page_size & (page_size - 1)


def decode_snapshot(data: bytes, *, what: str = "snapshot") -> Snapshot:
    body = _check_envelope(data, SNAPSHOT_MAGIC, SNAPSHOT_HEADER, what)
    (_, _, _, branch, seq, ts, chain, page_size, db_pages, db_checksum) = SNAPSHOT_HEADER.unpack_from(body)
    image = bytes(body[SNAPSHOT_HEADER.size :])
    if not valid_page_size(page_size) or len(image) != page_size * db_pages:
        raise ArchiveFormatError(f"{what}: {len(image)} image bytes is not {db_pages} pages of {page_size} bytes")
    if seq == 0 and chain != GENESIS_CHAIN:
        raise ArchiveFormatError(f"{what}: a snapshot at seq 0 must carry the genesis chain")
    found = DbChecksum.of_image(image, page_size).value
    if found != db_checksum:
        raise ArchiveFormatError(f"{what}: database checksum {found:#018x}, header says {db_checksum:#018x}")
    return Snapshot(branch, seq, ts, chain, page_size, db_pages, db_checksum, image)


# -- keys -------------------------------------------------------------------------------------------

_SEQ = 20  # decimal digits: keys sort in seq order as strings
_BRANCH = 8


def branch_prefix(object_name: str, branch: int) -> str:
    return f"{object_name}/b{branch:0{_BRANCH}d}/"


def segment_key(object_name: str, branch: int, first: int, last: int) -> str:
    return f"{branch_prefix(object_name, branch)}seg/{first:0{_SEQ}d}-{last:0{_SEQ}d}"


def snapshot_key(object_name: str, branch: int, seq: int) -> str:
    return f"{branch_prefix(object_name, branch)}snap/{seq:0{_SEQ}d}"


def branch_record_key(object_name: str, branch: int) -> str:
    return f"{branch_prefix(object_name, branch)}branch.json"


_KEY = re.compile(
    rf"(?P<object>[^/]+)/b(?P<branch>\d{{{_BRANCH}}})/"
    rf"(?:seg/(?P<first>\d{{{_SEQ}}})-(?P<last>\d{{{_SEQ}}})|snap/(?P<seq>\d{{{_SEQ}}})|(?P<record>branch\.json)"
    rf"|manifest/(?P<writer>\d{{{_SEQ}}})-(?P<n>\d{{{_SEQ}}})|floor/(?P<floor>\d{{{_SEQ}}})|(?P<retired>retired\.json))"
)


@dataclass(frozen=True, slots=True)
class ArchiveKey:
    kind: str  # "segment" | "snapshot" | "branch" | "manifest" | "floor" | "retired"
    object_name: str
    branch: int
    first: int = 0  # segment: first seq; snapshot, floor: its seq; manifest: its writer
    last: int = 0  # segment: last seq; snapshot, floor: its seq; manifest: its number


def parse_key(key: str) -> ArchiveKey:
    m = _KEY.fullmatch(key)
    if m is None:
        raise ArchiveFormatError(f"{key}: not an archive object key (docs/archive-format.md, Keys)")
    obj, branch = m["object"], int(m["branch"])
    if m["first"] is not None:
        first, last = int(m["first"]), int(m["last"])
        if first < 1 or last < first:
            raise ArchiveFormatError(f"{key}: segment key with seqs {first}..{last}")
        return ArchiveKey("segment", obj, branch, first, last)
    if m["seq"] is not None:
        return ArchiveKey("snapshot", obj, branch, int(m["seq"]), int(m["seq"]))
    if m["writer"] is not None:
        return ArchiveKey("manifest", obj, branch, int(m["writer"]), int(m["n"]))
    if m["floor"] is not None:
        return ArchiveKey("floor", obj, branch, int(m["floor"]), int(m["floor"]))
    if m["retired"] is not None:
        return ArchiveKey("retired", obj, branch)
    return ArchiveKey("branch", obj, branch)


# -- bookmarks --------------------------------------------------------------------------------------

_BOOKMARK = re.compile(r"(?P<branch>[0-9a-f]{8})-(?P<seq>[0-9a-f]{16})")


def bookmark(branch: int, seq: int) -> str:
    """A point in an object's history: right after entry ``seq`` of ``branch``.

    Fixed-width lowercase hex, branch first: bookmarks sort as strings in the order of the
    history (a branch is created after every point of the branches before it).
    """
    if not 0 < branch < 2**32 or not 0 <= seq < 2**64:
        raise ValueError(f"no bookmark for branch {branch}, seq {seq}")
    return f"{branch:08x}-{seq:016x}"


def parse_bookmark(text: str) -> tuple[int, int]:
    m = _BOOKMARK.fullmatch(text)
    if m is None or int(m["branch"], 16) == 0:
        raise ArchiveFormatError(
            f"{text!r} is not a bookmark: expected BRANCH-SEQ as 8 and 16 lowercase hex digits, "
            "like 00000001-000000000000002a"
        )
    return int(m["branch"], 16), int(m["seq"], 16)
