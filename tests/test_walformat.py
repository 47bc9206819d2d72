"""SQLite WAL format: the numpy checksum against the word-by-word definition, and header parsing."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import apsw
import pytest
from hypothesis import given
from hypothesis import strategies as st

from walrelay.errors import CaptureError
from walrelay.walformat import (
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    MAGIC_BE,
    MAGIC_LE,
    WAL_HEADER,
    WAL_HEADER_SIZE,
    parse_header,
    wal_checksum,
    wal_checksum_slow,
)

u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
# Whole 8-byte pairs of words, from empty up to a bit more than one 4 KiB page plus frame header.
pair_data = st.integers(min_value=0, max_value=600).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n))


def make_header(magic: int, *, page_size: int = 4096, ckpt_seq: int = 0, salt1: int = 1, salt2: int = 2) -> bytes:
    """A WAL header whose checksum is computed with the reference implementation."""
    prefix = WAL_HEADER.pack(magic, 3007000, page_size, ckpt_seq, salt1, salt2, 0, 0)[:24]
    c1, c2 = wal_checksum_slow(prefix, 0, 0, magic == MAGIC_BE)
    return prefix + struct.pack(">II", c1, c2)


# -- the checksum ---------------------------------------------------------------------------------


def test_slow_checksum_matches_hand_computed_values() -> None:
    # One pair (a, b) from (0, 0): s0 = 0 + a + 0, s1 = 0 + b + s0.
    data = bytes([0, 0, 0, 1, 0, 0, 0, 2])
    assert wal_checksum_slow(data, 0, 0, True) == (1, 3)
    assert wal_checksum_slow(data, 0, 0, False) == (0x01000000, 0x03000000)
    # Wrap-around mod 2**32 and the carried state.
    assert wal_checksum_slow(b"\xff" * 8, 0xFFFFFFFF, 1, True) == (0xFFFFFFFF, 0xFFFFFFFF)


@given(data=pair_data, s0=u32, s1=u32, big_endian=st.booleans())
def test_fast_checksum_equals_slow_definition(data: bytes, s0: int, s1: int, big_endian: bool) -> None:
    expected = wal_checksum_slow(data, s0, s1, big_endian)
    assert wal_checksum(data, s0, s1, big_endian) == expected
    assert wal_checksum(memoryview(data), s0, s1, big_endian) == expected


@given(a=pair_data, b=pair_data, s0=u32, s1=u32, big_endian=st.booleans())
def test_fast_checksum_continues_from_a_state(a: bytes, b: bytes, s0: int, s1: int, big_endian: bool) -> None:
    mid = wal_checksum(a, s0, s1, big_endian)
    assert wal_checksum(b, *mid, big_endian) == wal_checksum_slow(a + b, s0, s1, big_endian)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("size", [FRAME_HEADER_SIZE + 512, 65536, FRAME_HEADER_SIZE + 65536])
def test_fast_checksum_on_whole_frames(size: int, big_endian: bool) -> None:
    rng = random.Random(size * 2 + big_endian)
    data = rng.randbytes(size - size % 8)
    s0, s1 = rng.getrandbits(32), rng.getrandbits(32)
    assert wal_checksum(data, s0, s1, big_endian) == wal_checksum_slow(data, s0, s1, big_endian)


@pytest.mark.parametrize("n", [1, 4, 7, 12, 4097])
def test_checksum_rejects_partial_pairs(n: int) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        wal_checksum(bytes(n), 0, 0, True)


def test_checksum_verifies_a_real_sqlite_wal(tmp_path: Path) -> None:
    """Walk a WAL written by SQLite itself and check every frame's stored checksum."""
    path = tmp_path / "real.db"
    conn = apsw.Connection(str(path))
    try:
        assert conn.pragma("journal_mode", "wal") == "wal"
        conn.pragma("wal_autocheckpoint", 0)
        conn.execute("CREATE TABLE t(x BLOB)")
        for i in range(5):
            conn.execute("INSERT INTO t VALUES (?)", (random.Random(i).randbytes(3000),))
        wal = (tmp_path / "real.db-wal").read_bytes()
    finally:
        conn.close()
    hdr = parse_header(wal)
    assert hdr.magic in (MAGIC_LE, MAGIC_BE)
    psize = hdr.page_size
    assert psize == 4096
    s = (hdr.cksum1, hdr.cksum2)
    nframes = (len(wal) - WAL_HEADER_SIZE) // (FRAME_HEADER_SIZE + psize)
    assert nframes >= 6
    for i in range(nframes):
        off = WAL_HEADER_SIZE + i * (FRAME_HEADER_SIZE + psize)
        _pgno, _commit, salt1, salt2, c1, c2 = FRAME_HEADER.unpack_from(wal, off)
        assert (salt1, salt2) == (hdr.salt1, hdr.salt2)
        s = wal_checksum(wal[off : off + 8], *s, hdr.big_endian)
        s = wal_checksum(wal[off + FRAME_HEADER_SIZE : off + FRAME_HEADER_SIZE + psize], *s, hdr.big_endian)
        assert s == (c1, c2), f"frame {i + 1}"


# -- the header -----------------------------------------------------------------------------------


@pytest.mark.parametrize("magic", [MAGIC_LE, MAGIC_BE])
def test_parse_header_accepts_both_endiannesses(magic: int) -> None:
    hdr = parse_header(make_header(magic, page_size=1024, ckpt_seq=7, salt1=0xDEADBEEF, salt2=42))
    assert hdr.magic == magic
    assert hdr.big_endian == (magic == MAGIC_BE)
    assert (hdr.page_size, hdr.checkpoint_seq, hdr.salt1, hdr.salt2) == (1024, 7, 0xDEADBEEF, 42)


@given(salt1=u32, salt2=u32, ckpt_seq=u32, big_endian=st.booleans())
def test_parse_header_round_trips(salt1: int, salt2: int, ckpt_seq: int, big_endian: bool) -> None:
    magic = MAGIC_BE if big_endian else MAGIC_LE
    hdr = parse_header(make_header(magic, ckpt_seq=ckpt_seq, salt1=salt1, salt2=salt2))
    assert (hdr.salt1, hdr.salt2, hdr.checkpoint_seq, hdr.big_endian) == (salt1, salt2, ckpt_seq, big_endian)


@pytest.mark.parametrize("magic", [0, 0x377F0681, 0x377F0684, 0x83067F37])
def test_parse_header_rejects_bad_magic(magic: int) -> None:
    with pytest.raises(CaptureError, match="bad magic"):
        parse_header(make_header(magic))


@pytest.mark.parametrize("magic", [MAGIC_LE, MAGIC_BE])
@pytest.mark.parametrize("pos", range(4, WAL_HEADER_SIZE))
def test_parse_header_rejects_bad_checksum(magic: int, pos: int) -> None:
    buf = bytearray(make_header(magic))
    buf[pos] ^= 0x10
    with pytest.raises(CaptureError, match="checksum mismatch"):
        parse_header(bytes(buf))


def test_parse_header_rejects_checksum_of_the_other_endianness() -> None:
    good = make_header(MAGIC_LE)
    swapped = struct.pack(">I", MAGIC_BE) + good[4:]  # checksum computed little-endian, magic says big
    with pytest.raises(CaptureError, match="checksum mismatch"):
        parse_header(swapped)


@pytest.mark.parametrize("n", [0, 1, 24, WAL_HEADER_SIZE - 1])
def test_parse_header_rejects_short_input(n: int) -> None:
    with pytest.raises(CaptureError, match="expected 32"):
        parse_header(make_header(MAGIC_BE)[:n])
