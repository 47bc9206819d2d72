"""The primary's state machine, from the survivors of its mutation run (docs/testing.md, "Mutation
testing"): each test asserts what a replica or a client would see (the frames the primary sends and
to whom, when a replica counts, when the gate opens, what ``__status__`` says), and names the bug
it stands for. Replicas are driven with the real ``ReplicaState`` where the outcome is "the
replica ends up holding our log"."""

from __future__ import annotations

import pytest

from simcluster import PAGE_SIZE
from test_replica_state import make_log
from walrelay.capture import Commit
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.primary import (
    OpenInputGate,
    PrimaryConfig,
    PrimaryEffect,
    PrimaryState,
    ReadArchiveEntries,
    ResetObject,
    SendEntries,
    SendTruncate,
)
from walrelay.replica import ReplicaEffect, ReplicaState, SendAck, SendReject
from walrelay.wire import Promise


def commit(n: int = 1) -> Commit:
    return Commit({1: bytes([n % 256]) * PAGE_SIZE}, 1, PAGE_SIZE, n)


def deliver(replica: ReplicaState, epoch: int, effects: list[PrimaryEffect]) -> list[ReplicaEffect]:
    """As ReplicaLink sends them to ``replica.replica_id``: control messages (TRUNCATE) first,
    then each SendEntries as one frame through its log_end."""
    out: list[ReplicaEffect] = []
    mine = [e for e in effects if getattr(e, "replica", None) == replica.replica_id]
    for eff in mine:
        if isinstance(eff, SendTruncate):
            out += replica.on_truncate(eff.through, eff.chain, epoch)
    for eff in mine:
        if isinstance(eff, SendEntries):
            out += replica.on_append(epoch, eff.entries, eff.log_end)
    return out


def sends(effects: list[PrimaryEffect], r: int) -> list[tuple[int, ...]]:
    """The seqs of each frame sent to replica ``r``."""
    return [tuple(e.seq for e in eff.entries) for eff in effects if isinstance(eff, SendEntries) and eff.replica == r]


def holding(log: list[Entry], *, replica: int, epoch: int, log_epoch: int) -> ReplicaState:
    """A replica that holds ``log`` (from seq 1) under ``log_epoch`` and promised ``epoch``."""
    chains = {e.seq: e.chain for e in log}
    return ReplicaState(
        replica,
        promised_epoch=epoch,
        log_epoch=log_epoch,
        last_seq=log[-1].seq,
        last_chain=log[-1].chain,
        chains=chains,
    )


def promise_of(st: ReplicaState) -> Promise:
    return Promise(st.promised_epoch, st.log_epoch, st.last_seq, st.last_chain, st.archived_through, st.voter)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "quorum"), [(5, 4), (4, 3)])
def test_the_default_fence_quorum_is_a_majority_even_when_the_write_quorum_is_larger(
    replicas: int, quorum: int
) -> None:
    """Two fence quorums must intersect (a majority), as well as a fence quorum and a write quorum.
    With 5 replicas and a write quorum of 4 the write-quorum bound alone allows 2: two primaries
    could each recover and serve with two disjoint voters (mutants of the majority term)."""
    majority = replicas // 2 + 1
    config = PrimaryConfig(epoch=1, replicas=replicas, quorum=quorum)
    assert config.fence_quorum == majority
    with pytest.raises(ValueError) as caught:
        PrimaryConfig(epoch=1, replicas=replicas, quorum=quorum, fence_quorum=majority - 1)
    assert str(caught.value) == (
        f"fence quorum {majority - 1} must be in {majority}..{replicas}: every fence quorum must intersect every "
        f"write quorum of {quorum} and every other fence quorum"
    )
    # The gate opens only once a majority are voters.
    p = PrimaryState(config)
    for r in range(replicas):
        effects = p.on_connected(r, Promise(1, 0, 0, GENESIS_CHAIN, 0, r < majority - 1), now_us=0)
        assert OpenInputGate() not in effects
    p.on_promise(majority - 1, Promise(1, 0, 0, GENESIS_CHAIN, 0, True))
    assert p.serving


# -- a fresh primary ------------------------------------------------------------------------------


def test_a_new_objects_first_entry_takes_the_wall_clock_even_at_zero() -> None:
    """ClientWrite's NextTs: max(wall clock, previous timestamp); a new object has no previous
    one (a default of 1 us put the first entry after a mock clock's 0)."""
    p = PrimaryState(PrimaryConfig(epoch=1))
    entry, _ = p.primary_commit(commit(), now_us=0, wall_us=0)
    assert entry.timestamp_us == 0


