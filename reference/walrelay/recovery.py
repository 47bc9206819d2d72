"""Recovery (the view change) as a pure state machine: promises in, the log to serve from out.

Spec: ``Recover`` in spec/WalRelay.tla; design and the rules TLC forced in docs/failover.md and
docs/protocol.md §9.1. A new primary with epoch ``E`` (issued by placement) sends PREPARE(E) to every
replica, and this machine collects the PROMISEs:

* Only **voters** count towards ``fence_quorum`` (``MayVote``): a replica that lost its disk rejoins
  as a non-voter, and counting its empty log could let a quorum miss an acknowledged entry.
* Among the voters' promises it picks the most recent log by ``(log_epoch, last_seq)``
  (``Better``): the epoch of the primary whose log a replica holds, *then* its length. The longest
  log alone is wrong (spec/mutants/longest_log_ignoring_epochs.cfg).
* It fetches that replica's entries and checks them: contiguous from seq 1, each chain following
  the previous one, ending exactly at the promised ``(last_seq, last_chain)``. A replica that now
  holds something else (it moved on to a newer epoch) makes recovery fail rather than guess.

No sockets, no clock, no files: the I/O layer sends PREPARE/FETCH, feeds answers in, and, once
``Recovered`` comes out, rebuilds the database by verified replay and re-replicates under ``E``.
A REJECT carrying a higher promise means a newer primary exists: ``GiveUp`` (spec: a primary whose
PREPARE is refused gives up).
"""

from __future__ import annotations

from dataclasses import dataclass

from walrelay.entry import GENESIS_CHAIN, Entry, follows
from walrelay.wire import Promise


@dataclass(frozen=True, slots=True)
class SendFetch:
    replica: int
    from_seq: int


@dataclass(frozen=True, slots=True)
class ReadArchive:
    """The chosen replica truncated its log through ``truncated`` (those entries are archived):
    read where each branch of the archive ends and call ``on_archive`` (or ``on_archive_failed``)."""

    replica: int
    truncated: int


@dataclass(frozen=True, slots=True)
class ArchiveEnd:
    """Branch ``branch`` of the archive reaches seq ``end`` (chain ``chain``) without a gap."""

    branch: int
    end: int
    chain: bytes


@dataclass(frozen=True, slots=True)
class Recovered:
    """The log to serve from: the archive through ``base_seq``, then ``entries``. Empty for a new
    object. ``source`` is the replica the entries came from."""

    entries: tuple[Entry, ...]  # PrimaryState(recovered=entries) continues from the last one
    source: int | None
    base_seq: int = 0  # restore the database through this seq from the archive first
    base_chain: bytes = GENESIS_CHAIN
    base_branch: int = 0  # ... from this branch of the archive (any branch holding that chain there)
    base_entry: Entry | None = None  # the entry at base_seq, as the replica holds it


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


RecoveryEffect = SendFetch | ReadArchive | Recovered | GiveUp


def better(p: Promise, q: Promise) -> bool:
    """Better: is ``p``'s log more recent than ``q``'s? By log epoch, then by length."""
    return (p.log_epoch, p.last_seq) > (q.log_epoch, q.last_seq)


