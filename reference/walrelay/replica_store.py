"""A replica's durable storage for one object: an append-only entry log plus a small state file.

Layout under ``<data>/objects/<object>/``:

* ``entries.log``: records ``u32 length | entry bytes`` (entry.py format; each entry carries its
  own CRC-32 and chain hash). Appended with ``os.write`` then ``os.fdatasync`` before any ACK.
* ``state.json``: ``{"promised_epoch", "archived_through", "log_epoch", "voter"}`` with a CRC-32
  (``statefile``), replaced atomically (write temp, fsync, rename, fsync directory) because a
  promise must survive a crash; a damaged one is refused, never obeyed.

On open the log is scanned and verified. A torn or corrupt *last* record is what a crash between
write and fsync leaves; it was never acknowledged, so it is cut off. A bad record *followed by good
ones* is disk corruption of acknowledged data: opening fails with an error naming the offset,
instead of silently dropping entries.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from walrelay.entry import GENESIS_CHAIN, Entry, check_follows, decode
from walrelay.errors import ChainError, EntryFormatError, UnsupportedVersionError, WalrelayError
from walrelay.fsutil import makedirs_durably, replace_durably
from walrelay.statefile import StateFileError, read_state, write_state

_LEN = struct.Struct(">I")
OBJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StoreCorruptError(WalrelayError):
    """The replica's own log is corrupt somewhere other than a torn tail, or its state file is."""


