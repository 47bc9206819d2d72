"""Regressions for bugs a review of the archive code found (each test failed before its fix)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import trio

from test_replica_state import make_log
from test_retention import DAY_US, build
from walrelay.archive.dir_store import DirStore
from walrelay.archive.reader import ArchiveError
from walrelay.archive.retention import apply_retention, plan_retention
from walrelay.archive.shipper import ArchiveShipper
from walrelay.archive.store import ObjectInfo, TransientStoreError
from walrelay.capture import Commit
from walrelay.entry import Entry
from walrelay.primary import PrimaryConfig, PrimaryState, ReadArchiveEntries, SendEntries, SendTruncate
from walrelay.primary_node import PrimaryNode
from walrelay.recovery import ArchiveEnd, ReadArchive, Recovery, SendFetch
from walrelay.replica import PersistArchived, ReplicaState, SendReject
from walrelay.replica_node import ReplicaNode
from walrelay.replica_store import ReplicaStore
from walrelay.wire import Append, Promise, Truncate


def test_a_compacted_replica_can_still_have_its_old_suffix_replaced_after_a_restart(tmp_path: Path) -> None:
    """drop_through kept only entries after ``through``: after a restart the chain that links
    the next entry was gone, and a newer epoch's replacement was refused (DIVERGED) for ever."""
    old = make_log(6, epoch=1, salt=1)  # 5..6 were never committed
    new = make_log(3, epoch=2, salt=2, prev=old[3].chain, first=5)
    store = ReplicaStore(str(tmp_path), "obj", compact_min_bytes=0)
    store.load()
    store.save_state(1, 0, 1, True)
    store.append_durably(tuple(old))
    st = ReplicaState(0, promised_epoch=1, log_epoch=1, last_seq=6, last_chain=old[-1].chain)
    st.chains = {e.seq: e.chain for e in old}
    assert st.on_truncate(4, old[3].chain) == [PersistArchived(4)]
    store.save_state(1, 4, 1, True)
    assert store.drop_through(4)
    store.close()
    store = ReplicaStore(str(tmp_path), "obj", compact_min_bytes=0)
    ld = store.load()
    st = ReplicaState(
        0, promised_epoch=1, log_epoch=1, last_seq=ld.last_seq, last_chain=ld.last_chain,
        archived_through=ld.archived_through, chains=ld.chains,
    )  # fmt: skip
    effects = st.on_append(2, tuple(new), new[-1].seq)
    assert not any(isinstance(e, SendReject) for e in effects), effects
    assert st.last_seq == 7 and st.log_epoch == 2
    store.close()


def test_truncate_never_saves_a_log_epoch_ahead_of_the_entries(tmp_path: Path) -> None:
    """TRUNCATE and a catch-up APPEND arrive in one batch; the state saved for the TRUNCATE held
    the APPEND's new log epoch before its entries were written. A crash then made the replica
    claim epoch 2's log without epoch 1's committed seq 4, and a recovery would pick it."""
    e1 = make_log(4, epoch=1, salt=1)

    async def main() -> None:
        async def run_io(fn: object, *a: object) -> object:
            if getattr(fn, "__name__", "") == "append_durably":
                raise RuntimeError("power cut before the entries are written")
            return fn(*a)  # type: ignore[operator]

        st0 = ReplicaStore(str(tmp_path), "obj")
        st0.load()
        st0.save_state(2, 0, 1, True)
        st0.append_durably(tuple(e1[:3]))
        st0.close()
        node = ReplicaNode(2, str(tmp_path), transport=None, run_io=run_io, compact_min_bytes=0)  # type: ignore[arg-type]
        obj = node.get_object("obj")

        class Chan:
            async def send(self, m: object) -> None:
                pass

        with pytest.raises(RuntimeError):
            await node._process(obj, Chan(), [Truncate(2, 2, e1[1].chain), Append(2, 0, 4, (e1[2], e1[3]))])  # type: ignore[arg-type]

    trio.run(main)
    ld = ReplicaStore(str(tmp_path), "obj").load()
    assert (ld.log_epoch, ld.last_seq, ld.archived_through) == (1, 3, 2)


