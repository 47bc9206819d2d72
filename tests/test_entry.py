"""Log entry format v1: round trip, chain semantics, and rejection of every kind of malformed input."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import EntryFields, chains, entry_fields, seeded_bytes
from walrelay.entry import (
    CRC_SIZE,
    GENESIS_CHAIN,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_PAGES,
    Entry,
    check_follows,
    decode,
    encode,
    follows,
)
from walrelay.errors import ChainError, EntryFormatError

# -- helpers --------------------------------------------------------------------------------------


def make(f: EntryFields) -> Entry:
    return encode(
        epoch=f.epoch,
        seq=f.seq,
        timestamp_us=f.timestamp_us,
        page_size=f.page_size,
        db_pages=f.db_pages,
        db_checksum=f.db_checksum,
        frames=f.frames,
        prev_chain=f.prev_chain,
    )


def fields(seq: int = 1, prev_chain: bytes = GENESIS_CHAIN, pgnos: tuple[int, ...] = (1, 3)) -> EntryFields:
    """A small fixed entry: 512-byte pages with seeded contents."""
    return EntryFields(
        epoch=7,
        seq=seq,
        timestamp_us=1_700_000_000_000_000,
        page_size=512,
        db_pages=3,
        db_checksum=99,
        frames={p: seeded_bytes(p, 512) for p in pgnos},
        prev_chain=prev_chain,
    )


def simple(seq: int = 1, prev_chain: bytes = GENESIS_CHAIN, pgnos: tuple[int, ...] = (1, 3)) -> Entry:
    return make(fields(seq, prev_chain, pgnos))


def recrc(raw: bytes) -> bytes:
    """Replace the trailing CRC so that only the deliberate change is wrong."""
    body = raw[:-CRC_SIZE]
    return body + zlib.crc32(body).to_bytes(4, "big")


def with_header(raw: bytes, **fields: object) -> bytes:
    """Rewrite header fields (names from the format table) and fix the CRC."""
    names = [
        "magic",
        "version",
        "flags",
        "epoch",
        "seq",
        "timestamp_us",
        "page_size",
        "db_pages",
        "frame_count",
        "db_checksum",
        "chain",
    ]
    values = dict(zip(names, HEADER.unpack_from(raw), strict=True))
    assert set(fields) <= set(values)
    values.update(fields)
    return recrc(HEADER.pack(*values.values()) + raw[HEADER_SIZE:])


def set_pgno(raw: bytes, index: int, pgno: int, page_size: int) -> bytes:
    off = HEADER_SIZE + index * (4 + page_size)
    return recrc(raw[:off] + pgno.to_bytes(4, "big") + raw[off + 4 :])


def reject(raw: bytes, fragment: str) -> None:
    with pytest.raises(EntryFormatError) as info:
        decode(raw)
    assert fragment in str(info.value), str(info.value)


# -- round trip -----------------------------------------------------------------------------------


@given(entry_fields())
def test_encode_decode_round_trip(f: EntryFields) -> None:
    e = make(f)
    assert len(e.raw) == HEADER_SIZE + len(f.frames) * (4 + f.page_size) + CRC_SIZE
    assert e.size == len(e.raw)
    d = decode(e.raw)
    assert d == e
    assert (d.epoch, d.seq, d.timestamp_us, d.page_size, d.db_pages, d.db_checksum) == (
        f.epoch,
        f.seq,
        f.timestamp_us,
        f.page_size,
        f.db_pages,
        f.db_checksum,
    )
    assert dict(d.frames) == f.frames
    assert list(d.frames) == sorted(f.frames)
    assert d.chain == e.chain and len(d.chain) == 16
    assert d.raw == e.raw
    # Encoding is a pure function of its inputs.
    assert make(f).raw == e.raw


@given(entry_fields(max_page_size=4096))
def test_layout_matches_the_documented_table(f: EntryFields) -> None:
    raw = make(f).raw
    magic, version, flags, epoch, seq, ts, psize, db_pages, count, cks, _chain = HEADER.unpack_from(raw)
    assert (magic, version, flags) == (b"WRLE", 1, 0)
    assert (epoch, seq, ts, psize, db_pages, count, cks) == (
        f.epoch,
        f.seq,
        f.timestamp_us,
        f.page_size,
        f.db_pages,
        len(f.frames),
        f.db_checksum,
    )
    assert int.from_bytes(raw[-4:], "big") == zlib.crc32(raw[:-4])
    off = HEADER_SIZE
    for pgno in sorted(f.frames):
        assert int.from_bytes(raw[off : off + 4], "big") == pgno
        assert raw[off + 4 : off + 4 + f.page_size] == f.frames[pgno]
        off += 4 + f.page_size
    assert off == len(raw) - CRC_SIZE


def test_decode_error_names_what_was_decoded() -> None:
    e = simple()
    with pytest.raises(EntryFormatError, match=r"^segment 12 entry 3: bad magic"):
        decode(b"XXXX" + e.raw[4:], what="segment 12 entry 3")


def test_entry_without_frames_round_trips() -> None:
    e = simple(pgnos=())
    assert len(e.raw) == HEADER_SIZE + CRC_SIZE
    assert decode(e.raw) == e
    assert decode(e.raw).frames == {}


# -- chain ----------------------------------------------------------------------------------------


@given(entry_fields(max_page_size=1024), chains)
def test_entry_follows_exactly_the_chain_it_was_encoded_on(f: EntryFields, other: bytes) -> None:
    e = make(f)
    d = decode(e.raw)
    assert follows(e, f.prev_chain)
    assert follows(d, f.prev_chain)
    check_follows(d, f.prev_chain)
    if other != f.prev_chain:
        assert not follows(d, other)
        with pytest.raises(ChainError, match=f"seq {f.seq} "):
            check_follows(d, other)


def test_chain_links_a_log() -> None:
    e1 = simple(seq=1)
    e2 = simple(seq=2, prev_chain=e1.chain)
    e3 = simple(seq=3, prev_chain=e2.chain)
    assert follows(e1, GENESIS_CHAIN)
    assert follows(e2, e1.chain) and follows(e3, e2.chain)
    assert not follows(e3, e1.chain)
    assert not follows(e2, GENESIS_CHAIN)
    assert len({e1.chain, e2.chain, e3.chain, GENESIS_CHAIN}) == 4
    with pytest.raises(ChainError, match=r"seq 3 .*chain mismatch"):
        check_follows(e3, e1.chain)


@pytest.mark.parametrize(
    ("name", "value"),
    [("epoch", 8), ("timestamp_us", 1), ("db_pages", 4), ("db_checksum", 100), ("frames", {1: bytes(512)})],
)
def test_chain_covers_every_field_and_the_frames(name: str, value: object) -> None:
    base = fields(seq=5)
    assert getattr(base, name) != value
    changes: dict[str, Any] = {name: value}
    assert make(dataclasses.replace(base, **changes)).chain != make(base).chain


def test_chain_covers_page_contents() -> None:
    base = simple()
    frames = dict(base.frames)
    frames[3] = frames[3][:-1] + bytes([frames[3][-1] ^ 1])
    other = encode(
        epoch=7,
        seq=1,
        timestamp_us=base.timestamp_us,
        page_size=512,
        db_pages=3,
        db_checksum=99,
        frames=frames,
        prev_chain=GENESIS_CHAIN,
    )
    assert other.chain != base.chain


def test_tampered_frames_with_fixed_crc_do_not_follow() -> None:
    """A frame rewritten and re-CRC'd still decodes, but no longer follows its chain."""
    e = simple()
    raw = bytearray(e.raw)
    raw[HEADER_SIZE + 10] ^= 0xFF
    d = decode(recrc(bytes(raw)))
    assert not follows(d, GENESIS_CHAIN)
    with pytest.raises(ChainError, match="seq 1 "):
        check_follows(d, GENESIS_CHAIN)


