"""The primary's output gate: a reply leaves only once its writes are on a quorum of replica disks.

The properties run a simulated cluster (tests/simcluster.py) under a Hypothesis-chosen schedule of
message deliveries, drops, duplicates, partial replica I/O, crashes, clock jumps and stale-epoch
acks, and check the gate against ground truth (the simulated disks), never against PrimaryState's
own bookkeeping. The unit tests below pin single rules: config validation, which acks count,
fencing, and timestamps.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcluster import PAGE_SIZE, Sim, Step, batch_limits, schedules
from walrelay.capture import Commit
from walrelay.entry import GENESIS_CHAIN
from walrelay.errors import ObjectResetError
from walrelay.primary import (
    FailReply,
    OpenInputGate,
    PrimaryConfig,
    PrimaryEffect,
    PrimaryState,
    ReleaseReply,
    ResetObject,
    SendAdmit,
    SendEntries,
    SendTruncate,
)
from walrelay.wire import Promise, RejectReason

QUORUM = 3
seeds = st.integers(0, 2**32 - 1)


def run_sim(
    seed: int, schedule: list[Step], max_batch_bytes: int = 8 * 1024 * 1024, *, zombie: bool = False, **kw: int
) -> Sim:
    sim = Sim(seed=seed, quorum=QUORUM, max_batch_bytes=max_batch_bytes, zombie=zombie, **kw)
    sim.run(schedule)
    return sim


def assert_gate(sim: Sim) -> None:
    for rec in sim.releases:
        for s, holders in enumerate(rec.holders, start=1):
            assert len(holders) >= QUORUM, (
                f"reply {rec.token} (seq {rec.seq}) released while seq {s} was on the disks of "
                f"replicas {sorted(holders)} only"
            )


# -- the gate against ground truth --------------------------------------------------------------


@given(seeds, schedules(), batch_limits, st.booleans())
def test_release_only_when_every_earlier_entry_is_on_a_quorum_of_disks(
    seed: int, schedule: list[Step], max_batch: int, zombie: bool
) -> None:
    sim = run_sim(seed, schedule, max_batch, zombie=zombie)
    assert_gate(sim)
    sim.heal()
    assert_gate(sim)
    assert not sim.ack_violations


@given(seeds, schedules(), batch_limits, st.booleans(), st.sampled_from([10**15, 3_000_000]))
def test_each_reply_has_exactly_one_outcome_and_releases_come_in_seq_order(
    seed: int, schedule: list[Step], max_batch: int, zombie: bool, deadline: int
) -> None:
    sim = run_sim(seed, schedule, max_batch, zombie=zombie, deadline_us=deadline)
    sim.heal()
    released = sim.released_tokens
    failed = sim.failed_tokens
    assert len(released) == len(set(released)), f"a reply was released twice: {released}"
    assert len(failed) == len(set(failed)), f"a reply was failed twice: {failed}"
    assert not set(released) & set(failed), "a reply was both released and failed"
    # Holds come in seq order, so releases come in hold (token) order with seqs non-decreasing.
    assert released == sorted(released)
    seqs = [rec.seq for rec in sim.releases]
    assert seqs == sorted(seqs)
    # Once everything healed, no reply is left without an outcome; failures only come from a reset.
    assert sorted(released + failed) == [h.token for h in sim.holds]
    assert not failed or sim.resets
    if deadline == 10**15 and not zombie:
        assert not sim.resets


@given(seeds, schedules(), batch_limits)
def test_every_held_reply_is_released_once_all_faults_heal(seed: int, schedule: list[Step], max_batch: int) -> None:
    sim = run_sim(seed, schedule, max_batch)
    sim.heal()
    assert sim.resets == []
    assert sorted(sim.released_tokens) == [h.token for h in sim.holds]
    assert not sim.primary.held
    assert sim.primary.durable_seq == sim.primary.last_seq
    # And every replica caught up with exactly the primary's log.
    for r, disk in enumerate(sim.disks):
        assert [e.chain for e in disk.entries.values()] == [sim.log[s].chain for s in sorted(sim.log)], r
        if sim.log:
            assert disk.promised_epoch == sim.primary.epoch


@given(seeds, schedules(), batch_limits)
def test_reply_held_at_an_already_durable_seq_is_released_at_once(
    seed: int, schedule: list[Step], max_batch: int
) -> None:
    sim = run_sim(seed, schedule, max_batch)
    sim.read()  # at least one read that depends on the last write
    sim.heal()
    sim.read()  # after healing, everything is durable
    for h in sim.holds:
        if h.seq <= h.durable_before:
            assert h.effects == (ReleaseReply(h.token),)
        else:
            assert h.effects == ()
    assert sim.holds[-1].effects == (ReleaseReply(sim.holds[-1].token),)


@given(seeds, schedules(max_steps=60), st.integers(1, 4))
def test_deadline_reset_fails_held_replies_and_never_releases_them(
    seed: int, schedule: list[Step], extra_writes: int
) -> None:
    deadline = 3_000_000
    sim = run_sim(seed, schedule, deadline_us=deadline)
    # Cut everyone off, write once more, and let the deadline pass: the primary must reset.
    sim.partition()
    pending = sim.write()
    sim.advance(deadline + 1)
    assert sim.resets, "the deadline passed with an entry on no replica, yet the primary did not reset"
    assert pending in sim.failed_tokens
    released_before_reset = set(sim.released_tokens)
    refusals_before = sim.commit_refusals
    # Replies held after the reset fail at once, and commits are refused.
    late = [sim.write() for _ in range(extra_writes)] + [sim.read()]
    for tok in late:
        hold = next(h for h in sim.holds if h.token == tok)
        assert hold.was_reset
        assert len(hold.effects) == 1
        assert isinstance(hold.effects[0], FailReply)
    assert sim.commit_refusals - refusals_before == extra_writes
    with pytest.raises(ObjectResetError):
        sim.primary.primary_commit(Commit({1: bytes(PAGE_SIZE)}, 1, PAGE_SIZE, 0), now_us=0, wall_us=0)
    # Heal everything: nothing is released any more.
    sim.heal()
    assert set(sim.released_tokens) == released_before_reset
    assert not any(rec.after_reset for rec in sim.releases)
    # Every reply has exactly one outcome, and the gate held for those released before the reset.
    outcomes = sim.released_tokens + sim.failed_tokens
    assert sorted(outcomes) == [h.token for h in sim.holds]
    assert_gate(sim)
    assert sim.resets[0].startswith("seq ") or "not durable" in sim.resets[0]
    assert len(sim.resets) == 1


# -- unit tests: config ---------------------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "quorum"), [(5, 2), (4, 2), (3, 1), (5, 0), (5, 6), (2, 1)])
def test_config_rejects_a_quorum_that_is_not_a_majority(replicas: int, quorum: int) -> None:
    with pytest.raises(ValueError, match="quorum"):
        PrimaryConfig(epoch=1, replicas=replicas, quorum=quorum)


@pytest.mark.parametrize(("replicas", "quorum"), [(5, 3), (5, 5), (4, 3), (3, 2), (1, 1)])
def test_config_accepts_a_majority_quorum(replicas: int, quorum: int) -> None:
    assert PrimaryConfig(epoch=1, replicas=replicas, quorum=quorum).quorum == quorum


@pytest.mark.parametrize("epoch", [0, -1])
def test_config_rejects_epoch_below_one(epoch: int) -> None:
    with pytest.raises(ValueError, match="epoch"):
        PrimaryConfig(epoch=epoch)


# -- unit tests: which acks count -----------------------------------------------------------------


def commit(n: int = 1) -> Commit:
    return Commit({1: bytes([n % 256]) * PAGE_SIZE}, 1, PAGE_SIZE, n)


FOREIGN = bytes(range(16))  # a chain no entry of these tests has


def connect(
    p: PrimaryState,
    r: int,
    *,
    stored_through: int = 0,
    chain: bytes = GENESIS_CHAIN,
    log_epoch: int = 0,
    voter: bool = True,
    epoch: int | None = None,
) -> list[PrimaryEffect]:
    """The PROMISE that answers the PREPARE a primary sends on each new connection."""
    promise = Promise(p.epoch if epoch is None else epoch, log_epoch, stored_through, chain, 0, voter)
    return p.on_connected(r, promise, now_us=0)


def ack(
    p: PrimaryState,
    r: int,
    seq: int,
    *,
    epoch: int | None = None,
    chain: bytes | None = None,
    log_epoch: int | None = None,
) -> list[PrimaryEffect]:
    """An ACK of ``seq``: by default under the primary's epoch (promised and adopted), with its chain."""
    if chain is None:
        chain = p.chains.get(seq, p.last_chain)
    epoch = p.epoch if epoch is None else epoch
    return p.on_ack(
        r, epoch=epoch, stored_through=seq, chain=chain, log_epoch=epoch if log_epoch is None else log_epoch, now_us=10
    )