def test_recovery_chooses_again_when_the_chosen_replica_goes_away_while_the_archive_is_read() -> None:
    rec = Recovery(epoch=3, replicas=3, fence_quorum=2)
    log = make_log(10, epoch=2)
    assert rec.on_promise(0, Promise(3, 2, 10, log[-1].chain, 5, True)) == []
    assert rec.on_promise(1, Promise(3, 2, 10, log[-1].chain, 0, True)) == [ReadArchive(0, 5)]
    rec.on_disconnected(0)  # chooses again among the rest: replica 1, which truncated nothing
    assert rec.chosen is None  # replica 1 alone is not a fence quorum: wait for another promise
    assert rec.on_archive([ArchiveEnd(1, 5, log[4].chain)]) == []  # the old read's answer is for a choice that is gone
    assert rec.on_promise(2, Promise(3, 2, 9, log[-2].chain, 0, True)) == [SendFetch(1, 1)]


def test_the_shipper_sets_the_archive_floor_before_it_reads_the_store(tmp_path: Path) -> None:
    """Durable entries were trimmed while the shipper opened the archive: KeyError, crash."""
    log = make_log(20, epoch=1)
    state = PrimaryState(
        PrimaryConfig(epoch=2, replicas=3, quorum=2, max_retained_bytes=5 * log[0].size), recovered=tuple(log)
    )

    async def main() -> None:
        async def slow_io(fn: object, *a: object) -> object:
            state.match = [20, 20, 0]  # the recovered log becomes durable meanwhile
            state._advance()
            return fn(*a)  # type: ignore[operator]

        shipper = ArchiveShipper(
            DirStore(tmp_path / "a"), "obj", segment_bytes=1 << 20, segment_age_s=0.01, run_io=slow_io,
            retention_window_us=None,
        )  # fmt: skip
        with trio.move_on_after(1):
            await shipper.run(state, runtime=None, now_us=lambda: 0)  # type: ignore[arg-type]
        assert shipper.error is None and shipper.archiver is not None
        assert shipper.archiver.durable_through == 20

    trio.run(main)


def test_a_transient_store_error_at_start_is_retried(tmp_path: Path) -> None:
    class FlakyOnce(DirStore):
        calls = 0

        def list(self, prefix: str = "") -> list[ObjectInfo]:
            FlakyOnce.calls += 1
            if FlakyOnce.calls == 1:
                raise TransientStoreError("list: no answer after 6 attempts (503)")
            return super().list(prefix)

    state = PrimaryState(PrimaryConfig(epoch=1, replicas=3, quorum=2))

    async def main() -> None:
        async def io(fn: object, *a: object) -> object:
            return fn(*a)  # type: ignore[operator]

        shipper = ArchiveShipper(
            FlakyOnce(tmp_path / "a"), "obj", segment_bytes=1 << 20, segment_age_s=0.01, run_io=io,
            retention_window_us=None, max_backoff_s=0.01,
        )  # fmt: skip
        with trio.move_on_after(2):
            await shipper.run(state, runtime=None, now_us=lambda: 0)  # type: ignore[arg-type]
        assert shipper.error is None and shipper.archiver is not None and shipper.last_open_error

    trio.run(main)


def test_bookmark_for_time_before_what_retention_kept_is_an_error(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [4, 8, 12, 16], seg_len=3)
    assert reader.seq_for_time(6 * DAY_US, 1) == 6
    apply_retention(
        reader, plan_retention(reader, reader.branch(1), now_us=25 * DAY_US, window_us=14 * DAY_US, grace_us=0)
    )
    with pytest.raises(ArchiveError, match="before the oldest point"):
        reader.seq_for_time(6 * DAY_US, 1)
    assert reader.seq_for_time(9 * DAY_US, 1) == 9


