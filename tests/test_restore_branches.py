"""Restore branches, piece by piece (the whole protocol under faults: test_failover_property.py).

- The branch lives in the database: the marker and the restore request, read back by read_meta.
- branch.json: deterministic bytes, and a bad record is refused with a message naming it.
- A replica starts its log at an archived base only when the same epoch offered it (TRUNCATE),
  and only when it cannot join the frame to what it holds; the primary offers its oldest entry
  to a replica that does not hold its log and needs older entries.
- The archive reader follows a branch's history into its parent before the fork, by seq and by time.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from archive_records import record_all
from test_replica_state import make_log
from test_retention import grow as retention_grow
from walrelay.archive.dir_store import DirStore
from walrelay.archive.format import branch_record_key, encode_segment, encode_snapshot, segment_key, snapshot_key
from walrelay.archive.manifest import retired_json, retired_key
from walrelay.archive.reader import ArchiveError, ArchiveReader
from walrelay.archive.retention import DAY_US, apply_retention, apply_superseded, plan_retention, plan_superseded
from walrelay.archive.verify import verify
from walrelay.branching import BranchRecord, BranchRecordError, read_meta, write_branch_marker, write_restore_request
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.pagehash import DbChecksum
from walrelay.primary import PrimaryConfig, PrimaryState, SendEntries, SendTruncate
from walrelay.replica import PersistEntries, PersistLogEpoch, ReplicaState, ResetToBase, SendAck, SendReject
from walrelay.replica_store import ReplicaStore
from walrelay.wire import Promise

PAGE = 4096

# -- the branch in the database ---------------------------------------------------------------------


def test_a_database_without_the_meta_table_is_on_the_genesis_branch_and_the_marker_moves_it() -> None:
    conn = apsw.Connection(":memory:")
    assert read_meta(conn).branch == 1 and read_meta(conn).pending_restore is None
    write_restore_request(conn, "00000001-0000000000000004", "00000001-0000000000000009")
    meta = read_meta(conn)
    assert (meta.branch, meta.pending_restore, meta.undo_bookmark) == (
        1,
        "00000001-0000000000000004",
        "00000001-0000000000000009",
    )
    rec = BranchRecord(7, 1, 4, bytes(range(16)), "00000001-0000000000000009")
    write_branch_marker(conn, rec)  # an undo restores a database that may still hold a request
    meta = read_meta(conn)
    assert (meta.branch, meta.record, meta.pending_restore, meta.undo_bookmark) == (7, rec, None, rec.undo_bookmark)


def test_a_branch_record_is_deterministic_and_a_bad_one_is_named() -> None:
    rec = BranchRecord(7, 3, 4, bytes(range(16)), "00000003-0000000000000009")
    assert rec.to_json() == rec.to_json() and BranchRecord.from_json(rec.to_json(), what="k") == rec
    assert b'"restored_to":"00000003-0000000000000004"' in rec.to_json()
    for bad, fragment in [
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (rec.to_json().replace(b'"format":1', b'"format":2'), "format 2"),
        (
            rec.to_json()
            .replace(b'"parent":3', b'"parent":9')
            .replace(b'"00000003-0000000000000004"', b'"00000009-0000000000000004"'),
            "parent 9",
        ),
        (rec.to_json().replace(b'"fork_seq":4', b'"fork_seq":-4'), "fork_seq"),
        (rec.to_json().replace(b"0001020304", b"zz01020304"), "branch.json"),
    ]:
        with pytest.raises(BranchRecordError, match=fragment):
            BranchRecord.from_json(bad, what="obj/b00000007/branch.json")


# -- the replica's base -----------------------------------------------------------------------------


def _replica_holding(log: list[Entry], *, epoch: int, archived: int = 0) -> ReplicaState:
    st = ReplicaState(0, promised_epoch=epoch, log_epoch=epoch, archived_through=archived)
    st.last_seq, st.last_chain = log[-1].seq, log[-1].chain
    st.chains = {e.seq: e.chain for e in log if e.seq >= archived}
    return st


def test_a_replica_starts_its_log_at_an_offered_base_it_cannot_join() -> None:
    old = make_log(8, epoch=1)  # the branch the replica holds, truncated through 6
    new = make_log(5, epoch=3, salt=9)  # another history: the restored branch, base at seq 4
    st = _replica_holding(old, epoch=1, archived=6)
    st.promised_epoch = 3
    base, marker = new[3], new[4]
    # Without an offer, a frame it cannot join changes nothing (DIVERGED or a gap, as before).
    effects = st.on_append(3, (base, marker), 5)
    assert not any(isinstance(e, ResetToBase) for e in effects)
    assert st.last_seq == 8 and st.log_epoch == 1
    # An offer from another epoch, or for another entry, is not an offer for this frame.
    st.on_truncate(4, base.chain, 2)  # below the promise: ignored
    st.on_truncate(4, bytes(16), 3)
    assert not any(isinstance(e, ResetToBase) for e in st.on_append(3, (base, marker), 5))
    st.on_truncate(4, base.chain, 3)
    effects = st.on_append(3, (base, marker), 5)
    assert effects[0] == ResetToBase(base)
    assert PersistEntries((marker,)) in effects and PersistLogEpoch(3) in effects
    assert effects[-1] == SendAck(3, 5, marker.chain, 3)
    assert (st.last_seq, st.archived_through, st.log_epoch, sorted(st.chains)) == (5, 4, 3, [4, 5])


def test_a_replica_that_holds_the_offered_base_joins_the_ordinary_way() -> None:
    log = make_log(8, epoch=1)
    st = _replica_holding(log, epoch=1)
    st.promised_epoch = 3
    marker = make_log(5, epoch=3, salt=9, prev=log[3].chain, first=5)[0]
    st.on_truncate(4, log[3].chain, 3)  # it holds seq 4: acted on as a truncation, no base needed
    effects = st.on_append(3, (log[3], marker), 5)
    assert not any(isinstance(e, ResetToBase) for e in effects)
    assert not any(isinstance(e, SendReject) for e in effects)
    assert (st.last_seq, st.log_epoch) == (5, 3)


def test_the_store_keeps_only_the_base_and_loads_it_back(tmp_path: Path) -> None:
    log = make_log(6, epoch=1)
    store = ReplicaStore(str(tmp_path), "obj")
    store.load()
    store.append_durably(tuple(log))
    other = make_log(5, epoch=3, salt=9)
    store.save_state(3, 4, 0, True)
    store.reset_to(other[3])
    store.append_durably((other[4],))
    store.close()
    again = ReplicaStore(str(tmp_path), "obj")
    loaded = again.load()
    assert (loaded.last_seq, loaded.archived_through, sorted(loaded.chains)) == (5, 4, [4, 5])
    assert [e.seq for e in again.read_entries(1)] == [4, 5]


def test_the_primary_offers_its_oldest_entry_to_a_replica_that_needs_older_ones() -> None:
    log = make_log(10, epoch=2)
    st = PrimaryState(PrimaryConfig(epoch=3, replicas=3, quorum=2), recovered=tuple(log[5:]))  # retains 6..10
    st.archived_seq = 6  # the archive holds through seq 6
    out = st.on_connected(2, Promise(3, 0, 0, GENESIS_CHAIN, 0, False), now_us=0)  # an empty replica
    truncate = [e for e in out if isinstance(e, SendTruncate)]
    sends = [e for e in out if isinstance(e, SendEntries)]
    assert truncate[0] == SendTruncate(2, 6, log[5].chain)
    assert [e.seq for e in sends[0].entries] == [6, 7, 8, 9, 10] and sends[0].whole
    # Not beyond the archive: with the archive short of the oldest entry there is nothing to offer.
    st2 = PrimaryState(PrimaryConfig(epoch=3, replicas=3, quorum=2), recovered=tuple(log[5:]))
    st2.archived_seq, st2.chains[5] = 5, log[4].chain
    out2 = st2.on_connected(2, Promise(3, 0, 0, GENESIS_CHAIN, 0, False), now_us=0)
    assert SendTruncate(2, 6, log[5].chain) not in out2 and not any(isinstance(e, SendEntries) for e in out2)


# -- reading a branch's history ---------------------------------------------------------------------


def grow(image: bytes, chain: bytes, first: int, n: int, ts0: int, seed: int) -> tuple[list[Entry], list[bytes]]:
    """Real entries in 4096-byte pages, entry ``s`` at time ``ts0 + s`` (test_retention.grow)."""
    return retention_grow(image, chain, first, n, seed=seed, page=PAGE, ts=lambda seq: ts0 + seq)


def test_a_branch_reads_its_parents_history_before_the_fork_by_seq_and_by_time(tmp_path: Path) -> None:
    store = DirStore(str(tmp_path))
    parent, pimages = grow(b"", GENESIS_CHAIN, 1, 8, 0, seed=1)  # parent seq s at time s
    store.put(snapshot_key("o", 1, 0), encode_snapshot(1, 0, 0, GENESIS_CHAIN, 4096, b"", 0))
    store.put(segment_key("o", 1, 1, 8), encode_segment(1, tuple(parent), GENESIS_CHAIN))
    # Branch 5 forks after seq 4 and its own entries come later (times 100 + seq).
    child, cimages = grow(pimages[3], parent[3].chain, 5, 6, 100, seed=2)
    fork = pimages[3]
    store.put(
        snapshot_key("o", 5, 4),
        encode_snapshot(5, 4, 4, parent[3].chain, PAGE, fork, DbChecksum.of_image(fork, PAGE).value),
    )
    store.put(segment_key("o", 5, 5, 10), encode_segment(5, tuple(child), parent[3].chain))
    reader = ArchiveReader(store, "o")
    # A branch with segments exists, even without its record: it is current, and reading it by
    # time fails naming the record instead of answering from branch 1 (a silently wrong restore).
    assert reader.current_branch(reader.listing()) == 5
    with pytest.raises(ArchiveError, match=r"b00000005/branch\.json: missing: branch 5 exists"):
        reader.point_for_time(107)
    assert "b00000005/branch.json: missing" in verify(reader).problems[-1]
    rec = BranchRecord(5, 1, 4, parent[3].chain, "00000001-0000000000000008")
    store.put(branch_record_key("o", 5), rec.to_json())
    record_all(reader)
    assert reader.current_branch(reader.listing()) == 5
    report = verify(reader)
    assert report.ok, report.problems
    assert (report.branches[1].parent, report.branches[1].fork_seq) == (1, 4)
    # By seq: before the fork it is the parent's state, after it the branch's own.
    assert reader.restore_image(2, 5).image == pimages[1]
    assert reader.restore_image(4, 5).image == fork
    assert reader.restore_image(7, 5).image == cimages[2]
    assert reader.restore_image(7, 1).image == pimages[6]  # the parent itself is untouched
    # By time: before the branch's first own entry, the parent's history, capped at the fork.
    assert reader.point_for_time(2, 5) == (1, 2)
    # Parent's seq 7 is not in branch 5's history: at time 7 its state is the fork point's, named
    # as branch 5's own bookmark (its fork snapshot holds it, whatever retention did to branch 1).
    assert reader.point_for_time(7, 5) == (5, 4)
    assert reader.point_for_time(107, 5) == (5, 7)
    assert reader.point_for_time(7, 1) == (1, 7)
    with pytest.raises(ArchiveError, match="beyond the archive's end"):
        reader.restore_point_check(5, 11)
    reader.restore_point_check(5, 10)  # exactly the end: restorable
    with pytest.raises(ArchiveError, match=r"seq 9 is beyond the archive's end \(seq 8\) of 'o' branch 1"):
        reader.restore_point_check(1, 9)  # branch 1's own end, not the current branch's
    # Where each branch ends, newest branch first (recovery takes the newest that matches).
    assert reader.ends() == [(5, 10, child[-1].chain), (1, 8, parent[-1].chain)]


def test_a_branch_whose_first_own_entries_retention_took_answers_times_from_its_kept_point_or_refuses(
    tmp_path: Path,
) -> None:
    """Found by the simulation once retention ran in it (issue 16): retention moved a branch's
    floor past its fork, deleting the fork snapshot and the first own segment. Reading by time,
    the first own entry still archived (seq 8, at 108) looked like the branch's first, so a time
    before it went to the parent and came back capped at the fork point (5, 4): at time 107 the
    database was seq 7's, so that answer restored a silently wrong state. Now a time at or after
    the kept snapshot is answered by the branch, and an earlier one is refused."""
    store = DirStore(str(tmp_path))
    parent, pimages = grow(b"", GENESIS_CHAIN, 1, 8, 0, seed=1)  # branch 1: seq s at time s
    store.put(snapshot_key("o", 1, 0), encode_snapshot(1, 0, 0, GENESIS_CHAIN, 4096, b"", 0))
    store.put(segment_key("o", 1, 1, 8), encode_segment(1, tuple(parent), GENESIS_CHAIN))
    child, cimages = grow(pimages[3], parent[3].chain, 5, 6, 100, seed=2)  # branch 5: seq s at 100 + s
    fork = pimages[3]
    store.put(
        snapshot_key("o", 5, 4),
        encode_snapshot(5, 4, 4, parent[3].chain, PAGE, fork, DbChecksum.of_image(fork, PAGE).value),
    )
    store.put(segment_key("o", 5, 5, 7), encode_segment(5, tuple(child[:3]), parent[3].chain))
    store.put(segment_key("o", 5, 8, 10), encode_segment(5, tuple(child[3:]), child[2].chain))
    store.put(
        snapshot_key("o", 5, 7),
        encode_snapshot(5, 7, 107, child[2].chain, PAGE, cimages[2], DbChecksum.of_image(cimages[2], PAGE).value),
    )
    store.put(branch_record_key("o", 5), BranchRecord(5, 1, 4, parent[3].chain, "00000001-0000000000000008").to_json())
    reader = ArchiveReader(store, "o")
    record_all(reader)
    assert reader.point_for_time(107, 5) == (5, 7)  # before retention
    # Retention at 107.5 with a day's window: the horizon names seq 7, whose snapshot is kept.
    plan = plan_retention(reader, reader.branch(5), now_us=DAY_US + 107, window_us=DAY_US, grace_us=0)
    assert plan.keep_snapshot == (snapshot_key("o", 5, 7), 7)
    assert set(plan.delete) >= {snapshot_key("o", 5, 4), segment_key("o", 5, 5, 7)}
    apply_retention(reader, plan)
    assert verify(reader).ok, verify(reader).problems
    assert reader.point_for_time(107, 5) == (5, 7)  # the kept point: its snapshot's time
    assert reader.point_for_time(109, 5) == (5, 9)
    assert reader.restore_image(7, 5).image == cimages[2]
    with pytest.raises(ArchiveError, match=r"before the oldest point the archive of 'o' branch 5 still holds"):
        reader.point_for_time(106, 5)  # seq 6's time: its entry is gone, and it is not the fork's state
    with pytest.raises(ArchiveError, match=r"before the oldest point the archive of 'o' branch 5 still holds"):
        reader.point_for_time(50, 5)  # the fork's time or the parent's: unknown once the fork snapshot went


def test_a_record_that_disagrees_with_its_fork_snapshot_fails_verify(tmp_path: Path) -> None:
    store = DirStore(str(tmp_path))
    parent, pimages = grow(b"", GENESIS_CHAIN, 1, 4, 0, seed=1)
    store.put(snapshot_key("o", 1, 0), encode_snapshot(1, 0, 0, GENESIS_CHAIN, 4096, b"", 0))
    store.put(segment_key("o", 1, 1, 4), encode_segment(1, tuple(parent), GENESIS_CHAIN))
    fork = pimages[2]
    store.put(
        snapshot_key("o", 6, 3),
        encode_snapshot(6, 3, 3, parent[2].chain, PAGE, fork, DbChecksum.of_image(fork, PAGE).value),
    )
    store.put(branch_record_key("o", 6), BranchRecord(6, 1, 3, parent[1].chain, "00000001-0000000000000004").to_json())
    record_all(ArchiveReader(store, "o"))
    report = verify(ArchiveReader(store, "o"))
    assert (
        not report.ok and "b00000006/snap/00000000000000000003: its chain is not the fork chain" in report.problems[0]
    )
    store.put(branch_record_key("o", 6), b"{not json")
    report = verify(ArchiveReader(store, "o"))
    assert not report.ok and "b00000006/branch.json: not JSON" in report.problems[0]


def test_retention_deletes_a_superseded_branch_only_once_it_stopped_being_current_before_the_window(
    tmp_path: Path,
) -> None:
    store = DirStore(str(tmp_path))
    parent, pimages = grow(b"", GENESIS_CHAIN, 1, 8, 0, seed=1)  # branch 1: seq s at time s
    store.put(snapshot_key("o", 1, 0), encode_snapshot(1, 0, 0, GENESIS_CHAIN, 4096, b"", 0))
    store.put(segment_key("o", 1, 1, 8), encode_segment(1, tuple(parent), GENESIS_CHAIN))
    child, cimages = grow(pimages[3], parent[3].chain, 5, 6, 100, seed=2)  # branch 5: restored at time 105
    fork = pimages[3]
    store.put(
        snapshot_key("o", 5, 4),
        encode_snapshot(5, 4, 4, parent[3].chain, PAGE, fork, DbChecksum.of_image(fork, PAGE).value),
    )
    store.put(segment_key("o", 5, 5, 10), encode_segment(5, tuple(child), parent[3].chain))
    store.put(branch_record_key("o", 5), BranchRecord(5, 1, 4, parent[3].chain, "00000001-0000000000000008").to_json())
    store.put(
        snapshot_key("o", 7, 2),
        encode_snapshot(7, 2, 2, parent[1].chain, PAGE, pimages[1], DbChecksum.of_image(pimages[1], PAGE).value),
    )  # an orphan
    reader = ArchiveReader(store, "o")
    record_all(reader)

    def answers(times: range) -> dict[int, bytes]:
        return {t: reader.restore_image(*reversed(reader.point_for_time(t, 5))).image for t in times}

    # Window start (with grace) at 104: branch 1 was current until 105, inside it: kept.
    assert plan_superseded(reader, now_us=104 + DAY_US, window_us=DAY_US, grace_us=0) == []
    assert plan_superseded(reader, now_us=105 + DAY_US, window_us=DAY_US, grace_us=0) == []  # ended at 105: not before
    before = answers(range(104, 112))
    # At 106 it was superseded before the window: its objects go (its record, if it had one, stays);
    # the orphan stays while no newer branch completed (its restore might still be running).
    doomed = plan_superseded(reader, now_us=106 + DAY_US, window_us=DAY_US, grace_us=0)
    assert doomed[0] == retired_key("o", 1)  # marked retired before anything goes
    assert sorted(doomed[1:]) == sorted(
        [segment_key("o", 1, 1, 8), snapshot_key("o", 1, 0), *(k for k, _, _ in reader.listing().branches[1].manifests)]
    )
    for i in range(1, len(doomed) + 1):  # a retention pass that stops anywhere leaves a valid archive
        deleted = apply_superseded(reader, doomed[i - 1 : i])
        assert deleted == (0 if i == 1 else 1)  # it counts deletions: the first key is the mark, written
        assert verify(reader).ok, (doomed[:i], verify(reader).problems)
    reader.store.delete(retired_key("o", 1))  # and its mark is what makes an emptied branch valid
    assert "names branch 1, which has no objects" in " ".join(verify(reader).problems)
    reader.store.put(retired_key("o", 1), retired_json(1))
    assert answers(range(104, 112)) == before  # every time in the window restores as before
    assert verify(reader).ok, verify(reader).problems
    with pytest.raises(ArchiveError, match="retention deleted it"):
        reader.restore_image(2, 5)  # before the window: gone
    # A newer completed branch makes the orphan's restore impossible: it goes too.
    store.put(
        snapshot_key("o", 9, 6),
        encode_snapshot(9, 6, 106, child[1].chain, PAGE, cimages[1], DbChecksum.of_image(cimages[1], PAGE).value),
    )
    store.put(branch_record_key("o", 9), BranchRecord(9, 5, 6, child[1].chain, "00000005-000000000000000a").to_json())
    assert plan_superseded(reader, now_us=106 + DAY_US, window_us=DAY_US, grace_us=0) == [snapshot_key("o", 7, 2)]


def test_a_truncate_from_an_epoch_older_than_the_promise_changes_nothing() -> None:
    """Found by a chaos campaign: the PROMISE to epoch 7 reported truncation at seq 2; a stale
    primary's TRUNCATE(3) then compacted the log before epoch 7 fetched from seq 2."""
    log = make_log(4, epoch=5)
    st = _replica_holding(log, epoch=5, archived=2)
    st.promised_epoch = 7
    assert st.on_truncate(3, log[2].chain, 5) == []
    assert st.archived_through == 2 and st.base_offer is None
    assert st.on_truncate(3, log[2].chain, 7) != []  # the promised epoch's own TRUNCATE acts
