"""Replica protocol logic as a pure state machine: an event in, a list of effects out.

No sockets, files or clocks here. The I/O layer (replica_node.py) must execute the effects of one
call *in order*, and must finish a ``PersistEntries``/``PersistPromise`` (written and fsync'd)
before it sends any ``SendAck`` that follows it. That ordering is the whole durability promise: an
ACK means "on stable storage". The I/O layer may merge the persists of several calls into one
fsync (group commit) as long as no ACK overtakes its data.

Spec names (spec/WalRelay.tla, docs/spec-map.md): ``on_append`` is ReceiveAppend (its epoch check
is MayAccept); ``promised_epoch`` is ``promised[r]``; ``last_seq`` is ``logLen[r]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from walrelay.entry import GENESIS_CHAIN, Entry, follows
from walrelay.wire import RejectReason


@dataclass(frozen=True, slots=True)
class PersistEntries:
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class PersistPromise:
    epoch: int


@dataclass(frozen=True, slots=True)
class SendAck:
    epoch: int
    stored_through: int
    chain: bytes


@dataclass(frozen=True, slots=True)
class SendReject:
    reason: RejectReason
    promised_epoch: int
    message: str


ReplicaEffect = PersistEntries | PersistPromise | SendAck | SendReject


@dataclass
class ReplicaState:
    """What one replica knows about one object's log."""

    replica_id: int
    promised_epoch: int = 0
    last_seq: int = 0
    last_chain: bytes = GENESIS_CHAIN
    archived_through: int = 0  # entries <= this may be truncated (set by the archiver, issue 5)
    chains: dict[int, bytes] = field(default_factory=dict)  # seq -> chain, for entries still held

    def on_append(self, epoch: int, entries: tuple[Entry, ...]) -> list[ReplicaEffect]:
        """ReceiveAppend: store entries that extend the log, refuse a fenced epoch.

        Duplicates (an entry already held with the same chain) are acknowledged again, so a
        retransmission is harmless. An entry past a gap stops processing: the ACK then tells the
        primary where the log really ends and it resends from there.
        """
        if epoch < self.promised_epoch:
            return [
                SendReject(
                    RejectReason.STALE_EPOCH,
                    self.promised_epoch,
                    f"append under epoch {epoch} refused: replica {self.replica_id} promised epoch "
                    f"{self.promised_epoch}",
                )
            ]
        effects: list[ReplicaEffect] = []
        if epoch > self.promised_epoch:
            self.promised_epoch = epoch
            effects.append(PersistPromise(epoch))
        new: list[Entry] = []
        for e in entries:
            if e.seq <= self.last_seq:
                held = self.chains.get(e.seq)
                if held is None or held == e.chain:
                    continue  # duplicate of what we hold (or of what was archived and truncated)
                return self._stop(
                    effects,
                    new,
                    f"entry seq {e.seq} differs from the one replica {self.replica_id} holds at that seq",
                )
            if e.seq > self.last_seq + 1:
                break  # gap: ack what we have, the primary resends
            if not follows(e, self.last_chain):
                return self._stop(
                    effects,
                    new,
                    f"entry seq {e.seq} does not follow seq {self.last_seq} "
                    f"on replica {self.replica_id} (chain mismatch)",
                )
            new.append(e)
            self.last_seq = e.seq
            self.last_chain = e.chain
            self.chains[e.seq] = e.chain
        if new:
            effects.append(PersistEntries(tuple(new)))
        effects.append(SendAck(self.promised_epoch, self.last_seq, self.last_chain))
        return effects

    def _stop(self, effects: list[ReplicaEffect], new: list[Entry], why: str) -> list[ReplicaEffect]:
        """Keep (and acknowledge) the good prefix of a batch, then refuse the divergent entry."""
        if new:
            effects.append(PersistEntries(tuple(new)))
        effects.append(SendAck(self.promised_epoch, self.last_seq, self.last_chain))
        effects.append(SendReject(RejectReason.DIVERGED, self.promised_epoch, why))
        return effects
