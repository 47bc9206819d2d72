"""The rolling database checksum: XOR over all pages of a 64-bit hash of (page number, page bytes).

Why XOR of per-page hashes (the LiteFS scheme) instead of hashing the whole file: a commit that
changes k pages updates the checksum in O(k), and anyone holding a database image (a restore, a
snapshot, a rebuilt replica) can recompute it from scratch and compare. The checksum is a function
of the database *state*, not of its history, so a snapshot can be verified against the entry it
was taken at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

PGNO_BYTES = 4


def page_hash(pgno: int, page: bytes | memoryview) -> int:
    """64-bit blake2b of the big-endian page number followed by the page bytes."""
    h = hashlib.blake2b(pgno.to_bytes(PGNO_BYTES, "big"), digest_size=8)
    h.update(page)
    return int.from_bytes(h.digest(), "big")


def zero_page_hash(pgno: int, page_size: int) -> int:
    return page_hash(pgno, bytes(page_size))


class DbChecksum:
    """Per-page hashes of one database image and their XOR, updated commit by commit."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self._hashes: list[int] = []  # index pgno-1
        self.value = 0

    @classmethod
    def of_image(cls, image: bytes, page_size: int) -> DbChecksum:
        if len(image) % page_size:
            raise ValueError(f"image of {len(image)} bytes is not a whole number of {page_size}-byte pages")
        c = cls(page_size)
        view = memoryview(image)
        for i in range(len(image) // page_size):
            h = page_hash(i + 1, view[i * page_size : (i + 1) * page_size])
            c._hashes.append(h)
            c.value ^= h
        return c

    @property
    def db_pages(self) -> int:
        return len(self._hashes)

    def apply(self, pages: Mapping[int, bytes] | Iterable[tuple[int, bytes]], db_pages: int) -> int:
        """Apply one commit (changed pages, new size in pages) and return the new checksum.

        Pages past the old end that the commit does not carry read as zeros (that is what a
        database file extended by a checkpoint contains there).
        """
        items = pages.items() if isinstance(pages, Mapping) else pages
        hashes = self._hashes
        while len(hashes) < db_pages:
            h = zero_page_hash(len(hashes) + 1, self.page_size)
            hashes.append(h)
            self.value ^= h
        while len(hashes) > db_pages:
            self.value ^= hashes.pop()
        for pgno, page in items:
            if pgno > db_pages:
                continue  # written, then cut off by the same commit's truncation
            new = page_hash(pgno, page)
            self.value ^= hashes[pgno - 1] ^ new
            hashes[pgno - 1] = new
        return self.value
