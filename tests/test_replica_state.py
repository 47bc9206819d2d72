"""ReplicaState.on_append: fencing, promises, duplicates, gaps, divergence, and effect order.

The durability contract is in the order of the effects: an I/O layer that runs them in order must
have made every entry an ACK covers durable before that ACK goes out. So besides the single rules,
a property drives random APPEND sequences (retransmissions, reordering, gaps, foreign entries,
epoch changes) through one replica and replays its effects against a model disk.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from walrelay.entry import GENESIS_CHAIN, Entry, encode
from walrelay.replica import (
    PersistArchived,
    PersistEntries,
    PersistLogEpoch,
    PersistPromise,
    PersistVoter,
    ReplicaEffect,
    ReplicaState,
    SendAck,
    SendPromise,
    SendReject,
    TruncateSuffix,
)
from walrelay.replica_node import ReplicaNode
from walrelay.replica_store import ReplicaStore
from walrelay.transport import Channel, MemoryTransport
from walrelay.wire import Ack, Append, Hello, Message, Prepare, Promise, RejectReason, Role
from walrelay_chaos.pace import budget

PAGE = 512


def make_log(n: int, *, epoch: int = 1, salt: int = 0, prev: bytes = GENESIS_CHAIN, first: int = 1) -> list[Entry]:
    """``n`` chained entries from seq ``first``; a different ``salt`` gives a different log."""
    rng = random.Random(salt * 1_000_003 + epoch)
    out: list[Entry] = []
    for seq in range(first, first + n):
        e = encode(
            epoch=epoch,
            seq=seq,
            timestamp_us=seq,
            page_size=PAGE,
            db_pages=3,
            db_checksum=rng.getrandbits(64),
            frames={rng.randint(1, 3): rng.randbytes(PAGE)},
            prev_chain=prev,
        )
        out.append(e)
        prev = e.chain
    return out


LOG = make_log(8, epoch=2)


def end_of(entries: tuple[Entry, ...]) -> int:
    """The sender's log end for a batch that ends its log (the common case in these tests)."""
    return entries[-1].seq if entries else 0


def persisted(effects: list[ReplicaEffect]) -> list[int]:
    return [e.seq for eff in effects if isinstance(eff, PersistEntries) for e in eff.entries]


# -- fencing and promises -------------------------------------------------------------------------


def test_older_epoch_is_refused_with_the_promised_epoch() -> None:
    st_ = ReplicaState(4, promised_epoch=5)
    effects = st_.on_append(4, tuple(LOG[:2]), end_of(tuple(LOG[:2])))
    assert len(effects) == 1
    rej = effects[0]
    assert isinstance(rej, SendReject)
    assert rej.reason is RejectReason.STALE_EPOCH
    assert rej.promised_epoch == 5
    assert "epoch 4" in rej.message and "5" in rej.message
    # Nothing was taken: no promise, no entries, no ack.
    assert (st_.promised_epoch, st_.last_seq, st_.last_chain, st_.chains) == (5, 0, GENESIS_CHAIN, {})


def test_higher_epoch_persists_the_promise_before_the_entries_and_the_ack() -> None:
    st_ = ReplicaState(0, promised_epoch=1)
    effects = st_.on_append(2, tuple(LOG[:3]), end_of(tuple(LOG[:3])))
    assert effects == [
        PersistPromise(2),
        PersistEntries(tuple(LOG[:3])),
        PersistLogEpoch(2),  # the log is now a prefix of epoch 2's log: saved after the entries
        SendAck(2, 3, LOG[2].chain, 2),
    ]
    assert (st_.promised_epoch, st_.log_epoch) == (2, 2)
    # An empty APPEND under a still higher epoch is a promise on its own (it proves no log).
    assert st_.on_append(3, (), end_of(())) == [PersistPromise(3), SendAck(3, 3, LOG[2].chain, 2)]
    assert st_.log_epoch == 2
    # The same epoch again promises nothing new; its first entry makes the log epoch 3's.
    assert st_.on_append(3, tuple(LOG[3:4]), end_of(tuple(LOG[3:4]))) == [
        PersistEntries((LOG[3],)),
        PersistLogEpoch(3),
        SendAck(3, 4, LOG[3].chain, 3),
    ]
    assert st_.on_append(3, tuple(LOG[4:5]), end_of(tuple(LOG[4:5]))) == [
        PersistEntries((LOG[4],)),
        SendAck(3, 5, LOG[4].chain, 3),
    ]


