"""Recovery (the view change): the chosen log holds every committed entry.

The property drives the real pure pieces, ``ReplicaState`` (promises, fencing, adopting a newer
epoch's log, admission) and ``Recovery`` (voters only, most recent by (log epoch, length), verified
fetch), through random histories: writes, partial replication, commits on a quorum, permanent disk
losses (up to 2 of 5), stale primaries that keep sending, and repeated failovers to a random
reachable subset. After every recovery the new log must hold every committed entry at its seq.
Planting the classic bugs in ``Recovery`` (choose the longest log, count non-voters) makes it fail;
see the mutant tests at the bottom.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import walrelay.recovery as recovery_mod
from walrelay.entry import GENESIS_CHAIN, Entry, encode
from walrelay.recovery import ArchiveEnd, GiveUp, ReadArchive, Recovered, Recovery, SendFetch
from walrelay.replica import (
    PersistEntries,
    PersistVoter,
    ReplicaEffect,
    ReplicaState,
    SendAck,
    SendPromise,
    TruncateSuffix,
)
from walrelay.wire import Promise

N, Q = 5, 3


def entry(epoch: int, seq: int, prev: bytes, salt: int) -> Entry:
    return encode(
        epoch=epoch,
        seq=seq,
        timestamp_us=seq,
        page_size=512,
        db_pages=1,
        db_checksum=salt,
        frames={1: salt.to_bytes(8, "big") * 64},
        prev_chain=prev,
    )


@dataclass
class Node:
    state: ReplicaState
    disk: dict[int, Entry] = field(default_factory=dict)

    def apply(self, effects: list[object]) -> SendAck | None:
        ack = None
        for eff in effects:
            if isinstance(eff, PersistEntries):
                for e in eff.entries:
                    self.disk[e.seq] = e
            elif isinstance(eff, TruncateSuffix):
                for s in [s for s in self.disk if s > eff.keep_through]:
                    del self.disk[s]
            elif isinstance(eff, SendAck):
                ack = eff
        return ack


@dataclass
class Primary:
    epoch: int
    log: list[Entry]
    acks: dict[int, int] = field(default_factory=dict)  # replica -> stored_through under this epoch
    commit: int = 0
    recovered: bool = True  # False: its recovery never completed, so it never writes
    recovered_len: int = 0  # it is "syncing" until commit reaches this (spec: Recover)


class History:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.nodes = [Node(ReplicaState(r)) for r in range(N)]
        self.committed: dict[int, bytes] = {}  # seq -> chain of every entry a primary committed
        self.primaries: list[Primary] = []
        self.losses = 0
        self.salt = 0

    # -- the write path ----------------------------------------------------------------------

    def write(self, p: Primary) -> None:
        self.salt += 1
        prev = p.log[-1].chain if p.log else GENESIS_CHAIN
        p.log.append(entry(p.epoch, len(p.log) + 1, prev, self.salt))

    def replicate(self, p: Primary, targets: list[int]) -> None:
        for r in targets:
            node = self.nodes[r]
            start = self.rng.randint(1, len(p.log)) if p.log else 1
            ack = node.apply(list(node.state.on_append(p.epoch, tuple(p.log[start - 1 :]), len(p.log))))
            # Count only ACKs that prove this epoch's log (the chain matches ours at that seq).
            if ack is not None and ack.epoch == p.epoch and node.state.log_epoch == p.epoch:
                s = ack.stored_through
                if s and s <= len(p.log) and p.log[s - 1].chain == ack.chain:
                    p.acks[r] = max(p.acks.get(r, 0), s)

    def advance_commit(self, p: Primary) -> None:
        for s in range(len(p.log), p.commit, -1):
            if sum(1 for a in p.acks.values() if a >= s) >= Q:
                for i in range(p.commit + 1, s + 1):
                    chain = p.log[i - 1].chain
                    assert self.committed.get(i, chain) == chain, f"seq {i} committed twice, differently"
                    self.committed[i] = chain
                p.commit = s
                return

    def admit(self, p: Primary) -> None:
        """Spec: Admit, by a serving primary (PrimaryState admits only once its recovered log is
        durable; an ADMIT(upto 0) from a syncing primary would admit an empty replica)."""
        if p.commit < p.recovered_len:
            return
        for r, node in enumerate(self.nodes):
            if not node.state.voter and p.acks.get(r, 0) >= p.commit:
                for eff in node.state.on_admit(p.epoch, p.commit):
                    assert isinstance(eff, PersistVoter)

    def lose_disk(self, r: int, current_epoch: int) -> None:
        self.losses += 1
        # Rejoins empty, as a non-voter that promised the highest epoch ever issued.
        self.nodes[r] = Node(ReplicaState(r, promised_epoch=current_epoch, voter=False))
        for p in self.primaries:
            p.acks.pop(r, None)  # connection-scoped: ACKs from the lost disk stop counting

    # -- failover ----------------------------------------------------------------------------

    def failover(self, reachable: list[int], make: Callable[..., Recovery] = Recovery) -> Primary | None:
        epoch = len(self.primaries) + 1
        rec = make(epoch=epoch, replicas=N, fence_quorum=Q)
        effects = list(rec.start())
        for r in reachable:
            for eff in self.nodes[r].state.on_prepare(epoch):
                if isinstance(eff, SendPromise):
                    effects += rec.on_promise(r, eff.promise)
        while effects:
            eff = effects.pop(0)
            if isinstance(eff, SendFetch):
                disk = self.nodes[eff.replica].disk
                effects += rec.on_entries(eff.replica, tuple(disk[s] for s in sorted(disk) if s >= eff.from_seq), True)
            elif isinstance(eff, GiveUp):
                raise AssertionError(eff.reason)
            elif isinstance(eff, Recovered):
                log = list(eff.entries)
                for seq, chain in self.committed.items():
                    assert seq <= len(log) and log[seq - 1].chain == chain, (
                        f"epoch {epoch} recovered {len(log)} entries from replica {eff.source} "
                        f"without committed seq {seq}"
                    )
                p = Primary(epoch, log, recovered_len=len(log))
                self.primaries.append(p)
                return p
        self.primaries.append(Primary(epoch, [], recovered=False))  # too few voters: never serves
        return None


ops = st.lists(
    st.tuples(
        st.sampled_from(["write", "replicate", "replicate", "commit", "lose", "failover", "stale"]),
        st.integers(0, 2**N - 1),
    ),
    min_size=1,
    max_size=60,
)


def run(seed: int, script: list[tuple[str, int]], make: Callable[..., Recovery] = Recovery) -> History:
    h = History(random.Random(seed))
    current = h.failover(list(range(N)), make)
    assert current is not None
    for op, mask in script:
        targets = [r for r in range(N) if mask >> r & 1]
        if op == "write":
            h.write(current)
        elif op == "replicate":
            h.replicate(current, targets)
        elif op == "commit":
            h.advance_commit(current)
            h.admit(current)
        elif op == "lose" and h.losses < N - Q and targets:
            h.lose_disk(targets[0], len(h.primaries))
        elif op == "failover" and len(targets) >= Q:
            new = h.failover(targets, make)
            if new is not None:
                current = new
        elif op == "stale" and (deposed := [p for p in h.primaries if p.recovered and p is not current]):
            # A deposed primary keeps sending (and writing) to whoever still listens.
            stale = h.rng.choice(deposed)
            h.write(stale)
            h.replicate(stale, targets)
            h.advance_commit(stale)
    return h


@settings(max_examples=max(settings().max_examples, 1000))  # ~1 ms each
@given(st.integers(0, 2**32), ops)
def test_every_committed_entry_is_in_every_recovered_log(seed: int, script: list[tuple[str, int]]) -> None:
    run(seed, script)


# -- unit rules ------------------------------------------------------------------------------------


def promise(r: int, log_epoch: int, last_seq: int, *, voter: bool = True, epoch: int = 5) -> tuple[int, Promise]:
    return r, Promise(epoch, log_epoch, last_seq, bytes([r]) * 16, 0, voter)


def test_the_first_epoch_starts_empty_without_promises() -> None:
    assert Recovery(epoch=1, replicas=5, fence_quorum=3).start() == [Recovered((), None)]


def test_choice_is_by_log_epoch_then_length_among_voters_only() -> None:
    rec = Recovery(epoch=5, replicas=5, fence_quorum=3)
    assert rec.on_promise(*promise(0, 2, 9)) == []
    assert rec.on_promise(*promise(1, 4, 9, voter=False)) == []  # newest log, but not a voter
    assert rec.on_promise(*promise(2, 3, 1)) == []
    assert rec.on_promise(*promise(3, 3, 4)) == [SendFetch(3, 1)]  # (3, 4) beats (3, 1) and (2, 9)


def test_without_a_voter_quorum_recovery_waits_for_every_replica_then_chooses_among_all() -> None:
    rec = Recovery(epoch=3, replicas=3, fence_quorum=2)
    assert rec.on_promise(*promise(0, 0, 0, voter=False, epoch=3)) == []
    assert rec.on_promise(*promise(1, 0, 0, voter=False, epoch=3)) == []
    assert rec.on_promise(*promise(2, 0, 0, voter=False, epoch=3)) == [Recovered((), 0)]
    # One voter (the first primary admitted it, then died): wait for all, then the best of all.
    rec = Recovery(epoch=3, replicas=3, fence_quorum=2)
    assert rec.on_promise(*promise(0, 1, 1, voter=True, epoch=3)) == []
    assert rec.on_promise(*promise(1, 0, 0, voter=False, epoch=3)) == []  # not yet: replica 2 is silent
    assert rec.on_promise(*promise(2, 0, 0, voter=False, epoch=3)) == [SendFetch(0, 1)]


def test_fetched_entries_must_be_the_promised_log() -> None:
    log = [entry(1, 1, GENESIS_CHAIN, 1)]
    log.append(entry(1, 2, log[0].chain, 2))
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 2, log[1].chain, 0, True))
    assert rec.on_promise(1, Promise(2, 0, 0, GENESIS_CHAIN, 0, True)) == [SendFetch(0, 1)]
    assert rec.on_entries(0, (log[0],), False) == [SendFetch(0, 2)]
    assert rec.on_entries(0, (log[1],), True) == [Recovered(tuple(log), 0)]
    # A replica that now holds another log (or too little) makes recovery give up, never guess.
    other = entry(1, 2, log[0].chain, 99)
    for sent, final in (((log[0], other), True), ((log[0],), True), ((log[1],), False)):
        rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
        rec.on_promise(0, Promise(2, 1, 2, log[1].chain, 0, True))
        rec.on_promise(1, Promise(2, 0, 0, GENESIS_CHAIN, 0, True))
        [out] = rec.on_entries(0, sent, final)
        assert isinstance(out, GiveUp)


def test_a_higher_promise_in_a_reject_gives_up_and_a_lost_source_is_replaced() -> None:
    rec = Recovery(epoch=4, replicas=5, fence_quorum=3)
    assert rec.on_reject(0, 4) == []
    [out] = rec.on_reject(0, 6)
    assert isinstance(out, GiveUp) and "epoch 6" in out.reason
    rec = Recovery(epoch=4, replicas=5, fence_quorum=3)
    for r, n in ((0, 3), (1, 2), (2, 1), (3, 0)):
        rec.on_promise(*promise(r, 1, n, epoch=4))
    assert rec.on_disconnected(0) == [SendFetch(1, 1)]  # the next best of a still-quorate set


def test_a_promise_no_allocator_issued_is_a_replica_down_not_a_newer_primary() -> None:
    """R-7.3-3: before issue 17, one replica with promise 2^64-1 made every later primary give up
    at recovery for good. Above the highest issued epoch, recovery goes on without that replica
    (and chooses again if it was the one to fetch from); at or below it, it gives up as before."""
    rec = Recovery(epoch=4, replicas=5, fence_quorum=3)
    assert rec.on_reject(0, 2**64 - 1, issued=4) == [] and rec.impossible == {0: 2**64 - 1}
    for r, n in ((1, 3), (2, 2), (3, 1), (4, 0)):
        rec.on_promise(*promise(r, 1, n, epoch=4))
    assert rec.chosen == 1
    assert rec.on_reject(1, 9, issued=8) == [SendFetch(2, 1)]  # the chosen one: choose again
    assert rec.impossible == {0: 2**64 - 1, 1: 9} and not rec.done
    [out] = rec.on_reject(3, 8, issued=8)
    assert isinstance(out, GiveUp) and "replica 3 promised epoch 8 > 4: a newer primary exists" in out.reason


def test_fence_quorum_must_be_a_majority() -> None:
    with pytest.raises(ValueError, match="not a majority"):
        Recovery(epoch=2, replicas=5, fence_quorum=2)


# -- the property catches planted bugs -------------------------------------------------------------


def _longest_log(p: Promise, q: Promise) -> bool:
    return p.last_seq > q.last_seq


def _find_counterexample(patch: Callable[[pytest.MonkeyPatch], None], tries: int = 3000) -> str | None:
    rng = random.Random(12345)
    names = ["write", "replicate", "replicate", "commit", "lose", "failover", "stale"]
    with pytest.MonkeyPatch.context() as mp:
        patch(mp)
        for _ in range(tries):
            script = [(rng.choice(names), rng.randrange(2**N)) for _ in range(rng.randint(5, 60))]
            try:
                run(rng.randrange(2**32), script)
            except AssertionError as e:
                return str(e)
    return None


def test_choosing_the_longest_log_ignoring_epochs_is_caught() -> None:
    found = _find_counterexample(lambda mp: mp.setattr(recovery_mod, "better", _longest_log))
    assert found is not None and "without committed seq" in found


def test_counting_non_voters_is_caught() -> None:
    orig = Recovery.on_promise

    def counts_everyone(self: Recovery, replica: int, p: Promise) -> list[recovery_mod.RecoveryEffect]:
        return orig(self, replica, dataclasses.replace(p, voter=True))

    found = _find_counterexample(lambda mp: mp.setattr(Recovery, "on_promise", counts_everyone))
    assert found is not None and "without committed seq" in found


def test_a_replica_without_the_epoch_check_is_caught() -> None:
    orig = ReplicaState.on_append

    def no_fencing(self: ReplicaState, epoch: int, entries: tuple[Entry, ...], log_end: int) -> list[ReplicaEffect]:
        saved = self.promised_epoch
        if epoch >= saved:
            return orig(self, epoch, entries, log_end)
        self.promised_epoch = epoch
        try:
            return orig(self, epoch, entries, log_end)
        finally:
            self.promised_epoch = max(saved, self.promised_epoch)

    found = _find_counterexample(lambda mp: mp.setattr(ReplicaState, "on_append", no_fencing))
    assert found is not None and ("committed twice, differently" in found or "without committed seq" in found)


def test_the_search_finds_nothing_without_a_planted_bug() -> None:
    """The mutant tests above mean something only if the same search passes the real code."""
    assert _find_counterexample(lambda mp: None) is None


def _reading_the_archive() -> tuple[list[Entry], Recovery]:
    """Replica 0 (the best log, seqs 1-4) truncated through seq 2: recovery asks the archive."""
    log = [entry(1, 1, GENESIS_CHAIN, 1)]
    for i in range(2, 5):
        log.append(entry(1, i, log[-1].chain, i))
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 4, log[3].chain, 2, True))
    assert rec.on_promise(1, Promise(2, 1, 1, log[0].chain, 0, True)) == [ReadArchive(0, 2)]
    return log, rec


def test_a_truncated_best_log_is_rebuilt_from_the_archive_then_fetched() -> None:
    log, rec = _reading_the_archive()
    # The replica's log from its truncation point decides which branch's end the base is.
    other = ArchiveEnd(9, 3, bytes(16))  # a newer branch that forked before seq 3: another history there
    assert rec.on_archive([other, ArchiveEnd(1, 3, log[2].chain)]) == [SendFetch(0, 2)]
    assert rec.on_entries(0, (log[1], log[2], log[3]), True) == [Recovered((log[3],), 0, 3, log[2].chain, 1, log[2])]


def test_no_branch_of_the_archive_matching_the_replicas_log_gives_up() -> None:
    log, rec = _reading_the_archive()
    assert rec.on_archive([ArchiveEnd(1, 3, bytes(16))]) == [SendFetch(0, 2)]
    [out] = rec.on_entries(0, (log[1], log[2], log[3]), True)
    assert isinstance(out, GiveUp) and "differs from every branch" in out.reason


def test_a_restoring_epoch_accepts_only_the_log_it_archived() -> None:
    log = [entry(1, 1, GENESIS_CHAIN, 1), entry(1, 2, GENESIS_CHAIN, 2)]
    rec = Recovery(epoch=3, replicas=3, fence_quorum=2, expect=(2, 1, log[0].chain))
    rec.on_promise(0, Promise(3, 2, 1, log[0].chain, 0, True))
    assert rec.on_promise(1, Promise(3, 2, 1, log[0].chain, 0, True)) == [Recovered((), 0)]
    rec = Recovery(epoch=3, replicas=3, fence_quorum=2, expect=(2, 1, log[0].chain))
    rec.on_promise(0, Promise(3, 2, 1, log[0].chain, 0, True))
    [out] = rec.on_promise(1, Promise(3, 2, 2, log[1].chain, 0, True))  # someone wrote after the archive
    assert isinstance(out, GiveUp) and "changed while restoring" in out.reason


@pytest.mark.parametrize(
    ("end", "fragment"),
    [(1, "archive gap"), (5, "archive gap")],
)
def test_an_archive_that_does_not_cover_the_truncation_or_overshoots_gives_up(end: int, fragment: str) -> None:
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 4, bytes(16), 2, True))
    rec.on_promise(1, Promise(2, 1, 1, bytes(16), 0, True))
    [out] = rec.on_archive([ArchiveEnd(1, end, bytes(16))])
    assert isinstance(out, GiveUp) and fragment in out.reason
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 4, bytes(16), 2, True))
    rec.on_promise(1, Promise(2, 1, 1, bytes(16), 0, True))
    [out] = rec.on_archive_failed("no archive configured")
    assert isinstance(out, GiveUp) and "no archive configured" in out.reason


def test_a_restoring_epoch_accepts_an_empty_log_of_any_epoch_when_it_archived_an_empty_log() -> None:
    """Found by TLC (spec/README.md finding 7): a first epoch that recovered nothing sent no APPEND,
    so the replicas still report log epoch 0; demanding the first epoch's number never finishes."""
    rec = Recovery(epoch=3, replicas=3, fence_quorum=2, expect=(2, 0, GENESIS_CHAIN))
    rec.on_promise(0, Promise(3, 0, 0, GENESIS_CHAIN, 0, True))
    assert rec.on_promise(1, Promise(3, 1, 0, GENESIS_CHAIN, 0, True)) == [Recovered((), 1)]