def primary_with_held(epoch: int = 3, writes: int = 2) -> PrimaryState:
    p = PrimaryState(PrimaryConfig(epoch=epoch))
    for r in range(5):
        connect(p, r)
    for i in range(1, writes + 1):
        entry, _ = p.primary_commit(commit(i), now_us=i, wall_us=i)
        assert p.hold(100 + i, entry.seq) == []
    return p


def test_acks_under_an_older_epoch_never_count() -> None:
    p = primary_with_held(epoch=3)
    for r in range(5):
        # Even with this primary's own chains: the epoch alone disqualifies them.
        assert ack(p, r, 2, epoch=2) == []
        assert ack(p, r, 1, epoch=1) == []
    assert p.match == [0] * 5
    assert p.durable_seq == 0
    assert len(p.held) == 2
    # The same acks under this primary's epoch do count, and release both replies in order.
    effects = [eff for r in range(3) for eff in ack(p, r, 2)]
    assert effects == [ReleaseReply(101), ReleaseReply(102)]
    assert p.durable_seq == 2


def test_acks_of_our_log_held_under_another_log_epoch_never_count() -> None:
    """Same entries, same chain, promised our epoch, but not adopted: a later recovery would rank
    this replica by its older log epoch, so it cannot be part of our quorum (docs/failover.md)."""
    p = primary_with_held(epoch=3, writes=2)
    for r in range(5):
        assert ack(p, r, 2, log_epoch=2) == []
        assert ack(p, r, 2, log_epoch=0) == []
    assert p.match == [0] * 5 and p.durable_seq == 0
    assert [eff for r in range(3) for eff in ack(p, r, 2)] == [ReleaseReply(101), ReleaseReply(102)]


