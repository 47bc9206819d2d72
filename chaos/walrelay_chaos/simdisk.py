"""The simulation's disk: what a power loss keeps, for file data and for directories.

A power loss keeps of a file only what its last fsync (or fdatasync) made durable, and of a
directory only the names its last fsync made durable: a file created, renamed over or deleted
since then may come back as it was (POSIX makes a rename durable only once its directory is
fsynced; ext4 and XFS do lose such renames). A reference without the directory fsync after
``os.replace`` passed every test and 1,389 chaos seeds before this model (issue 16): a replica fell
back to an older promise after a power loss, and the epoch allocator could issue an epoch twice.

``SimDisk.installed`` wraps, for the run, ``os.fsync``/``os.fdatasync`` (a file: note its durable
length by inode; a directory: note its names and their inodes) and ``os.replace``/``os.rename``/
``os.unlink``/``os.remove`` (before a durable name loses its inode, keep that inode's durable
bytes, so a power loss can bring it back). Only paths under a *tracked* root are modelled (a
replica's data directory, the placement directory, a directory archive); the root itself is
taken as durable. ``lose_unsynced(root)`` is the power loss: every directory under the root goes
back to its durable names (new names vanish, replaced or deleted ones come back with their
durable bytes), then every file is cut back to its durable length. A process crash loses
nothing: the OS still holds what was written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from typing import Any

Ino = tuple[int, int]  # (st_dev, st_ino)


class PowerCut(BaseException):
    """The power went out in the middle of a node's own I/O (``SimDisk.arm``): raised from the
    directory fsync it was making, so nothing after it runs, and no answer that waited for it
    is sent. A BaseException: no ``except Exception`` in the node may take it for an I/O error."""


def _ino(st: os.stat_result) -> Ino:
    return (st.st_dev, st.st_ino)


def _names(path: str, dev: int) -> dict[str, Ino]:
    """A directory's names and their inodes, from one readdir (no stat per name: a directory of
    archive segments is synced on every PUT, and an lstat each made the runs quadratic)."""
    with os.scandir(path) as it:
        return {e.name: (dev, e.inode()) for e in it}


class SimDisk:
    def __init__(self) -> None:
        self.synced: dict[Ino, int] = {}  # a file's length at its last fsync
        self.names: dict[str, dict[str, Ino]] = {}  # a tracked directory's names at its last fsync
        self.kept: dict[Ino, bytes] = {}  # durable bytes of inodes a durable name lost since
        self.roots: set[str] = set()
        self.reverted = 0  # directory entries a power loss put back or took away (coverage)
        self.armed: str | None = None  # a root whose next directory fsync after a change is cut
        self.cut: str | None = None  # the directory whose fsync the power cut

    # -- what is modelled -----------------------------------------------------------------------

    def track(self, root: str) -> None:
        """Model ``root``'s tree from now on (a fresh or wiped directory: nothing in it is durable
        yet except the root itself)."""
        root = os.path.abspath(root)
        os.makedirs(root, exist_ok=True)
        for d in [d for d in self.names if d == root or d.startswith(root + os.sep)]:
            del self.names[d]
        self.names[root] = _names(root, os.stat(root).st_dev)
        self.roots.add(root)

    def arm(self, root: str | None) -> None:
        """The power goes out under ``root`` at the next fsync of a directory whose names changed
        since its last fsync (a rename or a new file not durable yet): ``PowerCut`` is raised
        instead. None disarms."""
        self.armed = os.path.abspath(root) if root is not None else None
        self.cut = None

    def _tracked(self, path: Any) -> str | None:
        if not isinstance(path, str | os.PathLike) or not self.roots:
            return None
        p = os.path.abspath(os.fspath(path))
        return p if any(p == r or p.startswith(r + os.sep) for r in self.roots) else None

    def _durably_named(self, ino: Ino) -> bool:
        return any(ino in names.values() for names in self.names.values())

    def _keep(self, path: str) -> None:
        """``path`` is about to lose its inode: keep that inode's durable bytes if a durable
        name still points to it (a power loss must bring it back)."""
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            ino = _ino(st)
            if stat.S_ISREG(st.st_mode) and ino not in self.kept and self._durably_named(ino):
                with open(path, "rb") as f:
                    self.kept[ino] = f.read(self.synced.get(ino, 0))

    # -- the wrapped calls -------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "replace", "rename", "unlink", "remove")}

        def synced(call: Callable[[Any], None]) -> Callable[[Any], None]:
            def sync(fd: Any) -> None:
                call(fd)
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    path = self._tracked(os.readlink(f"/proc/self/fd/{fd}"))
                    if path is not None:
                        now = _names(path, st.st_dev)
                        armed = self.armed
                        if armed and (path == armed or path.startswith(armed + os.sep)) and now != self.names.get(path):
                            self.armed, self.cut = None, path
                            raise PowerCut(path)  # before the fsync counted: the change is not durable
                        self.names[path] = now
                        self._forget_kept()
                else:
                    self.synced[_ino(st)] = st.st_size

            return sync

        def moved(call: Callable[..., None]) -> Callable[..., None]:
            def move(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
                for p in (src, dst):
                    tracked = self._tracked(p) if not kw else None
                    if tracked is not None:
                        self._keep(tracked)
                call(src, dst, *args, **kw)

            return move

        def removed(call: Callable[..., None]) -> Callable[..., None]:
            def remove(path: Any, *args: Any, **kw: Any) -> None:
                tracked = self._tracked(path) if not args and not kw.get("dir_fd") else None
                if tracked is not None:
                    self._keep(tracked)
                call(path, *args, **kw)

            return remove

        wrapped = {
            "fsync": synced(real["fsync"]),
            "fdatasync": synced(real["fdatasync"]),
            "replace": moved(real["replace"]),
            "rename": moved(real["rename"]),
            "unlink": removed(real["unlink"]),
            "remove": removed(real["remove"]),
        }
        for name, fn in wrapped.items():
            setattr(os, name, fn)  # typeshed's signatures, not ours
        try:
            yield
        finally:
            for name, fn in real.items():
                setattr(os, name, fn)

    def _forget_kept(self) -> None:
        self.kept = {ino: data for ino, data in self.kept.items() if self._durably_named(ino)}

    # -- the power loss ------------------------------------------------------------------------

    def lose_unsynced(self, directory: str) -> int:
        """Power loss under ``directory`` (a tracked root, or a directory inside one): directories
        go back to their durable names, then files to their durable lengths. Returns the bytes
        lost (and counts reverted entries in ``reverted``)."""
        directory = os.path.abspath(directory)
        lost = self._revert(directory) if directory in self.names else 0
        for parent, _, names in sorted(os.walk(directory)):
            for name in sorted(names):
                path = os.path.join(parent, name)
                st = os.stat(path)
                keep = self.synced.get(_ino(st), 0)
                if st.st_size > keep:
                    lost += st.st_size - keep
                    os.truncate(path, keep)
        return lost

    def _revert(self, d: str) -> int:
        durable = self.names.get(d, {})
        lost = 0
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            st = os.lstat(p)
            if durable.get(name) != _ino(st):  # created, or renamed over, since the last sync
                lost += st.st_size if stat.S_ISREG(st.st_mode) else 0
                shutil.rmtree(p) if stat.S_ISDIR(st.st_mode) else os.unlink(p)
                self.reverted += 1
        for name, ino in sorted(durable.items()):
            p = os.path.join(d, name)
            if not os.path.lexists(p):  # deleted or renamed over since: its durable bytes come back
                data = self.kept.get(ino)
                if data is None:
                    os.mkdir(p)  # a durable directory name whose directory was removed: empty
                else:
                    with open(p, "wb") as f:
                        f.write(data)
                    st = os.lstat(p)
                    self.synced[_ino(st)] = len(data)
                    durable[name] = _ino(st)
                self.reverted += 1
            elif stat.S_ISDIR(os.lstat(p).st_mode):
                lost += self._revert(p)
        return lost
