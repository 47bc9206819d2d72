"""Mutants: planted protocol bugs, switchable by name, for the chaos harness and the tests only.

Each mutant is a classic bug put into the reference by patching one decision (the reference
itself has no switch: nothing here is imported by it). Each comes with a directed schedule: one
that the real code passes and the mutant fails, found by hand or by shrinking. ``walrelay chaos
mutants`` runs every mutant's directed schedule and a budgeted random campaign against it and
prints the kill table; tests/test_failover_property.py checks both sides of every directed
schedule. The names follow the spec's mutants (spec/mutants/*.cfg) where one exists.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import trio

import walrelay.recovery as recovery_mod
from walrelay.archive.archiver import Archived, ArchiverState
from walrelay.archive.shipper import ArchiveShipper
from walrelay.entry import Entry
from walrelay.primary import PrimaryEffect, PrimaryState
from walrelay.primary_node import PrimaryNode
from walrelay.replica import ReplicaEffect, ReplicaState
from walrelay.replica_store import ReplicaStore
from walrelay_chaos.schedule import (
    AwaitWrites,
    Bookmark,
    Check,
    ClockJump,
    CrashPrimary,
    Cut,
    Heal,
    NewPrimary,
    Op,
    PowerFail,
    Restore,
    Settle,
    StoreDown,
    StoreUp,
    Write,
    WriteStale,
)


class Patch(Protocol):
    """What a mutant needs to plant itself: pytest's MonkeyPatch, or ``Patcher`` outside pytest."""

    def setattr(self, target: Any, name: str, value: Any) -> None: ...