def test_acks_beyond_last_seq_never_count() -> None:
    p = primary_with_held(epoch=3, writes=2)
    for r in range(5):
        assert ack(p, r, 3, chain=p.last_chain) == []
        assert ack(p, r, 2**63, chain=p.last_chain) == []
    assert p.match == [0] * 5
    assert p.durable_seq == 0
    assert [tok for _, tok in p.held] == [101, 102]


def test_acks_carrying_another_logs_chain_never_count() -> None:
    p = primary_with_held(epoch=3, writes=2)
    for r in range(5):
        assert ack(p, r, 2, chain=FOREIGN) == []
        assert ack(p, r, 2, chain=p.chains[1]) == []  # a chain of ours, but not the one at seq 2
    assert p.match == [0] * 5
    assert p.durable_seq == 0
    assert p.replica_status()[0]["note"]
    assert [eff for r in range(3) for eff in ack(p, r, 2)] == [ReleaseReply(101), ReleaseReply(102)]


def test_acks_need_distinct_replicas() -> None:
    p = primary_with_held(epoch=3, writes=1)
    for _ in range(5):
        assert ack(p, 0, 1) == []
        assert ack(p, 1, 1) == []
    assert p.durable_seq == 0
    assert ack(p, 4, 1) == [ReleaseReply(101)]


def test_a_quorum_must_cover_every_earlier_entry() -> None:
    p = primary_with_held(epoch=3, writes=2)
    # Three replicas hold seq 1, but only two hold seq 2: only the first reply may go.
    assert ack(p, 0, 2) == []
    assert ack(p, 1, 2) == []
    assert ack(p, 2, 1) == [ReleaseReply(101)]
    assert p.durable_seq == 1
    assert ack(p, 2, 2) == [ReleaseReply(102)]


def test_a_lower_ack_after_a_higher_one_changes_nothing() -> None:
    p = primary_with_held(epoch=3, writes=2)
    for r in range(2):
        ack(p, r, 2)
    ack(p, 2, 1)
    assert p.durable_seq == 1
    assert ack(p, 0, 1) == []  # cumulative: a late, lower ack does not lower match
    assert p.match[:3] == [2, 2, 1]


