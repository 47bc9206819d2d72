"""A filesystem that loses what was not fsync'd: power loss for any process, in any language.

Jepsen's LazyFS is the model. Mounted (FUSE, ``pyfuse3``) over a backing directory, it keeps every
write to a file in its own memory until that file is fsync'd (``fsync``/``fdatasync``), and only
then writes it to the backing file and syncs it there. A ``power failure`` (SIGUSR1 to this
process, after the harness SIGKILLed the node) drops every unsynced write; the node is then
started again on the same mount and sees only what it synced. A plain SIGKILL cannot show this:
the kernel's page cache survives the process.

What is modelled, and what is not (so a pass is read for what it is worth):
- File DATA is held until the file is synced, across close and reopen (closing does not sync).
  A truncation (``ftruncate``, ``O_TRUNC`` on an existing file) is a data change too.
- Directory operations (create, unlink, rename, mkdir) reach the backing directory at once and
  are not undone by a power failure: a missing directory fsync is NOT caught. A rename of a file
  whose data was never synced is caught (the file comes back empty or old: the classic "write
  tmp, rename, forgot to fsync tmp" bug).
- A power failure drops the unsynced writes whole; a TORN power failure (SIGHUP) first persists
  the first half of each file's unsynced bytes (from the first byte that differs from what was
  synced): the last record of an append-only log is then cut in the middle, as after a power cut
  between ``write`` and ``fsync``.
- To make that state certain rather than lucky, the harness can HOLD fsyncs (SIGUSR2): each fsync
  then blocks, printing ``HELD``, until the power failure, which fails it: the node has written
  and not synced, and the harness knows it.
- From the power failure until the power is back (SIGWINCH, ``POWERON``) every operation fails
  with EIO: nothing the node still does reaches the disk. The harness cuts the power FIRST, then
  SIGKILLs the node (a process blocked in a FUSE request cannot die until it is answered), then
  turns the power back on and starts the node again.
- Files are served with direct I/O (no kernel page cache between the node and this process, so
  nothing survives a power failure behind our back); memory-mapped files are not supported.

Run: ``python -m walrelay_chaos.powerfs BACKING MOUNTPOINT``. It prints ``MOUNTED`` when ready;
on SIGUSR1 it drops the unsynced writes and prints ``POWERFAIL files=N bytes=B`` (SIGHUP: the torn
kind, ``POWERFAIL torn files=N bytes=B``); on SIGUSR2 it holds fsyncs (``HOLDING``, then ``HELD``
per fsync held); on SIGWINCH the power is back (``POWERON``); on SIGTERM it unmounts and exits.
"""

from __future__ import annotations

import errno
import os
import signal
import stat as stat_m
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyfuse3
import trio
from pyfuse3 import FUSEError


def _exists(path: str) -> bool:
    """The callbacks are async by pyfuse3's API, and block by design: one request at a time,
    each a few syscalls on a local directory (a test mount, not a server)."""
    return os.path.lexists(path)


def _fs_error(e: OSError) -> FUSEError:
    return FUSEError(e.errno or errno.EIO)


@dataclass
class _Unsynced:
    """A file's contents as the node sees them, differing from the backing file until synced."""

    data: bytearray