def test_the_primary_does_not_guess_a_time_that_falls_in_entries_not_archived_yet(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [], seg_len=20)  # archive: seqs 1..20, entry s at day s
    st = PrimaryState(PrimaryConfig(epoch=1, replicas=3, quorum=2), recovered=tuple(make_log(40, epoch=1)))
    st.archived_seq = 20
    st.log = {s: types.SimpleNamespace(timestamp_us=s * DAY_US) for s in range(31, 41)}  # type: ignore[misc]

    async def io(fn: object, *a: object) -> object:
        return fn(*a)  # type: ignore[operator]

    fake = types.SimpleNamespace(
        archive=types.SimpleNamespace(store=reader.store, run_io=io), object_name="o", branch=1
    )
    with pytest.raises(ArchiveError, match="not archived yet"):
        trio.run(PrimaryNode._seq_for_time, fake, st, 25 * DAY_US)
    assert trio.run(PrimaryNode._seq_for_time, fake, st, 12 * DAY_US) == (1, 12)
    assert trio.run(PrimaryNode._seq_for_time, fake, st, 33 * DAY_US) == (1, 33)


def _two_replicas_hold_the_log(archived: int, max_retained_bytes: int) -> tuple[list[Entry], PrimaryState]:
    """A primary whose recovered log 1..20 replicas 0 and 1 hold, and whose retained log kept
    only what ``max_retained_bytes`` allows; the archive confirmed through ``archived``."""
    log = make_log(20, epoch=1)
    st = PrimaryState(
        PrimaryConfig(epoch=1, replicas=3, quorum=2, max_retained_bytes=max_retained_bytes), recovered=tuple(log)
    )
    st.recovered_end, st.archive_catchup, st.archived_seq, st.archive_floor = 0, True, archived, 10**9
    for r in (0, 1):
        st.on_connected(r, Promise(1, 1, 20, log[-1].chain, 0, True), now_us=0)
    st.match = [20, 20, 0]
    st._advance()
    return log, st


def test_a_catch_up_from_the_archive_still_joins_when_writes_continue_meanwhile() -> None:
    log, st = _two_replicas_hold_the_log(20, 5 * make_log(1, epoch=1)[0].size)
    assert min(st.log) == 16
    # Replica 2 holds our log through seq 3 only (it was cut off): it needs 4..15 from the archive.
    [read] = [
        e
        for e in st.on_connected(2, Promise(1, 1, 3, log[2].chain, 0, True), now_us=0)
        if isinstance(e, ReadArchiveEntries)
    ]
    e, _ = st.primary_commit(Commit({1: bytes(512)}, 3, 512, 0), now_us=1, wall_us=10**9)
    for r in (0, 1):  # durable: the retained log is over budget, but the read's pin keeps 16.. (no effect)
        assert st.on_ack(r, epoch=1, stored_through=21, chain=e.chain, log_epoch=1, now_us=1) == []
    assert min(st.log) == 16
    out = st.on_archive_entries(2, read.connection, tuple(log[read.first - 1 : read.last]))
    [send] = [x for x in out if isinstance(x, SendEntries)]
    assert [x.seq for x in send.entries] == list(range(4, 22)) and send.whole


def _catching_up(max_retained_bytes: int) -> tuple[list[Entry], PrimaryState, ReadArchiveEntries]:
    """Replicas 0 and 1 hold the log through 20; replica 2 (through 3) must be caught up from the
    archive, because the retained log no longer has 4.. (or anything, with a tiny budget)."""
    log, st = _two_replicas_hold_the_log(20, max_retained_bytes)
    [read] = [
        e
        for e in st.on_connected(2, Promise(1, 1, 3, log[2].chain, 0, True), now_us=0)
        if isinstance(e, ReadArchiveEntries)
    ]
    return log, st, read


def test_archive_entries_for_a_lost_connection_or_of_nothing_are_dropped_and_release_their_pin() -> None:
    log, st, read = _catching_up(5 * make_log(1, epoch=1)[0].size)
    entries = tuple(log[read.first - 1 : read.last])
    assert 2 in st.pins
    assert st.on_archive_entries(2, read.connection + 1, entries) == []  # an older or newer connection
    assert 2 not in st.pins  # the pin that kept the retained log for this read is gone either way
    assert st.on_archive_entries(2, read.connection, ()) == []
    st.on_disconnected(2)
    assert st.on_archive_entries(2, read.connection, entries) == []
    # A new connection of the same replica: the answer to the old one's read is stale.
    log3 = make_log(20, epoch=1)
    st.on_connected(2, Promise(1, 1, 3, log3[2].chain, 0, True), now_us=1)
    assert st.connects[2] == read.connection + 1
    assert st.on_archive_entries(2, read.connection, entries) == []