class Patcher:
    """setattr with undo, like pytest's MonkeyPatch (a class attribute is restored from the class's
    own ``__dict__``, so a staticmethod comes back as a staticmethod)."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def setattr(self, target: Any, name: str, value: Any) -> None:
        old = target.__dict__[name] if inspect.isclass(target) else getattr(target, name)
        self._undo.append((target, name, old))
        setattr(target, name, value)

    def undo(self) -> None:
        while self._undo:
            target, name, old = self._undo.pop()
            setattr(target, name, old)


ACK_AFTER_2: list[Op] = [
    Settle(300),
    Cut(0b11100),  # only replicas 0 and 1 hear the next write
    Write(1),
    Settle(300),
    CrashPrimary(),
    Heal(),
    Cut(0b00011),  # the next primary recovers from 2, 3, 4
    NewPrimary(),
    Check(),
]

STALE_PRIMARY_WRITES: list[Op] = [
    Settle(300),
    NewPrimary(),  # the first primary keeps running
    Settle(300),
    Write(1),
    Settle(300),
    WriteStale(1),
    Settle(300),
    Check(),
]

OLDER_LONGER_LOG: list[Op] = [
    Settle(300),
    Cut(0b11110),  # three writes reach replica 0 only: never acknowledged
    Write(3),
    Settle(300),
    CrashPrimary(),
    Heal(),
    Cut(0b00001),
    NewPrimary(),  # recovers from 1-4; its log is shorter but newer
    Settle(300),
    Write(1),
    Settle(300),
    CrashPrimary(),
    Heal(),
    Cut(0b11000),  # the next primary hears 0, 1, 2
    NewPrimary(),
    Check(),
]


def _ack_after_2(mp: Patch) -> None:
    orig = PrimaryState._advance

    def advance(self: PrimaryState) -> list[PrimaryEffect]:
        config = self.config
        object.__setattr__(config, "quorum", 2)
        try:
            return orig(self)
        finally:
            object.__setattr__(config, "quorum", 3)

    mp.setattr(PrimaryState, "_advance", advance)


def _no_epoch_check(mp: Patch) -> None:
    orig = ReplicaState.on_append

    def on_append(self: ReplicaState, epoch: int, entries: tuple[Entry, ...], log_end: int) -> list[ReplicaEffect]:
        saved = self.promised_epoch
        self.promised_epoch = min(saved, epoch)
        try:
            return orig(self, epoch, entries, log_end)
        finally:
            self.promised_epoch = max(saved, self.promised_epoch)

    mp.setattr(ReplicaState, "on_append", on_append)


def _longest_log(mp: Patch) -> None:
    mp.setattr(recovery_mod, "better", lambda p, q: (p.last_seq, p.log_epoch) > (q.last_seq, q.log_epoch))


UNDURABLE_THEN_FAILOVER: list[Op] = [
    Settle(300),
    Cut(0b11110),  # only replica 0 hears the next writes: never durable
    Write(2),
    Settle(3000),  # older than the 2 s segment age
    CrashPrimary(),
    Heal(),
    Cut(0b00001),
    NewPrimary(),  # recovers from 1-4, without them: its seqs 2, 3 are other writes
    Write(2),
    Settle(3000),
]


def _archive_before_durable(mp: Patch) -> None:
    """The archiver is fed every committed entry, durable or not (spec mutant: ArchivableEnd = Len(elog))."""
    mp.setattr(ArchiveShipper, "archivable_end", staticmethod(lambda state: state.last_seq))


STORE_DOWN_THEN_FAILOVER: list[Op] = [
    Settle(300),
    StoreDown(ambiguous=False),  # nothing written from here is stored
    Write(3),
    Settle(3000),  # cut (2 s) and tried: every attempt fails
    CrashPrimary(),
    StoreUp(),
    NewPrimary(),
    Check(),
]


def _truncate_before_confirm(mp: Patch) -> None:
    """A failed upload is announced as archived: replicas truncate what the store never got
    (spec mutant: EagerTruncate)."""
    orig = ArchiverState.on_put_failed

    def on_put_failed(self: ArchiverState, key: str, error: str) -> list[Any]:
        put = self.in_flight
        eager: list[Any] = [Archived(put.last)] if put is not None and put.kind == "segment" else []
        return eager + list(orig(self, key, error))

    mp.setattr(ArchiverState, "on_put_failed", on_put_failed)


RESTORE_AND_UNDO: list[Op] = [
    Write(3),
    Settle(300),
    Bookmark(),  # points[1]
    Write(3),
    Settle(300),
    Restore(1, by_request=True),  # branch 2: the first 3 writes; points[2] = its undo point
    Write(2),
    Settle(300),
    Restore(2, by_request=False),  # undo: all 6 again, on branch 3; points[3] = undo of the undo
    Write(1),
    Settle(3000),  # a segment of branch 3 is cut and archived
    Bookmark(),  # points[4]
    Restore(1, by_request=True),  # the first bookmark once more: branch 4
    Write(1),
    Settle(300),
    Check(),
]


BOOKMARK_LOST_IN_FAILOVER: list[Op] = [
    Write(2),
    Settle(3000),
    Cut(0b11110),  # only replica 0 hears the next write: never durable
    Write(1),
    Settle(20),
    Bookmark(),  # the real __bookmark__ waits (no answer within 30 s): no point is kept
    CrashPrimary(),
    Heal(),
    Cut(0b00001),
    NewPrimary(),  # recovers from 1-4, without seq 3
    Write(1),  # another seq 3
    Settle(3000),
    Restore(1, by_request=False),  # the real code kept no point: this restores the empty database
    Write(1),
    Settle(300),
]


def _bookmark_before_durable(mp: Patch) -> None:
    """__bookmark__ answers at once, before its point is durable: a client can then restore to an
    entry that never committed (the uncommitted tail; spec mutant restore_uncommitted_tail)."""
    orig = PrimaryNode._reply_when_durable

    def eager(self: PrimaryNode, nursery: trio.Nursery, chan: Any, seq: int, reply: Any, *, wrote: bool = False) -> Any:
        if isinstance(reply.body, dict) and "bookmark" in reply.body:
            seq = 0
        orig(self, nursery, chan, seq, reply, wrote=wrote)

    mp.setattr(PrimaryNode, "_reply_when_durable", eager)


UNDO_AFTER_A_QUICK_RESTORE: list[Op] = [
    Write(3),
    Settle(3000),  # archived
    Bookmark(),  # points[1]
    Write(3),
    Settle(300),  # not cut yet: only the replicas hold seqs 4-6
    Restore(1, by_request=True),  # points[2]: the undo point, seq 7 (the request) of branch 1
    Write(1),
    Settle(300),
    Restore(2, by_request=False),  # undo
    Write(1),
    Settle(300),
]


def _restore_before_archived(mp: Patch) -> None:
    """A restore does not wait for the old branch to be archived through its end: the undo
    point is not restorable (spec mutant restore_before_archived)."""

    async def no_wait(self: ArchiveShipper, seq: int, *, poll_s: float = 0.02) -> None:
        return None

    mp.setattr(ArchiveShipper, "wait_archived", no_wait)


def _branch_from_target(mp: Patch) -> None:
    """The new branch is numbered from the restored point's branch (+ 1), not by the new epoch: the
    undo restore reuses branch 2's keys (spec mutant branch_number_reused)."""
    mp.setattr(PrimaryNode, "new_branch", staticmethod(lambda new_epoch, target_branch: target_branch + 1))