def test_a_replica_never_heard_from_is_shown_as_holding_nothing_of_ours() -> None:
    """``__status__`` before any PROMISE: not connected, nothing stored, vote unknown, and not
    holding our log (the conformance harness and operators read holds_our_log)."""
    p = PrimaryState(PrimaryConfig(epoch=3))
    assert p.replica_status()[2] == {
        "replica": 2,
        "connected": False,
        "stored_through": 0,
        "voter": None,
        "connects": 0,
        "holds_our_log": False,
        "note": None,
    }


def test_held_replies_out_of_order_name_the_newest_held_seq() -> None:
    p = PrimaryState(PrimaryConfig(epoch=1))
    for i in range(1, 4):
        entry, _ = p.primary_commit(commit(i), now_us=i, wall_us=i)
        p.hold(100 + i, entry.seq)
    with pytest.raises(ValueError, match=r"held replies must come in seq order \(2 after 3\)"):
        p.hold(999, 2)


def test_a_missed_deadline_gives_the_configured_deadline_in_seconds() -> None:
    p = PrimaryState(PrimaryConfig(epoch=1, deadline_us=1_000_000))
    p.primary_commit(commit(), now_us=0, wall_us=0)
    [reset] = [e for e in p.on_tick(1_000_001) if isinstance(e, ResetObject)]
    assert reset.reason == "seq 1 not durable after 1s: 0 of 5 replicas stored it, 3 needed"


def test_another_log_under_our_own_epoch_resets_with_the_reason() -> None:
    p = PrimaryState(PrimaryConfig(epoch=4), recovered=tuple(make_log(3, epoch=2)))
    other = make_log(3, epoch=4, salt=7)
    effects = p.on_connected(1, Promise(4, 4, 3, other[-1].chain, 0, True), now_us=0)
    assert effects == [
        ResetObject(
            "replica 1 holds seq 3 under this primary's epoch 4, and that is not this primary's log: the epoch "
            "was issued twice (placement misconfigured?)"
        )
    ]


# -- without an archive ---------------------------------------------------------------------------


def test_without_an_archive_a_replica_behind_the_retained_log_is_dropped_with_the_reason() -> None:
    """No archive: the retained log keeps only its budget of durable entries (a primary without
    an archive has no archiver floor to respect), and a replica that lost its disk and needs an
    entry older than that cannot be caught up in v1 (7.6): it is marked not connected, says why
    in ``__status__``, and gets nothing, not even new entries (mutants: the floor compared as a
    string, the catch-up waiting for an archive that does not exist, the replica left connected
    or its note lost)."""
    p = PrimaryState(PrimaryConfig(epoch=1, replicas=3, quorum=2, max_retained_bytes=1))
    for r in range(3):
        p.on_connected(r, Promise(1, 0, 0, GENESIS_CHAIN, 0, True), now_us=0)
    size = p.primary_commit(commit(1), now_us=1, wall_us=1)[0].size
    p.config = PrimaryConfig(epoch=1, replicas=3, quorum=2, max_retained_bytes=3 * size)
    for i in range(2, 7):
        p.primary_commit(commit(i), now_us=i, wall_us=i)
    for r in (0, 1):
        p.on_ack(r, epoch=1, stored_through=6, chain=p.chains[6], log_epoch=1, now_us=10)
    assert p.durable_seq == 6 and sorted(p.log) == [4, 5, 6]
    p.on_disconnected(2)
    assert p.on_connected(2, Promise(1, 0, 0, GENESIS_CHAIN, 0, True), now_us=11) == []  # its disk was lost
    status = p.replica_status()[2]
    assert status["connected"] is False
    assert status["note"] == (
        "needs entries from seq 1, older than this primary retains (4) and there is no archive: it needs a "
        "snapshot (not built)"
    )
    _, effects = p.primary_commit(commit(7), now_us=12, wall_us=12)
    assert sends(effects, 2) == [] and sends(effects, 0) == [(7,)]
    assert [e for e in p.on_tick(12 + 2 * p.config.retransmit_us) if getattr(e, "replica", None) == 2] == []


# -- judging a reconnecting replica's log ---------------------------------------------------------


