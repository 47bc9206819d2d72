"""Page-exact capture of each SQLite commit, below SQLite.

Two pieces work together:

* ``ShadowVFS`` is an apsw VFS that passes every call through to the default VFS and keeps an
  in-memory mirror of every byte written to the ``-wal`` file. It sees what SQLite wrote, including
  frames that SQLite later rewrites in place while a large transaction spills its page cache.
* A WAL hook (``Connection.set_wal_hook``) fires after each commit with the WAL's frame count. Only
  then are the frames of that commit final (SQLite fixes frame checksums at commit), so that is when
  the new frames are read from the mirror, verified (salts and the running checksum), and turned into
  one ``Commit``. Deciding commits from ``xWrite`` alone would miss commits and copy half-written
  frames; the hook is the commit boundary SQLite itself reports.

Installing a WAL hook disables SQLite's autocheckpoint, so checkpointing is ours
(``maybe_checkpoint``); after a checkpoint SQLite restarts the WAL at offset 0 with new salts, which
the capture detects by the salts changing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from walrelay.errors import CaptureError
from walrelay.pagehash import DbChecksum
from walrelay.walformat import FRAME_HEADER, FRAME_HEADER_SIZE, WAL_HEADER_SIZE, parse_header, wal_checksum

_vfs_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class Commit:
    """The pages one transaction wrote and the database size after it; input to a log entry."""

    pages: dict[int, bytes]
    db_pages: int
    page_size: int
    db_checksum: int


class ShadowWalFile(apsw.VFSFile):
    """A pass-through file that mirrors its contents in memory."""

    def __init__(self, vfs: ShadowVFS, name: Any, flags: list[int]) -> None:
        super().__init__("", name, flags)
        self.mirror = bytearray()
        size = self.xFileSize()
        if size:
            self.mirror += self.xRead(size, 0)
        self._vfs = vfs

    def xWrite(self, data: bytes, offset: int) -> None:
        vfs = self._vfs
        if offset < WAL_HEADER_SIZE:
            vfs.base_frame = 0  # SQLite writes the header when it starts a new WAL generation
        elif vfs.max_frames is not None and vfs.frame_size:
            frame = (offset - WAL_HEADER_SIZE) // vfs.frame_size  # 0-based, in this generation
            if frame >= vfs.base_frame + vfs.max_frames:
                # The transaction (its spills and its commit) would make an entry over the limit:
                # refuse the write, before anything of it is committed or captured. SQLite fails
                # the statement or the COMMIT with SQLITE_FULL, and the owner rolls back.
                vfs.refused = frame - vfs.base_frame + 1
                raise apsw.FullError(f"transaction too large: more than {vfs.max_frames} pages")
        super().xWrite(data, offset)
        end = offset + len(data)
        m = self.mirror
        if len(m) < offset:
            m.extend(bytes(offset - len(m)))
        m[offset:end] = data

    def xTruncate(self, newsize: int) -> None:
        super().xTruncate(newsize)
        del self.mirror[newsize:]

    def xClose(self) -> None:
        super().xClose()
        self._vfs.wal_file = None


class ShadowVFS(apsw.VFS):
    """Default VFS plus a mirror of the one ``-wal`` file of the database it serves."""

    def __init__(self) -> None:
        self.name = f"walrelay-shadow-{os.getpid()}-{next(_vfs_ids)}"
        super().__init__(self.name, "")
        self.wal_file: ShadowWalFile | None = None
        # The per-transaction limit (WalCapture.max_pages): frames of one transaction beyond
        # ``base_frame`` (the frames committed in this WAL generation) are refused past it.
        self.max_frames: int | None = None
        self.frame_size = 0
        self.base_frame = 0
        self.refused = 0  # frames the last refused transaction had reached (0: none refused)

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        fname = name.filename() if isinstance(name, apsw.URIFilename) else name
        if isinstance(fname, str) and fname.endswith("-wal"):
            f = ShadowWalFile(self, name, flags)
            self.wal_file = f
            return f
        return apsw.VFSFile("", name, flags)


# Pragmas that would silently stop capture or change the on-disk format under it.
_FORBIDDEN_PRAGMAS = frozenset(
    {"journal_mode", "wal_autocheckpoint", "wal_checkpoint", "locking_mode", "page_size", "writable_schema"}
)


def _authorizer(op: int, p1: str | None, p2: str | None, db: str | None, trigger: str | None) -> int:
    # ATTACH of a file would put writes where the WAL hook of "main" never sees them. VACUUM
    # attaches an empty name (a temporary database) internally, so that one must pass. A bound
    # parameter or an expression reaches the authorizer as None: deny that too.
    if op == apsw.SQLITE_ATTACH and p1 != "":
        return apsw.SQLITE_DENY
    if op == apsw.SQLITE_PRAGMA and p1 is not None and p1.lower() in _FORBIDDEN_PRAGMAS:
        return apsw.SQLITE_DENY
    return apsw.SQLITE_OK


class WalCapture:
    """Opens one SQLite database in WAL mode and turns each commit into a ``Commit``.

    ``on_commit`` is called from inside SQLite's commit (the WAL hook), once per transaction that
    wrote pages. A capture failure means the local database and the log may disagree: it is
    recorded in ``error`` and every later call raises it; the owner must reset the object.
    """

    def __init__(
        self,
        path: str,
        on_commit: Callable[[Commit], None],
        *,
        checkpoint_frames: int = 1000,
        synchronous: str = "NORMAL",
        cache_size: int | None = None,
    ) -> None:
        self.path = path
        self.on_commit = on_commit
        self.checkpoint_frames = checkpoint_frames
        self.vfs = ShadowVFS()
        self.conn = apsw.Connection(path, vfs=self.vfs.name)
        self.error: CaptureError | None = None
        mode = self.conn.pragma("journal_mode", "wal")
        if str(mode).lower() != "wal":
            raise CaptureError(f"{path}: could not switch to WAL mode (got {mode!r})")
        self.conn.pragma("synchronous", synchronous)
        if cache_size is not None:
            self.conn.pragma("cache_size", cache_size)
        # Start from a checkpointed, empty WAL: the base image is then exactly the database file.
        self.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        self.page_size = int(self.conn.pragma("page_size"))
        self.vfs.frame_size = FRAME_HEADER_SIZE + self.page_size
        self.checksum = DbChecksum.of_image(self.image(), self.page_size)
        self._salts: tuple[int, int] | None = None
        self.wal_restarts = 0  # new WAL generations after a checkpoint (the capture's hardest path)
        self._consumed = 0  # frames of the current WAL generation already turned into commits
        self._cksum = (0, 0)
        self._frames_in_wal = 0
        self.conn.set_wal_hook(self._on_wal)
        self.conn.authorizer = _authorizer

    # -- reading state -------------------------------------------------------------------------

    def image(self) -> bytes:
        """The logical database image (database file overlaid with the WAL), page for page."""
        data = self.conn.serialize("main")
        return bytes(data) if data else b""

    # -- the hook ------------------------------------------------------------------------------

    def _on_wal(self, conn: apsw.Connection, dbname: str, nframes: int) -> int:
        if dbname != "main":
            return apsw.SQLITE_OK
        if self.error is not None:
            # The log already misses a commit; anything captured now would be replayed onto the
            # wrong database. Stay failed until the owner resets the object.
            return apsw.SQLITE_ERROR
        try:
            self._consume(nframes)
        except CaptureError as e:
            self.error = e
            return apsw.SQLITE_ERROR
        return apsw.SQLITE_OK

    def _consume(self, nframes: int) -> None:
        f = self.vfs.wal_file
        if f is None:
            raise CaptureError("WAL hook fired but no -wal file is open")
        mirror = f.mirror
        # Copies, not views: a view kept alive (say, by a stored error's traceback) would pin the
        # mirror's size, and SQLite's next WAL write would fail inside xWrite. Only the header and
        # the new frames are copied, so a commit costs its own size, not the WAL's.
        hdr = parse_header(bytes(mirror[:WAL_HEADER_SIZE]))
        if hdr.page_size != self.page_size:
            raise CaptureError(f"WAL page size {hdr.page_size} != database page size {self.page_size}")
        if (hdr.salt1, hdr.salt2) != self._salts:
            # A new WAL generation (first commit, or restart after a checkpoint).
            self.wal_restarts += self._salts is not None
            self._salts = (hdr.salt1, hdr.salt2)
            self._consumed = 0
            self._cksum = (hdr.cksum1, hdr.cksum2)
        if nframes <= self._consumed:
            raise CaptureError(f"WAL hook reports {nframes} frames, but {self._consumed} were already captured")
        psize = self.page_size
        fsize = FRAME_HEADER_SIZE + psize
        start = WAL_HEADER_SIZE + self._consumed * fsize
        need = WAL_HEADER_SIZE + nframes * fsize
        if len(mirror) < need:
            raise CaptureError(f"WAL mirror holds {len(mirror)} bytes, {nframes} frames need {need}")
        wal = bytes(mirror[start:need])
        s0, s1 = self._cksum
        pages: dict[int, bytes] = {}
        db_pages = 0
        for i in range(self._consumed, nframes):
            off = (i - self._consumed) * fsize
            pgno, commit, salt1, salt2, c1, c2 = FRAME_HEADER.unpack_from(wal, off)
            if (salt1, salt2) != self._salts:
                raise CaptureError(f"WAL frame {i + 1}: salt mismatch (torn or stale frame)")
            page = wal[off + FRAME_HEADER_SIZE : off + fsize]
            s0, s1 = wal_checksum(wal[off : off + 8], s0, s1, hdr.big_endian)
            s0, s1 = wal_checksum(page, s0, s1, hdr.big_endian)
            if (s0, s1) != (c1, c2):
                raise CaptureError(f"WAL frame {i + 1}: checksum mismatch")
            pages[pgno] = bytes(page)
            # Several commit frames in one hook call are sector padding copies of the commit
            # frame; the last one wins and the whole range is one transaction.
            db_pages = commit or db_pages
        if db_pages == 0:
            raise CaptureError(f"WAL frames {self._consumed + 1}..{nframes} end without a commit frame")
        self._cksum = (s0, s1)
        self._consumed = nframes
        self._frames_in_wal = nframes
        self.vfs.base_frame = nframes
        pages = {p: b for p, b in pages.items() if p <= db_pages}
        value = self.checksum.apply(pages, db_pages)
        try:
            self.on_commit(Commit(pages=pages, db_pages=db_pages, page_size=psize, db_checksum=value))
        except Exception as e:
            # The commit happened in SQLite but did not become a log entry: local state and log
            # now disagree, which only a reset can repair. Never let it pass as an app error.
            raise CaptureError(f"commit could not become a log entry: {type(e).__name__}: {e}") from e

    # -- maintenance ---------------------------------------------------------------------------

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def limit_pages(self, max_pages: int | None) -> None:
        """At most ``max_pages`` pages (WAL frames, spills included) per transaction: a larger one
        fails with SQLITE_FULL before it commits (``take_refused`` then says so), so a transaction
        that could not become a log entry never happens (issue 17: no client can stop the object)."""
        self.vfs.max_frames = max_pages

    def take_refused(self) -> int:
        """How many pages the last transaction refused for its size had reached (0: none); reading
        it clears it, so each refusal is reported once."""
        n, self.vfs.refused = self.vfs.refused, 0
        return n

    def maybe_checkpoint(self) -> bool:
        """Checkpoint once the WAL holds ``checkpoint_frames`` frames; returns True if it ran."""
        if self._frames_in_wal < self.checkpoint_frames or self.conn.in_transaction:
            return False
        self.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        self._frames_in_wal = 0
        return True

    def close(self) -> None:
        self.conn.close()
        self.vfs.unregister()