def test_acks_carry_the_promised_epoch_not_the_entries_epoch() -> None:
    st_ = ReplicaState(0)
    old = make_log(2, epoch=1)
    effects = st_.on_append(7, tuple(old), end_of(tuple(old)))
    assert effects[-1] == SendAck(7, 2, old[1].chain, 7)


# -- duplicates and gaps --------------------------------------------------------------------------


def test_duplicates_are_acked_again_without_a_second_persist() -> None:
    st_ = ReplicaState(0)
    st_.on_append(2, tuple(LOG[:3]), end_of(tuple(LOG[:3])))
    assert st_.on_append(2, tuple(LOG[:3]), end_of(tuple(LOG[:3]))) == [SendAck(2, 3, LOG[2].chain, 2)]
    assert st_.on_append(2, (LOG[1],), end_of((LOG[1],))) == [SendAck(2, 3, LOG[2].chain, 2)]
    # A batch overlapping what is held persists only the new tail.
    assert st_.on_append(2, tuple(LOG[1:5]), end_of(tuple(LOG[1:5]))) == [
        PersistEntries(tuple(LOG[3:5])),
        SendAck(2, 5, LOG[4].chain, 2),
    ]
    assert st_.last_seq == 5


def test_gap_stops_processing_and_acks_the_last_contiguous_seq() -> None:
    st_ = ReplicaState(0, promised_epoch=2)
    effects = st_.on_append(2, (LOG[0], LOG[1], LOG[3], LOG[4]), end_of((LOG[0], LOG[1], LOG[3], LOG[4])))
    assert effects == [PersistEntries((LOG[0], LOG[1])), PersistLogEpoch(2), SendAck(2, 2, LOG[1].chain, 2)]
    assert st_.last_seq == 2
    # Only entries past the gap: nothing to persist, the ack says where the log ends.
    assert st_.on_append(2, tuple(LOG[4:7]), end_of(tuple(LOG[4:7]))) == [SendAck(2, 2, LOG[1].chain, 2)]
    # The missing entry then lets the rest in.
    assert persisted(st_.on_append(2, tuple(LOG[2:7]), end_of(tuple(LOG[2:7])))) == [3, 4, 5, 6, 7]


# -- divergence -----------------------------------------------------------------------------------


def test_entry_not_following_the_chain_is_rejected_after_the_good_prefix() -> None:
    st_ = ReplicaState(1, promised_epoch=2)
    st_.on_append(2, (LOG[0],), end_of((LOG[0],)))
    # seq 4 of another log, built on top of *our* seq 2: seqs 2, 3 follow, the foreign 4 does not.
    foreign = make_log(3, epoch=2, salt=9, prev=LOG[2].chain, first=4)
    bogus = make_log(1, epoch=2, salt=7, prev=bytes(16), first=4)[0]
    effects = st_.on_append(2, (LOG[1], LOG[2], bogus, foreign[1]), end_of((LOG[1], LOG[2], bogus, foreign[1])))
    assert effects[:2] == [PersistEntries((LOG[1], LOG[2])), SendAck(2, 3, LOG[2].chain, 2)]
    assert len(effects) == 3
    rej = effects[2]
    assert isinstance(rej, SendReject) and rej.reason is RejectReason.DIVERGED
    assert rej.promised_epoch == 2
    assert "seq 4" in rej.message
    assert (st_.last_seq, st_.last_chain) == (3, LOG[2].chain)
    # The honest seq 4 (built on our chain) still follows.
    assert persisted(st_.on_append(2, (foreign[0],), end_of((foreign[0],)))) == [4]


