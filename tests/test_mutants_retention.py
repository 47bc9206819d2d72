"""Retention, from the survivors of its mutation run (docs/testing.md, "Mutation testing").

One archive with four branches drives them all: the genesis branch 1 (entries 1-8 at times 1-8,
snapshots 0, 4 and 8, two manifests: through 4, then through 8), an orphan 3 (a restore that never
completed: its fork snapshot only), branch 5 (restored from branch 1's seq 8 to its seq 4; own
entries 5-10 at times 105-110, snapshots at the fork and at 7) and branch 9, the current one
(restored from branch 5's seq 10 to its seq 6; own entries 7-12 at times 207-212). Branch 1 stopped
being current at 105 (branch 5's first own entry), branch 5 at 207.

What the tests pin down is what retention deletes and what its plan says (``walrelay archive
retain`` prints the window's start, its seq and the snapshot kept); after every step, even a pass
that stopped half way, the archive verifies and every kept point restores exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archive_records import record_all
from test_restore_branches import PAGE, grow
from walrelay.archive.dir_store import DirStore
from walrelay.archive.format import branch_record_key, encode_segment, encode_snapshot, segment_key, snapshot_key
from walrelay.archive.manifest import floor_key, manifest_key, retired_key
from walrelay.archive.reader import ArchiveReader
from walrelay.archive.retention import (
    RetentionPlan,
    apply_retention,
    apply_superseded,
    plan_retention,
    plan_superseded,
)
from walrelay.archive.verify import verify
from walrelay.branching import BranchRecord
from walrelay.entry import GENESIS_CHAIN
from walrelay.errors import WalrelayError
from walrelay.pagehash import DbChecksum


class FlakyStore(DirStore):
    """A directory store whose ``flaky`` keys read back damaged after their first read (a bit
    flipped on a disk or in transit between two reads of the same object)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.flaky: dict[str, int] = {}  # key -> reads so far

    def get(self, key: str) -> bytes:
        data = super().get(key)
        if key in self.flaky:
            self.flaky[key] += 1
            if self.flaky[key] > 1:
                damaged = bytearray(data)
                damaged[len(damaged) // 2] ^= 0xFF
                return bytes(damaged)
        return data


def snap(b: int, seq: int) -> str:
    return snapshot_key("o", b, seq)


def seg(b: int, first: int, last: int) -> str:
    return segment_key("o", b, first, last)


def man(b: int, n: int) -> str:
    return manifest_key("o", b, 1, n)  # record_all writes as writer 1


class Archive:
    """The four-branch archive of the module docstring; ``images[(b, s)]`` is branch b's database
    after its entry s."""

    def __init__(self, root: Path) -> None:
        self.store = FlakyStore(str(root))
        self.reader = ArchiveReader(self.store, "o")
        store = self.store
        parent, pim = grow(b"", GENESIS_CHAIN, 1, 8, 0, seed=1)  # branch 1: seq s at time s
        child, cim = grow(pim[3], parent[3].chain, 5, 6, 100, seed=2)  # branch 5: seq s at 100 + s
        third, tim = grow(cim[1], child[1].chain, 7, 6, 200, seed=3)  # branch 9: seq s at 200 + s
        self.images = {(1, 0): b""} | {(1, s): pim[s - 1] for s in range(1, 9)}
        self.images |= {(5, s): cim[s - 5] for s in range(5, 11)} | {(9, s): tim[s - 7] for s in range(7, 13)}

        def put_snap(b: int, seq: int, ts: int, chain: bytes, img: bytes) -> None:
            store.put(snap(b, seq), encode_snapshot(b, seq, ts, chain, PAGE, img, DbChecksum.of_image(img, PAGE).value))

        store.put(snap(1, 0), encode_snapshot(1, 0, 0, GENESIS_CHAIN, PAGE, b"", 0))
        store.put(seg(1, 1, 4), encode_segment(1, tuple(parent[:4]), GENESIS_CHAIN))
        put_snap(1, 4, 4, parent[3].chain, pim[3])
        record_all(self.reader)  # manifest 1 of branch 1: through 4
        store.put(seg(1, 5, 8), encode_segment(1, tuple(parent[4:]), parent[3].chain))
        put_snap(1, 8, 8, parent[7].chain, pim[7])
        record_all(self.reader)  # manifest 2: through 8
        put_snap(3, 2, 2, parent[1].chain, pim[1])  # the orphan
        put_snap(5, 4, 4, parent[3].chain, pim[3])
        store.put(seg(5, 5, 10), encode_segment(5, tuple(child), parent[3].chain))
        put_snap(5, 7, 107, child[2].chain, cim[2])
        rec5 = BranchRecord(5, 1, 4, parent[3].chain, "00000001-0000000000000008")  # undo: branch 1 seq 8
        store.put(branch_record_key("o", 5), rec5.to_json())
        put_snap(9, 6, 106, child[1].chain, cim[1])
        store.put(seg(9, 7, 12), encode_segment(9, tuple(third), child[1].chain))
        rec9 = BranchRecord(9, 5, 6, child[1].chain, "00000005-000000000000000a")  # undo: branch 5 seq 10
        store.put(branch_record_key("o", 9), rec9.to_json())
        record_all(self.reader)
        assert verify(self.reader).ok, verify(self.reader).problems

    def plan(self, b: int, now_us: int, grace_us: int = 0) -> RetentionPlan:
        return plan_retention(self.reader, self.reader.branch(b), now_us=now_us, window_us=0, grace_us=grace_us)

    def check(self, b: int, seqs: range) -> None:
        report = verify(self.reader)
        assert report.ok, report.problems
        for s in seqs:
            assert self.reader.restore_image(s, b).image == self.images[(b, s)], f"branch {b} seq {s}"


def finish_retention_half_way(a: Archive, b: int, now_us: int, plan: RetentionPlan, stop: int) -> None:
    """A pass that wrote its floor and deleted ``plan.delete[:stop]``, then stopped (a crash): the
    next pass at the same time must plan exactly the rest."""
    assert plan.floor is not None
    a.store.put(plan.floor.key("o"), plan.floor.to_json())
    for key in plan.delete[:stop]:
        a.store.delete(key)
    rest = a.plan(b, now_us)
    assert rest.delete == plan.delete[stop:], f"after stopping at {stop}"
    assert rest.keep_snapshot == plan.keep_snapshot


def test_a_non_current_branch_is_retained_by_its_own_times_and_a_pass_that_stopped_is_finished(tmp_path: Path) -> None:
    """Retention of branch 1 while branch 9 is current (a stale primary's shipper retains the
    branch it writes): the window is found on branch 1 itself. Found by mutants that looked the
    horizon up on the current branch (an ArchiveError there: branch 1 kept everything forever).

    A pass deletes below its floor in order, snapshots, segments, manifests, older floors, and may
    stop anywhere; the next pass must finish it whichever kinds are left (mutants that planned
    nothing unless two kinds were left kept a lone segment, manifest or floor for good). The
    manifest that ends exactly at the kept snapshot stays: the next manifest names it as its
    predecessor, and verify reports it missing otherwise.

    Found while writing this (fixed in plan_retention): once a pass deleted the branch's last
    segment (its kept snapshot is at its last entry), the next pass took it for a branch with
    nothing archived yet, planned "seq 0, keep everything", and the older floor stayed for good."""
    a = Archive(tmp_path)
    first = a.plan(1, now_us=5)  # the window starts at seq 5: snapshot 4 is the one kept
    assert (first.horizon_us, first.horizon_seq, first.keep_snapshot) == (5, 5, (snap(1, 4), 4))
    assert first.delete == [snap(1, 0), seg(1, 1, 4)]
    assert first.floor is not None and first.floor.seq == 4
    finish_retention_half_way(a, 1, 5, first, 1)  # only the segment left
    assert apply_retention(a.reader, a.plan(1, now_us=5)) == 1
    a.check(1, range(4, 9))
    # Nothing left to delete: the plan still says where the window starts and what it keeps.
    assert a.plan(1, now_us=5) == RetentionPlan(5, 5, (snap(1, 4), 4))

    second = a.plan(1, now_us=8)
    assert second.delete == [snap(1, 4), seg(1, 5, 8), man(1, 1), floor_key("o", 1, 4)]
    finish_retention_half_way(a, 1, 8, second, 2)  # the first manifest and the older floor left
    finish_retention_half_way(a, 1, 8, second, 3)  # only the older floor left: no segment either
    assert apply_retention(a.reader, a.plan(1, now_us=8)) == 1
    a.check(1, range(8, 9))
    assert a.plan(1, now_us=8) == RetentionPlan(8, 8, (snap(1, 8), 8))


def test_a_window_before_anything_the_branch_holds_deletes_nothing_and_says_so(tmp_path: Path) -> None:
    """The plan ``walrelay archive retain`` prints: a horizon older than branch 9's oldest point
    (its fork snapshot at 106) has no bookmark on it (seq 0) and keeps everything; a branch that
    has archived nothing of its own yet (the orphan: a restore still running) is the same, even
    with its fork snapshot's time inside the past; and a horizon that falls in a kept segment
    below the oldest kept snapshot names its seq and keeps everything."""
    a = Archive(tmp_path)
    assert a.plan(9, now_us=50) == RetentionPlan(50, 0, None)
    assert a.plan(3, now_us=50) == RetentionPlan(50, 0, None)
    # Branch 5 retained at 108: snapshot 7 kept, its fork snapshot goes, segment 5-10 stays.
    plan = a.plan(5, now_us=108)
    assert (plan.keep_snapshot, plan.delete) == ((snap(5, 7), 7), [snap(5, 4)])
    apply_retention(a.reader, plan)
    a.check(5, range(7, 11))
    # A shipper whose clock is 2 us behind: its horizon (seq 6) has no snapshot at or before it.
    assert a.plan(5, now_us=106) == RetentionPlan(106, 6, None)


def test_a_snapshot_that_reads_back_damaged_when_its_floor_is_written_is_named(tmp_path: Path) -> None:
    """Retention reads the snapshot it keeps again to vouch for it in the floor; if that read is
    damaged the error must name the object (the shipper logs it and retries), not "snapshot" or
    "None"."""
    a = Archive(tmp_path)
    a.store.flaky[snap(1, 4)] = 0
    with pytest.raises(WalrelayError, match=re.escape(snap(1, 4) + ": checksum mismatch")):
        a.plan(1, now_us=5)
    assert a.store.flaky[snap(1, 4)] == 2  # the window search read it intact, the floor's read did not


def retire_all(a: Archive) -> list[str]:
    """Retention of branch 1 through seq 8 and branch 5 through 7 (so both have floors), then the
    superseded branches' plan at 300."""
    apply_retention(a.reader, a.plan(1, now_us=8))
    apply_retention(a.reader, a.plan(5, now_us=108))
    return plan_superseded(a.reader, now_us=300, window_us=0, grace_us=0)


EXPECTED = [
    retired_key("o", 1), snap(1, 8), man(1, 2), floor_key("o", 1, 8),
    snap(3, 2),  # the orphan: newer branches completed, its restore never can
    retired_key("o", 5), seg(5, 5, 10), snap(5, 7), man(5, 1), floor_key("o", 5, 7),
]  # fmt: skip


def test_superseded_branches_and_orphans_all_go_and_a_pass_that_stopped_anywhere_is_finished(tmp_path: Path) -> None:
    """Every superseded branch and orphan in one plan, in branch order (mutants that assigned
    instead of appending, or stopped at the orphan, kept all but the last); the genesis branch has
    no segments left after retention and is still retired whole, mark first, not taken for an
    orphan (which would delete its snapshots and leave its manifests and floor for good). A pass
    that stops after any key is finished by the next: what is left of a branch, even a lone floor,
    is retired again, and the archive verifies at every step."""
    a = Archive(tmp_path)
    doomed = retire_all(a)
    assert doomed == EXPECTED
    gone: set[str] = set()
    for i, key in enumerate(doomed):
        apply_superseded(a.reader, [key])
        if not key.endswith("retired.json"):
            gone.add(key)
        left = [k for k in doomed if k not in gone]
        expected = [
            k for k in left if not k.endswith("retired.json") or any(o.startswith(k[: -len("retired.json")]) and
                                                                     not o.endswith("retired.json") for o in left)
        ]  # fmt: skip
        assert plan_superseded(a.reader, now_us=300, window_us=0, grace_us=0) == expected, f"after {i + 1} keys"
        assert verify(a.reader).ok, (doomed[: i + 1], verify(a.reader).problems)
    a.check(9, range(7, 13))


def test_applying_a_superseded_plan_counts_every_deletion_and_no_mark(tmp_path: Path) -> None:
    """``walrelay archive retain`` and the shipper report how many objects went: the marks are
    written, not deleted."""
    a = Archive(tmp_path)
    doomed = retire_all(a)
    assert apply_superseded(a.reader, doomed) == len(EXPECTED) - 2
    assert plan_superseded(a.reader, now_us=300, window_us=0, grace_us=0) == []


def test_the_grace_delays_retiring_a_superseded_branch(tmp_path: Path) -> None:
    """Branch 5 stopped being current at 207. At 300 with no window and 100 us of grace the
    horizon is 200: branch 5 stays (a restore that started up to the grace ago may still read
    it), branch 1 (superseded at 105) goes. A grace added to the horizon instead retired branch 5."""
    a = Archive(tmp_path)
    doomed = plan_superseded(a.reader, now_us=300, window_us=0, grace_us=100)
    assert retired_key("o", 1) in doomed and retired_key("o", 5) not in doomed
    assert not [k for k in doomed if k.startswith("o/b00000005/")]
    assert plan_superseded(a.reader, now_us=308, window_us=0, grace_us=100)[-1].startswith("o/b00000005/")