def test_ack_from_a_future_epoch_fences_the_primary() -> None:
    p = primary_with_held(epoch=3)
    effects = ack(p, 0, 1, epoch=4)
    assert [type(e) for e in effects] == [FailReply, FailReply, ResetObject]
    assert {e.token for e in effects if isinstance(e, FailReply)} == {101, 102}
    assert p.reset_reason is not None and "fenced" in p.reset_reason


def test_reject_stale_epoch_with_higher_promise_resets_and_fails_held_replies() -> None:
    p = primary_with_held(epoch=3)
    effects = p.on_reject(0, reason=RejectReason.STALE_EPOCH, promised_epoch=4, message="promised 4")
    fails = [e for e in effects if isinstance(e, FailReply)]
    assert sorted(e.token for e in fails) == [101, 102]
    assert isinstance(effects[-1], ResetObject)
    assert p.reset_reason is not None and "fenced" in p.reset_reason
    # Fenced for good: acks that would have made it durable release nothing, new holds fail.
    for r in range(5):
        assert ack(p, r, 2) == []
    assert p.durable_seq == 0
    assert p.hold(200, 2) == [FailReply(200, p.reset_reason)]
    assert p.hold(201, 0) == [FailReply(201, p.reset_reason)]
    with pytest.raises(ObjectResetError):
        p.primary_commit(commit(), now_us=20, wall_us=20)
    assert p.reset("again") == []  # resetting twice fails nothing twice


def test_a_promise_no_allocator_issued_counts_its_replica_as_down_and_fences_nothing() -> None:
    """R-7.3-3 (spec: Believable, FencedOnlyByIssued). A REJECT or an ACK naming an epoch above
    every issued one comes from a corrupt replica: the primary must not reset (one replica would
    stop the object); it counts that replica as down, with a note for ``__status__``. At exactly
    the highest issued epoch it is a newer primary's, and fences as before."""
    p = primary_with_held(epoch=3)
    assert p.on_reject(0, reason=RejectReason.STALE_EPOCH, promised_epoch=2**64 - 1, message="x", issued=3) == []
    assert p.reset_reason is None and not p.connected[0] and p.impossible == {0: 2**64 - 1}
    note = p.replica_status()[0]["note"]
    assert note == (
        f"promised epoch {2**64 - 1}, but the highest epoch issued is 3: its state is corrupt; counted as down "
        "(repair it as after a lost disk)"
    )
    p.on_disconnected(1)
    assert p.on_ack(1, epoch=5, stored_through=2, chain=p.chains[2], log_epoch=5, now_us=9, issued=4) == []
    assert p.reset_reason is None and p.impossible == {0: 2**64 - 1, 1: 5}
    for r in (2, 3, 4):
        ack(p, r, 2)
    assert p.durable_seq == 2 and not p.held  # the three others still make writes durable
    connect(p, 0)  # repaired: it promised this epoch again
    assert p.impossible == {1: 5} and p.replica_status()[0]["note"] is None
    [*_, reset] = p.on_reject(2, reason=RejectReason.STALE_EPOCH, promised_epoch=4, message="x", issued=4)
    assert isinstance(reset, ResetObject) and "fenced: replica 2 promised epoch 4 > 3" in reset.reason
    q = primary_with_held(epoch=3)
    [*_, reset] = q.on_ack(0, epoch=4, stored_through=1, chain=q.chains[1], log_epoch=4, now_us=9, issued=4)
    assert isinstance(reset, ResetObject) and q.reset_reason is not None


def test_reject_that_does_not_prove_fencing_only_disconnects_that_replica() -> None:
    p = primary_with_held(epoch=3)
    assert p.on_reject(0, reason=RejectReason.STALE_EPOCH, promised_epoch=3, message="x") == []
    assert p.on_reject(1, reason=RejectReason.DIVERGED, promised_epoch=5, message="x") == []
    assert p.reset_reason is None
    assert p.connected[:2] == [False, False]
    assert len(p.held) == 2


def test_a_promise_for_another_epoch_is_not_counted() -> None:
    p = primary_with_held(epoch=3)
    p.on_disconnected(2)
    assert connect(p, 2, epoch=2) == []
    assert not p.connected[2] and p.replica_status()[2]["note"]


