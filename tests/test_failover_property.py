"""Property: failover on the real nodes keeps every acknowledged write.

The whole cluster runs in one trio run on a mock clock: five real ``ReplicaNode``s (real
``ReplicaStore`` files, disk I/O inline so the run is deterministic), real ``PrimaryNode``s with
epochs from a real ``EpochAllocator``, and clients, all over the in-memory transport with
partitions between primaries and replicas. Hypothesis draws schedules of writes, partitions,
primary crashes (at any point: with writes committed locally and sent to none, one or two
replicas), takeovers by a new primary while the old one still runs, writes to that stale
primary, replica crash/restarts and permanent disk loss (up to 2); and the nemeses of
``walrelay_chaos.schedule`` besides: one-way partitions, delayed links, resets that lose frames in
flight, abandoned connections whose late frames arrive duplicated and out of order, primary
clocks that jump, power losses that lose unsynced writes, restores whose primary crashes half way.

Checked (the set checker of Jepsen, in small): at every ``Check`` and at the end, every write
acknowledged so far is in the serving primary's database with its value, nothing appears that
was never written, and nothing reported as failed; at the end every replica holds exactly the
final primary's log (committed logs never disagree). The planted-bug tests at the bottom run
fixed schedules that the real code passes and each planted bug fails: acknowledging after 2 of 5,
no epoch check at the replica, choosing the longest log ignoring epochs.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

import walrelay.recovery as recovery_mod
from walrelay.wire import Promise
from walrelay_chaos import sim
from walrelay_chaos.mutants import MUTANTS
from walrelay_chaos.replay import replay_command, write_replay
from walrelay_chaos.schedule import (
    PAIRS,
    Bookmark,
    Bridge,
    Check,
    ClockJump,
    CrashPrimary,
    CrashReplica,
    Cut,
    Delay,
    Heal,
    LoseDisk,
    MinorityFailover,
    NewPrimary,
    OneWay,
    Op,
    Orphan,
    PairFailover,
    PowerFail,
    Reset,
    Restore,
    RestoreCrash,
    Settle,
    SplitBrain,
    StoreDown,
    StoreUp,
    Write,
    WriteStale,
)
from walrelay_chaos.sim import N, Outcomes, run_schedule, scratch_root

sim.EVENT_HOOK = lambda name: event(name) if currently_in_test_context() else None

_replica = st.integers(0, N - 1)
_mask = st.integers(1, 2**N - 1)
ops: st.SearchStrategy[Op] = st.one_of(
    st.builds(Write, st.integers(1, 4)),
    st.builds(Write, st.integers(1, 4)),
    st.builds(Settle, st.sampled_from([1, 20, 300])),
    st.builds(Settle, st.sampled_from([1, 20, 300])),
    st.builds(Cut, _mask),
    st.just(Heal()),
    st.just(CrashPrimary()),
    st.just(NewPrimary()),
    st.builds(WriteStale, st.integers(1, 2)),
    st.builds(CrashReplica, _replica),
    st.builds(LoseDisk, _replica),
    st.builds(StoreDown, st.booleans()),
    st.just(StoreUp()),
    st.just(Check()),
    st.just(Bookmark()),
    st.builds(Restore, st.integers(0, 7), st.booleans()),
    st.builds(MinorityFailover, _replica, st.integers(1, 3), st.booleans(), st.booleans()),
    st.builds(PairFailover, st.integers(0, len(PAIRS) - 1), st.integers(1, 3)),
    st.builds(SplitBrain, st.integers(1, 2)),
    st.builds(OneWay, _mask, st.booleans()),
    st.builds(Delay, _mask, st.sampled_from([5, 50, 500])),
    st.builds(Reset, _mask),
    st.builds(Orphan, _mask, st.sampled_from([20, 300, 1000])),
    st.builds(ClockJump, st.sampled_from([1, 1000, 5000, 60_000]), st.booleans()),
    st.builds(PowerFail, st.one_of(st.just(2**N - 1), _mask), st.booleans()),
    st.builds(RestoreCrash, st.integers(0, 7), st.booleans(), st.booleans()),
    st.builds(Bridge, _replica, st.integers(1, 2)),
)
schedules = st.lists(ops, min_size=1, max_size=25)


@pytest.fixture
def scratch() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        made.append(tempfile.mkdtemp(prefix="walrelay-failover-", dir=scratch_root()))
        return made[-1]

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


@given(schedules)
def test_failover_keeps_every_acknowledged_write(schedule: list[Op]) -> None:
    run_or_record(schedule, "walrelay-failover-")


def run_or_record(schedule: list[Op], prefix: str) -> Outcomes:
    """Run a schedule; if a checker fails, write the schedule to a replay file and say how to run
    it again (``$WALRELAY_CHAOS_OUT``, default the temp directory; the last failure hypothesis
    reports is its shrunk one, so the file ends up holding that)."""
    root = tempfile.mkdtemp(prefix=prefix, dir=scratch_root())
    try:
        return run_schedule(root, schedule)
    except AssertionError as e:
        where = Path(os.environ.get("WALRELAY_CHAOS_OUT", tempfile.gettempdir())) / f"{prefix}last-failure.json"
        path = write_replay(where, schedule)
        raise AssertionError(f"{e}\nreplay: {replay_command(path)}") from None
    finally:
        shutil.rmtree(root, ignore_errors=True)


_restore = st.builds(Restore, st.integers(0, 7), st.booleans())
restore_schedules = st.tuples(
    st.lists(st.one_of(ops, st.just(Bookmark()), _restore, _restore), max_size=15), _restore
).map(lambda t: [Write(2), Settle(300), Bookmark(), *t[0], t[1]])


@given(restore_schedules)
def test_restores_give_each_bookmarks_database_back_under_faults(schedule: list[Op]) -> None:
    """The same world, with bookmarks and restores (by request or at start, to bookmarks and to
    undo points) among the faults: each restore serves exactly its bookmark's database (or, for an
    undo point, every write acknowledged on the branch it ended), later checks expect what the
    restore kept and nothing it rolled back, and at the end every bookmark restores page for page."""
    run_or_record(schedule, "walrelay-restore-")


def test_the_schedules_reach_the_dangerous_cases(scratch: Callable[[], str]) -> None:
    """Not vacuous: a takeover with acknowledged writes, and writes that end up unknown."""
    out = run_schedule(
        scratch(),
        [Write(3), Settle(20), Cut(0b11100), Write(2), Settle(20), CrashPrimary(), Heal(), NewPrimary(), Check()],
    )
    assert out.ok >= {1, 2, 3} and out.unknown >= {4, 5}


# -- planted bugs: each directed schedule passes the real code and fails the planted bug ----------
# (walrelay_chaos.mutants: the same mutants `walrelay chaos mutants` runs)

PLANTED = {name: (m.plant, m.directed) for name, m in MUTANTS.items()}
RESTORE_AND_UNDO = MUTANTS["branch_number_reused"].directed


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_fixed_schedule_passes_the_real_code(scratch: Callable[[], str], name: str) -> None:
    out = run_schedule(scratch(), PLANTED[name][1])
    if name == "ack_after_2":
        assert out.unknown == {1} and not out.ok  # 2 of 5 stored it: held, never acknowledged
    else:
        assert out.ok, "the schedule acknowledged nothing: it would prove nothing"


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_property_fails_on_a_planted_bug(
    scratch: Callable[[], str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    plant, schedule = PLANTED[name]
    plant(monkeypatch)
    with pytest.raises(
        AssertionError,
        match=r"acknowledged writes missing|holds seqs|wrong values|archiv|restore|up to date|never served|"
        r"timestamps go back",
    ):
        run_schedule(scratch(), schedule)


def test_promise_type_is_what_recovery_ranks() -> None:
    """The planted longest-log bug replaces ``better``; make sure that is the ranking in use."""
    p = Promise(3, 1, 9, bytes(16), 0, True)
    q = Promise(3, 2, 1, bytes(16), 0, True)
    assert recovery_mod.better(q, p) and not recovery_mod.better(p, q)


@pytest.mark.parametrize("stored_by", [0, 1, 2])
def test_a_primary_crash_after_the_local_commit_and_before_a_quorum(scratch: Callable[[], str], stored_by: int) -> None:
    """The write is committed locally and reached ``stored_by`` replicas (0: none, between the
    local commit and the first ack) when the primary dies: its client sees no success, and after
    the takeover it is there or not, but every earlier acknowledged write is."""
    cut = (2**N - 1) & ~((1 << stored_by) - 1)  # replicas stored_by.. do not hear the write
    out = run_schedule(
        scratch(),
        [Write(2), Settle(300), Cut(cut), Write(1), Settle(300), CrashPrimary(), Heal(), NewPrimary(), Check()],
    )
    assert out.ok == {1, 2} and out.unknown == {3}


def test_a_replica_cut_off_early_is_caught_up_from_the_archive_by_a_later_primary(scratch: Callable[[], str]) -> None:
    """Found by the nightly profile: the new primary's log starts where the archive ends, so a
    replica cut off early needs entries only the archive has, and the archive's end is learnt
    only after the replica connected. It must still be caught up (PrimaryState.awaiting_archive)."""
    run_schedule(scratch(), [Check(), Write(1), Write(1), Cut(1), Settle(300), CrashPrimary()])


def test_restore_then_undo_gives_each_bookmarks_database_back(scratch: Callable[[], str]) -> None:
    out = run_schedule(scratch(), RESTORE_AND_UNDO)
    assert out.ok == {10}, "the write after the last restore, on its branch"


# -- the nemeses themselves: each does what it says (else the property above proves less) ---------


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    monkeypatch.setattr(sim, "EVENT_HOOK", lambda name: seen.update([name]))
    return seen


@pytest.mark.parametrize(
    ("schedule", "event"),
    [
        ([Write(2), Settle(20), OneWay(0b00111, True), Write(2), Settle(300), Heal()], "held frames to a replica"),
        ([Write(2), Settle(20), OneWay(0b00111, False), Write(2), Settle(300), Heal()], "held replies"),
        ([Delay(0b00111, 100), Write(3), Settle(20), Reset(0b00111), Settle(300), Heal()], "lost frames in flight"),
        (
            [Delay(0b11111, 200), Write(3), Settle(20), Orphan(0b11111, 500), Write(2), Settle(1000), Heal()],
            "frame arrived late",
        ),
    ],
    ids=["one-way-to-replicas", "one-way-from-replicas", "reset", "orphan"],
)
def test_each_network_fault_acts_and_the_real_code_keeps_every_write(
    scratch: Callable[[], str], events: collections.Counter[str], schedule: list[Op], event: str
) -> None:
    out = run_schedule(scratch(), [*schedule, Check()], seed=3)
    assert any(event in name for name in events), dict(events)
    assert out.ok and not out.failed  # healed: every write got through (late frames included)


def test_a_power_loss_keeps_exactly_what_was_fsynced(tmp_path: Path) -> None:
    disk = sim.SimDisk()
    real = os.fsync
    with disk.installed():
        with open(tmp_path / "log", "wb") as f:
            f.write(b"synced")
            f.flush()
            os.fsync(f.fileno())
            f.write(b" and not")
        (tmp_path / "never").write_bytes(b"never synced")
        (tmp_path / "whole").write_bytes(b"x")
        fd = os.open(tmp_path / "whole", os.O_RDONLY)
        os.fdatasync(fd)
        os.close(fd)
    assert os.fsync is real  # undone after the run
    assert disk.lose_unsynced(str(tmp_path)) == len(b" and not") + len(b"never synced")
    assert (tmp_path / "log").read_bytes() == b"synced" and (tmp_path / "never").read_bytes() == b""
    assert (tmp_path / "whole").read_bytes() == b"x"


def test_the_real_replica_survives_a_power_loss_of_everyone(
    scratch: Callable[[], str], events: collections.Counter[str]
) -> None:
    """It fsyncs before it acknowledges: a power loss of all five loses nothing at all."""
    out = run_schedule(scratch(), [Write(3), Settle(20), PowerFail(0b11111, primary=True), NewPrimary(), Check()])
    assert out.ok == {1, 2, 3} and "a power loss lost unsynced writes" not in events


@pytest.mark.parametrize("by_request", [True, False], ids=["by-request", "by-flag"])
@pytest.mark.parametrize("late", [False, True], ids=["early", "late"])
def test_a_restore_is_finished_by_the_next_primary_after_a_crash_half_way(
    scratch: Callable[[], str], events: collections.Counter[str], by_request: bool, late: bool
) -> None:
    schedule: list[Op] = [Write(3), Settle(3000), Bookmark(), Write(3), Settle(300), RestoreCrash(1, by_request, late)]
    out = run_schedule(scratch(), [*schedule, Write(1), Settle(300), Check()])
    crashed = [name for name in events if name.startswith("crashed mid-restore")]
    assert crashed == [f"crashed mid-restore, {'after its second epoch' if late else 'at its first checkpoint'}"]
    assert events["restored"] == 1 and out.ok == {7}  # the restored branch serves, and takes writes


def test_timestamps_never_go_back_when_clocks_jump(scratch: Callable[[], str]) -> None:
    """Ahead by a minute, then a takeover at the true time, then that clock jumps back: the final
    checks (entry timestamps never go back, bookmarks by time are exact) hold."""
    ahead: list[Op] = [ClockJump(60_000, back=False), Write(2), Settle(300), Bookmark(), CrashPrimary()]
    then: list[Op] = [NewPrimary(), Write(1), ClockJump(5000, back=True), Write(1), Settle(3000), Bookmark()]
    out = run_schedule(scratch(), [*ahead, *then])
    assert out.ok == {1, 2, 3, 4}
