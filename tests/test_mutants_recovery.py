"""Recovery, from the survivors of its mutation run (docs/testing.md, "Mutation testing").

Each test pins down what recovery decides (which replica it fetches from, from which seq, whether it
reads the archive) or why it gives up, in a case that the bug it stands for would get wrong. Every
one was seen failing with its mutant applied by hand to ``reference/walrelay/recovery.py``.
"""

from __future__ import annotations

import pytest

from test_recovery import entry
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.recovery import ArchiveEnd, GiveUp, ReadArchive, Recovered, Recovery, RecoveryEffect, SendFetch
from walrelay.wire import Promise


def chained(n: int, *, first_prev: bytes = GENESIS_CHAIN, salt: int = 0) -> list[Entry]:
    """A log of ``n`` epoch-1 entries, each following the one before (the first follows ``first_prev``)."""
    log: list[Entry] = []
    prev = first_prev
    for seq in range(1, n + 1):
        log.append(entry(1, seq, prev, salt + seq))
        prev = log[-1].chain
    return log


def fetching(log: list[Entry]) -> Recovery:
    """Epoch 2 of 3 replicas: replica 0 promised ``log`` (nothing truncated), replica 1 an empty log;
    recovery fetches from replica 0 at seq 1."""
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    assert rec.on_promise(0, Promise(2, 1, len(log), log[-1].chain, 0, True)) == []
    assert rec.on_promise(1, Promise(2, 0, 0, GENESIS_CHAIN, 0, True)) == [SendFetch(0, 1)]
    return rec


def give_up_reason(effects: list[RecoveryEffect]) -> str:
    [out] = effects
    assert isinstance(out, GiveUp), out
    return out.reason


def test_a_fence_quorum_of_exactly_half_is_refused() -> None:
    """Bug: ``2 * fence_quorum >= replicas`` would accept 2 of 4, and two disjoint halves could
    each recover (and serve) a different log."""
    with pytest.raises(ValueError, match="fence quorum 2 of 4 is not a majority"):
        Recovery(epoch=2, replicas=4, fence_quorum=2)
    Recovery(epoch=2, replicas=4, fence_quorum=3)  # a majority is fine


def test_a_promise_for_another_epoch_or_from_an_unknown_replica_is_not_counted() -> None:
    """Bugs: accepting a PROMISE made to another epoch (an answer to an older PREPARE), or one from
    replica ``replicas`` (past the last), would count it towards the fence quorum."""
    rec = Recovery(epoch=5, replicas=3, fence_quorum=2)
    assert rec.on_promise(0, Promise(5, 1, 3, b"\x00" * 16, 0, True)) == []
    assert rec.on_promise(1, Promise(4, 1, 9, b"\x01" * 16, 0, True)) == []  # promised epoch 4, not 5
    assert rec.on_promise(3, Promise(5, 1, 9, b"\x03" * 16, 0, True)) == []  # there is no replica 3
    assert rec.chosen is None and sorted(rec.promises) == [0]
    assert rec.on_promise(2, Promise(5, 1, 2, b"\x02" * 16, 0, True)) == [SendFetch(0, 1)]


def test_a_late_promise_after_the_first_epoch_finished_starts_nothing() -> None:
    """Bug: with ``self.done and ...`` (or ``done`` not set when recovery finishes), a PROMISE that
    arrives after the first epoch recovered its empty log would start a second recovery."""
    rec = Recovery(epoch=1, replicas=3, fence_quorum=2)
    assert rec.start() == [Recovered((), None)]
    assert rec.on_promise(0, Promise(1, 0, 0, GENESIS_CHAIN, 0, True)) == []
    assert rec.on_promise(1, Promise(1, 0, 0, GENESIS_CHAIN, 0, True)) == []
    assert rec.on_promise(2, Promise(1, 0, 0, GENESIS_CHAIN, 0, True)) == []


def test_after_recovering_by_fetch_nothing_more_happens() -> None:
    """Bug: ``done`` not set by ``_finish``: after a fetched log was recovered, the source's
    disconnection would start a second choice (and a second fetch from someone else)."""
    log = chained(2)
    rec = fetching(log)
    assert rec.on_entries(0, tuple(log), True) == [Recovered(tuple(log), 0)]
    assert rec.on_disconnected(0) == []
    assert rec.on_entries(0, tuple(log), True) == []
    assert rec.on_promise(2, Promise(2, 1, 2, log[-1].chain, 0, True)) == []


def test_an_archive_failure_without_an_archive_read_is_ignored() -> None:
    """Bug: recovery starting as if an archive read were in flight would give up on a stray
    archive failure while it fetches a log that needs no archive (nothing was truncated)."""
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    assert rec.on_archive_failed("no archive configured") == []  # before any choice
    log = chained(2)
    rec = fetching(log)
    assert rec.on_archive_failed("no archive configured") == []  # fetching: no read was asked for
    assert rec.on_entries(0, tuple(log), True) == [Recovered(tuple(log), 0)]


