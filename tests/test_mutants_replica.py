"""Tests written for survivors of mutation testing of ``walrelay.replica`` (scripts/mutate.py).

Each test names the bug (the mutant) it stands for; each was seen failing with that mutant
planted in a copy of the package.
"""

from __future__ import annotations

from test_replica_state import make_log
from walrelay.entry import GENESIS_CHAIN
from walrelay.replica import (
    PersistArchived,
    PersistEntries,
    PersistLogEpoch,
    PersistPromise,
    ReplicaEffect,
    ReplicaState,
    ResetToBase,
    SendAck,
    SendPromise,
    SendReject,
)
from walrelay.wire import RejectReason

PAGE = 512  # (test_replica_state.make_log's page size)

LOG = make_log(8, epoch=2)


def resets(effects: list[ReplicaEffect]) -> list[ResetToBase]:
    return [e for e in effects if isinstance(e, ResetToBase)]


def test_a_base_offer_for_an_entry_the_replica_came_to_hold_does_not_reset_its_log() -> None:
    """Bug: ``_takes_base`` not looking up whether the replica holds the offered entry (mutant
    ``self.chains.get(None)``): a replica that received the offered entry after the TRUNCATE
    would throw away its unarchived prefix (ResetToBase) instead of joining the rest."""
    state = ReplicaState(0)
    state.on_append(2, tuple(LOG[:3]), 3)
    assert state.on_truncate(5, LOG[4].chain, 3) == []  # not held yet: an offer
    assert state.base_offer == (3, 5, LOG[4].chain)
    state.on_append(2, tuple(LOG[3:5]), 5)  # epoch 2's entries 4 and 5 arrive after all
    effects = state.on_append(3, tuple(LOG[4:8]), 8)
    assert resets(effects) == []
    assert effects == [
        PersistPromise(3),
        PersistEntries(tuple(LOG[5:8])),
        PersistLogEpoch(3),
        SendAck(3, 8, LOG[7].chain, 3),
    ]
    assert sorted(state.chains) == list(range(1, 9)) and state.archived_through == 0


def test_an_empty_base_offer_of_another_epoch_does_not_reset_the_log() -> None:
    """Bug: the empty-database offer (seq 0) taken from another epoch than the one that made it
    (mutants ``e == epoch and first.seq == 1 or follows(...)`` and ``e == epoch or ...``): a
    replica that truncated its archived prefix would wipe its log for any later epoch whose first
    entry starts a log from nothing."""
    state = ReplicaState(0)
    state.on_append(2, tuple(LOG[:5]), 5)
    assert state.on_truncate(3, LOG[2].chain, 2) == [PersistArchived(3)]
    assert state.on_truncate(0, GENESIS_CHAIN, 3) == []  # epoch 3: a restore to the empty database
    assert state.base_offer == (3, 0, GENESIS_CHAIN)
    other = make_log(2, epoch=4, salt=9)  # epoch 4's log from the empty database
    effects = state.on_append(4, tuple(other), 2)
    assert resets(effects) == []
    assert state.archived_through == 3 and sorted(state.chains) == [3, 4, 5]
    # The offer of epoch 4 itself (through seq 0, the genesis chain) does start the log afresh.
    state.on_truncate(0, GENESIS_CHAIN, 4)
    effects = state.on_append(4, tuple(other), 2)
    assert resets(effects) == [ResetToBase(None)]
    assert state.last_seq == 2 and state.log_epoch == 4


def test_an_empty_base_offer_is_not_taken_by_an_entry_that_does_not_follow_its_chain() -> None:
    """Bug: the seq-0 offer of the same epoch taken whatever the first entry (mutant
    ``e == epoch or first.seq == 1 and follows(...)``): the log would be reset for a frame that
    cannot start at the offered point."""
    state = ReplicaState(0)
    state.on_append(2, tuple(LOG[:5]), 5)
    state.on_truncate(3, LOG[2].chain, 2)
    state.on_truncate(0, bytes([7]) * 16, 4)  # epoch 4's base: an empty log with another chain
    effects = state.on_append(4, tuple(make_log(2, epoch=4, salt=9)), 2)
    assert resets(effects) == []
    assert state.archived_through == 3


def test_a_stale_prepare_is_refused_naming_the_prepare() -> None:
    """Bug: the refusal of a stale PREPARE worded as something else (mutants of the ``"prepare
    for"`` argument): the primary's log and error say which message was fenced."""
    state = ReplicaState(2, promised_epoch=5)
    [reject] = state.on_prepare(4)
    assert isinstance(reject, SendReject)
    assert reject.message == "prepare for epoch 4 refused: replica 2 promised epoch 5"


def test_admit_upto_zero_does_not_admit_a_replica_holding_another_epochs_entries() -> None:
    """Bug: ADMIT(upto 0) admitting any replica (mutant ``self.last_seq == 0 or upto == 0``):
    a replica holding entries of another epoch's log would vote again although only an empty
    log is a prefix of every log."""
    state = ReplicaState(1, voter=False)
    state.on_append(2, tuple(LOG[:3]), 3)
    state.on_prepare(3)
    assert state.on_admit(3, 0) == [] and not state.voter
    empty = ReplicaState(1, promised_epoch=3, voter=False)
    assert empty.on_admit(3, 0) != [] and empty.voter