def test_a_promise_of_another_log_is_repaired_from_the_oldest_retained_entry() -> None:
    p = primary_with_held(epoch=3, writes=2)
    p.on_disconnected(0)
    effects = connect(p, 0, stored_through=2, chain=FOREIGN, log_epoch=2)
    assert p.match[0] == 0 and p.connected[0]
    sends = [eff for eff in effects if isinstance(eff, SendEntries)]
    assert [(tuple(e.seq for e in eff.entries), eff.log_end, eff.whole) for eff in sends] == [((1, 2), 2, True)]


def test_a_promise_of_our_prefix_under_an_older_log_epoch_counts_nothing_until_adopted() -> None:
    """It cannot count: a later recovery ranks it by its older log epoch (docs/failover.md). The
    rest of our log goes out in one frame through our log end, so the replica adopts it."""
    p = primary_with_held(epoch=3, writes=2)
    p.on_disconnected(1)
    effects = connect(p, 1, stored_through=1, chain=p.chains[1], log_epoch=2)
    assert p.match[1] == 0 and p.connected[1]
    sends = [eff for eff in effects if isinstance(eff, SendEntries)]
    assert [(tuple(e.seq for e in eff.entries), eff.log_end) for eff in sends] == [((2,), 2)]
    # Identical through our log end: the last entry is resent, so the frame is consistent with it.
    p.on_disconnected(2)
    effects = connect(p, 2, stored_through=2, chain=p.chains[2], log_epoch=2)
    sends = [eff for eff in effects if isinstance(eff, SendEntries)]
    assert [(tuple(e.seq for e in eff.entries), eff.log_end) for eff in sends] == [((2,), 2)]
    assert p.match[2] == 0


def test_a_promise_under_our_own_epoch_counts_in_full() -> None:
    p = primary_with_held(epoch=3, writes=2)
    for r in range(3):
        p.on_disconnected(r)
    effects = [eff for r in range(3) for eff in connect(p, r, stored_through=2, chain=p.chains[2], log_epoch=3)]
    assert [eff for eff in effects if isinstance(eff, ReleaseReply)] == [ReleaseReply(101), ReleaseReply(102)]
    assert p.match[:3] == [2, 2, 2]


def test_another_log_under_our_own_epoch_resets_the_primary() -> None:
    """Two primaries with one epoch: placement is broken; serving on would risk everything."""
    p = primary_with_held(epoch=3, writes=2)
    p.on_disconnected(0)
    effects = connect(p, 0, stored_through=2, chain=FOREIGN, log_epoch=3)
    assert isinstance(effects[-1], ResetObject)
    assert p.reset_reason is not None and "issued twice" in p.reset_reason
    p2 = primary_with_held(epoch=3, writes=2)
    p2.on_disconnected(0)
    assert isinstance(connect(p2, 0, stored_through=3, chain=FOREIGN, log_epoch=3)[-1], ResetObject)


def test_non_voters_are_admitted_once_synced_and_the_gate_opens_with_a_fence_quorum_of_voters() -> None:
    """The first primary of an object (empty log) admits its fresh non-voter replicas (upto 0);
    it serves once FenceQuorum of them confirmed their vote in a new PROMISE (spec: Admit)."""
    p = PrimaryState(PrimaryConfig(epoch=1))
    effects = [eff for r in range(5) for eff in connect(p, r, voter=False)]
    assert [eff for eff in effects if isinstance(eff, SendAdmit)] == [SendAdmit(r, 0) for r in range(5)]
    assert not p.serving and not any(isinstance(eff, OpenInputGate) for eff in effects)
    voted = Promise(1, 0, 0, GENESIS_CHAIN, 0, True)
    assert p.on_promise(0, voted) == [] and p.on_promise(1, voted) == []
    assert p.on_promise(2, voted) == [OpenInputGate()]
    assert p.serving and p.on_promise(3, voted) == []


def test_a_recovering_primary_admits_only_after_its_log_is_durable() -> None:
    old = PrimaryState(PrimaryConfig(epoch=1))
    recovered = tuple(old.primary_commit(commit(i), now_us=i, wall_us=i)[0] for i in range(1, 3))
    p = PrimaryState(PrimaryConfig(epoch=2), recovered=recovered)
    for r in range(3):
        connect(p, r, stored_through=2, chain=recovered[-1].chain, log_epoch=1)
    connect(p, 3, voter=False)
    assert not p.serving
    effects = [eff for r in range(3) for eff in ack(p, r, 2)]
    assert OpenInputGate() in effects  # three voters hold the recovered log under epoch 2
    assert not any(isinstance(eff, SendAdmit) for eff in effects)  # replica 3 holds nothing yet
    assert ack(p, 3, 2) == [SendAdmit(3, 2)]
    assert ack(p, 3, 2) == []  # once per connection