def test_a_newer_epochs_log_replaces_a_divergent_suffix() -> None:
    """Spec: Adopts. An entry that differs at a held seq but follows the entry before it."""
    st_ = ReplicaState(2)
    st_.on_append(2, tuple(LOG[:3]), end_of(tuple(LOG[:3])))
    other = make_log(4, epoch=3, salt=5, prev=LOG[0].chain, first=2)  # shares seq 1, differs from 2
    effects = st_.on_append(3, tuple(other), end_of(tuple(other)))
    assert effects == [
        PersistPromise(3),
        TruncateSuffix(1),
        PersistEntries(tuple(other)),
        PersistLogEpoch(3),
        SendAck(3, 5, other[3].chain, 3),
    ]
    assert st_.chains == {1: LOG[0].chain, **{e.seq: e.chain for e in other}}
    assert (st_.last_seq, st_.last_chain, st_.log_epoch) == (5, other[3].chain, 3)


def test_a_newer_epoch_drops_the_older_suffix_beyond_a_consistent_batch() -> None:
    """Entries held beyond the batch belong to the older epoch's log, not the sender's."""
    st_ = ReplicaState(0)
    st_.on_append(2, tuple(LOG[:5]), end_of(tuple(LOG[:5])))
    effects = st_.on_append(3, tuple(LOG[:3]), end_of(tuple(LOG[:3])))
    assert effects == [PersistPromise(3), TruncateSuffix(3), PersistLogEpoch(3), SendAck(3, 3, LOG[2].chain, 3)]
    assert sorted(st_.chains) == [1, 2, 3]
    # Within one epoch an old retransmission of a prefix drops nothing.
    st_.on_append(3, tuple(LOG[3:6]), end_of(tuple(LOG[3:6])))
    assert st_.on_append(3, tuple(LOG[:2]), end_of(tuple(LOG[:2]))) == [SendAck(3, 6, LOG[5].chain, 3)]


def test_a_different_entry_is_diverged_within_an_epoch_or_when_it_does_not_follow() -> None:
    st_ = ReplicaState(2)
    st_.on_append(2, tuple(LOG[:3]), end_of(tuple(LOG[:3])))
    # Same epoch: a primary's log never changes, so a different entry is an error, not a repair.
    same = make_log(2, epoch=2, salt=5, prev=LOG[0].chain, first=2)
    effects = st_.on_append(2, tuple(same), end_of(tuple(same)))
    assert effects[0] == SendAck(2, 3, LOG[2].chain, 2)  # what it holds, with its own chain
    assert isinstance(effects[1], SendReject) and effects[1].reason is RejectReason.DIVERGED
    # Newer epoch, but the entry does not follow the held entry before it: the primary must send
    # from an earlier seq (nothing is dropped on a guess).
    other = make_log(4, epoch=3, salt=5)
    effects = st_.on_append(3, tuple(other[1:]), end_of(tuple(other[1:])))
    assert effects[0] == PersistPromise(3)
    assert effects[1] == SendAck(3, 3, LOG[2].chain, 2)
    assert isinstance(effects[2], SendReject) and effects[2].reason is RejectReason.DIVERGED
    assert not persisted(effects)
    assert st_.chains == {1: LOG[0].chain, 2: LOG[1].chain, 3: LOG[2].chain}
    assert st_.log_epoch == 2


def test_a_frame_of_another_epoch_that_stops_short_of_its_log_end_changes_nothing() -> None:
    """Adopting from the first frame of a catch-up could let a later recovery prefer a log that
    is shorter than the new primary's recovered one (docs/failover.md)."""
    st_ = ReplicaState(0)
    st_.on_append(2, tuple(LOG[:3]), 3)
    other = make_log(4, epoch=3, salt=5)
    assert st_.on_append(3, tuple(other[:2]), 4) == [PersistPromise(3), SendAck(3, 3, LOG[2].chain, 2)]
    assert (st_.log_epoch, st_.last_seq, st_.last_chain) == (2, 3, LOG[2].chain)
    # The same entries in a frame that reaches the log end are adopted.
    assert persisted(st_.on_append(3, tuple(other), 4)) == [1, 2, 3, 4]
    assert st_.log_epoch == 3
    # Within the adopted epoch, frames that stop short are fine (the rest follows).
    more = make_log(2, epoch=3, salt=6, prev=other[3].chain, first=5)
    assert persisted(st_.on_append(3, (more[0],), 6)) == [5]