def test_a_primary_with_an_empty_log_meets_a_replica_holding_an_uncommitted_entry() -> None:
    """Recovery chose the empty log (entry 1 of epoch 1 reached one replica only). That replica's
    log is not ours and there is nothing to send yet; the first commit repairs it: it replaces
    its entry 1 and adopts our epoch (mutants crashed here: no chains above 0 to compare with,
    and no retained entry to resend from)."""
    p = PrimaryState(PrimaryConfig(epoch=2))
    replica = holding(make_log(1, epoch=1, salt=3), replica=1, epoch=2, log_epoch=1)
    assert p.on_connected(1, promise_of(replica), now_us=0) == []
    assert p.match[1] == 0 and p.connected[1]
    _, effects = p.primary_commit(commit(), now_us=1, wall_us=1)
    assert sends(effects, 1) == [(1,)]
    acks = [e for e in deliver(replica, 2, effects) if isinstance(e, (SendAck, SendReject))]
    assert acks == [SendAck(2, 1, p.chains[1], 2)]
    p.on_ack(1, epoch=2, stored_through=1, chain=p.chains[1], log_epoch=2, now_us=2)
    assert p.match[1] == 1


def recovered_from_archive(archived: int = 4) -> tuple[list[Entry], PrimaryState]:
    """A primary whose recovery read the archive: its log starts after seq 4 (the archive's end;
    it knows no chain below it but genesis), it retains 5..8, and the archive holds through
    ``archived``."""
    log = make_log(8, epoch=2)
    p = PrimaryState(PrimaryConfig(epoch=3), last_seq=4, last_chain=log[3].chain, recovered=tuple(log[4:]))
    p.archive_catchup, p.archived_seq = True, archived
    return log, p


def test_a_replica_whose_log_ends_below_what_the_primary_knows_is_caught_up_from_the_archive() -> None:
    """Its log ends at seq 1, below the oldest chain this primary knows (4): it cannot be judged,
    so it is taken for ours and sent what follows it, 2..4 from the archive and 5..8 retained,
    in one frame; it adopts our epoch. A mutant that judged seq 1 "diverged" sent 5..8 alone: a
    gap, and the replica never caught up."""
    log, p = recovered_from_archive()
    replica = holding(log[:1], replica=2, epoch=3, log_epoch=2)
    effects = p.on_connected(2, promise_of(replica), now_us=0)
    assert effects == [ReadArchiveEntries(2, 2, 4, 1), SendTruncate(2, 4, log[3].chain)]
    frame = p.on_archive_entries(2, 1, tuple(log[1:4]))
    assert sends(frame, 2) == [(2, 3, 4, 5, 6, 7, 8)]
    deliver(replica, 3, frame)
    assert (replica.last_seq, replica.last_chain, replica.log_epoch) == (8, log[7].chain, 3)


def test_a_replica_that_differs_above_the_primarys_base_is_repaired_from_the_oldest_retained_entry() -> None:
    """Entries 5-6 of the replica are another epoch's: it is sent our log from our oldest
    retained entry (5), replaces its differing suffix and adopts; a mutant that lost the
    "diverged" judgement started from seq 1, which this primary does not hold, and dropped it."""
    log, p = recovered_from_archive(archived=0)
    theirs = make_log(2, epoch=1, salt=5, prev=log[3].chain, first=5)
    replica = holding([*log[:4], *theirs], replica=0, epoch=3, log_epoch=1)
    effects = p.on_connected(0, promise_of(replica), now_us=0)
    assert sends(effects, 0) == [(5, 6, 7, 8)]
    assert not [e for e in deliver(replica, 3, effects) if isinstance(e, SendReject)]
    assert (replica.last_seq, replica.last_chain, replica.log_epoch) == (8, log[7].chain, 3)
    assert p.connected[0]


# -- catch-up from the archive ---------------------------------------------------------------------


def trimmed(archived: int) -> tuple[list[Entry], PrimaryState]:
    """Replicas 0 and 1 hold our log 1..20; the retained log kept 16..20 (the archiver took
    everything, the store confirmed through ``archived``)."""
    log = make_log(20, epoch=1)
    p = PrimaryState(
        PrimaryConfig(epoch=1, replicas=3, quorum=2, max_retained_bytes=5 * log[0].size), recovered=tuple(log)
    )
    p.archive_catchup, p.archive_floor = True, 20
    for r in (0, 1):
        p.on_connected(r, Promise(1, 1, 20, log[-1].chain, 0, True), now_us=0)
    if archived:
        p.on_archived(archived)
    assert min(p.log) == 16
    return log, p


