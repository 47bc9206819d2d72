"""Primary protocol logic as a pure state machine: an event in, a list of effects out.

The primary turns each captured commit into the next log entry (spec: ClientWrite), sends it to every
connected replica at once, and counts cumulative ACKs. ``durable_seq`` is the highest seq that a
quorum of *distinct* replicas has acknowledged as stored; the output gate releases a held reply
only once ``durable_seq`` reaches the seq of the last write that came before the reply. Nothing
here waits: pipelining falls out of the shape, since commits keep coming while earlier entries are
still in flight, and the I/O layer batches whatever queued up for a replica into one frame.

If durability is not reached before ``deadline_us`` (or a replica proves this primary is fenced),
the primary resets: every held reply fails as UNKNOWN (the write may or may not survive; it was
never reported as a success) and no further commit is accepted.

Times are plain integers (microseconds) passed in by the caller, so the same logic runs under a
mock clock in simulation. Spec names (spec/WalRelay.tla, docs/spec-map.md): ``primary_commit`` is
ClientWrite (its timestamp rule is NextTs), ``on_ack`` is AdvanceCommit, ``on_reject`` is
ReceiveReject, ``durable_seq`` is ``commit[e]``, ``match`` is the ACK table ``acks[e]``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from walrelay.capture import Commit
from walrelay.entry import GENESIS_CHAIN, Entry, encode, follows
from walrelay.errors import ObjectResetError
from walrelay.wire import Promise, RejectReason


@dataclass(frozen=True, slots=True)
class SendEntries:
    """Send these entries to a replica; ``log_end`` is this primary's last seq when it said so.

    ``whole``: a (re)sent range that must reach the replica in ONE frame ending at ``log_end``
    (catch-up after a connect or a retransmission): a replica that holds another epoch's log
    adopts ours only from such a frame (docs/failover.md). New entries may go in any frames.
    """

    replica: int
    entries: tuple[Entry, ...]
    log_end: int
    whole: bool


@dataclass(frozen=True, slots=True)
class ReleaseReply:
    token: int


@dataclass(frozen=True, slots=True)
class FailReply:
    token: int
    reason: str


@dataclass(frozen=True, slots=True)
class ResetObject:
    reason: str


@dataclass(frozen=True, slots=True)
class SendAdmit:
    """ADMIT(epoch, upto) to a non-voter, then PREPARE again: its PROMISE confirms the vote."""

    replica: int
    upto: int


@dataclass(frozen=True, slots=True)
class SendTruncate:
    """TRUNCATE(through, chain) to a replica: the archive confirmed entries through ``through``."""

    replica: int
    through: int
    chain: bytes


@dataclass(frozen=True, slots=True)
class ReadArchiveEntries:
    """Read entries ``first..last`` from the archive for replica ``r``'s catch-up, then call
    ``on_archive_entries(r, connection, entries)``."""

    replica: int
    first: int
    last: int
    connection: int


@dataclass(frozen=True, slots=True)
class OpenInputGate:
    """The recovered log is durable under this epoch and enough voters exist: serve clients."""


PrimaryEffect = (
    SendEntries | ReleaseReply | FailReply | ResetObject | SendAdmit | SendTruncate | ReadArchiveEntries | OpenInputGate
)


@dataclass(frozen=True, slots=True)
class PrimaryConfig:
    epoch: int
    replicas: int = 5
    quorum: int = 3
    deadline_us: int = 30_000_000
    retransmit_us: int = 1_000_000
    max_batch_bytes: int = 8 * 1024 * 1024
    max_retained_bytes: int = 256 * 1024 * 1024
    max_entry_bytes: int = 64 * 1024 * 1024  # must fit one wire frame (wire.DEFAULT_MAX_FRAME)
    fence_quorum: int = 0  # voters needed to recover and to serve (spec: FenceQuorum); 0 = the smallest safe one

    def __post_init__(self) -> None:
        if self.epoch < 1:
            raise ValueError(f"epoch must be >= 1, got {self.epoch}")
        if not 1 <= self.quorum <= self.replicas:
            raise ValueError(f"quorum {self.quorum} must be in 1..{self.replicas}")
        if 2 * self.quorum <= self.replicas:
            raise ValueError(
                f"quorum {self.quorum} of {self.replicas} is not a majority: two quorums might not intersect"
            )
        lowest = max(self.replicas - self.quorum + 1, self.replicas // 2 + 1)
        if self.fence_quorum == 0:
            object.__setattr__(self, "fence_quorum", lowest)
        if not lowest <= self.fence_quorum <= self.replicas:
            raise ValueError(
                f"fence quorum {self.fence_quorum} must be in {lowest}..{self.replicas}: every fence quorum must "
                f"intersect every write quorum of {self.quorum} and every other fence quorum"
            )


class PrimaryState:
    def __init__(
        self,
        config: PrimaryConfig,
        *,
        last_seq: int = 0,
        last_chain: bytes = GENESIS_CHAIN,
        last_timestamp_us: int = 0,
        recovered: tuple[Entry, ...] = (),
    ) -> None:
        """``recovered``: the log recovery chose (``recovery.Recovered.entries``). It seeds the
        retained log, so it can be re-replicated under this epoch, and the seq, chain and
        timestamp the next entry follows (timestamps never go back across a failover)."""
        base_seq, base_chain = last_seq, last_chain  # where the recovered entries start (archive base)
        if recovered:
            last = recovered[-1]
            last_seq, last_chain = last.seq, last.chain
            last_timestamp_us = max(last_timestamp_us, last.timestamp_us)
        self.config = config
        self.epoch = config.epoch
        n = config.replicas
        self.last_seq = last_seq
        self.last_chain = last_chain
        self.last_timestamp_us = last_timestamp_us
        # A recovered log is not durable under this epoch until a quorum adopted it (spec: a new
        # primary is "syncing" until AdvanceCommit reaches its recovered length). The output gate
        # then holds every reply, reads included, until then.
        self.durable_seq = 0
        self.match = [0] * n  # highest seq replica r acknowledged as durably stored
        self.sent = [0] * n  # highest seq handed to replica r's current connection
        self.connected = [False] * n
        self.progress_at = [0] * n  # when replica r last made progress (or connected)
        # seq -> chain, to verify ACKs and PROMISEs
        self.chains: dict[int, bytes] = {0: GENESIS_CHAIN, base_seq: base_chain, last_seq: last_chain}
        self.notes: list[str | None] = [None] * n  # why a replica is not counted, for status
        self.impossible: dict[int, int] = {}  # replica -> a promise no allocator issued (R-7.3-3)
        self.log: dict[int, Entry] = {e.seq: e for e in recovered}  # entries a replica may still need
        self.log_bytes = sum(e.size for e in recovered)
        self.chains.update({e.seq: e.chain for e in recovered})
        self.committed_at: dict[int, int] = {}  # seq -> monotonic time of its commit (deadline)
        self.held: deque[tuple[int, int]] = deque()  # (seq, token), seq non-decreasing
        self.reset_reason: str | None = None
        # Failover (docs/failover.md). The spec's "syncing" is ``durable_seq < recovered_end``.
        self.recovered_end = last_seq
        self.voter: list[bool | None] = [None] * n  # from each replica's last PROMISE (None: not heard)
        self.admit_sent = [False] * n  # on the current connection
        self.reported_empty = [False] * n  # its PROMISE on this connection said: an empty log
        self.agreed = [0] * n  # highest seq where replica r's log is known to equal ours (any log epoch)
        self.adopted = [False] * n  # replica r holds our log under our epoch (its log_epoch is ours)
        self.diverged = [False] * n  # replica r's log differs from ours at or before its end
        # The (last_seq, last_chain) of replica r's log when it refused our frame as DIVERGED: that
        # log is not ours, even where this primary cannot judge it (below the chains it knows).
        self.refused: list[tuple[int, bytes] | None] = [None] * n
        self.promised_log: list[tuple[int, bytes] | None] = [None] * n  # from its PROMISE on this connection
        self.connects = [0] * n  # handshakes completed with replica r (status: a restart shows here)
        self.serving = False  # input gate open
        self.archive_floor: int | None = None  # with an archive: the last seq the archiver has taken
        self.archived_seq = 0  # the archive confirmed entries through this seq (spec: archived[e])
        # A restored primary: its log starts at archived_seq even when that is 0 (a restore to the
        # empty database), and every replica must be told so (ReplicaState._takes_base).
        self.offer_base = False
        self.archive_catchup = False  # the node can read the archive for replicas behind the retained log
        self.pins: dict[int, int] = {}  # replica -> seq the retained log must keep (catch-up in progress)
        self.awaiting_archive: set[int] = set()  # replicas whose catch-up waits for the archive's end

    # -- commits -------------------------------------------------------------------------------

    def primary_commit(self, commit: Commit, *, now_us: int, wall_us: int) -> tuple[Entry, list[PrimaryEffect]]:
        """ClientWrite: the next entry of the log. Timestamps never go back, even if the clock does."""
        if self.reset_reason is not None:
            raise ObjectResetError(f"object was reset: {self.reset_reason}")
        ts = max(wall_us, self.last_timestamp_us)
        size = sum(len(p) + 4 for p in commit.pages.values()) + 72
        if size > self.config.max_entry_bytes:
            raise ValueError(
                f"transaction wrote {len(commit.pages)} pages ({size} bytes as an entry), more than the "
                f"{self.config.max_entry_bytes}-byte entry limit: it cannot be replicated"
            )
        entry = encode(
            epoch=self.epoch,
            seq=self.last_seq + 1,
            timestamp_us=ts,
            page_size=commit.page_size,
            db_pages=commit.db_pages,
            db_checksum=commit.db_checksum,
            frames=commit.pages,
            prev_chain=self.last_chain,
        )
        self.last_seq = entry.seq
        self.last_chain = entry.chain
        self.chains[entry.seq] = entry.chain
        self.last_timestamp_us = ts
        self.log[entry.seq] = entry
        self.log_bytes += entry.size
        self.committed_at[entry.seq] = now_us
        effects: list[PrimaryEffect] = []
        for r in range(self.config.replicas):
            if self.connected[r] and self.sent[r] == entry.seq - 1:
                self.sent[r] = entry.seq
                effects.append(SendEntries(r, (entry,), entry.seq, whole=False))
        return entry, effects

    # -- the output gate -----------------------------------------------------------------------

    def hold(self, token: int, seq: int) -> list[PrimaryEffect]:
        """Hold a reply until every entry through ``seq`` is durable (released at once if it is)."""
        if self.reset_reason is not None:
            return [FailReply(token, self.reset_reason)]
        if seq <= self.durable_seq:
            return [ReleaseReply(token)]
        if self.held and seq < self.held[-1][0]:
            raise ValueError(f"held replies must come in seq order ({seq} after {self.held[-1][0]})")
        self.held.append((seq, token))
        return []

    def _advance(self) -> list[PrimaryEffect]:
        q = self.config.quorum
        durable = sorted(self.match, reverse=True)[q - 1]
        effects: list[PrimaryEffect] = []
        if durable > self.durable_seq:
            for s in range(self.durable_seq + 1, durable + 1):
                self.committed_at.pop(s, None)
            self.durable_seq = durable
            while self.held and self.held[0][0] <= durable:
                effects.append(ReleaseReply(self.held.popleft()[1]))
        # Keep the newest entries within a memory budget, even those every replica holds: a
        # replica that lost its disk reconnects empty and is rebuilt from here. Only durable
        # entries are ever dropped; a replica that needs older ones gets them from the archive.
        while self.log and self.log_bytes > self.config.max_retained_bytes:
            oldest = next(iter(self.log))
            if oldest > self.durable_seq or (self.archive_floor is not None and oldest > self.archive_floor):
                break  # not durable, or not yet handed to the archiver: a gap in the archive otherwise
            if self.pins and oldest >= min(self.pins.values()):
                break  # a catch-up from the archive will join here
            self.log_bytes -= self.log.pop(oldest).size
        return effects + self._admit_and_serve()

    def _admit_and_serve(self) -> list[PrimaryEffect]:
        """Admit (spec: Admit) rejoined replicas, and open the input gate once this primary is
        synced (its recovered log durable under its epoch) and a fence quorum are voters.

        Admit needs only "synced", not "serving": the first primary of an object starts with
        an empty log and non-voter replicas, and must admit them before it can serve.
        """
        if self.reset_reason is not None or self.durable_seq < self.recovered_end:
            return []
        effects: list[PrimaryEffect] = []
        for r in range(self.config.replicas):
            if (
                self.connected[r]
                and self.voter[r] is False
                and not self.admit_sent[r]
                and (self.adopted[r] or self.reported_empty[r])  # else it would ignore the ADMIT
                and self.match[r] >= self.durable_seq
            ):
                self.admit_sent[r] = True
                effects.append(SendAdmit(r, self.durable_seq))
        if not self.serving and sum(1 for v in self.voter if v) >= self.config.fence_quorum:
            self.serving = True
            effects.append(OpenInputGate())
        return effects

    # -- replica events ------------------------------------------------------------------------

    def on_connected(self, r: int, promise: Promise, *, now_us: int) -> list[PrimaryEffect]:
        """A replica's PROMISE for this epoch, asked for on every new connection: where its log
        ends, under which log epoch, and whether it votes. What it acknowledged on an earlier
        connection is replaced (spec: AcksAfterLoss; its disk may be new)."""
        if self.reset_reason is not None:
            return []
        if promise.epoch != self.epoch:
            self.notes[r] = f"PROMISE for epoch {promise.epoch}, not {self.epoch}; not counted"
            return []
        last, chain = promise.last_seq, promise.last_chain
        mine = last <= self.last_seq and self.chains.get(last) == chain
        # Below the oldest chain this primary knows (its log starts at the archive's end after a
        # recovery from the archive) a replica's log cannot be judged here: assume it is ours and
        # send from after it (from the archive); ReplicaState refuses the frame if it is not.
        unknown = 0 < last < min((s for s in self.chains if s > 0), default=0) and last not in self.chains
        unknown = unknown and self.refused[r] != (last, chain)  # it was not ours: it refused our frame
        self.promised_log[r] = (last, chain)
        if promise.log_epoch == self.epoch and not mine:
            return self._reset(
                f"replica {r} holds seq {last} under this primary's epoch {self.epoch}, and that is not this "
                "primary's log: the epoch was issued twice (placement misconfigured?)"
            )
        self.notes[r] = None
        self.impossible.pop(r, None)  # repaired: it promised this epoch
        self.connected[r] = True
        self.connects[r] += 1
        self.progress_at[r] = now_us
        self.voter[r] = promise.voter
        self.admit_sent[r] = False
        self.reported_empty[r] = promise.last_seq == 0
        self.adopted[r] = promise.log_epoch == self.epoch
        if self.adopted[r]:
            # A prefix of our own log (spec: acks[e][r] is set under e only): it counts in full.
            self.match[r] = last
            self.agreed[r] = last
        else:
            # Counts nothing until it adopts our log; it adopts from one frame that reaches our
            # log end and starts at or before the first entry it holds differently.
            self.match[r] = 0
            self.agreed[r] = last if mine or unknown else 0
        self.diverged[r] = not (mine or unknown)
        effects = self._advance()  # may trim the retained log: decide what to resend after it
        self.sent[r] = self._resend_point(r)
        effects += self._send_from(r)
        if self.archived_seq or self.offer_base:
            effects.append(SendTruncate(r, self.archived_seq, self.chains[self.archived_seq]))
        return effects

    def on_archived(self, seq: int) -> list[PrimaryEffect]:
        """ConfirmUpload: the store confirmed a segment through ``seq``; replicas may truncate.
        Only ever called after that confirmation (spec: TruncateAfterArchive)."""
        if seq <= self.archived_seq or self.reset_reason is not None:
            return []
        self.archived_seq = seq
        chain = self.chains[seq]
        effects: list[PrimaryEffect] = [
            SendTruncate(r, seq, chain) for r in range(self.config.replicas) if self.connected[r]
        ]
        waiting, self.awaiting_archive = self.awaiting_archive, set()
        for r in sorted(waiting):
            if self.connected[r]:
                self.sent[r] = self._resend_point(r)
                effects += self._send_from(r)
        return effects

    def on_archive_entries(self, r: int, connection: int, entries: tuple[Entry, ...]) -> list[PrimaryEffect]:
        """Entries read from the archive for replica ``r`` (ReadArchiveEntries): sent, with the
        retained log after them, as one frame through our log end, if ``r`` is still on the
        same connection and the entries join the retained log."""
        self.pins.pop(r, None)
        if self.reset_reason is not None or not self.connected[r] or connection != self.connects[r] or not entries:
            return []
        oldest = min(self.log) if self.log else self.last_seq + 1
        if entries[-1].seq + 1 != oldest:
            return []
        joins = (
            follows(self.log[oldest], entries[-1].chain) if oldest in self.log else entries[-1].chain == self.last_chain
        )
        if not joins:
            self.notes[r] = f"the archive's seq {entries[-1].seq} does not join this primary's log; not sent"
            return []
        batch = entries + tuple(self.log[s] for s in range(oldest, self.last_seq + 1))
        self.sent[r] = self.last_seq
        return [SendEntries(r, batch, self.last_seq, whole=True)]

    def on_promise(self, r: int, promise: Promise) -> list[PrimaryEffect]:
        """A PROMISE on a live connection (the answer to the PREPARE that follows an ADMIT):
        only the voter flag is news; it may open the input gate."""
        if self.reset_reason is not None or promise.epoch != self.epoch or not self.connected[r]:
            return []
        self.voter[r] = promise.voter
        return self._admit_and_serve()

    def _resend_point(self, r: int) -> int:
        """The seq after which a (re)send to replica r starts.

        A replica that holds our log (under our epoch) continues after what it acknowledged.
        Any other must get one frame through our log end that is consistent with what it holds
        (ReplicaState.on_append adopts only then): after the prefix it shares with us, including
        its last entry if there is nothing new (entries older than we retain come from the
        archive: _send_from); with no shared prefix known, from our oldest retained entry (it
        replaces its differing suffix, or answers DIVERGED when the difference is older).
        """
        if self.adopted[r]:
            return self.match[r]
        if self.diverged[r]:
            return min(self.log) - 1 if self.log else self.last_seq
        a = self.agreed[r]
        return a - 1 if a == self.last_seq and a in self.log else a

    def on_disconnected(self, r: int) -> None:
        self.connected[r] = False
        self.pins.pop(r, None)
        self.awaiting_archive.discard(r)

    def on_ack(
        self,
        r: int,
        *,
        epoch: int,
        stored_through: int,
        chain: bytes,
        log_epoch: int,
        now_us: int,
        issued: int | None = None,
    ) -> list[PrimaryEffect]:
        """AdvanceCommit's input. Acks are cumulative; a stale or future-epoch ack never counts, nor
        one from a replica that holds our entries under another log epoch (not adopted yet)."""
        if self.reset_reason is not None:
            return []
        if epoch > self.epoch:
            if issued is not None and epoch > issued:
                return self._impossible(r, epoch, issued)
            return self._reset(f"fenced: replica {r} acknowledged under epoch {epoch} > {self.epoch}")
        if epoch < self.epoch or stored_through > self.last_seq or log_epoch != self.epoch:
            return []  # not an ack of this primary's log; ignore rather than count it
        if self.chains.get(stored_through) != chain:
            self.notes[r] = f"ACK for seq {stored_through} carries a different chain: replica diverged; not counted"
            return []
        self.adopted[r] = True
        if stored_through > self.match[r]:
            self.match[r] = stored_through
            self.progress_at[r] = now_us
        # An ack below ``sent`` is normal (the rest is in flight). A real gap (a lost APPEND) shows
        # up as no progress, and on_tick resends from match + 1.
        return self._advance()

    def on_reject(
        self, r: int, *, reason: RejectReason, promised_epoch: int, message: str, issued: int | None = None
    ) -> list[PrimaryEffect]:
        """Spec: ReceiveReject. ``issued``: the highest epoch the allocator has issued, read after
        the REJECT arrived (None: no allocator, a fixed ``--epoch``). Only a Believable promise
        fences; one above every issued epoch comes from a corrupt replica, which is counted as
        down instead (R-7.3-3): one replica must not be able to stop the object."""
        if self.reset_reason is not None:
            return []
        if reason is RejectReason.STALE_EPOCH and promised_epoch > self.epoch:
            if issued is not None and promised_epoch > issued:
                return self._impossible(r, promised_epoch, issued)
            return self._reset(f"fenced: replica {r} promised epoch {promised_epoch} > {self.epoch} ({message})")
        if reason is RejectReason.DIVERGED:
            # Remembered across reconnects: assuming that log is ours again would send the same
            # refused frame forever (found by a chaos campaign: a replica holding an uncommitted
            # entry older than this primary's retained log was never repaired).
            self.refused[r] = self.promised_log[r]
        # Divergence or a bad entry: this replica cannot count towards durability of our log.
        self.connected[r] = False
        return []

    # -- time ----------------------------------------------------------------------------------

    def on_tick(self, now_us: int) -> list[PrimaryEffect]:
        """Deadline and retransmission. Called periodically by the I/O layer."""
        if self.reset_reason is not None:
            return []
        first_pending = self.durable_seq + 1
        if first_pending <= self.last_seq:
            t0 = self.committed_at.get(first_pending)
            if t0 is not None and now_us - t0 > self.config.deadline_us:
                acks = sum(1 for m in self.match if m >= first_pending)
                return self._reset(
                    f"seq {first_pending} not durable after {self.config.deadline_us / 1e6:g}s: "
                    f"{acks} of {self.config.replicas} replicas stored it, {self.config.quorum} needed"
                )
        effects: list[PrimaryEffect] = []
        for r in range(self.config.replicas):
            if (
                self.connected[r]
                and self.match[r] < self.last_seq
                and now_us - self.progress_at[r] > self.config.retransmit_us
            ):
                self.sent[r] = self._resend_point(r)
                self.progress_at[r] = now_us
                effects.extend(self._send_from(r))
        return effects

    # -- helpers -------------------------------------------------------------------------------

    def _send_from(self, r: int) -> list[PrimaryEffect]:
        start = self.sent[r] + 1
        if start > self.last_seq:
            return []
        oldest = min(self.log) if self.log else self.last_seq + 1
        as_base = not self.adopted[r] and oldest <= self.archived_seq
        # A diverged replica is sent our log from its oldest entry: if its difference is older
        # still it cannot join that entry, so the entry is offered as a base, as below.
        if start not in self.log or (as_base and self.diverged[r] and start == oldest):
            if as_base:
                # A replica that does not hold our log needs entries older than we retain: it
                # starts its log at our oldest entry instead, which the archive holds (the TRUNCATE
                # ahead of the frame says so: ReplicaState._takes_base). After a restore this is
                # the only way: the restored branch's history before its fork is another branch's.
                # The base is the archive's end when we still hold it: on_connected offers that
                # point too, and a later offer replaces an earlier one at the replica.
                base = self.archived_seq if self.archived_seq in self.log else oldest
                batch = tuple(self.log[s] for s in range(base, self.last_seq + 1))
                self.sent[r] = self.last_seq
                return [SendTruncate(r, base, self.chains[base]), SendEntries(r, batch, self.last_seq, whole=True)]
            if self.archive_catchup and start <= self.archived_seq and oldest <= self.archived_seq + 1:
                # The entries this replica needs are only in the archive: the node reads them and
                # calls on_archive_entries (the replica stays connected meanwhile). Until then the
                # retained log is pinned, so that what is read still joins it. Nothing is sent
                # yet: new entries wait for that frame (sent alone they would reach the link's
                # queue ahead of it, and a frame that starts past a gap stores nothing).
                self.pins[r] = oldest
                return [ReadArchiveEntries(r, start, oldest - 1, self.connects[r])]
            if self.archive_catchup:
                # The archive may hold them once its confirmed end is known (or has caught up):
                # on_archived tries again, and so does the retransmission tick.
                self.awaiting_archive.add(r)
                self.notes[r] = (
                    f"needs entries from seq {start}: waiting for the archive (confirmed through {self.archived_seq})"
                )
                return []
            self.connected[r] = False
            self.notes[r] = (
                f"needs entries from seq {start}, older than this primary retains ({oldest}) and there is no "
                "archive: it needs a snapshot (not built)"
            )
            return []
        batch = tuple(self.log[s] for s in range(start, self.last_seq + 1))
        effects: list[PrimaryEffect] = [SendEntries(r, batch, self.last_seq, whole=True)]
        self.sent[r] = self.last_seq
        return effects

    def reset(self, reason: str) -> list[PrimaryEffect]:
        """Give up: fail every held reply and accept nothing more (the output gate's reset)."""
        if self.reset_reason is not None:
            return []
        return self._reset(reason)

    def _impossible(self, r: int, promised: int, issued: int) -> list[PrimaryEffect]:
        """Replica ``r`` names a promise no allocator issued: its state is corrupt (or it is no
        replica). It counts as down for good: none of its ACKs count (it refuses our APPENDs
        anyway), and its REJECTs stop nothing. The operator repairs it as after a lost disk."""
        self.connected[r] = False
        self.impossible[r] = promised
        self.notes[r] = (
            f"promised epoch {promised}, but the highest epoch issued is {issued}: its state is corrupt; "
            "counted as down (repair it as after a lost disk)"
        )
        return []

    def _reset(self, reason: str) -> list[PrimaryEffect]:
        self.reset_reason = reason
        effects: list[PrimaryEffect] = [FailReply(tok, reason) for _, tok in self.held]
        self.held.clear()
        effects.append(ResetObject(reason))
        return effects

    def replica_status(self) -> list[dict[str, int | bool | str | None]]:
        return [
            {
                "replica": r,
                "connected": self.connected[r],
                "stored_through": self.match[r],
                "voter": self.voter[r],
                "connects": self.connects[r],
                "holds_our_log": self.adopted[r],
                "note": self.notes[r],
            }
            for r in range(self.config.replicas)
        ]