def test_deadline_resets_only_after_deadline_and_fails_held_replies() -> None:
    p = PrimaryState(PrimaryConfig(epoch=1, deadline_us=1_000))
    for r in range(5):
        connect(p, r)
    entry, _ = p.primary_commit(commit(), now_us=100, wall_us=0)
    p.hold(7, entry.seq)
    assert not any(isinstance(e, (FailReply, ResetObject)) for e in p.on_tick(1_100))
    effects = p.on_tick(1_101)
    assert effects[0] == FailReply(7, p.reset_reason or "")
    assert isinstance(effects[-1], ResetObject)
    assert p.reset_reason is not None and "not durable" in p.reset_reason
    # Acks arriving after the reset never release anything.
    for r in range(5):
        assert ack(p, r, 1) == []
    assert p.hold(8, 0) == [FailReply(8, p.reset_reason)]


def test_a_recovered_log_is_not_durable_until_a_quorum_acks_it_under_the_new_epoch() -> None:
    """Spec: a new primary is "syncing" until AdvanceCommit reaches its recovered length. Replies,
    reads of the recovered state included, wait for that."""
    chain5 = bytes([5]) * 16
    p = PrimaryState(PrimaryConfig(epoch=2), last_seq=5, last_chain=chain5)
    assert p.durable_seq == 0
    assert p.hold(1, 5) == []  # a read of the recovered state
    assert p.hold(2, 0) == [ReleaseReply(2)]  # nothing before it
    entry, _ = p.primary_commit(commit(), now_us=0, wall_us=0)
    assert entry.seq == 6
    assert p.hold(3, 6) == []
    # A replica that holds the recovered prefix is recognised by its chain, but not counted.
    connect(p, 0, stored_through=5, chain=chain5, log_epoch=1)
    assert p.match[0] == 0 and p.connected[0]
    assert [eff for r in range(3) for eff in ack(p, r, 6)] == [ReleaseReply(1), ReleaseReply(3)]


def test_send_entries_goes_only_to_connected_replicas() -> None:
    p = PrimaryState(PrimaryConfig(epoch=1))
    for r in (0, 2, 4):
        connect(p, r)
    _, effects = p.primary_commit(commit(), now_us=0, wall_us=0)
    assert sorted(e.replica for e in effects if isinstance(e, SendEntries)) == [0, 2, 4]


# -- timestamps -----------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=30), st.integers(0, 2**40))
def test_timestamps_never_go_back_even_when_the_wall_clock_does(walls: list[int], start: int) -> None:
    p = PrimaryState(PrimaryConfig(epoch=1), last_timestamp_us=start)
    stamps = []
    for i, wall in enumerate(walls):
        entry, _ = p.primary_commit(commit(i), now_us=i, wall_us=wall)
        stamps.append(entry.timestamp_us)
    assert stamps == sorted(stamps)
    assert stamps[0] >= start
    # Never invented: each stamp is the wall clock of that commit or carries an earlier one forward.
    expected, hi = [], start
    for wall in walls:
        hi = max(hi, wall)
        expected.append(hi)
    assert stamps == expected


@given(seeds, schedules(max_steps=40))
def test_timestamps_monotonic_in_the_simulated_log(seed: int, schedule: list[Step]) -> None:
    sim = run_sim(seed, schedule)
    stamps = [sim.log[s].timestamp_us for s in sorted(sim.log)]
    assert stamps == sorted(stamps)
    assert sorted(sim.log) == list(range(1, len(sim.log) + 1))


