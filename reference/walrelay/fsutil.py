"""Durable file replacement: the one place that writes a file so a crash leaves old or new, whole.

Write a temporary file in the same directory, fsync it, rename it over the target, fsync the
directory (a rename is only durable once its directory is). Replica state, compacted replica logs,
the epoch allocator, archive objects in a directory, and a recovered database all go through here.
Directories are created the same way (``makedirs_durably``): a new directory's name is durable
only once its parent is fsynced, else a power loss can take the directory, and every file in it,
with it (the simulation's disk model, walrelay_chaos.simdisk, reverts exactly that).
"""

from __future__ import annotations

import os
import tempfile


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: str | os.PathLike[str], data: bytes) -> None:
    """Make ``path`` hold exactly ``data``, durably and atomically (unique temporary name, so
    concurrent writers of different keys in one directory never share one)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def makedirs_durably(path: str | os.PathLike[str]) -> None:
    """``os.makedirs(path, exist_ok=True)``, and each directory it creates is made durable: its
    parent is fsynced after the ``mkdir``. An existing non-directory raises FileExistsError."""
    target = os.path.abspath(path)
    missing: list[str] = []
    p = target
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
        fsync_dir(os.path.dirname(d))