def _u64(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise ValueError(f"{value!r} is not a u64")
    return value


def check_object_name(name: str) -> str:
    if not OBJECT_NAME.match(name):
        raise ValueError(f"object name {name!r} must match {OBJECT_NAME.pattern}")
    return name


@dataclass
class Loaded:
    promised_epoch: int
    archived_through: int
    log_epoch: int
    voter: bool
    fresh: bool  # no state.json: nothing was ever promised or stored here (or the disk was lost)
    last_seq: int
    last_chain: bytes
    chains: dict[int, bytes]
    torn_bytes_dropped: int


class ReplicaStore:
    def __init__(self, data_dir: str, object_name: str, *, compact_min_bytes: int = 1 << 20) -> None:
        """``compact_min_bytes``: drop archived entries from the file (by rewriting it) only once
        they take this much; until then they stay, harmless, behind ``archived_through``."""
        self.compact_min_bytes = compact_min_bytes
        self.dir = os.path.join(data_dir, "objects", check_object_name(object_name))
        makedirs_durably(self.dir)  # objects/ and objects/<object>/ must survive a power loss too
        self.log_path = os.path.join(self.dir, "entries.log")
        self.state_path = os.path.join(self.dir, "state.json")
        self._fd = -1
        self._offsets: dict[int, int] = {}  # seq -> byte offset of its record in entries.log
        self._size = 0

    # -- opening -------------------------------------------------------------------------------

    def load(self) -> Loaded:
        """Read state and verify the whole log; truncate a torn tail. Called once, before serving."""
        promised, archived, log_epoch, voter = 0, 0, 0, True
        fresh = not os.path.exists(self.state_path)
        if not fresh:
            try:
                st = read_state(self.state_path)
            except StateFileError as e:
                raise StoreCorruptError(f"unreadable replica state: {e}") from None
            try:
                promised, archived = _u64(st["promised_epoch"]), _u64(st["archived_through"])
                log_epoch, voter = _u64(st["log_epoch"]), st["voter"]
                if not isinstance(voter, bool):
                    raise TypeError(f"voter is {voter!r}, not true/false")
            except (ValueError, KeyError, TypeError) as e:
                raise StoreCorruptError(f"unreadable replica state: {self.state_path}: {e}") from None
        chains: dict[int, bytes] = {}
        last_seq, last_chain = 0, GENESIS_CHAIN
        good_end = 0
        data = b""
        if os.path.exists(self.log_path):
            with open(self.log_path, "rb") as f:
                data = f.read()
        off = 0
        while off < len(data):
            bad: str | None = None
            entry: Entry | None = None
            if off + 4 > len(data):
                bad = "torn length prefix"
            else:
                (n,) = _LEN.unpack_from(data, off)
                if off + 4 + n > len(data):
                    bad = "torn record"
                else:
                    try:
                        entry = decode(data[off + 4 : off + 4 + n], what=f"{self.log_path} @ {off}")
                        if entry.seq != last_seq + 1 and last_seq != 0:
                            raise ChainError(f"seq {entry.seq} after {last_seq}")
                        if last_seq != 0:
                            check_follows(entry, last_chain)
                    except UnsupportedVersionError as e:
                        raise StoreCorruptError(
                            f"{e}; this log was written by another walrelay version, refusing to truncate it"
                        ) from None
                    except (EntryFormatError, ChainError) as e:
                        bad = str(e)
            if bad is not None:
                if self._any_valid_record_after(data, off + 1):
                    raise StoreCorruptError(
                        f"{self.log_path}: corrupt record at byte {off} ({bad}) followed by valid records; "
                        "refusing to start rather than drop acknowledged entries"
                    )
                break
            assert entry is not None
            last_seq, last_chain = entry.seq, entry.chain
            chains[entry.seq] = entry.chain
            self._offsets[entry.seq] = off
            off += 4 + _LEN.unpack_from(data, off)[0]
            good_end = off
        torn = len(data) - good_end
        if torn:
            with open(self.log_path, "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = good_end
        return Loaded(promised, archived, log_epoch, voter, fresh, last_seq, last_chain, chains, torn)

    @staticmethod
    def _any_valid_record_after(data: bytes, start: int) -> bool:
        """Is there a decodable entry record anywhere after ``start``? (distinguishes torn tail from rot)"""
        i = data.find(b"WRLE", start)
        while i != -1:
            if i >= 4:
                (n,) = _LEN.unpack_from(data, i - 4)
                if i + n <= len(data):
                    try:
                        decode(data[i : i + n])
                        return True
                    except EntryFormatError:
                        pass
            i = data.find(b"WRLE", i + 1)
        return False

    # -- writing (blocking; the node runs these in a worker thread) -----------------------------

    def append_durably(self, entries: tuple[Entry, ...]) -> None:
        off = self._size
        for e in entries:
            self._offsets[e.seq] = off
            off += 4 + len(e.raw)
        buf = b"".join(_LEN.pack(len(e.raw)) + e.raw for e in entries)
        view = memoryview(buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fdatasync(self._fd)
        self._size = off

    def truncate_after(self, keep_through: int) -> None:
        """Drop every entry after ``keep_through``, durably (a divergent suffix a newer epoch replaces)."""
        cut = self._offsets.get(keep_through + 1)
        if cut is None:
            return  # nothing held after keep_through
        os.ftruncate(self._fd, cut)
        os.fsync(self._fd)
        for seq in [s for s in self._offsets if s > keep_through]:
            del self._offsets[seq]
        self._size = cut

    def drop_through(self, through: int) -> bool:
        """Drop archived entries before ``through`` from the file (``through`` and the last entry stay).

        The rest is written to a new file, fsynced and renamed over the old one, so a crash leaves
        one of the two whole. Done only when the dropped part is worth it (``compact_min_bytes``).
        Returns whether the file was rewritten.
        """
        if not self._offsets:
            return False
        # The entry at ``through`` stays (its chain links the next entry, also after a restart),
        # and so does the last entry (it says where the log ends).
        keep_from = min(through, max(self._offsets))
        cut = self._offsets.get(keep_from)
        if cut is None or cut == 0 or cut < self.compact_min_bytes:
            return False
        with open(self.log_path, "rb") as f:
            f.seek(cut)
            rest = f.read()
        os.close(self._fd)
        replace_durably(self.log_path, rest)
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND, 0o644)
        self._offsets = {seq: off - cut for seq, off in self._offsets.items() if seq >= keep_from}
        self._size -= cut
        return True

    def reset_to(self, base: Entry | None) -> None:
        """The log becomes this one entry (a newer epoch's archived base), or empty, atomically."""
        os.close(self._fd)
        data = _LEN.pack(len(base.raw)) + base.raw if base is not None else b""
        replace_durably(self.log_path, data)
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND, 0o644)
        self._offsets = {base.seq: 0} if base is not None else {}
        self._size = len(data)

    def save_state(self, promised_epoch: int, archived_through: int, log_epoch: int = 0, voter: bool = True) -> None:
        state = {
            "promised_epoch": promised_epoch,
            "archived_through": archived_through,
            "log_epoch": log_epoch,
            "voter": voter,
        }
        write_state(self.state_path, state)

    def read_entries(self, from_seq: int) -> list[Entry]:
        """Entries with seq >= from_seq that the file still holds, verified (FETCH during recovery)."""
        out: list[Entry] = []
        with open(self.log_path, "rb") as f:
            data = f.read()
        off = 0
        while off + 4 <= len(data):
            (n,) = _LEN.unpack_from(data, off)
            e = decode(data[off + 4 : off + 4 + n], what=f"{self.log_path} @ {off}")
            if e.seq >= from_seq:
                out.append(e)
            off += 4 + n
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