def test_a_stale_append_is_refused_naming_the_append() -> None:
    """Bug: the refusal of a stale APPEND worded as something else (mutants of the ``"append
    under"`` argument): the fenced primary's error says which message was refused."""
    state = ReplicaState(4, promised_epoch=5)
    [reject] = state.on_append(4, tuple(LOG[:2]), 2)
    assert isinstance(reject, SendReject)
    assert reject.reason is RejectReason.STALE_EPOCH
    assert reject.message == "append under epoch 4 refused: replica 4 promised epoch 5"


def test_a_reset_to_a_base_whose_next_entry_breaks_acks_the_base_under_no_log_epoch() -> None:
    """Bugs in the ResetToBase step of ``on_append`` (mutants ``archived_through = None``,
    ``log_epoch = None`` / ``= 1``): after the reset the log is no epoch's until the batch proves
    consistent, and the archived point is the base's seq. A batch that breaks right after the base
    must leave exactly that: an ACK with log epoch 0, and a PROMISE reporting the base as
    truncated-through."""
    state = ReplicaState(0, promised_epoch=2)
    state.on_append(2, tuple(make_log(3, epoch=2, salt=1)), 3)  # another branch, seqs 1-3
    assert state.on_truncate(5, LOG[4].chain, 3) == []  # epoch 3's archive holds its log through 5
    broken = make_log(1, epoch=3, salt=7, prev=bytes([9]) * 16, first=6)[0]  # does not follow LOG[4]
    effects = state.on_append(3, (LOG[4], broken), 6)
    assert effects[:3] == [PersistPromise(3), ResetToBase(LOG[4]), SendAck(3, 5, LOG[4].chain, 0)]
    assert isinstance(effects[3], SendReject) and effects[3].reason is RejectReason.DIVERGED
    assert len(effects) == 4
    assert (state.log_epoch, state.archived_through, state.chains) == (0, 5, {5: LOG[4].chain})
    [*_, promise] = state.on_prepare(3)
    assert isinstance(promise, SendPromise)
    assert (promise.promise.truncated_through, promise.promise.last_seq, promise.promise.log_epoch) == (5, 5, 0)


def test_an_empty_base_is_reset_to_nothing_and_the_whole_batch_is_persisted() -> None:
    """Bug: the seq-0 offer's base taken as the batch's first entry (mutant ``base = entries[0]
    if (...) or True``): entry 1 would be written as an archived base, never persisted as an
    entry, and reported as truncated."""
    state = ReplicaState(0, promised_epoch=4)
    state.on_append(4, tuple(LOG[:3]), 3)
    state.on_truncate(0, GENESIS_CHAIN, 5)
    other = make_log(2, epoch=5, salt=9)
    effects = state.on_append(5, tuple(other), 2)
    assert effects == [
        PersistPromise(5),
        ResetToBase(None),
        PersistEntries(tuple(other)),
        PersistLogEpoch(5),
        SendAck(5, 2, other[1].chain, 5),
    ]
    assert state.archived_through == 0


def test_a_frame_of_another_epoch_made_only_of_archived_entries_adopts_nothing() -> None:
    """Bugs in the tracking of ``consistent_through`` (mutants ``consistent_through = ""`` and
    ``e.seq if (held is not None) or True``): entries the replica archived and dropped count as
    duplicates but prove nothing about the log, so a newer epoch's frame of only those entries
    must neither adopt nor truncate (the mutants crash or cut the log at an entry not held)."""
    state = ReplicaState(0, promised_epoch=2)
    state.on_append(2, tuple(LOG[:5]), 5)
    assert state.on_truncate(3, LOG[2].chain, 2) == [PersistArchived(3)]
    effects = state.on_append(3, tuple(LOG[:2]), 2)
    assert effects == [PersistPromise(3), SendAck(3, 5, LOG[4].chain, 2)]
    assert state.log_epoch == 2 and sorted(state.chains) == [3, 4, 5]


def test_divergence_refusals_say_which_entry_and_why() -> None:
    """Bugs: the DIVERGED refusals losing their message (mutants passing ``None`` as ``why``):
    the operator's only clue to which entry diverged, and how."""
    state = ReplicaState(6, promised_epoch=2)
    state.on_append(2, tuple(LOG[:3]), 3)
    other = make_log(3, epoch=2, salt=4)
    [ack, reject] = state.on_append(2, (other[1],), 2)
    assert ack == SendAck(2, 3, LOG[2].chain, 2)
    assert isinstance(reject, SendReject) and reject.reason is RejectReason.DIVERGED
    assert reject.message == "entry seq 2 differs from the one replica 6 holds at that seq"
    stray = make_log(1, epoch=2, salt=4, prev=other[2].chain, first=4)[0]
    [ack, reject] = state.on_append(2, (stray,), 4)
    assert ack == SendAck(2, 3, LOG[2].chain, 2)
    assert isinstance(reject, SendReject) and reject.reason is RejectReason.DIVERGED
    assert reject.message == "entry seq 4 does not follow seq 3 on replica 6 (chain mismatch)"


def test_a_gap_of_one_entry_is_acked_not_refused() -> None:
    """Bug: the gap test off by one (mutant ``e.seq > self.last_seq + 2``): an entry two past the
    log's end would be checked against the last chain and refused as DIVERGED instead of the
    replica asking for the missing entry."""
    state = ReplicaState(0, promised_epoch=2)
    state.on_append(2, tuple(LOG[:3]), 3)
    assert state.on_append(2, (LOG[4],), 5) == [SendAck(2, 3, LOG[2].chain, 2)]