# -- PREPARE and ADMIT ----------------------------------------------------------------------------


def test_prepare_promises_a_higher_epoch_and_reports_the_log() -> None:
    st_ = ReplicaState(3, promised_epoch=2, voter=False)
    st_.on_append(2, tuple(LOG[:4]), end_of(tuple(LOG[:4])))
    st_.archived_through = 2
    report = SendPromise(Promise(5, 2, 4, LOG[3].chain, 2, False))
    assert st_.on_prepare(5) == [PersistPromise(5), report]
    # Asked again (the primary reconnected): the same answer, no second persist.
    assert st_.on_prepare(5) == [report]
    rej = st_.on_prepare(4)
    assert len(rej) == 1 and isinstance(rej[0], SendReject)
    assert rej[0].reason is RejectReason.STALE_EPOCH and rej[0].promised_epoch == 5
    # After the promise, the older epoch's APPEND is refused too.
    assert isinstance(st_.on_append(2, tuple(LOG[4:5]), end_of(tuple(LOG[4:5])))[0], SendReject)


def test_admit_makes_a_replica_a_voter_only_if_it_holds_that_log_through_upto() -> None:
    st_ = ReplicaState(1, voter=False)
    st_.on_append(2, tuple(LOG[:3]), end_of(tuple(LOG[:3])))
    assert st_.on_admit(2, 4) == [] and not st_.voter  # does not hold seq 4
    assert st_.on_admit(1, 0) == [] and not st_.voter  # another epoch's log
    st_.on_prepare(3)
    assert st_.on_admit(2, 3) == [] and not st_.voter  # from a fenced primary
    st_.on_append(3, tuple(LOG[:3]), end_of(tuple(LOG[:3])))
    assert st_.on_admit(3, 3) == [PersistVoter()] and st_.voter
    assert st_.on_admit(3, 3) == []  # once


def test_divergence_mid_batch_keeps_only_the_prefix_before_it() -> None:
    st_ = ReplicaState(0)
    other = make_log(3, epoch=2, salt=11)
    effects = st_.on_append(2, (LOG[0], other[1], LOG[1]), end_of((LOG[0], other[1], LOG[1])))
    assert persisted(effects) == [1]
    assert [type(e) for e in effects] == [PersistPromise, PersistEntries, SendAck, SendReject]
    assert effects[2] == SendAck(2, 1, LOG[0].chain, 0)


# -- effect order: the durability contract --------------------------------------------------------


def check_contract(calls: list[tuple[int, list[ReplicaEffect]]]) -> dict[int, bytes]:
    """Run effects in order against a model disk; every ACK must be covered by what ran before.

    ``calls`` holds, per on_append call, the replica's ``last_seq`` after it and its effects.
    Returns the model disk (seq -> chain).
    """
    disk: dict[int, bytes] = {}
    promised = 0
    for last_seq, effects in calls:
        seen_entries = False
        for eff in effects:
            if isinstance(eff, PersistPromise):
                assert not seen_entries, "a promise must come before the entries of its APPEND"
                assert eff.epoch > promised
                promised = eff.epoch
            elif isinstance(eff, TruncateSuffix):
                for seq in [q for q in disk if q > eff.keep_through]:
                    del disk[seq]
            elif isinstance(eff, PersistEntries):
                seen_entries = True
                for e in eff.entries:
                    assert e.seq not in disk, f"seq {e.seq} persisted twice"
                    assert e.seq == len(disk) + 1, f"seq {e.seq} persisted after {len(disk)}"
                    disk[e.seq] = e.chain
            elif isinstance(eff, SendAck):
                assert eff.epoch == promised, "ACK under an epoch not yet durable"
                assert eff.stored_through <= len(disk), (
                    f"ACK through {eff.stored_through} sent with only {len(disk)} entries persisted"
                )
                want = disk[eff.stored_through] if eff.stored_through else GENESIS_CHAIN
                assert eff.chain == want
            elif isinstance(eff, SendReject) and eff.reason is RejectReason.STALE_EPOCH:
                assert effects == [eff]
        assert last_seq == len(disk)
    return disk