# -- encode refuses impossible values ----------------------------------------------------------


@pytest.mark.parametrize("page_size", [0, 256, 1000, 4095, 131072])
def test_encode_rejects_bad_page_size(page_size: int) -> None:
    with pytest.raises(ValueError, match="page size"):
        encode(
            epoch=1,
            seq=1,
            timestamp_us=0,
            page_size=page_size,
            db_pages=1,
            db_checksum=0,
            frames={},
            prev_chain=GENESIS_CHAIN,
        )


def test_encode_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seq 0"):
        simple(seq=0)
    with pytest.raises(ValueError, match="prev_chain"):
        simple(prev_chain=bytes(15))
    with pytest.raises(ValueError, match="page number 0"):
        simple(pgnos=(0, 1))
    with pytest.raises(ValueError, match="out of range"):
        simple(pgnos=(MAX_PAGES + 1,))
    with pytest.raises(ValueError, match="page 2 has 511 bytes"):
        encode(
            epoch=1,
            seq=1,
            timestamp_us=0,
            page_size=512,
            db_pages=2,
            db_checksum=0,
            frames={1: bytes(512), 2: bytes(511)},
            prev_chain=GENESIS_CHAIN,
        )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epoch", 2**64),
        ("epoch", -1),
        ("timestamp_us", 2**64),
        ("db_pages", 2**32),
        ("db_checksum", -1),
        ("db_checksum", 2**64),
    ],
)
def test_encode_rejects_out_of_range_integers_with_value_error(name: str, value: int) -> None:
    """encode's docstring promises ValueError for impossible field values, not struct.error."""
    with pytest.raises(ValueError, match=name):
        changes: dict[str, Any] = {name: value}
        make(dataclasses.replace(fields(), **changes))