def test_a_recovered_log_is_resent_under_the_new_epoch_and_then_durable() -> None:
    """After recovery the primary holds the chosen log and sends it, through its end, to every
    replica (one frame: a replica adopts another epoch's log only from a frame reaching log_end)."""
    old = PrimaryState(PrimaryConfig(epoch=1))
    recovered = tuple(old.primary_commit(commit(i), now_us=i, wall_us=1_000 + i)[0] for i in range(1, 4))
    p = PrimaryState(PrimaryConfig(epoch=4), recovered=recovered)
    assert (p.last_seq, p.last_chain, p.durable_seq) == (3, recovered[-1].chain, 0)
    assert p.hold(9, 3) == []  # a read of the recovered state waits
    sends = [eff for r in range(5) for eff in connect(p, r, stored_through=r % 3, chain=p.chains[r % 3])]  # 0: genesis
    frames = [(s.replica, tuple(e.seq for e in s.entries), s.log_end) for s in sends if isinstance(s, SendEntries)]
    # Each replica gets, in one frame, everything after the prefix it shares with us.
    assert frames == [(0, (1, 2, 3), 3), (1, (2, 3), 3), (2, (3,), 3), (3, (1, 2, 3), 3), (4, (2, 3), 3)]
    assert all(s.whole for s in sends if isinstance(s, SendEntries))
    # A new entry goes out on its own and may share frames with later ones.
    _, effects = p.primary_commit(commit(), now_us=1, wall_us=1)
    assert {(s.log_end, s.whole) for s in effects if isinstance(s, SendEntries)} == {(4, False)}
    assert [eff for r in range(3) for eff in ack(p, r, 3)] == [ReleaseReply(9), OpenInputGate()]
    # Timestamps continue from the recovered log even if this host's clock is behind.
    entry, _ = p.primary_commit(commit(), now_us=0, wall_us=5)
    assert entry.seq == 5 and entry.timestamp_us == recovered[-1].timestamp_us


def test_truncation_is_sent_only_for_a_confirmed_archive_point_and_again_on_connect() -> None:
    p = primary_with_held(epoch=3, writes=3)
    for r in range(3):
        ack(p, r, 3)
    assert p.on_archived(2) == [SendTruncate(r, 2, p.chains[2]) for r in range(5)]
    assert p.on_archived(2) == [] and p.on_archived(1) == []  # never again, never backwards
    p.on_disconnected(4)
    effects = connect(p, 4, stored_through=3, chain=p.chains[3], log_epoch=3)
    assert SendTruncate(4, 2, p.chains[2]) in effects


# -- unit tests: retransmission and the deadline (mutation survivors, issue 16) -------------------


def _resent_to(effects: list[PrimaryEffect]) -> list[int]:
    return sorted({e.replica for e in effects if isinstance(e, SendEntries)})


def test_retransmission_goes_only_to_connected_replicas_behind_without_progress_for_longer_than_retransmit() -> None:
    """1 s without progress (retransmit_us), strictly more: replicas 0-2 acknowledged everything,
    3 is behind and connected, 4 is behind but disconnected."""
    p = primary_with_held(epoch=3, writes=2)  # committed at t = 1 and 2 us; progress_at = 0
    for r in range(3):
        ack(p, r, 2)  # at t = 10 us: progress
    p.on_disconnected(4)
    limit = p.config.retransmit_us
    assert _resent_to(p.on_tick(limit)) == []  # replica 3: exactly 1 s, not more
    assert _resent_to(p.on_tick(limit + 1)) == [3]
    assert _resent_to(p.on_tick(limit + 2)) == []  # it just got them: its progress clock restarted
    assert _resent_to(p.on_tick(2 * limit + 2)) == [3]


def test_a_missed_deadline_says_which_seq_how_long_and_how_many_replicas_stored_it() -> None:
    p = primary_with_held(epoch=3, writes=2)
    ack(p, 0, 2)
    ack(p, 1, 1)  # stored seq 1 only: counts for seq 1
    deadline = p.config.deadline_us
    assert not [e for e in p.on_tick(1 + deadline) if isinstance(e, ResetObject)]  # exactly the deadline
    effects = p.on_tick(2 + deadline)
    [reset] = [e for e in effects if isinstance(e, ResetObject)]
    assert reset.reason == "seq 1 not durable after 30s: 2 of 5 replicas stored it, 3 needed"


def test_a_promise_of_another_epoch_or_from_a_lost_connection_changes_no_vote() -> None:
    p = PrimaryState(PrimaryConfig(epoch=3))
    for r in range(5):
        connect(p, r, voter=False)
    assert p.on_promise(0, Promise(2, 0, 0, GENESIS_CHAIN, 0, True)) == [] and not p.voter[0]
    p.on_disconnected(1)
    assert p.on_promise(1, Promise(3, 0, 0, GENESIS_CHAIN, 0, True)) == [] and not p.voter[1]
    p.on_promise(2, Promise(3, 0, 0, GENESIS_CHAIN, 0, True))
    assert p.voter[2]


