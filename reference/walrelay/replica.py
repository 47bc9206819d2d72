"""Replica protocol logic as a pure state machine: an event in, a list of effects out.

No sockets, files or clocks here. The I/O layer (replica_node.py) must execute the effects of one
call *in order*, and must finish a ``PersistEntries``/``PersistPromise`` (written and fsync'd)
before it sends any ``SendAck`` that follows it. That ordering is the whole durability promise: an
ACK means "on stable storage". The I/O layer may merge the persists of several calls into one
fsync (group commit) as long as no ACK overtakes its data.

Spec names (spec/WalRelay.tla, docs/spec-map.md): ``on_append`` is ReceiveAppend (its epoch check
is MayAccept, its log replacement Adopts); ``on_prepare`` is ReceivePrepare; ``on_admit`` is
ReceiveAdmit; ``promised_epoch`` is ``promised[r]``; ``log_epoch`` is ``logEpoch[r]``; ``last_seq``
is ``logLen[r]``; ``voter`` is ``voter[r]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from walrelay.entry import GENESIS_CHAIN, Entry, follows
from walrelay.wire import Promise, RejectReason


@dataclass(frozen=True, slots=True)
class PersistEntries:
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class PersistPromise:
    epoch: int


@dataclass(frozen=True, slots=True)
class TruncateSuffix:
    """Drop every entry after ``keep_through`` (a divergent suffix a newer epoch replaces)."""

    keep_through: int


@dataclass(frozen=True, slots=True)
class PersistLogEpoch:
    """The log is now a prefix of this epoch's log (persist with the entries, before the ACK)."""

    epoch: int


@dataclass(frozen=True, slots=True)
class PersistVoter:
    """Admitted: this replica's promises count again (persist before acting on anything else)."""


@dataclass(frozen=True, slots=True)
class PersistArchived:
    """Entries through ``through`` are in the archive: save it, then the log may drop them."""

    through: int


@dataclass(frozen=True, slots=True)
class ResetToBase:
    """Replace the whole log by this one entry, the archived base of a newer epoch's log (persist
    ``archived_through`` = its seq with no log epoch first, then the file; docs/restore-branches.md).
    None: by nothing (a restore to the empty database)."""

    entry: Entry | None


@dataclass(frozen=True, slots=True)
class SendPromise:
    """PROMISE: what a recovering primary needs to choose the most recent log."""

    promise: Promise


@dataclass(frozen=True, slots=True)
class SendAck:
    epoch: int
    stored_through: int
    chain: bytes
    log_epoch: int


@dataclass(frozen=True, slots=True)
class SendReject:
    reason: RejectReason
    promised_epoch: int
    message: str


ReplicaEffect = (
    PersistEntries
    | PersistPromise
    | TruncateSuffix
    | PersistLogEpoch
    | PersistVoter
    | PersistArchived
    | ResetToBase
    | SendAck
    | SendReject
    | SendPromise
)


