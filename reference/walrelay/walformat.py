"""SQLite's WAL file format (https://sqlite.org/fileformat2.html#walformat): header, frames, checksums.

The WAL checksum is a running pair (s0, s1) over 32-bit words: for each pair of words (a, b),
``s0 += a + s1; s1 += b + s0`` (mod 2**32). Done word by word in Python it costs ~200 us per 4 KiB
page, which would dominate a commit. The recurrence is linear, ``(s0, s1) <- M (s0, s1) + (a, a+b)``
with ``M = [[1, 1], [1, 2]]``, so the state after n pairs is ``M^n s + sum_k M^(n-1-k) (a_k, a_k+b_k)``:
a dot product with precomputed coefficients, which numpy does in a few microseconds. uint64
arithmetic wraps mod 2**64, which preserves the value mod 2**32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from walrelay.errors import CaptureError

WAL_HEADER = struct.Struct(">IIIIIIII")
WAL_HEADER_SIZE = 32
FRAME_HEADER = struct.Struct(">IIIIII")
FRAME_HEADER_SIZE = 24
MAGIC_LE = 0x377F0682  # checksums computed over little-endian words
MAGIC_BE = 0x377F0683  # ... over big-endian words
MASK = 0xFFFFFFFF

U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True, slots=True)
class WalHeader:
    magic: int
    version: int
    page_size: int
    checkpoint_seq: int
    salt1: int
    salt2: int
    cksum1: int
    cksum2: int

    @property
    def big_endian(self) -> bool:
        return self.magic == MAGIC_BE


@lru_cache(maxsize=8)
def _coefficients(npairs: int) -> tuple[U64, U64, U64, U64, tuple[int, int, int, int]]:
    """Coefficients so that s0' = A00 s0 + A01 s1 + ca0.a + cb0.b (and likewise s1'), all mod 2**32."""
    m = [[1, 0], [0, 1]]  # M^0
    ca0 = np.zeros(npairs, dtype=np.uint64)
    cb0 = np.zeros(npairs, dtype=np.uint64)
    ca1 = np.zeros(npairs, dtype=np.uint64)
    cb1 = np.zeros(npairs, dtype=np.uint64)
    # input k contributes M^(n-1-k) (a_k, a_k + b_k); walk j = n-1-k upwards.
    for j in range(npairs):
        k = npairs - 1 - j
        ca0[k] = (m[0][0] + m[0][1]) & MASK
        cb0[k] = m[0][1]
        ca1[k] = (m[1][0] + m[1][1]) & MASK
        cb1[k] = m[1][1]
        m = [
            [(m[0][0] + m[1][0]) & MASK, (m[0][1] + m[1][1]) & MASK],
            [(m[0][0] + 2 * m[1][0]) & MASK, (m[0][1] + 2 * m[1][1]) & MASK],
        ]
    # m is now M^npairs
    return ca0, cb0, ca1, cb1, (m[0][0], m[0][1], m[1][0], m[1][1])


def wal_checksum(data: bytes | memoryview, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """Continue the WAL checksum over ``data`` (a multiple of 8 bytes) from state (s0, s1)."""
    n = len(data)
    if n % 8:
        raise ValueError("WAL checksum input must be a multiple of 8 bytes")
    words = np.frombuffer(data, dtype=">u4" if big_endian else "<u4").astype(np.uint64)
    a = words[0::2]
    b = words[1::2]
    ca0, cb0, ca1, cb1, (m00, m01, m10, m11) = _coefficients(n // 8)
    t0 = int(np.dot(ca0, a)) + int(np.dot(cb0, b))
    t1 = int(np.dot(ca1, a)) + int(np.dot(cb1, b))
    return (m00 * s0 + m01 * s1 + t0) & MASK, (m10 * s0 + m11 * s1 + t1) & MASK


def wal_checksum_slow(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """The word-by-word definition from SQLite's source; the fast version is tested against it."""
    fmt = ">" if big_endian else "<"
    for i in range(0, len(data), 8):
        a, b = struct.unpack_from(fmt + "II", data, i)
        s0 = (s0 + a + s1) & MASK
        s1 = (s1 + b + s0) & MASK
    return s0, s1


def parse_header(buf: bytes | memoryview) -> WalHeader:
    if len(buf) < WAL_HEADER_SIZE:
        raise CaptureError(f"WAL header is {len(buf)} bytes, expected {WAL_HEADER_SIZE}")
    hdr = WalHeader(*WAL_HEADER.unpack_from(buf))
    if hdr.magic not in (MAGIC_LE, MAGIC_BE):
        raise CaptureError(f"WAL header has bad magic {hdr.magic:#x}")
    s0, s1 = wal_checksum(memoryview(buf)[:24], 0, 0, hdr.big_endian)
    if (s0, s1) != (hdr.cksum1, hdr.cksum2):
        raise CaptureError("WAL header checksum mismatch")
    return hdr
