"""A deterministic, pure-logic simulation of one PrimaryState and N ReplicaStates.

No sockets, threads or clocks: every message (an APPEND for replica r, an ACK or REJECT from r)
sits in one pool, and a schedule of ``Step`` values (drawn by Hypothesis) decides what happens
next: deliver a message, drop one, duplicate one, let a replica's I/O layer run some of its pending
effects, crash and restart a replica, advance time and tick, commit a new entry (and hold a reply
for it), hold a read reply, or inject an ACK a deposed primary of the previous epoch was owed.

The replica's I/O layer is modelled honestly: ``on_append`` only queues its effects in the
replica's outbox, and the outbox runs one effect at a time, in order. A ``PersistEntries`` or
``PersistPromise`` reaches the simulated *disk* only when it runs; a ``SendAck``/``SendReject``
puts a message in the pool only when it runs. A crash throws away the outbox and the in-memory
``ReplicaState``; the restarted replica is rebuilt from its disk alone.

The primary (epoch E) took over after a view change: replicas ``0..quorum-1`` promised E on disk,
the others still promise E-1. With ``zombie=True`` the deposed primary of epoch E-1 is still alive
and appends entries of *its own* log (same seqs, other chains) to replicas that have not promised E
yet; those replicas later answer this primary's APPEND with an ACK of their divergent log (under
epoch E, with their own chain) and a DIVERGED reject.

Ground truth is kept independently of PrimaryState: the simulated disks, and the primary's log as
returned by ``primary_commit``. At the moment each ``ReleaseReply`` effect is emitted, the sim
records, for every seq 1..s of the held reply, which replicas have exactly that entry on disk.
Tests then assert on these records; the sim itself never decides whether the gate was right.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass, field

from hypothesis import strategies as st

from walrelay.capture import Commit
from walrelay.entry import GENESIS_CHAIN, Entry, encode
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
)
from walrelay.replica import (
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
from walrelay.wire import Promise, RejectReason

PAGE_SIZE = 512
WALL0_US = 1_700_000_000_000_000  # the wall clock starts somewhere in 2023

# -- messages in flight ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendMsg:
    replica: int
    epoch: int
    entries: tuple[Entry, ...]
    log_end: int


@dataclass(frozen=True, slots=True)
class AckMsg:
    replica: int
    epoch: int
    stored_through: int
    chain: bytes
    log_epoch: int


@dataclass(frozen=True, slots=True)
class RejectMsg:
    replica: int
    reason: RejectReason
    promised_epoch: int
    message: str


@dataclass(frozen=True, slots=True)
class PrepareMsg:
    """PREPARE(E), sent on connection ``conn`` (the primary sends one on every new connection)."""

    replica: int
    conn: int


@dataclass(frozen=True, slots=True)
class PromiseMsg:
    replica: int
    conn: int
    promise: Promise


@dataclass(frozen=True, slots=True)
class AdmitMsg:
    replica: int
    epoch: int
    upto: int


Message = AppendMsg | AckMsg | RejectMsg | PrepareMsg | PromiseMsg | AdmitMsg

# -- schedule steps -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """Commit a new entry of ``pages`` random pages and hold a reply for it."""

    pages: int
    wall_skew_us: int  # the wall clock is monotonic time plus this; it may jump backwards


@dataclass(frozen=True, slots=True)
class Read:
    """Hold a reply that depends on the last write (seq = primary.last_seq)."""


@dataclass(frozen=True, slots=True)
class Deliver:
    index: int  # taken modulo the pool size
    flush: bool  # let the receiving replica run its whole outbox right away


@dataclass(frozen=True, slots=True)
class Drop:
    index: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    index: int


@dataclass(frozen=True, slots=True)
class Io:
    """Replica ``replica`` runs ``count`` pending effects (0: all of them)."""

    replica: int
    count: int


@dataclass(frozen=True, slots=True)
class CrashRestart:
    replica: int


@dataclass(frozen=True, slots=True)
class Advance:
    us: int


@dataclass(frozen=True, slots=True)
class StaleAck:
    """An ACK replica ``replica`` sent to the deposed primary of epoch E-1, delivered late.

    Its ``stored_through`` (``last_seq - behind``) and chain are of *that* primary's log, so it
    says nothing about this primary's entries, whatever seq it names.
    """

    replica: int
    behind: int


@dataclass(frozen=True, slots=True)
class ZombieAppend:
    """The deposed primary (epoch E-1) appends its entries 1..upto to replica ``replica``.

    Only in a sim built with ``zombie=True``; the replica's answer goes back to the zombie.
    """

    replica: int
    upto: int


Step = Write | Read | Deliver | Drop | Duplicate | Io | CrashRestart | Advance | StaleAck | ZombieAppend

# -- records --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HoldRecord:
    token: int
    seq: int
    durable_before: int  # primary.durable_seq when hold() was called
    was_reset: bool  # the primary had reset before hold() was called
    effects: tuple[PrimaryEffect, ...]  # what hold() returned at once


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    token: int
    seq: int
    after_reset: bool
    holders: tuple[frozenset[int], ...]  # holders[s - 1]: replicas with entry s on disk


@dataclass
class Disk:
    """What survives a crash: entries of executed PersistEntries, the last PersistPromise."""

    promised_epoch: int = 0
    log_epoch: int = 0
    voter: bool = True
    entries: dict[int, Entry] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return len(self.entries)  # persists are checked to be contiguous from 1


class Sim:
    def __init__(
        self,
        *,
        seed: int,
        epoch: int = 2,
        replicas: int = 5,
        quorum: int = 3,
        deadline_us: int = 10**15,
        retransmit_us: int = 1_000_000,
        max_batch_bytes: int = 8 * 1024 * 1024,
        zombie: bool = False,
    ) -> None:
        if epoch < 2:
            raise ValueError("the sim's primary took over from a primary of epoch - 1: epoch must be >= 2")
        self.config = PrimaryConfig(
            epoch=epoch,
            replicas=replicas,
            quorum=quorum,
            deadline_us=deadline_us,
            retransmit_us=retransmit_us,
            max_batch_bytes=max_batch_bytes,
        )
        self.primary = PrimaryState(self.config)
        self.n = replicas
        self.rng = random.Random(seed)
        self.now_us = 0
        # The view change made a quorum promise this epoch; the rest still promise the old one.
        self.disks = [Disk(promised_epoch=epoch if r < quorum else epoch - 1) for r in range(replicas)]
        self.replicas = [ReplicaState(r, promised_epoch=self.disks[r].promised_epoch) for r in range(replicas)]
        # Pending effects of each replica's I/O layer, each marked with whether its answers go to
        # this primary (True) or to the deposed one (False).
        self.outbox: list[deque[tuple[ReplicaEffect, bool, int]]] = [deque() for _ in range(replicas)]
        self.conn = [0] * replicas  # the primary's current connection to each replica (PROMISEs are per connection)
        self.zombie = zombie
        self.zombie_log = _other_log(self.rng, epoch - 1, 6)
        self.zombie_acks = 0  # answers the replicas sent to the deposed primary (they never reach us)
        self.pool: list[Message] = []
        self.partitioned = False  # while set, every message sent is lost
        self.log: dict[int, Entry] = {}  # the primary's log, as primary_commit returned it
        self.next_token = 1
        self.holds: list[HoldRecord] = []
        self.hold_seq: dict[int, int] = {}
        self.releases: list[ReleaseRecord] = []
        self.failed: list[tuple[int, str]] = []
        self.resets: list[str] = []
        self.commit_refusals = 0  # primary_commit raised ObjectResetError after a reset
        self.ack_violations: list[str] = []  # an ACK sent while the disk lacks what it covers
        self.gate_opened = False
        for r in range(replicas):
            self.connect(r)

    def connect(self, r: int) -> None:
        """A new connection: the primary's first message on it is PREPARE (PrimaryNode does so)."""
        self.conn[r] += 1
        self._send(PrepareMsg(r, self.conn[r]))

    # -- effects ---------------------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        if not self.partitioned:
            self.pool.append(msg)

    def _primary(self, effects: list[PrimaryEffect]) -> None:
        for eff in effects:
            if isinstance(eff, SendEntries):
                self._send(AppendMsg(eff.replica, self.primary.epoch, eff.entries, eff.log_end))
            elif isinstance(eff, ReleaseReply):
                seq = self.hold_seq[eff.token]
                self.releases.append(
                    ReleaseRecord(eff.token, seq, bool(self.resets), tuple(self.holders(s) for s in range(1, seq + 1)))
                )
            elif isinstance(eff, FailReply):
                self.failed.append((eff.token, eff.reason))
            elif isinstance(eff, ResetObject):
                self.resets.append(eff.reason)
            elif isinstance(eff, SendAdmit):
                self._send(AdmitMsg(eff.replica, self.primary.epoch, eff.upto))
                self._send(PrepareMsg(eff.replica, self.conn[eff.replica]))
            elif isinstance(eff, OpenInputGate):
                self.gate_opened = True

    def holders(self, seq: int) -> frozenset[int]:
        """Replicas whose disk holds exactly the primary's entry ``seq`` (same chain)."""
        want = self.log[seq].chain
        return frozenset(r for r in range(self.n) if (e := self.disks[r].entries.get(seq)) and e.chain == want)

    def _run_effect(self, r: int, eff: ReplicaEffect, to_us: bool, conn: int) -> None:
        disk = self.disks[r]
        if isinstance(eff, PersistEntries):
            for e in eff.entries:
                if e.seq != disk.last_seq + 1:
                    raise AssertionError(f"replica {r} persisted seq {e.seq} after {disk.last_seq}")
                disk.entries[e.seq] = e
        elif isinstance(eff, PersistPromise):
            disk.promised_epoch = eff.epoch
        elif isinstance(eff, TruncateSuffix):
            for seq in [q for q in disk.entries if q > eff.keep_through]:
                del disk.entries[seq]
        elif isinstance(eff, PersistLogEpoch):
            disk.log_epoch = eff.epoch
        elif isinstance(eff, PersistVoter):
            disk.voter = True
        elif isinstance(eff, SendPromise):
            if eff.promise.last_seq > disk.last_seq:
                self.ack_violations.append(
                    f"replica {r} promised seq {eff.promise.last_seq} with {disk.last_seq} on disk"
                )
            if to_us:
                self._send(PromiseMsg(r, conn, eff.promise))
        elif isinstance(eff, SendAck):
            if eff.stored_through > disk.last_seq:
                self.ack_violations.append(
                    f"replica {r} acked through {eff.stored_through} with {disk.last_seq} on disk"
                )
            if to_us:
                self._send(AckMsg(r, eff.epoch, eff.stored_through, eff.chain, eff.log_epoch))
            else:
                self.zombie_acks += 1
        elif isinstance(eff, SendReject) and to_us:
            self._send(RejectMsg(r, eff.reason, eff.promised_epoch, eff.message))

    def io(self, r: int, count: int = 0) -> None:
        box = self.outbox[r]
        todo = len(box) if count <= 0 else min(count, len(box))
        for _ in range(todo):
            self._run_effect(r, *box.popleft())

    # -- steps -----------------------------------------------------------------------------------

    def write(self, pages: int = 1, wall_skew_us: int = 0) -> int:
        token = self.next_token
        self.next_token += 1
        if self.primary.reset_reason is not None:
            try:
                self.primary_commit(pages, wall_skew_us)
            except ObjectResetError:
                self.commit_refusals += 1
            else:
                raise AssertionError("primary_commit accepted a commit after the reset")
            self.hold(token, self.primary.last_seq)
            return token
        seq = self.primary_commit(pages, wall_skew_us)
        self.hold(token, seq)
        return token

    def primary_commit(self, pages: int, wall_skew_us: int) -> int:
        frames = {self.rng.randint(1, 40): self.rng.randbytes(PAGE_SIZE) for _ in range(max(1, pages))}
        commit = Commit(pages=frames, db_pages=max(frames), page_size=PAGE_SIZE, db_checksum=self.rng.getrandbits(64))
        wall = max(0, WALL0_US + self.now_us + wall_skew_us)
        entry, effects = self.primary.primary_commit(commit, now_us=self.now_us, wall_us=wall)
        self.log[entry.seq] = entry
        self._primary(effects)
        return entry.seq

    def read(self) -> int:
        token = self.next_token
        self.next_token += 1
        self.hold(token, self.primary.last_seq)
        return token

    def hold(self, token: int, seq: int) -> None:
        durable_before = self.primary.durable_seq
        was_reset = self.primary.reset_reason is not None
        self.hold_seq[token] = seq
        effects = self.primary.hold(token, seq)
        self.holds.append(HoldRecord(token, seq, durable_before, was_reset, tuple(effects)))
        self._primary(effects)

    def deliver(self, index: int = 0, flush: bool = True) -> None:
        if not self.pool:
            return
        msg = self.pool.pop(index % len(self.pool))
        if self.partitioned:
            return
        r = msg.replica
        if isinstance(msg, AppendMsg):
            self.outbox[r].extend(
                (eff, True, 0) for eff in self.replicas[r].on_append(msg.epoch, msg.entries, msg.log_end)
            )
            if flush:
                self.io(r)
        elif isinstance(msg, PrepareMsg):
            self.outbox[r].extend((eff, True, msg.conn) for eff in self.replicas[r].on_prepare(self.primary.epoch))
            if flush:
                self.io(r)
        elif isinstance(msg, AdmitMsg):
            self.outbox[r].extend((eff, True, 0) for eff in self.replicas[r].on_admit(msg.epoch, msg.upto))
            if flush:
                self.io(r)
        elif isinstance(msg, PromiseMsg):
            if msg.conn != self.conn[r]:
                return  # an answer on a connection that is gone
            if self.primary.connected[r]:
                self._primary(self.primary.on_promise(r, msg.promise))
            else:
                self._primary(self.primary.on_connected(r, msg.promise, now_us=self.now_us))
        elif isinstance(msg, AckMsg):
            self._primary(
                self.primary.on_ack(
                    r,
                    epoch=msg.epoch,
                    stored_through=msg.stored_through,
                    chain=msg.chain,
                    log_epoch=msg.log_epoch,
                    now_us=self.now_us,
                )
            )
        else:
            self._primary(
                self.primary.on_reject(r, reason=msg.reason, promised_epoch=msg.promised_epoch, message=msg.message)
            )

    def crash_restart(self, r: int) -> None:
        self.outbox[r].clear()  # effects not yet run (unsynced data, unsent acks) are lost
        disk = self.disks[r]
        last = disk.last_seq
        chain = disk.entries[last].chain if last else GENESIS_CHAIN
        self.replicas[r] = ReplicaState(
            r,
            promised_epoch=disk.promised_epoch,
            log_epoch=disk.log_epoch,
            last_seq=last,
            last_chain=chain,
            chains={s: e.chain for s, e in disk.entries.items()},
            voter=disk.voter,
        )
        self.primary.on_disconnected(r)
        self.connect(r)

    def advance(self, us: int) -> None:
        self.now_us += us
        self._primary(self.primary.on_tick(self.now_us))

    def stale_ack(self, r: int, behind: int) -> None:
        seq = max(0, self.primary.last_seq - behind)
        chain = GENESIS_CHAIN if seq == 0 else _other_chain(self.zombie_log, seq)
        self._send(AckMsg(r, self.primary.epoch - 1, seq, chain, self.primary.epoch - 1))

    def zombie_append(self, r: int, upto: int) -> None:
        if self.zombie:
            entries = tuple(self.zombie_log[: max(1, min(upto, len(self.zombie_log)))])
            effects = self.replicas[r].on_append(self.primary.epoch - 1, entries, len(self.zombie_log))
            self.outbox[r].extend((eff, False, 0) for eff in effects)

    def step(self, s: Step) -> None:
        if isinstance(s, Write):
            self.write(s.pages, s.wall_skew_us)
        elif isinstance(s, Read):
            self.read()
        elif isinstance(s, Deliver):
            self.deliver(s.index, s.flush)
        elif isinstance(s, Drop):
            if self.pool:
                self.pool.pop(s.index % len(self.pool))
        elif isinstance(s, Duplicate):
            if self.pool:
                self.pool.append(self.pool[s.index % len(self.pool)])
        elif isinstance(s, Io):
            self.io(s.replica % self.n, s.count)
        elif isinstance(s, CrashRestart):
            self.crash_restart(s.replica % self.n)
        elif isinstance(s, Advance):
            self.advance(s.us)
        elif isinstance(s, StaleAck):
            self.stale_ack(s.replica % self.n, s.behind)
        else:
            self.zombie_append(s.replica % self.n, s.upto)

    def run(self, steps: list[Step]) -> None:
        for s in steps:
            self.step(s)

    def partition(self) -> None:
        """Cut every replica off: messages in flight and every later send are lost."""
        self.partitioned = True
        self.pool.clear()

    def heal(self, max_rounds: int = 10) -> None:
        """End every fault: deliver everything (oldest first), run all I/O, tick past retransmit."""
        self.partitioned = False
        for _ in range(max_rounds):
            while self.pool or any(self.outbox):
                for r in range(self.n):
                    self.io(r)
                if self.pool:
                    self.deliver(0, flush=True)
            done = all(m == self.primary.last_seq for m in self.primary.match)
            if self.primary.reset_reason is not None or (done and not self.primary.held):
                return
            for r in range(self.n):
                if not self.primary.connected[r]:
                    self.connect(r)  # PrimaryNode reconnects a link whose handshake or session ended
            self.advance(self.config.retransmit_us + 1)

    # -- views -----------------------------------------------------------------------------------

    @property
    def released_tokens(self) -> list[int]:
        return [rec.token for rec in self.releases]

    @property
    def failed_tokens(self) -> list[int]:
        return [tok for tok, _ in self.failed]