@dataclass
class ReplicaState:
    """What one replica knows about one object's log."""

    replica_id: int
    promised_epoch: int = 0
    log_epoch: int = 0  # epoch of the primary whose log this replica holds a prefix of
    voter: bool = True  # False for state created without a disk history (docs/failover.md)
    last_seq: int = 0
    last_chain: bytes = GENESIS_CHAIN
    archived_through: int = 0  # the highest TRUNCATE point accepted: entries before it may be gone
    chains: dict[int, bytes] = field(default_factory=dict)  # seq -> chain, for entries still held
    # (epoch, seq, chain) of the last TRUNCATE this replica could not act on: the sender's archive
    # holds its log through seq. Volatile: it only lets the next APPEND of that epoch start there.
    base_offer: tuple[int, int, bytes] | None = None

    def on_append(self, epoch: int, entries: tuple[Entry, ...], log_end: int) -> list[ReplicaEffect]:
        """ReceiveAppend: store entries that extend the log, refuse a fenced epoch.

        Duplicates (an entry already held with the same chain) are acknowledged again, so a
        retransmission is harmless. An entry past a gap stops processing: the ACK then tells the
        primary where the log really ends and it resends from there.

        Entries from an epoch other than ``log_epoch`` may *replace* a suffix (spec: Adopts): when
        an entry differs from the one held at its seq but follows the held entry before it, the
        held suffix is dropped first. Once a whole batch from such an epoch is consistent with the
        log, the log is a prefix of that epoch's log: entries held beyond the batch belong to an
        older epoch and are dropped too, and ``log_epoch`` becomes the sender's. Within one epoch a
        differing entry is never replaced (a primary's log never changes): that is DIVERGED.

        Adoption happens only from a frame whose last entry is the sender's ``log_end``: in the spec
        an APPEND carries the sender's whole log, so a replica that adopts epoch ``E`` holds at least
        ``E``'s recovered log. Adopting from the first frame of a multi-frame catch-up would let a
        later recovery prefer this shorter ``E`` log over older-epoch replicas that hold a committed
        entry beyond it (docs/failover.md). Any other frame of another epoch changes nothing: the
        ACK says what is held, and the primary resends everything through its end in one frame.
        """
        accepted, effects = self._promise(epoch, "append under")
        if not accepted:
            return effects
        adopting = epoch != self.log_epoch
        if adopting and (not entries or entries[-1].seq != log_end):
            effects.append(SendAck(self.promised_epoch, self.last_seq, self.last_chain, self.log_epoch))
            return effects
        if adopting and self._takes_base(epoch, entries[0]):
            base = entries[0] if entries[0].seq == self.base_offer_seq else None
            self.chains = {base.seq: base.chain} if base is not None else {}
            self.last_seq, self.last_chain = (base.seq, base.chain) if base is not None else (0, GENESIS_CHAIN)
            self.archived_through = self.last_seq
            self.log_epoch = 0  # until the adoption below: the reset log is no epoch's yet
            effects.append(ResetToBase(base))
        new: list[Entry] = []
        consistent_through: int | None = None  # last batch seq known to equal the sender's log
        for e in entries:
            if e.seq <= self.last_seq:
                held = self.chains.get(e.seq)
                if held is None or held == e.chain:
                    consistent_through = e.seq if held is not None else consistent_through
                    continue  # duplicate of what we hold (or of what was archived and truncated)
                prev = GENESIS_CHAIN if e.seq == 1 else self.chains.get(e.seq - 1)
                if not adopting or new or prev is None or not follows(e, prev):
                    return self._stop(
                        effects,
                        new,
                        f"entry seq {e.seq} differs from the one replica {self.replica_id} holds at that seq",
                    )
                self._truncate_after(e.seq - 1, prev, effects)
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
            consistent_through = e.seq
        if new:
            effects.append(PersistEntries(tuple(new)))
        if adopting and consistent_through is not None:
            if self.last_seq > consistent_through:
                # Nothing can be persisted after the truncation in this call: new entries would
                # have moved consistent_through to the end of the log.
                self._truncate_after(consistent_through, self.chains[consistent_through], effects)
            self.log_epoch = epoch
            effects.append(PersistLogEpoch(epoch))
        effects.append(SendAck(self.promised_epoch, self.last_seq, self.last_chain, self.log_epoch))
        return effects

    def _takes_base(self, epoch: int, first: Entry) -> bool:
        """Start the log afresh at ``first``? Only if the same epoch told us (TRUNCATE) that its
        archive holds its log through exactly that entry, and we cannot join ``first`` to what we
        hold: a restored primary's log begins at the restore point, which replicas holding another
        branch, or having truncated past it, cannot link to (docs/restore-branches.md)."""
        # If we hold ``first`` already, the ordinary path joins the rest. An offer at seq 0 (a
        # restore to the empty database) starts the log empty, before a frame from seq 1.
        if self.base_offer is None or self.chains.get(first.seq) == first.chain:
            return False
        e, seq, chain = self.base_offer
        if seq == 0:
            return e == epoch and first.seq == 1 and follows(first, chain)
        return self.base_offer == (epoch, first.seq, first.chain)

    @property
    def base_offer_seq(self) -> int:
        return self.base_offer[1] if self.base_offer is not None else -1

    def _truncate_after(self, keep_through: int, chain: bytes, effects: list[ReplicaEffect]) -> None:
        for seq in range(keep_through + 1, self.last_seq + 1):
            self.chains.pop(seq, None)
        self.last_seq = keep_through
        self.last_chain = chain
        effects.append(TruncateSuffix(keep_through))

    def on_prepare(self, epoch: int) -> list[ReplicaEffect]:
        """ReceivePrepare: promise ``epoch`` and report the log, or tell a fenced primary so.

        A PREPARE at the epoch already promised is answered again (a recovering primary that
        reconnects asks twice); the promise itself is idempotent.
        """
        accepted, effects = self._promise(epoch, "prepare for")
        if accepted:
            truncated = min(self.archived_through, self.last_seq)
            report = Promise(epoch, self.log_epoch, self.last_seq, self.last_chain, truncated, self.voter)
            effects.append(SendPromise(report))
        return effects

    def _promise(self, epoch: int, what: str) -> tuple[bool, list[ReplicaEffect]]:
        """Fencing (spec: MayAccept): refuse below the promise; promise (durably) a higher epoch."""
        if epoch < self.promised_epoch:
            why = f"{what} epoch {epoch} refused: replica {self.replica_id} promised epoch {self.promised_epoch}"
            return False, [SendReject(RejectReason.STALE_EPOCH, self.promised_epoch, why)]
        effects: list[ReplicaEffect] = []
        if epoch > self.promised_epoch:
            self.promised_epoch = epoch
            effects.append(PersistPromise(epoch))
        return True, effects

    def on_admit(self, epoch: int, upto: int) -> list[ReplicaEffect]:
        """ReceiveAdmit: a serving primary saw this replica hold its log through its commit point.

        Only an ADMIT that matches what the replica holds counts: from the epoch whose log it holds,
        covering ``upto``. Anything else (a stale ADMIT, one from a fenced primary) changes nothing.
        An empty log is a prefix of every log, so ADMIT(upto 0) from a primary that has committed
        nothing admits an empty replica whatever its log epoch (the first primary of an object
        admits its fresh replicas that way; spec: ReceiveAdmit).
        """
        holds = epoch == self.log_epoch or (self.last_seq == 0 and upto == 0)
        if self.voter or epoch < self.promised_epoch or not holds or self.last_seq < upto:
            return []
        self.voter = True
        return [PersistVoter()]

    def on_truncate(self, through: int, chain: bytes, epoch: int | None = None) -> list[ReplicaEffect]:
        """ReceiveTruncate: the primary's archive confirmed entries through ``through``.

        Acted on only if this replica holds exactly the archived entry there (same chain, so the
        whole prefix is the archived one): a replica holding another history ignores it, but
        remembers the offer: the next APPEND of that epoch may start its log there (``_takes_base``).
        The chains before ``through`` are forgotten with the entries; the one at ``through`` stays,
        as the link for the next entry.
        """
        if epoch is not None and epoch < self.promised_epoch:
            # Fenced like every other message: after promising a newer epoch this replica keeps
            # the log it reported in that PROMISE, which the recovering primary is fetching (found
            # by a chaos campaign: a stale primary's TRUNCATE compacted it mid-recovery).
            return []
        if self.chains.get(through) != chain and epoch is not None:
            self.base_offer = (epoch, through, chain)
        if through <= self.archived_through or through > self.last_seq or self.chains.get(through) != chain:
            return []
        self.archived_through = through
        for seq in [s for s in self.chains if s < through]:
            del self.chains[seq]
        return [PersistArchived(through)]

    def _stop(self, effects: list[ReplicaEffect], new: list[Entry], why: str) -> list[ReplicaEffect]:
        """Keep (and acknowledge) the good prefix of a batch, then refuse the divergent entry."""
        if new:
            effects.append(PersistEntries(tuple(new)))
        effects.append(SendAck(self.promised_epoch, self.last_seq, self.last_chain, self.log_epoch))
        effects.append(SendReject(RejectReason.DIVERGED, self.promised_epoch, why))
        return effects
