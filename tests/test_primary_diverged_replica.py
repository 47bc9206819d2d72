"""A replica whose differing entry is older than the primary's retained log is repaired, not
refused forever.

Found by a chaos campaign (kept as tests/replays/diverged-below-the-retained-log.json): after a
recovery from the archive the new primary retains its log from the archive's end, so a replica
whose log ends below that cannot be judged; the primary assumes that log is its own and sends what
follows. A replica holding an uncommitted entry there refuses (DIVERGED), and every reconnect made
the same assumption and sent the same frame: the replica never held the log again. Now the refusal
is remembered, and the replica is offered the archive's end as the base of its log.
"""

from __future__ import annotations

from test_replica_state import make_log
from walrelay.primary import PrimaryConfig, PrimaryEffect, PrimaryState, SendEntries, SendTruncate
from walrelay.replica import ReplicaEffect, ReplicaState, SendAck, SendReject
from walrelay.wire import Promise, RejectReason

common = make_log(2, epoch=2)
ours = make_log(6, epoch=4, salt=1, prev=common[-1].chain, first=3)  # seqs 3..8: the committed log
theirs = make_log(1, epoch=3, salt=2, prev=common[-1].chain, first=3)[0]  # seq 3: never committed


def deliver(replica: ReplicaState, effects: list[PrimaryEffect]) -> list[ReplicaEffect]:
    """As ReplicaLink sends them: control messages (TRUNCATE) first, then the entries."""
    out: list[ReplicaEffect] = []
    for eff in effects:
        if isinstance(eff, SendTruncate):
            out += replica.on_truncate(eff.through, eff.chain, 5)
    for eff in effects:
        if isinstance(eff, SendEntries):
            out += replica.on_append(5, eff.entries, eff.log_end)
    return out


def test_a_replica_that_refused_is_offered_the_archives_end_as_its_base() -> None:
    primary = PrimaryState(PrimaryConfig(epoch=5), recovered=tuple(ours[1:]))  # retains 4..8
    primary.on_archived(8)
    chains = {1: common[0].chain, 2: common[1].chain, 3: theirs.chain}
    replica = ReplicaState(1, promised_epoch=5, last_seq=3, last_chain=theirs.chain, chains=chains, log_epoch=3)
    promise = Promise(5, 3, 3, theirs.chain, 0, True)

    # Below the chains it knows, the primary takes the replica's log for its own: refused.
    first = deliver(replica, primary.on_connected(1, promise, now_us=0))
    refusals = [e for e in first if isinstance(e, SendReject)]
    assert [e.reason for e in refusals] == [RejectReason.DIVERGED]
    primary.on_reject(1, reason=RejectReason.DIVERGED, promised_epoch=5, message=refusals[0].message)
    primary.on_disconnected(1)

    # The next connection offers the archived end as a base: the replica starts its log there.
    again = primary.on_connected(1, promise, now_us=1)
    assert SendTruncate(1, 8, ours[-1].chain) in again
    second = deliver(replica, again)
    assert not [e for e in second if isinstance(e, SendReject)]
    assert (replica.last_seq, replica.last_chain, replica.log_epoch) == (8, ours[-1].chain, 5)
    ack = [e for e in second if isinstance(e, SendAck)][-1]
    primary.on_ack(1, epoch=5, stored_through=ack.stored_through, chain=ack.chain, log_epoch=ack.log_epoch, now_us=2)
    assert primary.match[1] == 8 and primary.adopted[1]