def _other_log(rng: random.Random, epoch: int, n: int) -> list[Entry]:
    """``n`` entries of another primary's log (epoch ``epoch``): same seqs, different chains."""
    out: list[Entry] = []
    prev = GENESIS_CHAIN
    for seq in range(1, n + 1):
        e = encode(
            epoch=epoch,
            seq=seq,
            timestamp_us=WALL0_US + seq,
            page_size=PAGE_SIZE,
            db_pages=1,
            db_checksum=rng.getrandbits(64),
            frames={1: rng.randbytes(PAGE_SIZE)},
            prev_chain=prev,
        )
        out.append(e)
        prev = e.chain
    return out


def _other_chain(log: list[Entry], seq: int) -> bytes:
    if seq <= len(log):
        return log[seq - 1].chain
    return hashlib.blake2b(seq.to_bytes(8, "big"), digest_size=16, person=b"other-log").digest()


# -- strategies -----------------------------------------------------------------------------------

_index = st.integers(0, 40)
_replica = st.integers(0, 4)

# (weight, strategy): deliveries dominate, so that entries actually reach a quorum now and then.
_weighted: list[tuple[int, st.SearchStrategy[Step]]] = [
    (2, st.builds(Write, st.integers(1, 3), st.integers(-3_000_000, 3_000_000))),
    (1, st.just(Read())),
    (20, st.builds(Deliver, _index, st.sampled_from([True, True, True, False]))),
    (1, st.builds(Drop, _index)),
    (1, st.builds(Duplicate, _index)),
    (2, st.builds(Io, _replica, st.integers(0, 3))),
    (1, st.builds(CrashRestart, _replica)),
    (1, st.builds(Advance, st.sampled_from([1_000, 400_000, 1_100_000, 2_500_000]))),
    (1, st.builds(StaleAck, _replica, st.integers(0, 2))),
    (1, st.builds(ZombieAppend, _replica, st.integers(1, 3))),
]
step_strategy: st.SearchStrategy[Step] = st.sampled_from(
    [strategy for weight, strategy in _weighted for _ in range(weight)]
).flatmap(lambda strategy: strategy)


def schedules(max_steps: int = 100) -> st.SearchStrategy[list[Step]]:
    """Up to ``max_steps`` steps; the length is drawn first (plain lists stay too short to find much)."""
    return st.integers(0, max_steps).flatmap(lambda n: st.lists(step_strategy, min_size=n, max_size=n))


# An entry of 1-3 pages of 512 bytes is 72 + n * 516 bytes: these batch limits split APPENDs.
batch_limits = st.sampled_from([8 * 1024 * 1024, 1200, 2500])
