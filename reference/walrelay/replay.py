"""Apply log entries to a database image: the one place where the log becomes a database again.

Used by recovery, by restore from the archive, and by tests. Every step is
checked: an entry must follow the previous one (seq and chain), and the database checksum after
applying it must equal the ``db_checksum`` the primary computed. A mismatch is an error naming the
entry; a replay never returns a database it could not verify.
"""

from __future__ import annotations

from collections.abc import Iterable

import apsw

from walrelay.entry import GENESIS_CHAIN, Entry, check_follows
from walrelay.errors import ChainError
from walrelay.pagehash import DbChecksum


class Replayer:
    """A database image plus the log position it corresponds to."""

    def __init__(
        self,
        image: bytes,
        page_size: int,
        *,
        last_seq: int = 0,
        last_chain: bytes = GENESIS_CHAIN,
    ) -> None:
        self.image = bytearray(image)
        self.page_size = page_size
        self.last_seq = last_seq
        self.last_chain = last_chain
        self.checksum = DbChecksum.of_image(bytes(image), page_size)
        self.failed: ChainError | None = None

    def apply(self, entry: Entry) -> None:
        """Apply one entry. Seq and chain are checked before anything changes, so rejecting an
        entry there leaves the Replayer usable. The database checksum can only be checked after
        the pages are written; if it fails, the image holds the rejected entry, so the Replayer
        refuses all further work instead of ever handing out an unverified image."""
        if self.failed is not None:
            raise ChainError(f"replay already failed and cannot continue: {self.failed}")
        if entry.seq != self.last_seq + 1:
            raise ChainError(f"entry seq {entry.seq} does not follow seq {self.last_seq} (gap or overlap)")
        if entry.page_size != self.page_size:
            raise ChainError(f"entry seq {entry.seq} has page size {entry.page_size}, database has {self.page_size}")
        check_follows(entry, self.last_chain)
        psize = self.page_size
        need = entry.db_pages * psize
        img = self.image
        if len(img) < need:
            img.extend(bytes(need - len(img)))
        del img[need:]
        for pgno, page in entry.frames.items():
            if pgno <= entry.db_pages:
                img[(pgno - 1) * psize : pgno * psize] = page
        value = self.checksum.apply(entry.frames, entry.db_pages)
        if value != entry.db_checksum:
            self.failed = ChainError(
                f"entry seq {entry.seq}: database checksum after applying it is {value:#018x}, "
                f"the entry says {entry.db_checksum:#018x} (corrupt entry or wrong base image)"
            )
            raise self.failed
        self.last_seq = entry.seq
        self.last_chain = entry.chain

    def apply_all(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.apply(e)


def open_image(image: bytes | bytearray) -> apsw.Connection:
    """Open a database image in memory, read-only use (queries, integrity_check).

    Images captured from a WAL-mode database say so in their header (bytes 18-19 = 2), and SQLite
    cannot open a WAL-mode database without a shared-memory file. The copy opened here is switched
    to rollback mode in those two header bytes only; the image itself is not changed.
    """
    data = bytearray(image)
    if len(data) >= 20 and data[18] == 2 and data[19] == 2:
        data[18] = data[19] = 1
    conn = apsw.Connection(":memory:")
    if data:
        conn.deserialize("main", bytes(data))
    return conn