appends = st.lists(
    st.tuples(
        st.integers(1, 4),  # epoch
        st.lists(st.integers(0, 9), max_size=6),  # indices into LOG; 8, 9: foreign entries
    ),
    min_size=1,
    max_size=25,
)
FOREIGN = make_log(2, epoch=2, salt=3)


@given(appends, st.integers(0, 3))
def test_ack_never_overtakes_the_persist_of_what_it_covers(script: list[tuple[int, list[int]]], start: int) -> None:
    state = ReplicaState(0, promised_epoch=start)
    calls: list[tuple[int, list[ReplicaEffect]]] = []
    if start:
        calls.append((0, [PersistPromise(start)]))  # what the disk said at startup
    for epoch, idx in script:
        batch = tuple(LOG[i] if i < 8 else FOREIGN[i - 8] for i in idx)
        effects = state.on_append(epoch, batch, end_of(batch))
        calls.append((state.last_seq, effects))
        assert effects, "every APPEND gets an answer"
        if epoch >= state.promised_epoch:
            assert any(isinstance(e, SendAck) for e in effects)
    disk = check_contract(calls)
    assert state.chains == disk
    # What was persisted is one log: a prefix of LOG, or of the foreign log if its seq 1 came first.
    logs = [{e.seq: e.chain for e in log[: state.last_seq]} for log in (LOG, FOREIGN)]
    assert disk in logs


# -- the node reports only durable state ----------------------------------------------------------


async def _answer_while_an_append_fsyncs(tmp_path: Path, *, prepare: bool) -> tuple[Message | None, bool]:
    """A primary reconnects while the replica still fsyncs the old connection's APPEND of seq 1.

    Returns the replica's answer on the new connection (its HELLO, or with ``prepare`` the PROMISE
    to a PREPARE) and whether the fsync had finished when that answer arrived.
    """
    transport = MemoryTransport()
    node = ReplicaNode(3, str(tmp_path), transport)
    obj = node.get_object("obj")
    in_fsync, finish, fsync_done = threading.Event(), threading.Event(), threading.Event()
    real_append = obj.store.append_durably

    def slow_append(entries: tuple[Entry, ...]) -> None:
        in_fsync.set()
        finish.wait(10)
        real_append(entries)
        fsync_done.set()

    obj.store.append_durably = slow_append  # type: ignore[method-assign]
    answers: list[tuple[Message | None, bool]] = []
    got_answer = trio.Event()

    async def reconnect(address: str) -> None:
        new = Channel(await transport.connect(address))
        await new.send(Hello(Role.PRIMARY, 0, "obj", 2, 0))
        if prepare:
            await new.receive()
            await new.send(Prepare(2))
        answers.append((await new.receive(), fsync_done.is_set()))
        got_answer.set()

    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:0")
            try:
                old = Channel(await transport.connect(address))
                await old.send(Hello(Role.PRIMARY, 0, "obj", 2, 0))
                first = await old.receive()
                await old.send(Append(2, 0, 1, (LOG[0],)))
                assert await trio.to_thread.run_sync(in_fsync.wait, 10)
                # Entry 1 is written but not yet durable; now the primary reconnects.
                nursery.start_soon(reconnect, address)
                await trio.testing.wait_all_tasks_blocked()
            finally:
                finish.set()
            ack = await old.receive()
            with trio.fail_after(budget(10)):
                await got_answer.wait()
            nursery.cancel_scope.cancel()
    finally:
        finish.set()
        node.close()
    assert isinstance(first, Hello) and first.stored_through == 0
    assert ack == Ack(2, 1, LOG[0].chain, 2)
    [answer] = answers
    return answer


