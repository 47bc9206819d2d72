"""Reading an object's archive: listing, verification, bookmarks by time, and restore images.

Works on any ``ObjectStore``. Everything read is verified before it is used: each object decodes
(its trailer, every entry's CRC and chain), segments join up by chain from a snapshot, each
snapshot agrees with the log at its seq, and a restored image is replayed entry by entry with its
database checksum checked (``replay.Replayer``). Errors name the first bad object.

Segments of one branch may overlap: a new primary continues after the end it can *see*, and a
segment its predecessor uploaded ambiguously may appear later with another cut. Overlapping
segments hold the same committed entries; verify checks that, and reading takes, at each point, the
segment that reaches furthest.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from walrelay.archive.format import (
    ArchiveFormatError,
    ArchiveKey,
    Segment,
    Snapshot,
    bookmark,
    branch_record_key,
    decode_segment,
    decode_snapshot,
    parse_bookmark,
    parse_key,
)
from walrelay.archive.manifest import Floor, Manifest
from walrelay.archive.store import ObjectNotFoundError, ObjectStore
from walrelay.branching import GENESIS_BRANCH, BranchRecord
from walrelay.entry import GENESIS_CHAIN, Entry, follows
from walrelay.errors import ChainError, WalrelayError
from walrelay.replay import Replayer


class ArchiveError(WalrelayError):
    """The archive cannot answer: a gap, a bad object, a point it does not hold."""


@dataclass
class BranchListing:
    branch: int
    segments: list[tuple[str, ArchiveKey]] = field(default_factory=list)  # sorted by (first, last)
    snapshots: list[tuple[str, int]] = field(default_factory=list)  # (key, seq), sorted by seq
    record_key: str | None = None  # branch.json (every branch but the genesis branch has one)
    manifests: list[tuple[str, int, int]] = field(default_factory=list)  # (key, writer, n), sorted
    floors: list[tuple[str, int]] = field(default_factory=list)  # (key, seq), sorted by seq
    retired_key: str | None = None
    _index: tuple[list[int], list[tuple[int, str]]] | None = field(default=None, repr=False, compare=False)

    def covering(self, seq: int) -> str | None:
        """The key of the segment holding ``seq`` that reaches furthest (ties: the greatest key),
        or None. Segments may overlap (a stale primary's uploads): of those starting at or before
        ``seq``, the one with the greatest (last, key) holds ``seq`` if any does. A binary search
        over prefix maxima: a restore across 30 days of 10-second segments (about 260,000) walks
        them all once, not once per segment."""
        if self._index is None or len(self._index[0]) != len(self.segments):
            firsts: list[int] = []
            best: list[tuple[int, str]] = []
            for key, k in self.segments:
                firsts.append(k.first)
                best.append(max(best[-1], (k.last, key)) if best else (k.last, key))
            self._index = (firsts, best)
        firsts, best = self._index
        i = bisect.bisect_right(firsts, seq) - 1
        if i < 0 or best[i][0] < seq:
            return None
        return best[i][1]


@dataclass
class Listing:
    object_name: str
    branches: dict[int, BranchListing]
    foreign: list[str]  # keys under the object's prefix that are not archive objects


def _last_true(n: int, pred: Callable[[int], bool]) -> int | None:
    """The last index in 0..n-1 where ``pred`` holds, for a ``pred`` that is true then false."""
    lo, hi = 0, n  # pred holds below lo; fails at hi and above
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo - 1 if lo > 0 else None


@dataclass(frozen=True, slots=True)
class Restored:
    """A database image right after entry ``seq`` of ``branch``."""

    branch: int
    seq: int
    chain: bytes
    timestamp_us: int
    page_size: int
    image: bytes


class ArchiveReader:
    def __init__(self, store: ObjectStore, object_name: str) -> None:
        self.store = store
        self.object_name = object_name

    # -- listing -------------------------------------------------------------------------------

    def listing(self) -> Listing:
        branches: dict[int, BranchListing] = {}
        foreign: list[str] = []
        for info in self.store.list(f"{self.object_name}/"):
            try:
                k = parse_key(info.key)
            except ArchiveFormatError:
                foreign.append(info.key)
                continue
            if k.object_name != self.object_name:
                foreign.append(info.key)
                continue
            b = branches.setdefault(k.branch, BranchListing(k.branch))
            if k.kind == "segment":
                b.segments.append((info.key, k))
            elif k.kind == "snapshot":
                b.snapshots.append((info.key, k.first))
            elif k.kind == "manifest":
                b.manifests.append((info.key, k.first, k.last))
            elif k.kind == "floor":
                b.floors.append((info.key, k.first))
            elif k.kind == "retired":
                b.retired_key = info.key
            else:
                b.record_key = info.key
        for b in branches.values():
            b.segments.sort(key=lambda s: (s[1].first, s[1].last))
            b.snapshots.sort(key=lambda s: s[1])
            b.manifests.sort(key=lambda m: (m[1], m[2]))
            b.floors.sort(key=lambda f: f[1])
        return Listing(self.object_name, branches, foreign)

    @staticmethod
    def current_branch(listing: Listing) -> int:
        """The branch the object's history continues on: the newest that exists, else the genesis
        branch. A branch exists once it has a branch record, a manifest or a segment (its first
        manifest is written once its branch is durable, before its record); a newer branch with a
        fork snapshot only is a restore that never completed (an orphan): never read as the
        history. A branch that exists without its record is *not* skipped: reading it then fails
        naming the missing record, instead of answering from an older branch."""
        done = [
            b
            for b, bl in listing.branches.items()
            if b == GENESIS_BRANCH or bl.record_key is not None or bl.manifests or bl.segments
        ]
        return max(done, default=GENESIS_BRANCH)

    def branch(self, branch: int | None = None) -> BranchListing:
        """The given branch, or the current one."""
        listing = self.listing()
        if not listing.branches:
            raise ArchiveError(f"no archive for object {self.object_name!r} in {self.store.describe()}")
        if branch is None:
            branch = self.current_branch(listing)
        if branch not in listing.branches:
            raise ArchiveError(f"object {self.object_name!r} has no branch {branch} in {self.store.describe()}")
        return listing.branches[branch]

    # -- objects -------------------------------------------------------------------------------

    def record(self, b: BranchListing) -> BranchRecord | None:
        """The branch's record (None for the genesis branch), checked against its key."""
        if b.record_key is None:
            if b.branch != GENESIS_BRANCH:
                if b.manifests or b.segments:
                    raise ArchiveError(
                        f"{branch_record_key(self.object_name, b.branch)}: missing: branch {b.branch} exists (it has "
                        "manifests or segments) but its branch.json is gone, so where its history comes from is "
                        "unknown; run walrelay archive verify"
                    )
                raise ArchiveError(
                    f"archive of {self.object_name!r} branch {b.branch} has no branch.json: a restore that never "
                    "completed (an orphan)"
                )
            return None
        try:
            data = self.store.get(b.record_key)
        except ObjectNotFoundError:
            raise ArchiveError(f"{b.record_key}: listed but gone (deleted meanwhile?)") from None
        rec = BranchRecord.from_json(data, what=b.record_key)
        if rec.branch != b.branch:
            raise ArchiveFormatError(f"{b.record_key}: records branch {rec.branch}, not what its key says")
        return rec

    def resolve(self, branch: int | None, seq: int) -> tuple[BranchListing, int]:
        """Where the state right after entry ``seq`` of ``branch`` is archived: a branch's history
        before its fork point is its parent's (followed as far back as needed)."""
        listing = self.listing()
        if not listing.branches:
            raise ArchiveError(f"no archive for object {self.object_name!r} in {self.store.describe()}")
        b = self.current_branch(listing) if branch is None else branch
        for _ in range(len(listing.branches) + 1):
            bl = listing.branches.get(b)
            if bl is None:
                raise ArchiveError(f"object {self.object_name!r} has no branch {b} in {self.store.describe()}")
            if b != GENESIS_BRANCH and bl.record_key is None:
                # No record yet (its restore stopped before writing it, or never completed): from
                # its first snapshot on the branch is self-contained, and recovery may need it there.
                if bl.snapshots and seq >= bl.snapshots[0][1]:
                    return bl, seq
                self.record(bl)  # raises: no branch.json, so no parent to read earlier seqs from
            rec = self.record(bl) if b != GENESIS_BRANCH else None
            if rec is None or seq >= rec.fork_seq:
                return bl, seq
            b = rec.parent
        raise ArchiveError(f"archive of {self.object_name!r}: branch records form a cycle")

    def restore_point_check(self, branch: int, seq: int) -> None:
        """Raise ArchiveError unless the archive can restore right after ``seq`` of ``branch``
        (a snapshot at or before it, and the branch reaching it without a gap)."""
        bl, seq = self.resolve(branch, seq)
        self.base_snapshot(bl, seq)
        end, _ = self.end(bl)
        if seq > end:
            raise ArchiveError(
                f"seq {seq} is beyond the archive's end (seq {end}) of {self.object_name!r} branch {bl.branch}"
            )

    def ends(self) -> list[tuple[int, int, bytes]]:
        """(branch, end, chain) of every branch that has a snapshot, newest branch first."""
        out = []
        for b in sorted(self.listing().branches.values(), key=lambda bl: -bl.branch):
            if b.snapshots:
                end, chain = self.end(b)
                out.append((b.branch, end, chain))
        return out

    def manifest(self, key: str) -> Manifest:
        m = Manifest.from_json(self._get(key), what=key)
        k = parse_key(key)
        if (m.branch, m.writer, m.n) != (k.branch, k.first, k.last):
            raise ArchiveFormatError(
                f"{key}: is manifest {m.n} of writer {m.writer} on branch {m.branch}, not what its key says"
            )
        return m

    def floor(self, key: str) -> Floor:
        f = Floor.from_json(self._get(key), what=key)
        k = parse_key(key)
        if (f.branch, f.seq) != (k.branch, k.first):
            raise ArchiveFormatError(f"{key}: is the floor at seq {f.seq} of branch {f.branch}, not what its key says")
        return f

    def tip(self, b: BranchListing) -> Manifest | None:
        """The branch's newest manifest (the highest writer, then number), None if it has none."""
        return self.manifest(b.manifests[-1][0]) if b.manifests else None

    def _get(self, key: str) -> bytes:
        try:
            return self.store.get(key)
        except ObjectNotFoundError:
            raise ArchiveError(f"{key}: listed but gone (deleted meanwhile?)") from None

    def segment(self, key: str) -> Segment:
        return self.segment_from(key, self._get(key))

    def snapshot(self, key: str) -> Snapshot:
        return self.snapshot_from(key, self._get(key))

    @staticmethod
    def segment_from(key: str, data: bytes) -> Segment:
        """The segment stored under ``key``: it decodes, and it is what its key says."""
        seg = decode_segment(data, what=key)
        k = parse_key(key)
        if (seg.branch, seg.first, seg.last) != (k.branch, k.first, k.last):
            raise ArchiveFormatError(
                f"{key}: holds branch {seg.branch} seqs {seg.first}..{seg.last}, not what its key says"
            )
        return seg

    @staticmethod
    def snapshot_from(key: str, data: bytes) -> Snapshot:
        """The snapshot stored under ``key``: it decodes, and it is what its key says."""
        snap = decode_snapshot(data, what=key)
        k = parse_key(key)
        if (snap.branch, snap.seq) != (k.branch, k.first):
            raise ArchiveFormatError(f"{key}: holds branch {snap.branch} seq {snap.seq}, not what its key says")
        return snap

    # -- the log -------------------------------------------------------------------------------

    def entries(self, b: BranchListing, after: int, after_chain: bytes, through: int | None = None) -> Iterator[Entry]:
        """Entries ``after + 1 ..`` (through ``through`` or the end), each following the one before,
        starting from ``after_chain``. Stops at the first gap if ``through`` is None; raises if
        ``through`` lies beyond a gap."""
        need, chain = after + 1, after_chain
        while through is None or need <= through:
            key = b.covering(need)
            if key is None:
                if through is None:
                    return
                raise ArchiveError(
                    f"archive of {self.object_name!r} branch {b.branch} has a gap: no segment holds seq {need}"
                )
            seg = self.segment(key)
            for e in seg.entries[need - seg.first :]:
                if through is not None and e.seq > through:
                    return
                if not follows(e, chain):
                    raise ArchiveFormatError(f"{key}: entry seq {e.seq} does not follow seq {e.seq - 1} of the archive")
                yield e
                need, chain = e.seq + 1, e.chain

    def entry_at(self, b: BranchListing, seq: int) -> Entry:
        """Entry ``seq`` of the branch, from a segment that holds it (checked as part of it)."""
        key = b.covering(seq)
        if key is None:
            raise ArchiveError(f"archive of {self.object_name!r} branch {b.branch} has no segment holding seq {seq}")
        seg = self.segment(key)
        return seg.entries[seq - seg.first]

    def entries_between(self, b: BranchListing, first: int, last: int) -> tuple[Entry, ...]:
        """Entries ``first..last`` of the branch, each following the one before (the first is
        checked by its segment only: the caller joins it to what it knows)."""
        head = self.entry_at(b, first)
        if last == first:
            return (head,)
        return (head, *self.entries(b, first, head.chain, through=last))

    def base_snapshot(self, b: BranchListing, seq: int) -> str:
        keys = [key for key, s in b.snapshots if s <= seq]
        if not b.snapshots and not b.segments and (b.record_key is not None or b.retired_key is not None):
            raise ArchiveError(
                f"archive of {self.object_name!r} branch {b.branch} holds nothing any more: retention deleted it "
                "(it stopped being current before the retention window)"
            )
        if not keys:
            raise ArchiveError(
                f"archive of {self.object_name!r} branch {b.branch} has no snapshot at or before seq {seq}"
            )
        return keys[-1]

    def end(self, b: BranchListing) -> tuple[int, bytes]:
        """The last seq (and its chain) reachable without a gap from the branch's first snapshot."""
        if not b.snapshots:
            return 0, GENESIS_CHAIN
        # From the newest snapshot: a snapshot is uploaded only after the segments through it.
        snap = self.snapshot(b.snapshots[-1][0])
        seq, chain = snap.seq, snap.chain
        for e in self.entries(b, seq, chain):
            seq, chain = e.seq, e.chain
        return seq, chain

    # -- restore -------------------------------------------------------------------------------

    def restore_image(self, seq: int, branch: int | None = None) -> Restored:
        """The database right after entry ``seq`` of the branch (default: the newest).

        From the newest snapshot at or before ``seq``, every later entry replayed and checked. A point
        before the branch's fork is read from its parent.
        """
        b, seq = self.resolve(branch, seq)
        snap = self.snapshot(self.base_snapshot(b, seq))
        replayer: Replayer | None = None  # made at the first entry: the empty genesis has no page size
        last: Entry | None = None
        try:
            for e in self.entries(b, snap.seq, snap.chain, through=seq):
                if replayer is None:
                    page_size = snap.page_size if snap.image else e.page_size
                    replayer = Replayer(snap.image, page_size, last_seq=snap.seq, last_chain=snap.chain)
                replayer.apply(e)
                last = e
        except ChainError as err:
            raise ArchiveError(f"archive of {self.object_name!r}: replay failed: {err}") from None
        if replayer is None or last is None:
            return Restored(b.branch, snap.seq, snap.chain, snap.timestamp_us, snap.page_size, snap.image)
        return Restored(b.branch, last.seq, last.chain, last.timestamp_us, replayer.page_size, bytes(replayer.image))

    def point_for_time(self, t_us: int, branch: int | None = None, *, past_end_ok: bool = True) -> tuple[int, int]:
        """bookmark_for_time across branches: (branch, seq) of the last entry with timestamp <= t in
        the branch's history. Before the branch's first own entry, that history is its parent's
        through the fork point (the new branch's entries all come after the restore). A time at or
        after the fork point's names the fork point as the branch's own bookmark: its fork
        snapshot holds it, so the answer does not depend on the parent (which retention may have
        deleted once it was superseded long enough ago).

        Never a guess: the answer ``s`` is proved by the archive holding entry ``s + 1`` with a
        later time, or by ``s`` being where the history ends. A gap after ``s`` is an error naming
        the missing seqs. At the archived end of the current branch, later entries may exist that
        are not archived yet: with ``past_end_ok`` False that is an error (the command line), with
        True (a primary, which checks its own log, and retention) the end is the answer."""
        listing = self.listing()
        current = self.current_branch(listing)
        b = current if branch is None else branch
        cap: tuple[int, int] | None = None  # (branch, seq): no answer beyond the nearest fork below

        def capped(b: int, seq: int) -> tuple[int, int]:
            return cap if cap is not None and seq >= cap[1] else (b, seq)

        for _ in range(len(listing.branches) + 1):
            bl = listing.branches.get(b)
            if bl is None:
                raise ArchiveError(f"object {self.object_name!r} has no branch {b} in {self.store.describe()}")
            rec = self.record(bl) if b != GENESIS_BRANCH else None
            own = self.first_own_ts(bl, rec.fork_seq) if rec is not None else None
            mine = own is not None and own <= t_us
            if rec is not None and not mine and own is not None and bl.covering(rec.fork_seq + 1) is None:
                # Retention moved the branch's floor past its fork: its first own entries are gone,
                # so when its own history began is unknown. A time at or after its oldest kept
                # snapshot is the branch's; an earlier one cannot be told from the fork's state
                # (or the parent's): going to the parent then would answer the fork point, a
                # silently wrong restore.
                kept = [key for key, seq in bl.snapshots if seq > rec.fork_seq]
                if not kept or self.snapshot(kept[0]).timestamp_us > t_us:
                    raise ArchiveError(
                        f"time {_iso(t_us)} is before the oldest point the archive of {self.object_name!r} branch "
                        f"{b} still holds{self._oldest(bl)} (retention deleted what came before)"
                    )
                mine = True
            if rec is None or mine:
                if cap is not None:
                    end: int | None = cap[1]  # the history leaves this branch at the fork below
                elif b == current:
                    end = None if not past_end_ok else -1
                else:
                    end = self.final_end(listing, b)
                return capped(b, self.seq_for_time(t_us, b, end=end))
            fork = [key for key, seq in bl.snapshots if seq == rec.fork_seq]
            if fork and (rec.fork_seq == 0 or self.snapshot(fork[0]).timestamp_us <= t_us):
                # The fork point is the answer only if the branch's first own entry is archived
                # and later than t (or the branch has none yet): a deleted first own segment
                # must not make the fork point the answer.
                self._prove(bl, rec.fork_seq, t_us, None if b == current and not past_end_ok else -1)
                return capped(b, rec.fork_seq)
            if cap is None or rec.fork_seq < cap[1]:
                cap = (b, rec.fork_seq)
            b = rec.parent
        raise ArchiveError(f"archive of {self.object_name!r}: branch records form a cycle")

    def final_end(self, listing: Listing, branch: int) -> int | None:
        """Where a superseded branch's history ended: the undo point recorded by the restore that
        left it (that restore archived it through there first). None if no restore left it."""
        ends = []
        for bl in listing.branches.values():
            if bl.record_key is not None and bl.branch > branch:
                rec = self.record(bl)
                assert rec is not None
                b, s = parse_bookmark(rec.undo_bookmark)
                if b == branch:
                    ends.append(s)
        return min(ends, default=None)

    def created_us(self, b: BranchListing) -> int | None:
        """When the branch's archive was created (the object's creation, for the genesis branch):
        recorded by the manifest that follows none. None if not recorded (retention deleted it)."""
        if not b.manifests:
            return None
        first = self.manifest(b.manifests[0][0])
        return first.created_us if first.prev is None else None

    def first_own_ts(self, bl: BranchListing, fork_seq: int) -> int | None:
        """The timestamp of the branch's first own archived entry (after its fork), if any."""
        own = [(k.first, key) for key, k in bl.segments if k.last > fork_seq]
        if not own:
            return None
        seg = self.segment(min(own)[1])
        return next((e.timestamp_us for e in seg.entries if e.seq > fork_seq), None)

    def seq_for_time(self, t_us: int, branch: int | None = None, *, end: int | None = -1) -> int:
        """bookmark_for_time's seq: the last archived entry with timestamp <= t (0: before the first).

        Timestamps never go back along the log (NextTs), so both snapshots (by seq) and segments (by
        first seq) are searched by bisection: O(log n) objects read, not all of them. Then the
        answer is proved (``_prove``); ``end``: where the branch's history is known to end (None:
        unknown, the branch goes on; -1: take the archived end as the answer).
        """
        b = self.branch(branch)
        best: int | None = None
        # A snapshot stands for its seq (retention may have deleted the segment that held it);
        # the genesis snapshot (seq 0) stands for any time before the first write.
        i = _last_true(
            len(b.snapshots), lambda k: b.snapshots[k][1] == 0 or self.snapshot(b.snapshots[k][0]).timestamp_us <= t_us
        )
        if i is not None:
            best = b.snapshots[i][1]
        j = _last_true(len(b.segments), lambda k: self.segment(b.segments[k][0]).first_ts <= t_us)
        if j is not None:
            # That segment, and any earlier one reaching further (segments of two primaries overlap).
            reach = b.segments[j][1].last
            for key, _ in [b.segments[j], *(s for s in b.segments[:j] if s[1].last > reach)]:
                seg = self.segment(key)
                best = max([best or 0, *(e.seq for e in seg.entries if e.timestamp_us <= t_us)])
        if best is None:
            raise ArchiveError(
                f"time {_iso(t_us)} is before the oldest point the archive of {self.object_name!r} branch "
                f"{b.branch} still holds{self._oldest(b)} (retention deleted what came before)"
            )
        if best == 0 and b.branch == GENESIS_BRANCH:
            created = self.created_us(b)
            if created is not None and t_us < created:
                raise ArchiveError(
                    f"time {_iso(t_us)} is before object {self.object_name!r} existed: it was created at "
                    f"{_iso(created)}, the earliest time it can be restored to"
                )
        self._prove(b, best, t_us, end)
        return best

    def _oldest(self, b: BranchListing) -> str:
        if not b.snapshots:
            return ""
        snap = self.snapshot(b.snapshots[0][0])
        return f" (seq {snap.seq} at {_iso(snap.timestamp_us)})"

    def _prove(self, b: BranchListing, s: int, t_us: int, end: int | None) -> None:
        """``s`` is the last entry at or before ``t`` only if entry ``s + 1`` is archived and later
        than ``t``, or the history ends at ``s``: a missing segment right after ``s`` must not make
        an earlier point the answer (that is a silently wrong restore)."""
        key = b.covering(s + 1)
        if key is not None:
            nxt = self.entry_at(b, s + 1)
            if nxt.timestamp_us <= t_us:  # cannot happen in an archive that verifies
                raise ArchiveError(
                    f"{key}: entry seq {s + 1} is at or before {_iso(t_us)} although an earlier segment ends at "
                    f"seq {s}: the archive's segments are inconsistent; run walrelay archive verify"
                )
            return
        if end is not None and end != -1 and s >= end:
            return
        later = [k.first for _, k in b.segments if k.first > s + 1]
        tip = self.tip(b)
        recorded = tip.through if tip is not None else 0
        if later or recorded > s:
            upto = min(later) - 1 if later else recorded
            raise ArchiveError(
                f"archive of {self.object_name!r} branch {b.branch} has a gap: no segment holds seq {s + 1} "
                f"(seqs {s + 1}..{upto} are missing), so the last entry at or before {_iso(t_us)} is unknown; "
                "run walrelay archive verify"
            )
        if end == -1:
            return
        at = self.entry_at(b, s).timestamp_us if s and b.covering(s) else None
        raise ArchiveError(
            f"time {_iso(t_us)} is after the newest archived entry of {self.object_name!r} branch {b.branch} "
            f"(seq {s}{', ' + _iso(at) if at is not None else ''}): later entries may exist that are not archived "
            f"yet, so the state at that time is unknown. Restore bookmark {bookmark(b.branch, s)} for that entry, "
            "or ask the primary (__bookmark_for_time__)"
        )


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