def test_after_giving_up_or_finishing_nothing_more_happens() -> None:
    """A recovery that ended (gave up, or recovered) answers nothing else: a late PROMISE, an
    archive answer or ENTRIES must not start a second outcome."""
    log, rec = _reading_the_archive()
    [out] = rec.on_archive([ArchiveEnd(1, 9, bytes(16))])  # overshoots every log: gives up
    assert isinstance(out, GiveUp)
    assert rec.on_archive([ArchiveEnd(1, 3, log[2].chain)]) == []
    assert rec.on_archive_failed("late") == []
    assert rec.on_entries(0, (log[1], log[2], log[3]), True) == []
    assert rec.on_promise(2, Promise(2, 1, 4, log[3].chain, 0, True)) == []
    log, rec = _reading_the_archive()
    assert rec.on_archive([ArchiveEnd(1, 3, bytes(16))]) == [SendFetch(0, 2)]
    [out] = rec.on_entries(0, (log[1], log[2], log[3]), True)  # no branch matches: gives up
    assert isinstance(out, GiveUp)
    assert rec.on_entries(0, (log[1], log[2], log[3]), True) == []
    assert rec.on_archive([ArchiveEnd(1, 3, log[2].chain)]) == []
    log, rec = _reading_the_archive()
    rec.on_archive([ArchiveEnd(1, 3, log[2].chain)])
    [done] = rec.on_entries(0, (log[1], log[2], log[3]), True)  # recovered on the archive's base
    assert isinstance(done, Recovered)
    assert rec.on_entries(0, (log[1], log[2], log[3]), True) == []
    assert rec.on_disconnected(0) == []


