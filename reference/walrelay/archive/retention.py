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

Deletions never leave an archive that verify calls broken, even if retention stops half way: it
first writes a **floor** (the branch starts at the kept snapshot from now on, manifest.py), then
deletes snapshots, segments and manifests below it, oldest first, then older floors; a superseded
branch first gets a **retired** mark. Anything below a floor may be present or absent.

The grace period is what keeps retention from racing a restore: a restore that started up to
``grace`` ago targets a point at or after ``now - window - grace``, so its snapshot and segments are
all kept. A restore that runs longer than the grace may find an object gone: it then fails naming
the missing object, it never produces a wrong database (restore verifies everything it reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from walrelay.archive.format import decode_snapshot, parse_bookmark, parse_key
from walrelay.archive.manifest import Floor, Vouched, retired_json, retired_key
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
    delete: list[str] = field(default_factory=list)  # in the order they go
    floor: Floor | None = None  # written before anything is deleted


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
        # A floor with no segment left: a pass that kept the branch's last entry (and may have
        # stopped before deleting the older floors); its window is still found on its snapshots.
        p = reader.seq_for_time(horizon, b.branch) if b.segments or b.floors else 0
    except ArchiveError:
        return RetentionPlan(horizon, 0, None)  # older than anything left, or unknown: delete nothing
    older = [(key, seq) for key, seq in b.snapshots if seq <= p]
    if not older:
        return RetentionPlan(horizon, p, None)  # no snapshot before the window yet: keep everything
    keep_key, keep_seq = older[-1]
    snaps = [key for key, seq in b.snapshots if seq < keep_seq]
    segs = [key for key, k in b.segments if k.last <= keep_seq]
    manifests: list[str] = []
    for key, _, _ in b.manifests:  # in key order; one that still vouches for kept objects ends the scan
        if reader.manifest(key).through >= keep_seq:
            break
        manifests.append(key)
    floors = [key for key, seq in b.floors if seq < keep_seq]
    if not (snaps or segs or manifests or floors):
        return RetentionPlan(horizon, p, (keep_key, keep_seq))
    data = reader.store.get(keep_key)
    snap = decode_snapshot(data, what=keep_key)
    floor = Floor(b.branch, keep_seq, snap.chain, snap.timestamp_us, Vouched.of(keep_key, data))
    return RetentionPlan(horizon, p, (keep_key, keep_seq), [*snaps, *segs, *manifests, *floors], floor)


def plan_superseded(
    reader: ArchiveReader,
    *,
    now_us: int,
    window_us: int = DEFAULT_WINDOW_US,
    grace_us: int = DEFAULT_GRACE_US,
) -> list[str]:
    """The objects of branches that stopped being current before the window (and the grace)
    began, and of orphans that can no longer complete; never the current branch's, never a
    ``branch.json``. Applying it writes each superseded branch's retired mark first."""
    horizon = now_us - window_us - grace_us
    listing = reader.listing()
    current = reader.current_branch(listing)
    records = {b: reader.record(bl) for b, bl in listing.branches.items() if bl.record_key is not None}
    doomed: list[str] = []
    for b, bl in sorted(listing.branches.items()):
        if b == current:
            continue
        if b != GENESIS_BRANCH and bl.record_key is None and not bl.manifests and not bl.segments:
            if any(o > b for o in records):
                doomed += [key for key, _ in bl.snapshots]
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
            whole = [key for key, _ in bl.segments] + [key for key, _ in bl.snapshots]
            whole += [key for key, _, _ in bl.manifests] + [key for key, _ in bl.floors]
            if whole:
                doomed += [retired_key(reader.object_name, b), *whole]
    return doomed


def apply_retention(reader: ArchiveReader, plan: RetentionPlan) -> int:
    """Write the floor, then delete the planned objects in order (snapshots, segments and
    manifests below the floor, oldest first, then older floors). At every moment the archive
    verifies: below the floor, objects may be there or not."""
    if plan.floor is not None:
        reader.store.put(plan.floor.key(reader.object_name), plan.floor.to_json())
    for key in plan.delete:
        reader.store.delete(key)
    return len(plan.delete)


def apply_superseded(reader: ArchiveReader, keys: list[str]) -> int:
    """Retire superseded branches: the retired mark first (it is in the list, before the branch's
    objects), then the objects; a ``branch.json`` stays."""
    n = 0
    for key in keys:
        k = parse_key(key)
        if k.kind == "retired":
            reader.store.put(key, retired_json(k.branch))
        else:
            reader.store.delete(key)
            n += 1
    return n
