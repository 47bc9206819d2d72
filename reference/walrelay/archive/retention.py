"""Retention: delete what no restore inside the window can need (spec: Retain, RetentionKeepsWindow).

A restore to any time ``t`` in the window (``t >= now - window``) needs the newest snapshot at or
before ``bookmark_for_time(t)``'s seq, and the segments after it. All those seqs are at least
``p = bookmark_for_time(now - window - grace)``, so keeping the newest snapshot at or before ``p``
(a snapshot older than the window start), and everything after it, keeps every such restore
possible; older snapshots, and segments that end at or before the kept snapshot, can go.

Branches other than the current one (docs/restore-branches.md) go whole: a branch stopped being
current when the restore that left it ran (the first own entry of the branch whose undo bookmark is
on it); once that is older than the window (and the grace), no time in the window has a state on
it (times after it resolve to fork points, which the newer branches' fork snapshots hold). Their
``branch.json`` stays: it records the history, and a bookmark on a deleted branch then fails
naming it. An orphan (a restore that never completed: no ``branch.json``) goes once a newer branch
has a record, since its restore can no longer complete (that branch's epoch fenced it).

The grace period is what keeps retention from racing a restore: a restore that started up to
``grace`` ago targets a point at or after ``now - window - grace``, so its snapshot and segments are
all kept. A restore that runs longer than the grace may find an object gone: it then fails naming
the missing object, it never produces a wrong database (restore verifies everything it reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from walrelay.archive.format import parse_bookmark
from walrelay.archive.reader import ArchiveError, ArchiveReader, BranchListing
from walrelay.branching import GENESIS_BRANCH

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


def plan_superseded(
    reader: ArchiveReader,
    *,
    now_us: int,
    window_us: int = DEFAULT_WINDOW_US,
    grace_us: int = DEFAULT_GRACE_US,
) -> list[str]:
    """The snapshots and segments of branches that stopped being current before the window (and
    the grace) began, and of orphans that can no longer complete. Never the current branch's."""
    horizon = now_us - window_us - grace_us
    listing = reader.listing()
    current = reader.current_branch(listing)
    records = {b: reader.record(bl) for b, bl in listing.branches.items() if bl.record_key is not None}
    doomed: list[str] = []
    for b, bl in sorted(listing.branches.items()):
        if b == current:
            continue
        if b != GENESIS_BRANCH and bl.record_key is None:
            if any(o > b for o in records):
                doomed += [key for key, _ in bl.segments] + [key for key, _ in bl.snapshots]
            continue
        enders = sorted(
            c for c, rec in records.items() if rec is not None and parse_bookmark(rec.undo_bookmark)[0] == b
        )
        if not enders:
            continue  # not superseded by a completed restore: keep
        ender = records[enders[0]]
        assert ender is not None
        ended = reader.first_own_ts(listing.branches[enders[0]], ender.fork_seq)
        if ended is not None and ended < horizon:  # unknown (nothing archived yet): keep
            doomed += [key for key, _ in bl.segments] + [key for key, _ in bl.snapshots]
    return doomed


def apply_retention(reader: ArchiveReader, plan: RetentionPlan) -> int:
    """Delete the planned objects: snapshots first, oldest first, then segments. At every moment
    the branch's first snapshot is followed by its segments, so the archive stays valid (verify,
    and a primary reading where it ends) while retention runs."""
    snapshots = [k for k in plan.delete if "/snap/" in k]
    segments = [k for k in plan.delete if "/seg/" in k]
    for key in [*snapshots, *segments]:
        reader.store.delete(key)
    return len(plan.delete)


def apply_superseded(reader: ArchiveReader, keys: list[str]) -> int:
    """Delete a superseded branch's objects: its segments, then its snapshots (a branch keeps its
    first snapshot until nothing after it is left), never its branch.json."""
    for key in [k for k in keys if "/seg/" in k] + [k for k in keys if "/snap/" in k]:
        reader.store.delete(key)
    return len(keys)
