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
    read where the archive ends and call ``on_archive`` (or ``on_archive_failed``)."""

    replica: int
    truncated: int


@dataclass(frozen=True, slots=True)
class Recovered:
    """The log to serve from: the archive through ``base_seq``, then ``entries``. Empty for a new
    object. ``source`` is the replica the entries came from."""

    entries: tuple[Entry, ...]  # PrimaryState(recovered=entries) continues from the last one
    source: int | None
    base_seq: int = 0  # restore the database through this seq from the archive first
    base_chain: bytes = GENESIS_CHAIN


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


RecoveryEffect = SendFetch | ReadArchive | Recovered | GiveUp


def better(p: Promise, q: Promise) -> bool:
    """Better: is ``p``'s log more recent than ``q``'s? By log epoch, then by length."""
    return (p.log_epoch, p.last_seq) > (q.log_epoch, q.last_seq)


class Recovery:
    """Collect promises for ``epoch``, choose the most recent log, fetch and verify it."""

    def __init__(self, *, epoch: int, replicas: int, fence_quorum: int) -> None:
        if not 2 * fence_quorum > replicas:
            raise ValueError(f"fence quorum {fence_quorum} of {replicas} is not a majority")
        self.epoch = epoch
        self.replicas = replicas
        self.fence_quorum = fence_quorum
        self.promises: dict[int, Promise] = {}  # replica -> its PROMISE (a reconnect replaces it)
        self.chosen: int | None = None  # the replica whose log is being fetched
        self.fetched: list[Entry] = []
        self.base_seq, self.base_chain = 0, GENESIS_CHAIN  # where the archive takes over (spec: base)
        self.reading_archive = False
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
        if best.truncated_through > 0:
            # Entries through it live in the archive (spec: Recover's base).
            self.reading_archive = True
            return [ReadArchive(best_r, best.truncated_through)]
        if best.last_seq == 0:
            return self._finish((), best_r)
        return [SendFetch(best_r, 1)]

    def on_archive(self, end_seq: int, end_chain: bytes) -> list[RecoveryEffect]:
        """Where the archive ends (the last seq reachable without a gap). The chosen log is the
        archive through there, then the replica's entries after it."""
        if self.done or not self.reading_archive or self.chosen is None:
            return []
        self.reading_archive = False
        best = self.promises[self.chosen]
        if end_seq < best.truncated_through:
            return self._give_up(
                f"replica {self.chosen} truncated its log through seq {best.truncated_through}, but the archive "
                f"ends at seq {end_seq}: the entries between are lost (archive gap)"
            )
        if end_seq > best.last_seq:
            return self._give_up(
                f"the archive holds seq {end_seq}, beyond the most recent log (replica {self.chosen}, seq "
                f"{best.last_seq}): the archive is not this object's committed history"
            )
        self.base_seq, self.base_chain = end_seq, end_chain
        if end_seq == best.last_seq:
            if end_chain != best.last_chain:
                return self._give_up(f"replica {self.chosen}'s log ends at seq {end_seq} differently from the archive")
            return self._finish((), self.chosen)
        return [SendFetch(self.chosen, end_seq + 1)]

    def on_archive_failed(self, reason: str) -> list[RecoveryEffect]:
        if self.done or not self.reading_archive:
            return []
        return self._give_up(f"the archive is needed (replica {self.chosen} truncated its log) but: {reason}")

    def on_reject(self, replica: int, promised_epoch: int) -> list[RecoveryEffect]:
        if self.done or promised_epoch <= self.epoch:
            return []
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
        self.base_seq, self.base_chain = 0, GENESIS_CHAIN
        self.reading_archive = False  # a read in progress answers for a choice that is gone
        return self._choose()

    # -- entries -----------------------------------------------------------------------------

    def on_entries(self, replica: int, entries: tuple[Entry, ...], final: bool) -> list[RecoveryEffect]:
        """One ENTRIES frame (the answer to one FETCH); ``final`` = it ends with the replica's last entry."""
        if self.done or self.chosen is None or replica != self.chosen:
            return []
        chosen = self.promises[replica]
        for e in entries:
            expected = self.base_seq + len(self.fetched) + 1
            prev = self.fetched[-1].chain if self.fetched else self.base_chain
            if e.seq != expected or not follows(e, prev):
                return self._give_up(
                    f"replica {replica} sent seq {e.seq} where seq {expected} following its promised log was due"
                )
            if e.seq > chosen.last_seq:
                return self._give_up(f"replica {replica} sent seq {e.seq} beyond the {chosen.last_seq} it promised")
            self.fetched.append(e)
        have = self.base_seq + len(self.fetched)
        if have == chosen.last_seq:
            if self.fetched[-1].chain != chosen.last_chain:
                return self._give_up(f"replica {replica}'s log no longer ends with the chain it promised")
            return self._finish(tuple(self.fetched), replica)
        if final:
            return self._give_up(f"replica {replica} sent {have} entries of the {chosen.last_seq} it promised")
        if not entries:
            return self._give_up(f"replica {replica} sent an empty, non-final ENTRIES frame")
        return [SendFetch(replica, have + 1)]  # one ENTRIES frame per FETCH

    # -- ends --------------------------------------------------------------------------------

    def _finish(self, entries: tuple[Entry, ...], source: int | None) -> list[RecoveryEffect]:
        self.done = True
        return [Recovered(entries, source, self.base_seq, self.base_chain)]

    def _give_up(self, reason: str) -> list[RecoveryEffect]:
        self.done = True
        return [GiveUp(reason)]