SEGMENTS_IN_A_ROW: list[Op] = [
    Write(3),
    Settle(3000),  # a segment is cut (2 s) and archived
    Write(3),
    Settle(3000),  # and the next one
    Check(),
]


def _off_by_one_cut(mp: Patch) -> None:
    """A segment cut ends one entry early and the cut point moves past it anyway: the entry at
    the boundary is in no segment (an archive gap; the classic ``range(first, last)``)."""
    orig = ArchiverState._cut

    def cut(self: ArchiverState) -> None:
        if len(self.pending) < 2:
            orig(self)
            return
        boundary = self.pending.pop()
        orig(self)
        self.cut_through, self.cut_chain = boundary.seq, boundary.chain

    mp.setattr(ArchiverState, "_cut", cut)


CLOCK_AHEAD_THEN_FAILOVER: list[Op] = [
    # The first primary's clock runs 60 s ahead: more than a failover takes on a loaded machine (at
    # 5 s, a slow takeover in real mode let the true clock catch up, and the mutant went unseen).
    ClockJump(60_000, back=False),
    Write(2),
    Settle(300),
    CrashPrimary(),
    NewPrimary(),  # the true time: about 60 s behind the log it recovers
    Write(1),
    Settle(300),
    Check(),
]


def _timestamps_from_own_clock(mp: Patch) -> None:
    """A new primary stamps entries from its own clock alone: it forgets the recovered log's last
    timestamp (the spec's NextTs takes the max of both), so behind a primary whose clock ran
    ahead, timestamps go back and a point in time names the wrong seq."""
    orig = PrimaryState.__init__

    def init(self: PrimaryState, config: Any, **kw: Any) -> None:
        orig(self, config, **kw)
        self.last_timestamp_us = kw.get("last_timestamp_us", 0)

    mp.setattr(PrimaryState, "__init__", init)


STORE_DOWN_THEN_UP: list[Op] = [
    Settle(300),
    StoreDown(ambiguous=False),
    Write(2),
    Settle(3000),  # cut, and every attempt fails
    StoreUp(),
    Write(2),
    Settle(3000),  # the next segment is archived
    Bookmark(),
    Check(),
]


def _skip_failed_segment(mp: Patch) -> None:
    """After a failed segment PUT the archiver moves on to the next upload instead of retrying the
    same one: the archive gets a gap (spec: ConfirmUpload only after the store said done)."""
    orig = ArchiverState.on_put_failed

    def on_put_failed(self: ArchiverState, key: str, error: str) -> list[Any]:
        put = self.in_flight
        if put is None or put.key != key or put.kind != "segment":
            return list(orig(self, key, error))
        self.failures += 1
        self.last_error = error
        self.in_flight = None
        return list(self._next_upload())

    mp.setattr(ArchiverState, "on_put_failed", on_put_failed)


ACKED_THEN_POWER_LOSS: list[Op] = [
    Settle(300),
    Cut(0b11000),  # replicas 0, 1, 2 hear the next write: a quorum, so it is acknowledged
    Write(1),
    # The acknowledgement, then at once the power: a fixed 20 ms was missed under load (no
    # acknowledged write to lose), and a long wait let the archiver's TRUNCATE rewrite the log
    # durably first (which syncs what the mutant left unsynced).
    AwaitWrites(10_000),
    PowerFail(0b00111, primary=True),  # they and the primary lose power right after
    Heal(),
    NewPrimary(),
    Check(),
]