class Recovery:
    """Collect promises for ``epoch``, choose the most recent log, fetch and verify it."""

    def __init__(
        self, *, epoch: int, replicas: int, fence_quorum: int, expect: tuple[int, int, bytes] | None = None
    ) -> None:
        """``expect``: (log_epoch, last_seq, last_chain) the chosen log must be, or recovery gives up
        without fetching anything: a restoring primary's second epoch only fences and checks that
        nobody changed the object since its first epoch archived it (docs/restore-branches.md)."""
        if not 2 * fence_quorum > replicas:
            raise ValueError(f"fence quorum {fence_quorum} of {replicas} is not a majority")
        self.epoch = epoch
        self.replicas = replicas
        self.fence_quorum = fence_quorum
        self.promises: dict[int, Promise] = {}  # replica -> its PROMISE (a reconnect replaces it)
        self.impossible: dict[int, int] = {}  # replica -> a promise no allocator issued (R-7.3-3)
        self.chosen: int | None = None  # the replica whose log is being fetched
        self.fetched: list[Entry] = []
        self.reading_archive = False
        self.expect = expect
        self.archive_ends: list[ArchiveEnd] = []  # candidates for the base, newest branch first
        self.fetch_from = 1  # the seq the first fetched entry has
        self.done = False

    # -- promises ----------------------------------------------------------------------------

    def start(self) -> list[RecoveryEffect]:
        """Epoch 1 has no past: nothing can have been written before the first primary."""
        if self.epoch == 1:
            return self._finish((), None)
        return []

    def on_promise(self, replica: int, p: Promise) -> list[RecoveryEffect]:
        if self.done or p.epoch != self.epoch or not 0 <= replica < self.replicas:
            return []  # an answer to another recovery, or after this one ended
        if replica != self.chosen:  # the log being fetched stays the one its PROMISE described
            self.promises[replica] = p
        if self.chosen is not None:
            return []
        return self._choose()

    def _choose(self) -> list[RecoveryEffect]:
        """The most recent log among the voters' promises, once they are a fence quorum; or
        among all promises, once every replica answered.

        Any fence quorum's most recent log holds every committed entry (spec: Recover picks from
        any subset of FenceQuorum promises), so choosing among all voters heard so far is safe,
        and so is choosing again among the rest when the chosen replica goes away. With every
        replica's promise in hand nothing can be missed, voters or not (every holder of a
        committed entry answered, and no older primary can commit any more): that is how an
        object recovers when too few voters exist, for instance when the first primary admitted
        only some replicas before it died (spec: Recover's second case).
        """
        candidates = [r for r, q in self.promises.items() if q.voter]
        if len(candidates) < self.fence_quorum:
            if len(self.promises) < self.replicas:
                return []  # wait: never guess
            candidates = list(self.promises)
        best_r = candidates[0]
        for r in candidates[1:]:
            if better(self.promises[r], self.promises[best_r]):
                best_r = r
        best = self.promises[best_r]
        self.chosen = best_r
        if self.expect is not None:
            got = (best.log_epoch, best.last_seq, best.last_chain)
            # An empty log is every epoch's (a primary that recovered nothing sent no APPEND).
            if got != self.expect and not (got[1] == self.expect[1] == 0):
                return self._give_up(
                    f"the object changed while restoring: replica {best_r} holds epoch {got[0]}'s log through seq "
                    f"{got[1]}, not epoch {self.expect[0]}'s through seq {self.expect[1]} as archived"
                )
            return self._finish((), best_r)
        if best.truncated_through > 0:
            # Entries through it live in the archive (spec: Recover's base).
            self.reading_archive = True
            return [ReadArchive(best_r, best.truncated_through)]
        if best.last_seq == 0:
            return self._finish((), best_r)
        return [SendFetch(best_r, 1)]

    def on_archive(self, ends: list[ArchiveEnd]) -> list[RecoveryEffect]:
        """Where each branch of the archive ends (the last seq reachable without a gap). The chosen
        log is the archive through one of them, then the replica's entries after it.

        Which branch holds the replica's history is decided by chains, not by numbers: the replica
        is asked for its log from its truncation point, and the base is the newest branch whose end
        lies within that log with the same chain there (branches share their history up to a fork,
        and any branch holding a chain at a seq restores the same database there)."""
        if self.done or not self.reading_archive or self.chosen is None:
            return []
        self.reading_archive = False
        best = self.promises[self.chosen]
        t = best.truncated_through
        usable = [a for a in ends if t <= a.end <= best.last_seq]
        if not usable:
            reach = ", ".join(f"branch {a.branch} to seq {a.end}" for a in ends) or "nothing"
            return self._give_up(
                f"replica {self.chosen} truncated its log through seq {t} (its log ends at seq {best.last_seq}), "
                f"but the archive reaches {reach}: the entries between are lost (archive gap), or the archive is "
                "not this object's history"
            )
        self.archive_ends = usable
        self.fetch_from = t
        return [SendFetch(self.chosen, t)]

    def on_archive_failed(self, reason: str) -> list[RecoveryEffect]:
        if self.done or not self.reading_archive:
            return []
        return self._give_up(f"the archive is needed (replica {self.chosen} truncated its log) but: {reason}")

    def on_reject(self, replica: int, promised_epoch: int, *, issued: int | None = None) -> list[RecoveryEffect]:
        """A REJECT of our PREPARE or FETCH. ``issued``: the highest epoch the allocator has issued,
        read after the REJECT arrived (None: no allocator to ask, as with a fixed ``--epoch``).

        Spec: ReceiveReject only for a Believable REJECT. A promise above every issued epoch is not
        a newer primary (the allocator is the only source of epochs, and it had issued any real
        one before the replica could promise it): that replica is corrupt, and recovery goes on
        without it, as if it were down (R-7.3-3), instead of giving up for good."""
        if self.done or promised_epoch <= self.epoch:
            return []
        if issued is not None and promised_epoch > issued:
            self.impossible[replica] = promised_epoch
            return self.on_disconnected(replica)
        return self._give_up(
            f"replica {replica} promised epoch {promised_epoch} > {self.epoch}: a newer primary exists"
        )

    def on_disconnected(self, replica: int) -> list[RecoveryEffect]:
        """A replica went away. Its promise stays valid (promises are durable), except that we
        cannot fetch from it: if it was the chosen one, choose again among the others."""
        if self.done or self.chosen != replica:
            return []
        del self.promises[replica]
        self.chosen = None
        self.fetched = []
        self.archive_ends, self.fetch_from = [], 1
        self.reading_archive = False  # a read in progress answers for a choice that is gone
        return self._choose()

    # -- entries -----------------------------------------------------------------------------

    def on_entries(self, replica: int, entries: tuple[Entry, ...], final: bool) -> list[RecoveryEffect]:
        """One ENTRIES frame (the answer to one FETCH); ``final`` = it ends with the replica's last entry."""
        if self.done or self.chosen is None or replica != self.chosen:
            return []
        chosen = self.promises[replica]
        for e in entries:
            expected = self.fetch_from + len(self.fetched)
            # From the archive's truncation point the first entry is checked by its chain below.
            linked = not self.fetched and bool(self.archive_ends)
            prev = self.fetched[-1].chain if self.fetched else GENESIS_CHAIN
            if e.seq != expected or not (linked or follows(e, prev)):
                return self._give_up(
                    f"replica {replica} sent seq {e.seq} where seq {expected} following its promised log was due"
                )
            if e.seq > chosen.last_seq:
                return self._give_up(f"replica {replica} sent seq {e.seq} beyond the {chosen.last_seq} it promised")
            self.fetched.append(e)
        have = self.fetch_from + len(self.fetched) - 1
        if have == chosen.last_seq:
            if self.fetched[-1].chain != chosen.last_chain:
                return self._give_up(f"replica {replica}'s log no longer ends with the chain it promised")
            if self.archive_ends:
                return self._finish_on_archive(replica)
            return self._finish(tuple(self.fetched), replica)
        if final:
            return self._give_up(f"replica {replica} sent {have} entries of the {chosen.last_seq} it promised")
        if not entries:
            return self._give_up(f"replica {replica} sent an empty, non-final ENTRIES frame")
        return [SendFetch(replica, have + 1)]  # one ENTRIES frame per FETCH

    # -- ends --------------------------------------------------------------------------------

    def _finish(self, entries: tuple[Entry, ...], source: int | None) -> list[RecoveryEffect]:
        self.done = True
        return [Recovered(entries, source)]

    def _finish_on_archive(self, replica: int) -> list[RecoveryEffect]:
        held = {e.seq: e for e in self.fetched}
        for a in self.archive_ends:
            base = held.get(a.end)
            if base is not None and base.chain == a.chain:
                self.done = True
                after = tuple(e for e in self.fetched if e.seq > a.end)
                return [Recovered(after, replica, a.end, a.chain, a.branch, base)]
        return self._give_up(
            f"replica {replica}'s log differs from every branch of the archive where they overlap: the archive is "
            "not this object's history"
        )

    def _give_up(self, reason: str) -> list[RecoveryEffect]:
        self.done = True
        return [GiveUp(reason)]