def test_a_replica_that_needs_exactly_the_archives_last_entry_reads_it_from_the_archive() -> None:
    """Confirmed through 15, retained from 16, the replica holds through 14: entry 15 is read
    from the archive (a mutant made it wait for a confirmation that had already come: it never
    caught up)."""
    log, p = trimmed(archived=15)
    replica = holding(log[:14], replica=2, epoch=1, log_epoch=1)
    effects = p.on_connected(2, promise_of(replica), now_us=0)
    assert ReadArchiveEntries(2, 15, 15, 1) in effects and p.awaiting_archive == set()
    frame = p.on_archive_entries(2, 1, (log[14],))
    assert sends(frame, 2) == [tuple(range(15, 21))]
    deliver(replica, 1, frame)
    assert replica.last_seq == 20


def test_a_replica_never_reads_entries_the_archive_has_not_confirmed() -> None:
    """Confirmed through 14 only, retained from 16: entry 15 is neither confirmed nor retained.
    The replica waits, saying so, and reads 4..15 once the archive confirms 20 (mutants read
    4..15 at once, an unconfirmed entry among them)."""
    log, p = trimmed(archived=14)
    replica = holding(log[:3], replica=2, epoch=1, log_epoch=1)
    effects = p.on_connected(2, promise_of(replica), now_us=0)
    assert not [e for e in effects if isinstance(e, (ReadArchiveEntries, SendEntries))]
    assert p.awaiting_archive == {2}
    assert p.replica_status()[2]["note"] == "needs entries from seq 4: waiting for the archive (confirmed through 14)"
    assert ReadArchiveEntries(2, 4, 15, 1) in p.on_archived(20)


def test_a_replica_given_a_base_frame_gets_each_new_entry_at_once() -> None:
    """After the TRUNCATE and the frame from the base through our log end, the replica has been
    sent everything: the next entry goes to it at once (7.1), not a retransmission later."""
    log = make_log(10, epoch=2)
    p = PrimaryState(PrimaryConfig(epoch=3, replicas=3, quorum=2), recovered=tuple(log[5:]))  # retains 6..10
    p.archived_seq = 6
    effects = p.on_connected(2, Promise(3, 0, 0, GENESIS_CHAIN, 0, False), now_us=0)
    assert SendTruncate(2, 6, log[5].chain) in effects and sends(effects, 2) == [(6, 7, 8, 9, 10)]
    _, effects = p.primary_commit(commit(), now_us=1, wall_us=1)
    assert sends(effects, 2) == [(11,)]


def test_entries_committed_during_an_archive_read_wait_for_the_catch_up_frame() -> None:
    """Found by this triage (a mutant that left ``sent`` alone survived, and was right): the
    primary counted the entries as sent when it only asked for the archive read, so each commit
    meanwhile went to the replica at once. ReplicaLink queues what it is given and sends the
    queue as one frame: a link still busy when the read came back sent [21, 4..21], which starts
    past a gap, and the replica stored nothing of it (and the retry could meet the same fate).
    Now the new entries go out only inside the catch-up frame."""
    log, p = trimmed(archived=20)
    replica = holding(log[:3], replica=2, epoch=1, log_epoch=1)
    link: list[Entry] = []  # what ReplicaLink has queued for replica 2 and not sent yet
    effects = p.on_connected(2, promise_of(replica), now_us=0)
    [read] = [e for e in effects if isinstance(e, ReadArchiveEntries)]
    for i in (21, 22):
        _, effects = p.primary_commit(commit(i), now_us=i, wall_us=10**9 + i)
        link += [e for s in effects if isinstance(s, SendEntries) and s.replica == 2 for e in s.entries]
    for r in (0, 1):
        p.on_ack(r, epoch=1, stored_through=22, chain=p.chains[22], log_epoch=1, now_us=30)
    frame = p.on_archive_entries(2, read.connection, tuple(log[read.first - 1 : read.last]))
    link += [e for s in frame if isinstance(s, SendEntries) and s.replica == 2 for e in s.entries]
    assert [e.seq for e in link] == list(range(4, 23))
    [ack] = [e for e in replica.on_append(1, tuple(link), p.last_seq) if isinstance(e, SendAck)]
    assert ack.stored_through == 22
    p.on_ack(2, epoch=1, stored_through=22, chain=ack.chain, log_epoch=1, now_us=31)
    assert p.match[2] == 22 and p.durable_seq == 22