def test_the_status_of_each_replica_has_the_documented_keys() -> None:
    """``__status__``'s replicas (docs/protocol.md 5.7, docs/conformance.md): the conformance
    harness reads connected, voter and stored_through from any implementation."""
    p = primary_with_held(epoch=3, writes=2)
    ack(p, 1, 2)
    p.on_disconnected(4)
    st = p.replica_status()
    assert st[1] == {
        "replica": 1,
        "connected": True,
        "stored_through": 2,
        "voter": True,
        "connects": 1,
        "holds_our_log": True,
        "note": None,
    }
    assert (st[4]["replica"], st[4]["connected"], st[4]["stored_through"], st[4]["holds_our_log"]) == (
        4,
        False,
        0,
        False,
    )


def test_an_entry_exactly_at_the_size_limit_is_accepted_and_one_page_more_resets_with_the_reason() -> None:
    """The limit is on the entry as encoded: 72 bytes of header and trailer plus 4 + page for
    each page (the estimate before encoding must be exact, else an entry just under the limit
    is refused, or one just over it is made and cannot be replicated)."""
    limit = 72 + 2 * (4 + PAGE_SIZE)
    p = PrimaryState(PrimaryConfig(epoch=1, max_entry_bytes=limit))
    two = Commit({1: bytes(PAGE_SIZE), 2: bytes([1]) * PAGE_SIZE}, 2, PAGE_SIZE, 5)
    entry, _ = p.primary_commit(two, now_us=1, wall_us=1)
    assert entry.size == limit and p.log_bytes == limit
    three = Commit({1: bytes(PAGE_SIZE), 2: bytes(PAGE_SIZE), 3: bytes(PAGE_SIZE)}, 3, PAGE_SIZE, 6)
    with pytest.raises(ValueError) as caught:  # the object runtime turns it into a reset
        p.primary_commit(three, now_us=2, wall_us=2)
    assert str(caught.value) == (
        f"transaction wrote 3 pages ({72 + 3 * (4 + PAGE_SIZE)} bytes as an entry), more than the "
        f"{limit}-byte entry limit: it cannot be replicated"
    )
    assert p.last_seq == 1 and p.log_bytes == limit  # nothing of it was taken
    p.reset("capture failed")
    with pytest.raises(ObjectResetError, match="object was reset: capture failed"):
        p.primary_commit(two, now_us=3, wall_us=3)


def test_the_retained_bytes_and_the_deadline_clocks_follow_the_log() -> None:
    """log_bytes is the retained entries' size; a seq's commit time is forgotten once it is
    durable (only pending seqs have a deadline), so the table does not grow with the log."""
    p = primary_with_held(epoch=3, writes=3)
    assert p.log_bytes == sum(e.size for e in p.log.values())
    for r in range(3):
        ack(p, r, 2)
    assert sorted(p.committed_at) == [3]


def test_an_ack_that_raises_nothing_is_no_progress_and_a_replica_promised_older_is_not_counted() -> None:
    p = primary_with_held(epoch=3, writes=2)
    p.on_ack(3, epoch=3, stored_through=1, chain=p.chains[1], log_epoch=3, now_us=10)
    p.on_ack(3, epoch=3, stored_through=1, chain=p.chains[1], log_epoch=3, now_us=p.config.retransmit_us)
    assert 3 in _resent_to(p.on_tick(p.config.retransmit_us + 11))  # no progress since t = 10
    # An ACK whose epoch is older than ours is never counted, whatever its log epoch says.
    q = primary_with_held(epoch=3, writes=2)
    for r in range(5):
        assert q.on_ack(r, epoch=2, stored_through=2, chain=q.chains[2], log_epoch=3, now_us=1) == []
    assert q.match == [0] * 5


def test_held_replies_out_of_order_are_refused_by_name_and_a_reset_says_why() -> None:
    p = primary_with_held(epoch=3, writes=2)
    with pytest.raises(ValueError, match=r"held replies must come in seq order \(1 after 2\)"):
        p.hold(999, 1)
    assert p.reset("operator asked") == [FailReply(101, "operator asked"), FailReply(102, "operator asked"),
                                         ResetObject("operator asked")]  # fmt: skip