def test_archive_entries_that_do_not_join_the_retained_log_are_not_sent_and_say_why() -> None:
    _log, st, read = _catching_up(5 * make_log(1, epoch=1)[0].size)
    other = make_log(20, epoch=2)  # another history: its seq 15 does not link to our 16
    assert st.on_archive_entries(2, read.connection, tuple(other[read.first - 1 : read.last])) == []
    assert st.notes[2] == "the archive's seq 15 does not join this primary's log; not sent"


def test_a_catch_up_when_nothing_is_retained_joins_by_the_last_chain_and_sends_through_the_end() -> None:
    log, st, read = _catching_up(1)  # every durable, archived entry dropped from the retained log
    assert st.log == {} and (read.first, read.last) == (4, 20)
    retry = st.on_tick(st.config.retransmit_us + 1)  # nothing retained: the resend reads the archive again
    assert [(e.replica, e.first, e.last) for e in retry if isinstance(e, ReadArchiveEntries)] == [(2, 4, 20)]
    [send] = [x for x in st.on_archive_entries(2, read.connection, tuple(log[3:20])) if isinstance(x, SendEntries)]
    assert (send.replica, send.log_end, send.whole) == (2, 20, True)
    assert [x.seq for x in send.entries] == list(range(4, 21)) and st.sent[2] == 20
    _log2, st2, read2 = _catching_up(1)
    other = make_log(20, epoch=2)
    assert st2.on_archive_entries(2, read2.connection, tuple(other[3:20])) == []  # ends on another chain


def test_a_replica_waiting_for_the_archive_is_caught_up_once_it_confirms_and_every_replica_truncates() -> None:
    """Replica 2 needs entries the retained log dropped before the archive confirmed them: it
    waits; the confirmation sends TRUNCATE to every connected replica and starts its catch-up
    (from the archive); a replica that went away meanwhile gets neither."""
    for gone in (False, True):
        log, st = _two_replicas_hold_the_log(0, 5 * make_log(1, epoch=1)[0].size)
        assert st.on_connected(2, Promise(1, 1, 3, log[2].chain, 0, True), now_us=0) == []
        assert st.awaiting_archive == {2}
        if gone:
            st.on_disconnected(2)
        truncates = [SendTruncate(r, 20, log[19].chain) for r in (0, 1, *(() if gone else (2,)))]
        reads = [] if gone else [ReadArchiveEntries(2, 4, 15, st.connects[2])]
        assert st.on_archived(20) == [*truncates, *reads]
        assert st.awaiting_archive == set()


def test_the_retained_log_drops_only_entries_the_archiver_has_taken() -> None:
    """Durable through 20, but the archiver took only through 18: with a tiny budget the
    retained log keeps 19 and 20 (dropping them would leave a gap in the archive)."""
    log = make_log(20, epoch=1)
    st = PrimaryState(PrimaryConfig(epoch=1, replicas=3, quorum=2, max_retained_bytes=1), recovered=tuple(log))
    st.recovered_end, st.archive_floor = 0, 18
    for r in (0, 1):
        st.on_connected(r, Promise(1, 1, 20, log[-1].chain, 0, True), now_us=0)
    st.match = [20, 20, 0]
    st._advance()
    assert sorted(st.log) == [19, 20] and st.log_bytes == log[18].size + log[19].size


def test_a_replica_that_goes_away_leaves_no_pin_and_no_wait_for_the_archive() -> None:
    log, st = _two_replicas_hold_the_log(0, 5 * make_log(1, epoch=1)[0].size)
    st.on_connected(2, Promise(1, 1, 3, log[2].chain, 0, True), now_us=0)
    assert st.awaiting_archive == {2}
    st.on_disconnected(2)
    assert st.awaiting_archive == set() and 2 not in st.pins and not st.connected[2]
    _, st2, _ = _catching_up(5 * make_log(1, epoch=1)[0].size)
    assert 2 in st2.pins
    st2.on_disconnected(2)
    assert 2 not in st2.pins