def test_a_second_archive_answer_after_the_first_is_ignored() -> None:
    """Bug: the archive read not marked answered: a late failure (or a second answer) of the same
    read would make recovery give up (or fetch again) while it fetches the replica's log."""
    log = chained(4)
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 4, log[3].chain, 2, True))
    assert rec.on_promise(1, Promise(2, 1, 1, log[0].chain, 0, True)) == [ReadArchive(0, 2)]
    assert rec.on_archive([ArchiveEnd(1, 3, log[2].chain)]) == [SendFetch(0, 2)]
    assert rec.on_archive_failed("timed out") == []
    assert rec.on_archive([ArchiveEnd(1, 2, log[1].chain)]) == []
    assert rec.on_entries(0, tuple(log[1:]), True) == [Recovered((log[3],), 0, 3, log[2].chain, 1, log[2])]


def test_a_log_truncated_through_seq_1_is_rebuilt_from_the_archive() -> None:
    """Bug: ``truncated_through > 1``: a replica that dropped only seq 1 would be asked for its log
    from seq 1, which it no longer has, instead of recovery reading the archive."""
    log = chained(3)
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 3, log[2].chain, 1, True))
    assert rec.on_promise(1, Promise(2, 0, 0, GENESIS_CHAIN, 0, True)) == [ReadArchive(0, 1)]
    assert rec.on_archive([ArchiveEnd(1, 1, log[0].chain)]) == [SendFetch(0, 1)]
    assert rec.on_entries(0, tuple(log), True) == [Recovered(tuple(log[1:]), 0, 1, log[0].chain, 1, log[0])]


def test_entries_from_a_replica_that_was_not_chosen_are_ignored() -> None:
    """Bug: ``chosen is None and replica != chosen``: ENTRIES from another replica (an answer to a
    fetch from an earlier choice, or a confused peer) would be taken as the chosen log."""
    log = chained(2)
    rec = fetching(log)
    assert rec.on_entries(1, tuple(log), True) == []  # replica 1 was not asked
    assert rec.fetched == []
    assert rec.on_entries(0, tuple(log), True) == [Recovered(tuple(log), 0)]


def test_an_entry_at_the_due_seq_that_does_not_follow_the_previous_one_gives_up() -> None:
    """Bug: ``seq != expected and not follows``: an entry at the right seq whose chain does not
    follow the entry before it (another history spliced in) would be accepted, as long as the log
    ends with the promised chain."""
    log = chained(3)
    spliced = [log[0], entry(1, 2, bytes(16), 77)]  # seq 2 of another history
    spliced.append(entry(1, 3, spliced[1].chain, 3))
    rec = fetching(spliced)
    reason = give_up_reason(rec.on_entries(0, tuple(spliced), True))
    assert reason == "replica 0 sent seq 2 where seq 2 following its promised log was due"


def test_a_first_entry_that_does_not_follow_genesis_gives_up() -> None:
    """Bug: ``not fetched or archive_ends``: without an archive base the first entry's chain would
    go unchecked, and a log whose seq 1 is not the object's first entry would be recovered."""
    other = chained(2, first_prev=b"\x07" * 16)
    rec = fetching(other)
    reason = give_up_reason(rec.on_entries(0, tuple(other), True))
    assert reason == "replica 0 sent seq 1 where seq 1 following its promised log was due"


def test_the_reasons_for_a_bad_fetch_name_the_replica_and_the_seqs() -> None:
    """Bugs: a give-up whose reason is lost (None): operators and the chaos checkers read it."""
    log = chained(3)
    rec = fetching(log[:2])
    reason = give_up_reason(rec.on_entries(0, tuple(log), True))
    assert reason == "replica 0 sent seq 3 beyond the 2 it promised"
    rec = fetching(log)
    reason = give_up_reason(rec.on_entries(0, tuple(log[:2]), True))
    assert reason == "replica 0 sent 2 entries of the 3 it promised"
    rec = fetching(log)
    assert rec.on_entries(0, (log[0],), False) == [SendFetch(0, 2)]
    reason = give_up_reason(rec.on_entries(0, (), False))
    assert reason == "replica 0 sent an empty, non-final ENTRIES frame"
    rec = Recovery(epoch=2, replicas=3, fence_quorum=2)
    rec.on_promise(0, Promise(2, 1, 2, b"\x09" * 16, 0, True))  # the log it holds now ends elsewhere
    rec.on_promise(1, Promise(2, 0, 0, GENESIS_CHAIN, 0, True))
    reason = give_up_reason(rec.on_entries(0, tuple(log[:2]), True))
    assert reason == "replica 0's log no longer ends with the chain it promised"


def test_the_reason_a_restore_finds_the_object_changed_names_both_logs() -> None:
    """Bug: the reason quoting the wrong field (the seq as the epoch, the chain as the seq, the
    expected seq as its epoch): the operator is told about a log nobody holds."""
    log = chained(7)
    rec = Recovery(epoch=9, replicas=3, fence_quorum=2, expect=(4, 5, log[4].chain))
    rec.on_promise(0, Promise(9, 6, 7, log[6].chain, 0, True))
    reason = give_up_reason(rec.on_promise(1, Promise(9, 6, 7, log[6].chain, 0, True)))
    assert reason == (
        "the object changed while restoring: replica 0 holds epoch 6's log through seq 7, "
        "not epoch 4's through seq 5 as archived"
    )
