"""Epoch allocation: placement hands each new primary an epoch no primary had before.

Why a durable allocator and not "one more than the replicas' highest promise": a replica that lost
its disk may have carried a promise that a new primary already counted, and the other replicas may
not have promised yet, so asking them can return an epoch that is already in use. TLC finds that
trace (spec/mutants/wiped_replica_forgets_promise.cfg); docs/failover.md has the design. A replica
with no state for an object also reads ``current()``: it promises the highest epoch ever issued
(the spec's ``RejoinPromise``), because it cannot remember what it promised before.

The reference allocator is a directory shared by the processes of one host: ``<dir>/<object>.epoch``
holds the highest epoch issued (a checksummed state file, ``statefile.py``: a flipped bit there
would make the allocator issue an epoch twice, or one far ahead), updated under an exclusive
``fcntl`` lock by write-temp, fsync, rename, fsync-directory. An epoch is returned only once it is
durable, so a crash of the allocator (or of the whole host) can never lead to the same epoch being
issued twice. In production this is a small linearizable service; the protocol uses only ``allocate`` and ``current``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from walrelay.errors import WalrelayError
from walrelay.fsutil import makedirs_durably, replace_durably
from walrelay.replica_store import check_object_name
from walrelay.statefile import StateFileError, decode_state, encode_state

MAX_EPOCH = 2**64 - 1  # epochs travel as u64 (docs/protocol.md)


class PlacementError(WalrelayError):
    """The placement directory is unusable or holds something that is not an epoch."""


class EpochAllocator:
    """Issues strictly increasing epochs per object, durably, across restarts and processes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            makedirs_durably(self.directory)
        except OSError as e:
            raise PlacementError(f"placement directory {self.directory}: {e.strerror or e}") from None

    @staticmethod
    def _name(object_name: str) -> str:
        try:
            return check_object_name(object_name)
        except ValueError as e:
            raise PlacementError(str(e)) from None

    def _path(self, object_name: str) -> Path:
        return self.directory / f"{self._name(object_name)}.epoch"

    @contextlib.contextmanager
    def _locked(self, object_name: str) -> Iterator[None]:
        lock_path = self.directory / f"{self._name(object_name)}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def _read(self, object_name: str) -> int:
        path = self._path(object_name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise PlacementError(f"{path}: cannot read the epoch: {e.strerror or e}") from None
        try:
            epoch = decode_state(data, what=str(path)).get("epoch")
        except StateFileError as e:
            raise PlacementError(f"{e}; fix or restore the file by hand (docs/failover.md)") from None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= MAX_EPOCH:
            # Never guess: an allocator that silently restarted at 0 would issue old epochs again.
            raise PlacementError(
                f"{path}: holds {data[:60]!r}, not an epoch; fix or restore the file by hand (docs/failover.md)"
            )
        return epoch

    def current(self, object_name: str) -> int:
        """The highest epoch ever issued for the object (0 if none)."""
        with self._locked(object_name):
            return self._read(object_name)

    def allocate(self, object_name: str) -> int:
        """A new epoch for the object, durable before it is returned."""
        with self._locked(object_name):
            epoch = self._read(object_name) + 1
            if epoch > MAX_EPOCH:
                raise PlacementError(f"object {object_name!r}: epochs exhausted")
            replace_durably(self._path(object_name), encode_state({"epoch": epoch}))
            return epoch
