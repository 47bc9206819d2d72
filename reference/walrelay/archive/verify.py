"""``walrelay archive verify``: every object decodes, nothing the archive says it holds is missing,
the log has no gap, overlapping segments agree, and every snapshot is exactly the database the log
produces at its seq.

One pass per branch: read and decode every object (trailers, entry CRCs and chains, manifests,
floors, the branch record); check that every object a manifest or floor vouches for is there with
the bytes it vouched for, that every manifest's predecessor is there, that the branch's first
snapshot is there (seq 0, its fork point, or its retention floor), and that nothing lies beyond
the recorded end unrecorded; then replay the log from the first snapshot to its end, checking each
entry's database checksum and comparing the image with every later snapshot, page for page, and
each snapshot's time and page size with its entry's (restore by time reads snapshots' times, a
restore replays from a snapshot in its page size). Last, across branches: every superseded branch
reaches the undo point recorded by the restore that left it. Each problem names its object, and a
missing object also names the points it makes unrestorable (docs/archive-format.md §7, §10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from walrelay.archive.format import (
    ArchiveFormatError,
    Segment,
    Snapshot,
    bookmark,
    branch_record_key,
    parse_bookmark,
    parse_key,
    snapshot_key,
)
from walrelay.archive.manifest import Floor, Manifest, check_retired, digest
from walrelay.archive.reader import ArchiveError, ArchiveReader, BranchListing
from walrelay.archive.store import ObjectNotFoundError
from walrelay.branching import GENESIS_BRANCH, BranchRecord, BranchRecordError
from walrelay.entry import Entry, follows
from walrelay.errors import ChainError
from walrelay.replay import Replayer


@dataclass
class BranchSummary:
    branch: int
    snapshots: int
    segments: int
    first_snapshot: int | None
    end: int  # last seq reachable from the first snapshot
    first_ts: int | None = None
    last_ts: int | None = None
    parent: int | None = None  # where a restore branch forked from (its branch.json)
    fork_seq: int | None = None
    undo_bookmark: str | None = None
    orphan: bool = False  # a restore that never completed: a fork snapshot and no record
    retired: bool = False  # superseded long enough ago: retention deleted its objects, not its record
    manifests: int = 0
    recorded_through: int | None = None  # the end its manifests record
    floor: int | None = None  # retention's floor: the branch starts at its snapshot here
    walked: bool = False  # the log was replayed (no problem stopped the branch's check first)


@dataclass
class VerifyReport:
    object_name: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not a problem
    branches: list[BranchSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(reader: ArchiveReader) -> VerifyReport:
    listing = reader.listing()
    report = VerifyReport(reader.object_name)
    report.problems += [f"{key}: not an archive object key" for key in listing.foreign]
    if not listing.branches:
        report.problems.append(f"no archive objects for {reader.object_name!r} in {reader.store.describe()}")
    records: dict[int, BranchRecord] = {}
    for b in sorted(listing.branches.values(), key=lambda b: b.branch):
        _BranchCheck(reader, b, report, records).run()
    _check_superseded_ends(reader, report, records)
    return report


def _iso(us: int | None) -> str:
    if us is None:
        return "?"
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class _BranchCheck:
    def __init__(
        self, reader: ArchiveReader, b: BranchListing, report: VerifyReport, records: dict[int, BranchRecord]
    ) -> None:
        self.reader, self.b, self.report, self.records = reader, b, report, records
        self.summary = BranchSummary(b.branch, len(b.snapshots), len(b.segments), None, 0, manifests=len(b.manifests))
        report.branches.append(self.summary)
        self.problems: list[str] = []
        self.sizes: dict[str, tuple[int, str]] = {}  # key -> (size, digest) of what is there
        self.segments: dict[str, Segment] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.manifests: dict[str, Manifest] = {}
        self.floors: dict[str, Floor] = {}

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def _read(self, key: str) -> bytes | None:
        try:
            data = self.reader.store.get(key)
        except ObjectNotFoundError:
            self.problem(f"{key}: listed but gone (deleted while verify ran?)")
            return None
        self.sizes[key] = (len(data), digest(data))
        return data

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.report.problems += self.problems

    def _run(self) -> None:
        b, reader, s = self.b, self.reader, self.summary
        obj = reader.object_name
        self._decode_all()
        rec: BranchRecord | None = None
        exists = bool(b.manifests or b.segments or b.floors or b.retired_key)
        if b.branch == GENESIS_BRANCH and b.record_key is not None:
            self.problem(f"{b.record_key}: the genesis branch has no branch record")
        if b.branch != GENESIS_BRANCH:
            if b.record_key is None:
                if exists:
                    self.problem(
                        f"{branch_record_key(obj, b.branch)}: missing: branch {b.branch} has manifests or segments "
                        "but no branch.json (deleted, or the primary that made the branch stopped before writing it, "
                        "and the next one writes it); its history before its fork cannot be resolved"
                    )
                else:
                    s.orphan = True  # its restore stopped before the branch existed: never read
                    return
            else:
                try:
                    rec = reader.record(b)
                except (BranchRecordError, ArchiveFormatError, ArchiveError) as bad:
                    self.problem(str(bad))
                    return
                assert rec is not None
                self.records[b.branch] = rec
                s.parent, s.fork_seq, s.undo_bookmark = rec.parent, rec.fork_seq, rec.undo_bookmark
                if not b.manifests and not b.retired_key:
                    self.problem(
                        f"{b.record_key}: branch {b.branch} has no manifest: its first manifest, written before "
                        "its branch.json, is missing"
                    )
        if b.retired_key is not None:
            s.retired = True  # retention deletes the rest; what is left must still decode
            return
        if self.problems:
            return
        floor = max(self.floors.values(), key=lambda f: f.seq, default=None)
        s.floor = floor.seq if floor else None
        base = floor.seq if floor else 0 if b.branch == GENESIS_BRANCH else rec.fork_seq if rec else None
        self._check_vouched(floor)
        recorded = max([m.through for m in self.manifests.values()] + ([floor.seq] if floor else []), default=None)
        s.recorded_through = recorded
        if base is not None and snapshot_key(obj, b.branch, base) not in self.snapshots:
            why = (
                "the retention floor's snapshot"
                if floor
                else "the genesis snapshot"
                if b.branch == GENESIS_BRANCH
                else "the fork snapshot its branch.json implies"
            )
            key = snapshot_key(obj, b.branch, base)
            if not any(key in p for p in self.problems):
                self.problem(f"{key}: missing: {why}; {self._unrestorable(base, base)}")
        if self.problems:
            return
        if not self.snapshots:
            if self.segments:
                self.problem(f"branch {b.branch} of {obj!r} has segments but no snapshot to start from")
            return
        self._walk(rec, floor, recorded, base)

    def _decode_all(self) -> None:
        b, reader = self.b, self.reader
        for key, _ in b.segments:
            data = self._read(key)
            if data is not None:
                try:
                    self.segments[key] = reader.segment_from(key, data)
                except ArchiveFormatError as bad:
                    self.problem(str(bad))
        for key, _ in b.snapshots:
            data = self._read(key)
            if data is not None:
                try:
                    self.snapshots[key] = reader.snapshot_from(key, data)
                except ArchiveFormatError as bad:
                    self.problem(str(bad))
        for key, _, _ in b.manifests:
            try:
                self.manifests[key] = reader.manifest(key)
            except (ArchiveFormatError, ArchiveError) as bad:
                self.problem(str(bad))
        for key, _ in b.floors:
            try:
                self.floors[key] = reader.floor(key)
            except (ArchiveFormatError, ArchiveError) as bad:
                self.problem(str(bad))
        if b.retired_key is not None:
            data = self._read(b.retired_key)
            if data is not None:
                try:
                    check_retired(data, b.branch, what=b.retired_key)
                except ArchiveFormatError as bad:
                    self.problem(str(bad))

    def _check_vouched(self, floor: Floor | None) -> None:
        """Every object a manifest or the floor vouches for is there, with those bytes, unless
        retention retired it (below the floor); every manifest's predecessor is there too."""
        below = floor.seq if floor else None
        for mkey, m in sorted(self.manifests.items()):
            retired = below is not None and m.prev_through is not None and m.prev_through < below
            if m.prev is not None and m.prev not in self.manifests and not retired:
                self.problem(
                    f"{m.prev}: missing: the manifest {mkey} follows it (it vouched for uploads through seq "
                    f"{m.prev_through})"
                )
            for o in m.objects:
                self._check_one(o.key, o.size, o.blake2b, mkey, below)
        if floor is not None:
            o = floor.snapshot
            self._check_one(o.key, o.size, o.blake2b, floor.key(self.reader.object_name), None)

    def _check_one(self, key: str, size: int, b2: str, voucher: str, below: int | None) -> None:
        try:
            k = parse_key(key)
        except ArchiveFormatError:
            self.problem(f"{voucher}: vouches for {key!r}, which is not an archive key")
            return
        if k.branch != self.b.branch or k.object_name != self.reader.object_name:
            self.problem(f"{voucher}: vouches for {key}, an object of another branch or object")
            return
        if key in self.sizes:
            if self.sizes[key] != (size, b2):
                self.problem(f"{key}: not the object {voucher} vouched for (size or BLAKE2b digest differs)")
            return
        if below is not None and (
            (k.kind == "segment" and k.last <= below) or (k.kind == "snapshot" and k.first < below)
        ):
            return  # retention deleted it: below the floor, no restore in the window needs it
        if k.kind == "segment":
            where = self._unrestorable(k.first, k.last)
        elif k.kind == "snapshot":
            where = self._unrestorable(k.first, k.first)
        else:
            where = "no point depends on it alone"
        self.problem(f"{key}: missing (vouched for by {voucher}); {where}")

    def _unrestorable(self, first: int, last: int) -> str:
        """The points a missing object (holding seqs first..last, or the snapshot at first) makes
        unrestorable: from ``first`` up to the next snapshot at or after ``last`` (the same rule for
        a one-entry segment: a snapshot at its seq holds its state, so nothing is lost)."""
        b = self.b
        later = [seq for key, seq in b.snapshots if seq >= last and key in self.snapshots]
        until = later[0] - 1 if later else None
        if until is not None and until < first:
            return f"nothing becomes unrestorable: the snapshot at {bookmark(b.branch, later[0])} holds its state"
        ts = {e.seq: e.timestamp_us for seg in self.segments.values() for e in seg.entries}
        for snap in self.snapshots.values():  # a snapshot's time bounds the range when its entry is gone too
            if snap.seq:
                ts.setdefault(snap.seq, snap.timestamp_us)
        span = f"bookmarks {bookmark(b.branch, first)} .. " + (
            bookmark(b.branch, until) if until is not None else "the branch's end"
        )
        t0, t1 = ts.get(first - 1), ts.get(until + 1) if until is not None else None
        times = f" (times from {_iso(t0)}" + (f" to before {_iso(t1)})" if t1 is not None else " on)")
        return f"cannot be restored: {span}{times if t0 is not None else ''}"

    def _walk(self, rec: BranchRecord | None, floor: Floor | None, recorded: int | None, base_seq: int | None) -> None:
        """Replay from the branch's first snapshot (below a floor, what retention has not deleted
        yet is not read: a crash in the middle of a retention pass leaves it half deleted)."""
        b, s, obj = self.b, self.summary, self.reader.object_name
        first_key = b.snapshots[0][0] if base_seq is None else snapshot_key(obj, b.branch, base_seq)
        base = self.snapshots[first_key]
        s.first_snapshot = base.seq
        if floor is not None and base.seq == floor.seq and base.chain != floor.chain:
            self.problem(f"{first_key}: its chain is not the one its retention floor records")
            return
        if rec is not None:
            if base.seq < rec.fork_seq:
                self.problem(f"{first_key}: a snapshot before its branch's fork at seq {rec.fork_seq}")
                return
            if base.seq == rec.fork_seq and base.chain != rec.fork_chain:
                self.problem(f"{first_key}: its chain is not the fork chain its branch.json records")
                return
        # Every entry by seq, from all segments; overlapping segments must agree.
        by_seq: dict[int, tuple[str, Entry]] = {}
        for key, seg in self.segments.items():
            if seg.last <= base.seq:
                continue  # wholly before the first snapshot (retention deletes it)
            for e in seg.entries:
                held = by_seq.get(e.seq)
                if held is not None and held[1].chain != e.chain:
                    self.problem(f"{key}: seq {e.seq} differs from the same seq in {held[0]}")
                    return
                by_seq.setdefault(e.seq, (key, e))
        held = by_seq.get(base.seq)
        if base.seq and held is not None and held[1].timestamp_us != base.timestamp_us:
            self.problem(self._wrong_time(first_key, base, held[1]))
            return
        replayer: Replayer | None = None  # made at the first entry: the empty genesis has no page size
        seq, chain = base.seq, base.chain
        snap_at = {snap.seq: (k, snap) for k, snap in self.snapshots.items()}
        while seq + 1 in by_seq:
            key, e = by_seq[seq + 1]
            if not follows(e, chain):
                self.problem(f"{key}: entry seq {e.seq} does not follow seq {seq} (chain)")
                return
            try:
                if replayer is None:
                    page = base.page_size if base.image else e.page_size
                    replayer = Replayer(base.image, page, last_seq=base.seq, last_chain=base.chain)
                replayer.apply(e)
            except ChainError as err:
                self.problem(f"{key}: {err}")
                return
            seq, chain = e.seq, e.chain
            if s.first_ts is None:
                s.first_ts = e.timestamp_us
            s.last_ts = e.timestamp_us
            if seq in snap_at:
                skey, snap = snap_at[seq]
                if snap.chain != chain:
                    self.problem(f"{skey}: its chain is not the log's at seq {seq}")
                    return
                if snap.timestamp_us != e.timestamp_us:
                    self.problem(self._wrong_time(skey, snap, e))
                    return
                if snap.image and snap.page_size != e.page_size:
                    self.problem(
                        f"{skey}: its page size {snap.page_size} is not the log's at seq {seq} ({e.page_size})"
                    )
                    return
                if replayer is None or bytes(replayer.image) != snap.image:
                    self.problem(f"{skey}: not the database the log produces at seq {seq}")
                    return
        s.end, s.walked = seq, True
        beyond = sorted(k for k, seg in self.segments.items() if seg.first > seq + 1)
        if beyond:
            self.problem(
                f"{beyond[0]}: after a gap (the log ends at seq {seq}, seq {seq + 1} is missing); "
                f"{self._unrestorable(seq + 1, self.segments[beyond[0]].first - 1)}"
            )
        late = sorted(k for k, snap in self.snapshots.items() if snap.seq > seq)
        early = [k for k, snap in self.snapshots.items() if snap.seq < base.seq]
        if late:
            self.problem(f"{late[0]}: a snapshot beyond the end of the archived log (seq {seq})")
        if recorded is not None and seq < recorded and not beyond:
            by = max((m for m in self.manifests.values()), key=lambda m: m.through)
            self.problem(
                f"branch {b.branch} of {obj!r}: its manifests record the log through seq {recorded} "
                f"({by.key(obj)}), but no segment holds seq {seq + 1}; {self._unrestorable(seq + 1, recorded)}"
            )
        # Unrecorded objects: beyond the recorded end they are a problem (a crash between an upload
        # and its manifest, which the next primary repairs, or a deleted manifest); below it, a
        # stopped primary's late upload that duplicates what is recorded, checked above like the rest.
        vouched = {o.key for m in self.manifests.values() for o in m.objects}
        vouched |= {f.snapshot.key for f in self.floors.values()}
        end = recorded if recorded is not None else -1
        for key, seg in sorted(self.segments.items()):
            if key not in vouched and seg.last > base.seq:
                self._unvouched(key, seg.last > end, end)
        for key, snap in sorted(self.snapshots.items()):
            if key not in vouched and key not in early:
                self._unvouched(key, snap.seq > end, end)

    @staticmethod
    def _wrong_time(key: str, snap: Snapshot, e: Entry) -> str:
        """A snapshot's time is its entry's: restore by time takes a snapshot for its seq at its time."""
        return (
            f"{key}: its time {_iso(snap.timestamp_us)} is not the log's at seq {snap.seq} ({_iso(e.timestamp_us)}): "
            "a restore by time would answer with it at the wrong times"
        )

    def _unvouched(self, key: str, beyond: bool, end: int) -> None:
        if beyond:
            self.problem(
                f"{key}: unrecorded: no manifest vouches for it, and it lies beyond the end its manifests record "
                f"(seq {max(end, 0)}): the primary stopped between uploading it and its manifest (the next primary "
                "records it; if one is running now, verify again), or its manifest was deleted"
            )
        else:
            self.report.notes.append(
                f"{key}: no manifest vouches for it (a stopped primary's late upload, or its manifest was lost); "
                "it agrees with the log, and no restore depends on it"
            )


def _check_superseded_ends(reader: ArchiveReader, report: VerifyReport, records: dict[int, BranchRecord]) -> None:
    """A restore archived the branch it left through its end (the undo point) before it forked:
    that end is recorded in the new branch's branch.json, so a missing tail of a superseded branch
    is found even though no later manifest of that branch names it."""
    summaries = {s.branch: s for s in report.branches}
    for child, rec in sorted(records.items()):
        ub, us = parse_bookmark(rec.undo_bookmark)
        s = summaries.get(ub)
        if s is None:
            report.problems.append(
                f"{branch_record_key(reader.object_name, child)}: its undo bookmark {rec.undo_bookmark} names branch "
                f"{ub}, which has no objects in the archive"
            )
            continue
        if s.retired or not s.walked or (s.floor is not None and us < s.floor):
            continue
        if s.end < us:
            report.problems.append(
                f"branch {ub} of {reader.object_name!r} ends at seq {s.end}, but the restore that left it recorded "
                f"its end at {rec.undo_bookmark} ({branch_record_key(reader.object_name, child)}): seqs {s.end + 1}.."
                f"{us} are missing; cannot be restored: bookmarks {bookmark(ub, s.end + 1)} .. {rec.undo_bookmark}"
            )