def _acks_before_fsync(mp: Patch) -> None:
    """The replica acknowledges an APPEND once its bytes are written, before they are synced: the
    fdatasync is left to the next append (a write-back cache). A power loss then loses entries
    it acknowledged."""

    def append_unsynced(self: ReplicaStore, entries: tuple[Entry, ...]) -> None:
        if vars(self).get("unsynced"):
            os.fdatasync(self._fd)  # the previous batch, only now
        off = self._size
        for e in entries:
            self._offsets[e.seq] = off
            off += 4 + len(e.raw)
        view = memoryview(b"".join(len(e.raw).to_bytes(4, "big") + e.raw for e in entries))
        while view:
            view = view[os.write(self._fd, view) :]
        self._size = off
        vars(self)["unsynced"] = True

    mp.setattr(ReplicaStore, "append_durably", append_unsynced)


@dataclass(frozen=True)
class Mutant:
    name: str
    plant: Callable[[Patch], None]
    directed: list[Op]  # a schedule the real code passes and this mutant fails


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant("ack_after_2", _ack_after_2, ACK_AFTER_2),
        Mutant("no_epoch_check_at_replica", _no_epoch_check, STALE_PRIMARY_WRITES),
        Mutant("longest_log_ignoring_epochs", _longest_log, OLDER_LONGER_LOG),
        Mutant("archive_before_durable", _archive_before_durable, UNDURABLE_THEN_FAILOVER),
        Mutant("truncate_before_confirm", _truncate_before_confirm, STORE_DOWN_THEN_FAILOVER),
        Mutant("bookmark_before_durable", _bookmark_before_durable, BOOKMARK_LOST_IN_FAILOVER),
        Mutant("restore_before_archived", _restore_before_archived, UNDO_AFTER_A_QUICK_RESTORE),
        Mutant("branch_number_reused", _branch_from_target, RESTORE_AND_UNDO),
        Mutant("off_by_one_segment_cut", _off_by_one_cut, SEGMENTS_IN_A_ROW),
        Mutant("timestamps_not_monotonic_across_failover", _timestamps_from_own_clock, CLOCK_AHEAD_THEN_FAILOVER),
        Mutant("retry_that_skips_a_failed_segment", _skip_failed_segment, STORE_DOWN_THEN_UP),
        Mutant("replica_acks_before_fsync", _acks_before_fsync, ACKED_THEN_POWER_LOSS),
    )
}


@contextlib.contextmanager
def planted(name: str) -> Iterator[None]:
    """The reference with mutant ``name`` planted, for the duration of the block."""
    patcher = Patcher()
    MUTANTS[name].plant(patcher)
    try:
        yield
    finally:
        patcher.undo()


def shrink(
    schedule: list[Op], fails: Callable[[list[Op]], bool], *, max_runs: int = 60, max_seconds: float | None = None
) -> list[Op]:
    """A shorter schedule that still fails, greedily: remove chunks (halves, quarters, .., single
    ops), keeping each removal after which ``fails`` still holds; stop when no single op can go,
    or after ``max_runs`` calls of ``fails`` (or ``max_seconds``, if given: a run budget alone gives the same
    answer on a fast and a slow machine). A failing schedule is then short enough to read (the
    kill table's "shrunk" column, a campaign's ``seed-S/shrunk/``)."""
    started = time.monotonic()
    runs = 0
    size = max(1, len(schedule) // 2)
    while True:
        i = 0
        while i < len(schedule):
            candidate = schedule[:i] + schedule[i + size :]
            if not candidate:  # nothing left to run: not a try
                i += size
                continue
            if runs >= max_runs or (max_seconds is not None and time.monotonic() - started >= max_seconds):
                return schedule
            runs += 1
            if fails(candidate):
                schedule = candidate  # removed: try the same place again
            else:
                i += size
        if size == 1:
            return schedule
        size = max(1, size // 2)
