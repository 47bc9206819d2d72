"""``walrelay archive verify``: every object decodes, the log has no gap, overlapping segments
agree, and every snapshot is exactly the database the log produces at its seq.

One pass per branch: decode every object (trailers, entry CRCs and chains), then replay the log
from the branch's first snapshot to its end, checking each entry's database checksum and comparing
the image with every later snapshot, page for page. The first problem found names its object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from walrelay.archive.format import ArchiveFormatError, Segment, Snapshot
from walrelay.archive.reader import ArchiveError, ArchiveReader, BranchListing
from walrelay.branching import GENESIS_BRANCH, BranchRecordError
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


@dataclass
class VerifyReport:
    object_name: str
    problems: list[str] = field(default_factory=list)
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
    for b in sorted(listing.branches.values(), key=lambda b: b.branch):
        _verify_branch(reader, b, report)
    return report


def _verify_branch(reader: ArchiveReader, b: BranchListing, report: VerifyReport) -> None:
    summary = BranchSummary(b.branch, len(b.snapshots), len(b.segments), None, 0)
    report.branches.append(summary)
    segments: dict[str, Segment] = {}
    for key, _ in b.segments:
        try:
            segments[key] = reader.segment(key)
        except ArchiveFormatError as bad:
            report.problems.append(str(bad))
    snapshots: dict[str, Snapshot] = {}
    for key, _ in b.snapshots:
        try:
            snapshots[key] = reader.snapshot(key)
        except ArchiveFormatError as bad:
            report.problems.append(str(bad))
    rec = None
    if b.branch == GENESIS_BRANCH and b.record_key is not None:
        report.problems.append(f"{b.record_key}: the genesis branch has no branch record")
    if b.branch != GENESIS_BRANCH:
        try:
            rec = reader.record(b)
        except ArchiveError:
            if segments:
                report.problems.append(f"branch {b.branch} of {reader.object_name!r} has segments but no branch.json")
            else:
                summary.orphan = True  # its restore stopped before the branch existed: never read
        except (BranchRecordError, ArchiveFormatError) as bad:
            report.problems.append(str(bad))
            return
        if rec is not None:
            summary.parent, summary.fork_seq, summary.undo_bookmark = rec.parent, rec.fork_seq, rec.undo_bookmark
            if b.snapshots and b.snapshots[0][1] < rec.fork_seq:
                report.problems.append(
                    f"{b.snapshots[0][0]}: a snapshot before its branch's fork at seq {rec.fork_seq}"
                )
    if report.problems:
        return  # the walk below would only restate a bad object as a gap
    if not snapshots and not segments:
        summary.retired = True  # retention deleted a superseded branch; its record stays
        return
    if not snapshots:
        report.problems.append(
            f"branch {b.branch} of {reader.object_name!r} has segments but no snapshot to start from"
        )
        return
    first_key = b.snapshots[0][0]
    base = snapshots[first_key]
    summary.first_snapshot = base.seq
    if (
        summary.fork_seq is not None
        and base.seq == summary.fork_seq
        and rec is not None
        and base.chain != rec.fork_chain
    ):
        report.problems.append(f"{first_key}: its chain is not the fork chain its branch.json records")
        return
    # Every entry by seq, from all segments; overlapping segments must agree.
    by_seq: dict[int, tuple[str, Entry]] = {}
    for key, seg in segments.items():
        for e in seg.entries:
            held = by_seq.get(e.seq)
            if held is not None and held[1].chain != e.chain:
                report.problems.append(f"{key}: seq {e.seq} differs from the same seq in {held[0]}")
                return
            by_seq.setdefault(e.seq, (key, e))
    replayer: Replayer | None = None  # made at the first entry: the empty genesis has no page size
    seq, chain = base.seq, base.chain
    snap_at = {snap.seq: (k, snap) for k, snap in snapshots.items()}
    while seq + 1 in by_seq:
        key, e = by_seq[seq + 1]
        if not follows(e, chain):
            report.problems.append(f"{key}: entry seq {e.seq} does not follow seq {seq} (chain)")
            return
        try:
            if replayer is None:
                page = base.page_size if base.image else e.page_size
                replayer = Replayer(base.image, page, last_seq=base.seq, last_chain=base.chain)
            replayer.apply(e)
        except ChainError as err:
            report.problems.append(f"{key}: {err}")
            return
        seq, chain = e.seq, e.chain
        if summary.first_ts is None:
            summary.first_ts = e.timestamp_us
        summary.last_ts = e.timestamp_us
        if seq in snap_at:
            skey, snap = snap_at[seq]
            if snap.chain != chain:
                report.problems.append(f"{skey}: its chain is not the log's at seq {seq}")
                return
            if bytes(replayer.image) != snap.image:
                report.problems.append(f"{skey}: not the database the log produces at seq {seq}")
                return
    summary.end = seq
    beyond = sorted(k for k, seg in segments.items() if seg.first > seq + 1)
    if beyond:
        report.problems.append(f"{beyond[0]}: after a gap (the log ends at seq {seq}, seq {seq + 1} is missing)")
    late = sorted(k for k, s in snapshots.items() if s.seq > seq)
    if late:
        report.problems.append(f"{late[0]}: a snapshot beyond the end of the archived log (seq {seq})")