async def test_hello_during_an_unfinished_fsync_reports_only_durable_entries(tmp_path: Path) -> None:
    """A HELLO's ``stored_through`` tells the primary where the replica stands, so it must not
    include entries whose fsync has not finished. Either answer is fine: the durable state at
    once (seq 0 here), or after the fsync."""
    hello, durable_then = await _answer_while_an_append_fsyncs(tmp_path, prepare=False)
    assert isinstance(hello, Hello)
    if hello.stored_through == 1:
        assert durable_then, "HELLO claimed seq 1 as stored while its fsync had not finished"
        assert hello.last_chain == LOG[0].chain
    else:
        assert (hello.stored_through, hello.last_chain) == (0, GENESIS_CHAIN)


async def test_promise_during_an_unfinished_fsync_reports_only_durable_entries(tmp_path: Path) -> None:
    """The primary counts a PROMISE under its own log epoch in full (PrimaryState.on_connected), so
    it must describe only what is on disk: the PREPARE waits for the object's lock, which the other
    connection holds through its fsync. The durable state at once, or after the fsync."""
    promise, durable_then = await _answer_while_an_append_fsyncs(tmp_path, prepare=True)
    assert isinstance(promise, Promise)
    if promise.last_seq == 1:
        assert durable_then, "PROMISE claimed seq 1 as stored while its fsync had not finished"
        assert (promise.last_chain, promise.log_epoch) == (LOG[0].chain, 2)
    else:
        assert (promise.last_seq, promise.last_chain, promise.log_epoch) == (0, GENESIS_CHAIN, 0)


# -- truncation after the archive confirmed (ReceiveTruncate) --------------------------------------


def test_truncate_acts_only_on_the_archived_prefix_it_holds() -> None:
    state = ReplicaState(0)
    state.on_append(2, tuple(LOG[:5]), 5)
    assert state.on_truncate(3, make_log(3, epoch=2, salt=3)[2].chain) == []  # another history at seq 3
    assert state.on_truncate(9, LOG[4].chain) == []  # beyond its log
    assert state.on_truncate(3, LOG[2].chain) == [PersistArchived(3)]
    assert state.archived_through == 3 and sorted(state.chains) == [3, 4, 5]
    assert state.on_truncate(2, LOG[1].chain) == []  # older than what it already dropped
    promise = next(e for e in state.on_prepare(3) if isinstance(e, SendPromise)).promise
    assert promise.truncated_through == 3 and promise.last_seq == 5
    # Entries it dropped count as held: a resend of them is acknowledged, not refused.
    effects = state.on_append(3, tuple(LOG[:6]), 6)
    assert persisted(effects) == [6] and not any(isinstance(e, SendReject) for e in effects)


def test_the_store_drops_archived_entries_but_keeps_the_last_and_reloads(tmp_path: Path) -> None:
    store = ReplicaStore(str(tmp_path), "obj", compact_min_bytes=0)
    store.load()
    store.append_durably(tuple(LOG[:4]))
    assert store.drop_through(3) is True  # entry 3 stays: its chain links entry 4
    assert [e.seq for e in store.read_entries(1)] == [3, 4]
    assert store.drop_through(9) is True  # the last entry always stays
    assert [e.seq for e in store.read_entries(1)] == [4]
    store.append_durably((LOG[4],))
    store.close()
    again = ReplicaStore(str(tmp_path), "obj")
    loaded = again.load()
    assert (loaded.last_seq, loaded.last_chain) == (5, LOG[4].chain) and sorted(loaded.chains) == [4, 5]
    again.close()


def test_a_truncate_through_the_last_entry_applies_once_and_a_held_entry_makes_no_base_offer() -> None:
    """TRUNCATE through the replica's last seq is archived too (it keeps that entry); the same
    TRUNCATE again persists nothing; a TRUNCATE the replica can act on is not a base offer
    (5.15: only one whose entry it does not hold)."""
    state = ReplicaState(0)
    state.on_append(2, tuple(LOG[:5]), 5)
    assert state.on_truncate(5, LOG[4].chain, 2) == [PersistArchived(5)]
    assert state.base_offer is None
    assert state.on_truncate(5, LOG[4].chain, 2) == []  # already there: no second fsync
    assert state.base_offer is None and state.archived_through == 5
    assert state.on_truncate(6, LOG[5].chain, 2) == []  # not held: an offer, nothing truncated
    assert state.base_offer == (2, 6, LOG[5].chain) and state.archived_through == 5