def test_an_archive_answer_for_a_choice_that_is_gone_is_ignored_and_the_fetch_starts_over_at_one() -> None:
    """The chosen replica disconnects while its archive read is in flight: the answer to that read
    must not start a fetch from it, and the next choice fetches from seq 1 (nothing truncated)."""
    log, rec = _reading_the_archive()
    rec.on_promise(2, Promise(2, 1, 2, log[1].chain, 0, True))
    assert rec.on_disconnected(0) == [SendFetch(2, 1)]  # replica 2 now: longest of the rest
    assert rec.on_archive([ArchiveEnd(1, 3, log[2].chain)]) == []  # the read for replica 0
    assert rec.on_archive_failed("late") == []
    assert rec.on_entries(2, (log[0], log[1]), True) == [Recovered((log[0], log[1]), 2)]


def test_the_reasons_given_name_what_the_archive_reaches_and_another_history() -> None:
    """The give-up reasons are read by operators and by the chaos checkers, which tell an
    inconsistent archive ("archive gap", "not this object's history") from a lost race."""
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 4, bytes(16), 2, True))
    rec.on_promise(1, Promise(2, 1, 1, bytes(16), 0, True))
    [out] = rec.on_archive([])
    assert isinstance(out, GiveUp)
    assert out.reason == (
        "replica 0 truncated its log through seq 2 (its log ends at seq 4), but the archive reaches nothing: the "
        "entries between are lost (archive gap), or the archive is not this object's history"
    )
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 4, bytes(16), 2, True))
    rec.on_promise(1, Promise(2, 1, 1, bytes(16), 0, True))
    [out] = rec.on_archive([ArchiveEnd(1, 1, bytes(16)), ArchiveEnd(3, 7, bytes(16))])
    assert isinstance(out, GiveUp) and "the archive reaches branch 1 to seq 1, branch 3 to seq 7:" in out.reason
    log, rec = _reading_the_archive()
    rec.on_archive([ArchiveEnd(1, 3, bytes(16))])
    [out] = rec.on_entries(0, (log[1], log[2], log[3]), True)
    assert isinstance(out, GiveUp) and out.reason.endswith(
        "where they overlap: the archive is not this object's history"
    )
