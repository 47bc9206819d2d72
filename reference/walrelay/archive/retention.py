"""Retention: delete what no restore inside the window can need (spec: Retain, RetentionKeepsWindow).

A restore to any time ``t`` in the window (``t >= now - window``) needs the newest snapshot at or
before ``bookmark_for_time(t)``'s seq, and the segments after it. All those seqs are at least
``p = bookmark_for_time(now - window - grace)``, so keeping the newest snapshot at or before ``p``
(a snapshot older than the window start), and everything after it, keeps every such restore
possible; older snapshots, and segments that end at or before the kept snapshot, can go.

The grace period is what keeps retention from racing a restore: a restore that started up to
``grace`` ago targets a point at or after ``now - window - grace``, so its snapshot and segments are
all kept. A restore that runs longer than the grace may find an object gone: it then fails naming
the missing object, it never produces a wrong database (restore verifies everything it reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from walrelay.archive.reader import ArchiveError, ArchiveReader, BranchListing

DAY_US = 86_400_000_000
DEFAULT_WINDOW_US = 30 * DAY_US
DEFAULT_GRACE_US = 3_600_000_000  # one hour


@dataclass
class RetentionPlan:
    horizon_us: int  # now - window - grace
    horizon_seq: int  # bookmark_for_time(horizon)
    keep_snapshot: tuple[str, int] | None  # (key, seq): the oldest object kept
    delete: list[str] = field(default_factory=list)


def plan_retention(
    reader: ArchiveReader,
    b: BranchListing,
    *,
    now_us: int,
    window_us: int = DEFAULT_WINDOW_US,
    grace_us: int = DEFAULT_GRACE_US,
) -> RetentionPlan:
    horizon = now_us - window_us - grace_us
    try:
        p = reader.seq_for_time(horizon, b.branch) if b.segments else 0
    except ArchiveError:
        return RetentionPlan(horizon, 0, None)  # older than anything left: nothing more to delete
    older = [(key, seq) for key, seq in b.snapshots if seq <= p]
    if not older:
        return RetentionPlan(horizon, p, None)  # no snapshot before the window yet: keep everything
    keep_key, keep_seq = older[-1]
    doomed = [key for key, seq in b.snapshots if seq < keep_seq]
    doomed += [key for key, k in b.segments if k.last <= keep_seq]
    return RetentionPlan(horizon, p, (keep_key, keep_seq), sorted(doomed))


def apply_retention(reader: ArchiveReader, plan: RetentionPlan) -> int:
    """Delete the planned objects: snapshots first, oldest first, then segments. At every moment
    the branch's first snapshot is followed by its segments, so the archive stays valid (verify,
    and a primary reading where it ends) while retention runs."""
    snapshots = [k for k in plan.delete if "/snap/" in k]
    segments = [k for k in plan.delete if "/seg/" in k]
    for key in [*snapshots, *segments]:
        reader.store.delete(key)
    return len(plan.delete)