class PowerLossFs(pyfuse3.Operations):
    """Passthrough to ``backing``, keyed by the backing files' inode numbers, with unsynced data
    held in memory per inode."""

    enable_writeback_cache = False

    def __init__(self, backing: str) -> None:
        super().__init__()
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: backing}
        self.root_ino = os.lstat(backing).st_ino
        self.handles: dict[int, tuple[int, int]] = {}  # fh -> (inode, backing fd)
        self.next_fh = 1
        self.unsynced: dict[int, _Unsynced] = {}
        self.holding = False
        self.released = trio.Event()
        self.dead = False  # between a power failure and the power coming back

    # ---- paths and attributes ----
    def _path(self, inode: int) -> str:
        try:
            return self.paths[inode]
        except KeyError:
            raise FUSEError(errno.ENOENT) from None

    def _ino(self, st: os.stat_result) -> int:
        return pyfuse3.ROOT_INODE if st.st_ino == self.root_ino else st.st_ino

    def _attr(self, path: str) -> pyfuse3.EntryAttributes:
        try:
            st = os.lstat(path)
        except OSError as e:
            raise _fs_error(e) from None
        a = pyfuse3.EntryAttributes()
        ino = self._ino(st)
        for name in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                     "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):  # fmt: skip
            setattr(a, name, getattr(st, name))
        a.st_ino = ino
        if ino in self.unsynced:
            a.st_size = len(self.unsynced[ino].data)
        a.generation = 0
        a.entry_timeout = 0
        a.attr_timeout = 0
        a.st_blksize = 4096
        a.st_blocks = (a.st_size + 511) // 512
        return a

    def _child(self, inode_p: int, name: bytes) -> str:
        return os.path.join(self._path(inode_p), os.fsdecode(name))

    def _remember(self, path: str) -> pyfuse3.EntryAttributes:
        a = self._attr(path)
        self.paths[a.st_ino] = path
        return a

    async def lookup(self, inode_p: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return self._remember(self._child(inode_p, name))

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return self._attr(self._path(inode))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        return None  # paths are kept: a small, short-lived test mount

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: Any, ctx: Any) -> pyfuse3.EntryAttributes:
        self._alive()
        path = self._path(inode)
        try:
            if fields.update_size:
                self._data(inode, path)[attr.st_size :] = b""
                data = self.unsynced[inode].data
                if len(data) < attr.st_size:
                    data.extend(bytes(attr.st_size - len(data)))
            if fields.update_mode:
                os.chmod(path, stat_m.S_IMODE(attr.st_mode))
            if fields.update_atime or fields.update_mtime:
                st = os.lstat(path)
                at = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
                mt = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
                os.utime(path, ns=(at, mt))
        except OSError as e:
            raise _fs_error(e) from None
        return self._attr(path)

    # ---- directories (applied to the backing directory at once) ----
    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, inode: int, off: int, token: Any) -> None:
        path = self._path(inode)
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            raise _fs_error(e) from None
        for i, name in enumerate(names[off:], start=off + 1):
            a = self._remember(os.path.join(path, name))
            if not pyfuse3.readdir_reply(token, os.fsencode(name), a, i):
                return

    async def releasedir(self, fh: int) -> None:
        return None

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # directory operations are durable at once in this model

    async def mkdir(self, inode_p: int, name: bytes, mode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        self._alive()
        path = self._child(inode_p, name)
        try:
            os.mkdir(path, mode & ~ctx.umask)
        except OSError as e:
            raise _fs_error(e) from None
        return self._remember(path)

    async def rmdir(self, inode_p: int, name: bytes, ctx: Any) -> None:
        try:
            os.rmdir(self._child(inode_p, name))
        except OSError as e:
            raise _fs_error(e) from None

    async def unlink(self, inode_p: int, name: bytes, ctx: Any) -> None:
        self._alive()
        path = self._child(inode_p, name)
        try:
            st = os.lstat(path)
            os.unlink(path)
        except OSError as e:
            raise _fs_error(e) from None
        if st.st_nlink <= 1:
            self.unsynced.pop(self._ino(st), None)

    async def rename(self, p_old: int, n_old: bytes, p_new: int, n_new: bytes, flags: int, ctx: Any) -> None:
        self._alive()
        if flags != 0:
            raise FUSEError(errno.EINVAL)
        old, new = self._child(p_old, n_old), self._child(p_new, n_new)
        try:
            replaced = os.lstat(new) if _exists(new) else None
            os.rename(old, new)
            moved = os.lstat(new)
        except OSError as e:
            raise _fs_error(e) from None
        if replaced is not None and replaced.st_ino != moved.st_ino and replaced.st_nlink <= 1:
            self.unsynced.pop(self._ino(replaced), None)
        self.paths[self._ino(moved)] = new

    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        s = os.statvfs(self.paths[pyfuse3.ROOT_INODE])
        out = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
            setattr(out, name, getattr(s, name))
        out.f_namemax = s.f_namemax
        return out

    # ---- files: data held until fsync ----
    def _open_fd(self, path: str, flags: int, mode: int = 0o644) -> int:
        # The backing fd is only read from and synced through; O_TRUNC and O_APPEND are the
        # node's view, applied to the unsynced data instead.
        try:
            return os.open(path, os.O_RDWR | (flags & os.O_CREAT), mode)
        except OSError as e:
            raise _fs_error(e) from None

    def _handle(self, inode: int, fd: int) -> pyfuse3.FileInfo:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = (inode, fd)
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    def _data(self, inode: int, path: str) -> bytearray:
        u = self.unsynced.get(inode)
        if u is None:
            with open(path, "rb") as f:
                u = self.unsynced[inode] = _Unsynced(bytearray(f.read()))
        return u.data

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        path = self._path(inode)
        fd = self._open_fd(path, flags)
        if flags & os.O_TRUNC:
            self._data(inode, path)[:] = b""
        return self._handle(inode, fd)

    async def create(self, inode_p: int, name: bytes, mode: int, flags: int, ctx: Any) -> tuple[pyfuse3.FileInfo, Any]:
        self._alive()
        path = self._child(inode_p, name)
        existed = _exists(path)
        fd = self._open_fd(path, flags | os.O_CREAT, mode & ~ctx.umask)
        a = self._remember(path)
        if existed and flags & os.O_TRUNC:
            self._data(a.st_ino, path)[:] = b""
            a = self._attr(path)
        return self._handle(a.st_ino, fd), a

    async def read(self, fh: int, off: int, size: int) -> bytes:
        inode, fd = self.handles[fh]
        u = self.unsynced.get(inode)
        if u is not None:
            return bytes(u.data[off : off + size])
        return os.pread(fd, size, off)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self._alive()
        inode, _ = self.handles[fh]
        data = self._data(inode, self._path(inode))
        if len(data) < off:
            data.extend(bytes(off - len(data)))
        data[off : off + len(buf)] = buf
        return len(buf)

    async def fsync(self, fh: int, datasync: bool) -> None:
        self._alive()
        if self.holding:
            print("HELD", flush=True)
            await self.released.wait()
            raise FUSEError(errno.EIO)  # the power went: this fsync never completed
        inode, fd = self.handles[fh]
        u = self.unsynced.pop(inode, None)
        try:
            if u is not None:
                os.ftruncate(fd, len(u.data))
                os.pwrite(fd, bytes(u.data), 0)
            os.fsync(fd)
        except OSError as e:
            raise _fs_error(e) from None

    async def flush(self, fh: int) -> None:
        return None  # close() does not sync

    async def release(self, fh: int) -> None:
        _, fd = self.handles.pop(fh)
        os.close(fd)

    # ---- the fault ----
    def _alive(self) -> None:
        if self.dead:
            raise FUSEError(errno.EIO)  # the power is off

    def power_fail(self, torn: bool = False) -> tuple[int, int]:
        files, size = len(self.unsynced), sum(len(u.data) for u in self.unsynced.values())
        if torn:
            for inode, u in self.unsynced.items():
                self._persist_half(self.paths.get(inode), u.data)
        self.unsynced.clear()
        self.holding = False
        self.dead = True
        self.released.set()
        self.released = trio.Event()
        return files, size

    @staticmethod
    def _persist_half(path: str | None, data: bytearray) -> None:
        """Persist the first half of what differs from the synced file: a torn last write."""
        if path is None or not os.path.exists(path):
            return
        with open(path, "r+b") as f:
            synced = f.read()
            same = next(
                (i for i, (a, b) in enumerate(zip(synced, data, strict=False)) if a != b), min(len(synced), len(data))
            )
            tail = bytes(data[same:])
            if tail:
                f.seek(same)
                f.write(tail[: max(1, len(tail) // 2)])
                f.flush()
                os.fsync(f.fileno())


async def _serve(fs: PowerLossFs) -> None:
    with trio.open_signal_receiver(
        signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGWINCH, signal.SIGTERM, signal.SIGINT
    ) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pyfuse3.main)
            print("MOUNTED", flush=True)
            async for sig in signals:
                if sig in (signal.SIGUSR1, signal.SIGHUP):
                    torn = sig == signal.SIGHUP
                    files, size = fs.power_fail(torn=torn)
                    print(f"POWERFAIL{' torn' if torn else ''} files={files} bytes={size}", flush=True)
                elif sig == signal.SIGWINCH:
                    fs.dead = False
                    print("POWERON", flush=True)
                elif sig == signal.SIGUSR2:
                    fs.holding = True
                    print("HOLDING", flush=True)
                else:
                    nursery.cancel_scope.cancel()
                    return


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m walrelay_chaos.powerfs BACKING MOUNTPOINT", file=sys.stderr)
        return 2
    backing, mountpoint = (os.path.abspath(a) for a in argv)
    fs = PowerLossFs(backing)
    options = set(pyfuse3.default_options)
    options.add("fsname=walrelay-powerfs")
    options.discard("default_permissions")
    pyfuse3.init(fs, mountpoint, options)
    try:
        trio.run(_serve, fs)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