# -- decode rejects malformed bytes ------------------------------------------------------------


def test_decode_rejects_every_single_flipped_byte() -> None:
    raw = simple(pgnos=(1, 2)).raw
    for pos in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[pos] ^= mask
            with pytest.raises(EntryFormatError) as info:
                decode(bytes(bad))
            msg = str(info.value)
            if pos < 4:
                assert "bad magic" in msg, (pos, msg)
            elif pos < 6:
                assert "unsupported entry format version" in msg, (pos, msg)
            else:
                assert "crc32 mismatch" in msg, (pos, msg)


@given(entry_fields(max_page_size=2048), st.data())
def test_decode_rejects_a_flipped_byte_anywhere(f: EntryFields, data: st.DataObject) -> None:
    raw = bytearray(make(f).raw)
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(EntryFormatError):
        decode(bytes(raw))


def test_decode_rejects_truncation_at_every_length() -> None:
    raw = simple(pgnos=(2,)).raw
    for n in range(len(raw)):
        with pytest.raises(EntryFormatError) as info:
            decode(raw[:n])
        msg = str(info.value)
        if n < HEADER_SIZE + CRC_SIZE:
            assert f"{n} bytes is shorter than the 72-byte minimum" in msg
        else:
            assert "crc32 mismatch" in msg, (n, msg)


@given(entry_fields(max_page_size=2048), st.data())
def test_decode_rejects_truncation_and_extension(f: EntryFields, data: st.DataObject) -> None:
    raw = make(f).raw
    n = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(EntryFormatError):
        decode(raw[:n])
    extra = data.draw(st.binary(min_size=1, max_size=16))
    with pytest.raises(EntryFormatError):
        decode(raw + extra)


def test_decode_rejects_wrong_magic() -> None:
    raw = simple().raw
    reject(b"WRLF" + raw[4:], "bad magic b'WRLF'")
    reject(with_header(raw, magic=b"ELRW"), "bad magic b'ELRW'")


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_decode_rejects_wrong_version(version: int) -> None:
    reject(with_header(simple().raw, version=version), f"unsupported entry format version {version}")


@pytest.mark.parametrize("flags", [1, 0x8000])
def test_decode_rejects_nonzero_flags(flags: int) -> None:
    reject(with_header(simple().raw, flags=flags), f"unknown flags {flags:#x}")


