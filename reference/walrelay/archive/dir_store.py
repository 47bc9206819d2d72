"""The local-directory object store: the embedded default, no server needed.

An object is a file under the root at its key's path. A put writes a temporary file in the same
directory, fsyncs it, renames it over the key and fsyncs the directory, so a crash leaves the old
object or the new one, never a torn one, and a confirmed put survives power loss (the archiver
tells replicas to truncate only after a confirmed put: that confirmation must mean durable).
"""

from __future__ import annotations

import os
from pathlib import Path

from walrelay.archive.store import ObjectInfo, ObjectNotFoundError, ObjectStoreError, check_key, check_prefix
from walrelay.fsutil import makedirs_durably, replace_durably


class DirStore:
    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        """``create=False`` (readers): a missing directory is an error, not an empty archive."""
        self.root = Path(root)
        if not create and not self.root.is_dir():
            raise ObjectStoreError(f"no archive directory {self.root}")
        try:
            makedirs_durably(self.root)
        except OSError as e:
            raise ObjectStoreError(f"cannot create the archive directory {self.root}: {e}") from None

    def describe(self) -> str:
        return f"directory {self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            makedirs_durably(path.parent)  # a new key directory's name must be durable too
            replace_durably(path, data)  # temporary names start with "." and are never listed
        except OSError as e:
            raise ObjectStoreError(f"put {key} into {self.describe()} failed: {e}") from None

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {key} in {self.describe()}") from None
        except IsADirectoryError:
            raise ObjectNotFoundError(f"no object {key} in {self.describe()} ({key} is a prefix)") from None
        except OSError as e:
            raise ObjectStoreError(f"get {key} from {self.describe()} failed: {e}") from None

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        out: list[ObjectInfo] = []
        try:
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(self.root)
                for name in filenames:
                    if name.startswith("."):
                        continue  # temporary files of puts in progress (or of a crash)
                    key = name if rel == Path(".") else f"{rel.as_posix()}/{name}"
                    if key.startswith(prefix):
                        out.append(ObjectInfo(key, os.path.getsize(os.path.join(dirpath, name))))
        except OSError as e:
            raise ObjectStoreError(f"list {prefix!r} in {self.describe()} failed: {e}") from None
        out.sort(key=lambda o: o.key)
        return out

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise ObjectStoreError(f"delete {key} from {self.describe()} failed: {e}") from None