@pytest.mark.parametrize("page_size", [0, 256, 1000, 131072])
def test_decode_rejects_invalid_page_size(page_size: int) -> None:
    reject(with_header(simple().raw, page_size=page_size), f"invalid page size {page_size}")


def test_decode_rejects_seq_zero() -> None:
    reject(with_header(simple().raw, seq=0), "seq 0 < 1")


@pytest.mark.parametrize(("first", "second"), [(5, 3), (3, 3), (0, 4)])
def test_decode_rejects_non_increasing_page_numbers(first: int, second: int) -> None:
    raw = simple(pgnos=(1, 2)).raw
    raw = set_pgno(raw, 0, first, 512)
    raw = set_pgno(raw, 1, second, 512)
    if first == 0:
        reject(raw, "page numbers not strictly increasing (0 after 0)")
    else:
        reject(raw, f"page numbers not strictly increasing ({second} after {first})")


@pytest.mark.parametrize("count", [0, 1, 3, 1000])
def test_decode_rejects_frame_count_mismatch(count: int) -> None:
    raw = simple(pgnos=(1, 2)).raw
    reject(with_header(raw, frame_count=count), f"does not match {count} frames of 512-byte pages")


def test_decode_rejects_length_mismatch() -> None:
    raw = simple(pgnos=(1, 2)).raw
    body = raw[:-CRC_SIZE]
    assert len(raw) == HEADER_SIZE + 2 * (4 + 512) + CRC_SIZE == 1104
    reject(recrc(body + b"\x00" + raw[-CRC_SIZE:]), "length 1105 does not match 2 frames of 512-byte pages (1104)")
    reject(recrc(body[:-1] + raw[-CRC_SIZE:]), "length 1103 does not match 2 frames of 512-byte pages (1104)")
    # A page size that makes the frames the wrong length.
    reject(with_header(raw, page_size=1024), "does not match 2 frames of 1024-byte pages")


# -- fuzz -----------------------------------------------------------------------------------------


@given(st.binary(max_size=2048))
def test_decode_of_arbitrary_bytes_returns_entry_or_format_error(raw: bytes) -> None:
    try:
        e = decode(raw)
    except EntryFormatError:
        return
    assert e.raw == raw  # pragma: no cover - a random valid entry is astronomically unlikely


def _check_decoded(e: Entry, raw: bytes) -> None:
    assert e.raw == raw
    assert e.seq >= 1
    assert e.page_size in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
    assert all(len(p) == e.page_size for p in e.frames.values())
    assert list(e.frames) == sorted(set(e.frames)) and all(p >= 1 for p in e.frames)
    assert len(raw) == HEADER_SIZE + len(e.frames) * (4 + e.page_size) + CRC_SIZE


@given(entry_fields(max_page_size=1024), st.data())
def test_decode_of_mutated_entries_returns_entry_or_format_error(f: EntryFields, data: st.DataObject) -> None:
    """Mutations with a *fixed* CRC, so decode gets past the CRC check and into the structure."""
    raw = bytearray(make(f).raw)
    body = raw[:-CRC_SIZE]
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["set", "insert", "delete", "header-int"]))
        if kind == "set" and body:
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            pos = data.draw(st.integers(0, len(body)))
            body[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and body:
            pos = data.draw(st.integers(0, len(body) - 1))
            del body[pos : pos + data.draw(st.integers(1, 8))]
        elif kind == "header-int" and len(body) >= HEADER_SIZE:
            off = data.draw(st.sampled_from([6, 32, 40]))  # flags, page_size, frame_count
            struct.pack_into(">H" if off == 6 else ">I", body, off, data.draw(st.integers(0, 0xFFFF)))
    mutated = recrc(bytes(body) + bytes(CRC_SIZE))
    try:
        e = decode(mutated)
    except EntryFormatError:
        return
    _check_decoded(e, mutated)


def test_magic_constant() -> None:
    assert MAGIC == b"WRLE"
    assert HEADER_SIZE == 68
