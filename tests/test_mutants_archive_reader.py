"""The archive reader judged exactly (the mutation triage of archive/reader, issue 16).

What a restore returns (every field of ``Restored``), what a restore by time answers across
branches, forks and retention, and the error a user reads when the archive cannot answer (which
object, which seqs, which time): each test stands for mutants of reader.py that survived the
other tests, most of them a silently wrong answer or an error that names the wrong thing.
Archives are built as in tests/test_mutants_archive_verify.py: entry ``s`` of branch 1 at day ``s``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from archive_records import record_all
from test_mutants_archive_verify import (
    DAY,
    PAGE,
    THIRDS,
    Log,
    Phantom,
    archive,
    bm,
    man,
    restore_branch,
    retain,
    seg,
    snap,
    staged,
)
from test_retention import grow
from walrelay.archive.dir_store import DirStore
from walrelay.archive.format import ArchiveFormatError, branch_record_key, encode_segment, encode_snapshot
from walrelay.archive.manifest import Floor, Manifest, Vouched, floor_key, retired_json, retired_key
from walrelay.archive.reader import ArchiveError, ArchiveReader, Restored
from walrelay.archive.retention import apply_retention, plan_retention
from walrelay.branching import BranchRecord
from walrelay.pagehash import DbChecksum

# -- restore by seq -----------------------------------------------------------------------------------


def test_a_restore_returns_the_point_it_restored_with_its_chain_time_and_page_size(tmp_path: Path) -> None:
    """At a snapshot's seq (nothing replayed) and between snapshots (replayed): the branch, seq,
    chain, entry time and page size a restore reports are the point's, not another's."""
    reader, log = archive(tmp_path)
    assert reader.restore_image(12) == Restored(1, 12, log.chain(12), 12 * DAY, PAGE, log.images[12])
    assert reader.restore_image(14) == Restored(1, 14, log.chain(14), 14 * DAY, PAGE, log.images[14])
    restore_branch(reader, log)
    record_all(reader)
    assert reader.restore_image(8, 5) == Restored(5, 8, log.chain(8), 8 * DAY, PAGE, log.images[8])


def test_a_restore_from_a_snapshot_in_another_page_size_than_its_log_is_refused(tmp_path: Path) -> None:
    """Snapshot 16 says 1024-byte pages, the log's entries 512: replaying them onto it is refused
    naming the entry (verify reports the snapshot), not done in a page size the snapshot denies."""
    reader, log = archive(tmp_path)
    img = log.images[16]
    reader.store.put(
        snap(16),
        encode_snapshot(1, 16, 16 * DAY, log.chain(16), 2 * PAGE, img, DbChecksum.of_image(img, 2 * PAGE).value),
    )
    with pytest.raises(
        ArchiveError, match=r"^archive of 'o': replay failed: entry seq 17 has page size 512, database has 1024$"
    ):
        reader.restore_image(17)


# -- listing and branches -----------------------------------------------------------------------------


def test_the_listing_keeps_reading_after_a_foreign_key_and_names_it(tmp_path: Path) -> None:
    """ "o/README" sorts before every branch: a listing that stopped at it would hold nothing."""
    reader, _ = archive(tmp_path)
    reader.store.put("o/README", b"hello")
    listing = reader.listing()
    assert listing.object_name == "o" and listing.foreign == ["o/README"]
    assert sorted(listing.branches) == [1] and len(listing.branches[1].segments) == 7


def test_the_newest_manifest_is_the_highest_writers_then_number(tmp_path: Path) -> None:
    """Writer 1 wrote manifests 1 and 2, then writer 2 (a later primary) its manifest 1: the tip
    is writer 2's, the one that follows the others."""
    reader, _ = archive(tmp_path)
    m1 = reader.manifest(man(1))
    two = Manifest(1, 1, 2, man(1), m1.through, (), m1.through, m1.through_chain)
    reader.store.put(man(2), two.to_json())
    later = Manifest(1, 2, 1, man(2), m1.through, (), m1.through, m1.through_chain)
    reader.store.put(man(1, writer=2), later.to_json())
    tip = reader.tip(reader.branch(1))
    assert tip is not None and (tip.writer, tip.n) == (2, 1)


def test_which_branch_is_current(tmp_path: Path) -> None:
    """A branch with a record (its restore completed) is current even before its first manifest
    or segment; a newer orphan (a fork snapshot only) is not; with nothing but an orphan, the
    genesis branch is current although it has nothing, and reading it says so."""
    reader, log = archive(tmp_path / "a")
    reader.store.put(snap(8, 5), log.snapshot(8, 5))
    reader.store.put(branch_record_key("o", 5), BranchRecord(5, 1, 8, log.chain(8), bm(1, 20)).to_json())
    reader.store.put(snap(3, 7), log.snapshot(3, 7))
    assert reader.current_branch(reader.listing()) == 5
    assert reader.branch().branch == 5
    only = ArchiveReader(DirStore(tmp_path / "b"), "o")
    only.store.put(snap(3, 7), log.snapshot(3, 7))
    assert only.current_branch(only.listing()) == 1
    with pytest.raises(ArchiveError, match=rf"^object 'o' has no branch 1 in directory {tmp_path / 'b'}$"):
        only.branch()
    empty = ArchiveReader(DirStore(tmp_path / "c"), "o")
    for call in (empty.branch, lambda: empty.resolve(None, 3)):
        with pytest.raises(ArchiveError, match=rf"^no archive for object 'o' in directory {tmp_path / 'c'}$"):
            call()


def test_a_branch_without_a_snapshot_ends_at_seq_0(tmp_path: Path) -> None:
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    reader.store.delete(snap(8, 5))
    assert reader.end(reader.branch(5)) == (0, log.chain(0))


# -- records, and resolving a point to the branch that holds it ---------------------------------------


def test_record_errors_name_the_record_and_what_is_wrong(tmp_path: Path) -> None:
    reader, log = archive(tmp_path)
    restore_branch(reader, log, record=False)
    with pytest.raises(
        ArchiveError,
        match=r"^o/b00000005/branch\.json: missing: branch 5 exists \(it has manifests or segments\) but its "
        r"branch\.json is gone, so where its history comes from is unknown; run walrelay archive verify$",
    ):
        reader.record(reader.branch(5))
    reader.store.delete(snap(8, 5))
    with pytest.raises(ArchiveError, match=r"^o/b00000005/branch\.json: missing: branch 5 exists"):
        reader.resolve(5, 9)  # no snapshot on it, and no record to say where its history is
    reader.store.put(snap(8, 5), log.snapshot(8, 5))
    reader.store.put(branch_record_key("o", 5), BranchRecord(6, 1, 8, log.chain(8), bm(1, 20)).to_json())
    with pytest.raises(
        ArchiveFormatError, match=r"^o/b00000005/branch\.json: records branch 6, not what its key says$"
    ):
        reader.record(reader.branch(5))
    reader.store.put(snap(3, 7), log.snapshot(3, 7))
    orphan = reader.branch(7)
    with pytest.raises(
        ArchiveError,
        match=r"^archive of 'o' branch 7 has no branch\.json: a restore that never completed \(an orphan\)$",
    ):
        reader.record(orphan)
    gone = ArchiveReader(Phantom(tmp_path), "o")
    b = gone.branch(1)
    b.record_key = branch_record_key("o", 1) + ".gone"
    with pytest.raises(
        ArchiveError, match=r"^o/b00000001/branch\.json\.gone: listed but gone \(deleted meanwhile\?\)$"
    ):
        gone.record(b)


def test_an_orphans_point_is_its_own_from_its_snapshot_on_and_unknown_before(tmp_path: Path) -> None:
    """Recovery may need an orphan's fork snapshot (its restore stopped before writing its
    record): at or after it the orphan holds the point; before it, there is no record to say
    where, and the error says so."""
    reader, log = archive(tmp_path)
    reader.store.put(snap(3, 7), log.snapshot(3, 7))
    bl, seq = reader.resolve(7, 3)
    assert (bl.branch, seq) == (7, 3)
    assert reader.restore_image(3, 7).image == log.images[3]
    with pytest.raises(ArchiveError, match=r"^archive of 'o' branch 7 has no branch\.json: a restore that never"):
        reader.resolve(7, 2)


def test_a_record_that_names_a_missing_parent_is_an_error_naming_it(tmp_path: Path) -> None:
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    reader.store.put(branch_record_key("o", 5), BranchRecord(5, 3, 8, log.chain(8), bm(1, 20)).to_json())
    for call in (lambda: reader.resolve(5, 2), lambda: reader.point_for_time(2 * DAY, 5)):
        with pytest.raises(ArchiveError, match=rf"^object 'o' has no branch 3 in directory {tmp_path}$"):
            call()


# -- objects that are not what their keys say ---------------------------------------------------------


def test_objects_are_checked_against_their_keys_and_errors_name_the_key(tmp_path: Path) -> None:
    reader, log = archive(tmp_path)
    with pytest.raises(
        ArchiveFormatError, match=r"^o/b00000001/seg/0+4-0+6: holds branch 1 seqs 4\.\.5, not what its key says$"
    ):
        reader.segment_from(seg(4, 6), log.segment(4, 5))
    with pytest.raises(ArchiveFormatError, match=r"^o/b00000001/seg/0+4-0+6: "):
        reader.segment_from(seg(4, 6), b"WRSG" + bytes(200))
    with pytest.raises(
        ArchiveFormatError, match=r"^o/b00000001/snap/0+4: holds branch 2 seq 4, not what its key says$"
    ):
        reader.snapshot_from(snap(4), log.snapshot(4, 2))
    m = reader.manifest(man(1))
    reader.store.put(man(2), m.to_json())
    with pytest.raises(
        ArchiveFormatError,
        match=r"^o/b00000001/manifest/0+1-0+2: is manifest 1 of writer 1 on branch 1, not what its key says$",
    ):
        reader.manifest(man(2))
    reader.store.put(man(3), b"x")
    with pytest.raises(ArchiveFormatError, match=r"^o/b00000001/manifest/0+1-0+3: "):
        reader.manifest(man(3))
    data = reader.store.get(snap(8))
    reader.store.put(floor_key("o", 1, 4), Floor(1, 8, log.chain(8), 8 * DAY, Vouched.of(snap(8), data)).to_json())
    with pytest.raises(
        ArchiveFormatError, match=r"^o/b00000001/floor/0+4: is the floor at seq 8 of branch 1, not what its key says$"
    ):
        reader.floor(floor_key("o", 1, 4))
    reader.store.put(floor_key("o", 1, 5), b"x")
    with pytest.raises(ArchiveFormatError, match=r"^o/b00000001/floor/0+5: "):
        reader.floor(floor_key("o", 1, 5))
    with pytest.raises(ArchiveError, match=r"^o/b00000001/snap/0+2: listed but gone \(deleted meanwhile\?\)$"):
        ArchiveReader(Phantom(tmp_path), "o").snapshot(snap(2))


# -- the log ------------------------------------------------------------------------------------------


def test_reading_the_log_names_a_gap_a_missing_entry_and_an_entry_that_does_not_follow(tmp_path: Path) -> None:
    reader, _ = archive(tmp_path, [s for s in THIRDS if s != (10, 12)])
    b = reader.branch(1)
    with pytest.raises(ArchiveError, match=r"^archive of 'o' branch 1 has a gap: no segment holds seq 10$"):
        reader.restore_image(11)
    with pytest.raises(ArchiveError, match=r"^archive of 'o' branch 1 has no segment holding seq 11$"):
        reader.entry_at(b, 11)
    reader.store.put(seg(10, 12), Log(seed=7).segment(10, 12))
    with pytest.raises(
        ArchiveFormatError,
        match=r"^o/b00000001/seg/0+10-0+12: entry seq 10 does not follow seq 9 of the archive$",
    ):
        reader.restore_image(11)


# -- restore by time ----------------------------------------------------------------------------------


def after_end(t_day: float, seq: int, branch: int = 1, at: str = "") -> str:
    return (
        rf"^time {iso_time(t_day)} is after the newest archived entry of 'o' branch {branch} \(seq {seq}{at}\): later "
        r"entries may exist that are not archived yet, so the state at that time is unknown\. Restore bookmark "
        rf"{bm(branch, seq)} for that entry, or ask the primary \(__bookmark_for_time__\)$"
    )


def iso_time(t_day: float) -> str:
    """A day count as _iso prints it (half days: 12:00)."""
    d = int(t_day)
    hours = "12" if t_day != d else "00"
    return f"1970-01-{d + 1:02d}T{hours}:00:00\\.000000Z" if d < 31 else f"1970-02-{d - 30:02d}T{hours}:00:00\\.000000Z"


def t(day: float) -> int:
    return int(day * DAY)


def test_a_superseded_branch_answers_up_to_the_end_its_successor_recorded(tmp_path: Path) -> None:
    """Branch 1 was left by the restore that made branch 5, which recorded its end (seq 20): a
    time after that is answered by it (also on the command line's path, which refuses an unknown
    end), whatever orphans lie about. A superseded branch no record names (branch 3, left when
    branch 5 was made from branch 1) answers inside its archived log."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log, branch=3)
    restore_branch(reader, log)
    record_all(reader)
    reader.store.put(snap(3, 7), log.snapshot(3, 7))  # an orphan
    assert reader.point_for_time(t(25), 1, past_end_ok=False) == (1, 20)
    assert reader.point_for_time(t(40), 3) == (3, 10)


def current_without_own_entries(root: Path) -> tuple[ArchiveReader, Log]:
    """Branch 5 forked from branch 1 at seq 8 and has archived nothing of its own yet."""
    reader, log = archive(root)
    reader.store.put(snap(8, 5), log.snapshot(8, 5))
    reader.store.put(branch_record_key("o", 5), BranchRecord(5, 1, 8, log.chain(8), bm(1, 20)).to_json())
    record_all(reader)
    return reader, log


def test_the_fork_point_is_the_answer_only_as_far_as_the_archive_proves_it(tmp_path: Path) -> None:
    """On the current branch with no own entry archived yet, a time after the fork is the fork
    point for a primary (it checks its own log), but unknown on the command line (later entries
    may not be archived yet). Once a newer branch 7 supersedes it, branch 5's history ended there
    and the command line gets the fork point too."""
    reader, log = current_without_own_entries(tmp_path)
    assert reader.point_for_time(t(15), 5) == (5, 8)
    with pytest.raises(ArchiveError, match=after_end(15, 8, 5)):
        reader.point_for_time(t(15), 5, past_end_ok=False)
    reader.store.put(snap(8, 7), log.snapshot(8, 7))
    reader.store.put(branch_record_key("o", 7), BranchRecord(7, 5, 8, log.chain(8), bm(5, 8)).to_json())
    record_all(reader)
    assert reader.point_for_time(t(15), 5, past_end_ok=False) == (5, 8)


def test_a_missing_first_own_segment_never_makes_the_fork_point_the_answer(tmp_path: Path) -> None:
    """Branch 5's manifest records its own entries through 12, but their segment is gone: at day
    15 its state is unknown (the restore might have been followed by writes before day 15)."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    record_all(reader)
    reader.store.delete(seg(9, 12, 5))
    with pytest.raises(
        ArchiveError,
        match=r"^archive of 'o' branch 5 has a gap: no segment holds seq 9 \(seqs 9\.\.12 are missing\), so the last "
        rf"entry at or before {iso_time(15)} is unknown; run walrelay archive verify$",
    ):
        reader.point_for_time(t(15), 5)


def test_without_its_fork_snapshot_a_branch_answers_from_its_parent_capped_at_the_fork(tmp_path: Path) -> None:
    """Branch 5's fork snapshot is gone (retention), its first own entry (day 39) is still there.
    Before that entry its state was the fork point's: read from branch 1, any later point of
    branch 1 (day 8.5: seq 8; day 15: seq 15; day 25: its end) is capped to branch 5's fork
    point, never answered as branch 1's (not in branch 5's history). Through branch 7 (forked from
    branch 5 at 10, its fork snapshot gone too) the same."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    record_all(reader)
    reader.store.delete(snap(8, 5))
    for day in (8.5, 15, 25):
        assert reader.point_for_time(t(day), 5) == (5, 8), day
    reader.store.put(branch_record_key("o", 7), BranchRecord(7, 5, 10, log.chain(10), bm(5, 12)).to_json())
    reader.store.put(snap(10, 7), log.snapshot(10, 7))
    record_all(reader)
    reader.store.delete(snap(10, 7))
    assert reader.point_for_time(t(15), 7) == (5, 8)


def test_once_retention_took_a_branchs_first_own_entries_earlier_times_are_refused(tmp_path: Path) -> None:
    """Branch 5's fork snapshot and first own segment (seq 9, day 39) are gone, its snapshot at 9
    is kept: a time before day 39 cannot be told (the fork's state or seq 9's), and is refused
    naming the oldest point held; a fork snapshot still lying around does not change that. Day
    39.5 is the branch's own."""
    reader, log = archive(tmp_path)
    own, images = restore_branch(reader, log, record=False)
    reader.store.delete(seg(9, 12, 5))
    reader.store.put(seg(9, 9, 5), encode_segment(5, (own[0],), log.chain(8)))
    reader.store.put(seg(10, 12, 5), encode_segment(5, tuple(own[1:]), own[0].chain))
    img = images[0]
    reader.store.put(
        snap(9, 5), encode_snapshot(5, 9, 39 * DAY, own[0].chain, PAGE, img, DbChecksum.of_image(img, PAGE).value)
    )
    reader.store.put(branch_record_key("o", 5), BranchRecord(5, 1, 8, log.chain(8), bm(1, 20)).to_json())
    record_all(reader)
    fork = reader.store.get(snap(8, 5))
    reader.store.delete(snap(8, 5))
    reader.store.delete(seg(9, 9, 5))
    before = (
        rf"^time {iso_time(38.5)} is before the oldest point the archive of 'o' branch 5 still holds \(seq 9 at "
        rf"{iso_time(39)}\) \(retention deleted what came before\)$"
    )
    with pytest.raises(ArchiveError, match=before):
        reader.point_for_time(t(38.5), 5)
    reader.store.put(snap(8, 5), fork)
    with pytest.raises(ArchiveError, match=before.split(r" \(seq 9")[0]):
        reader.point_for_time(t(38.5), 5)
    assert reader.point_for_time(t(39.5), 5) == (5, 9)


def test_a_fork_after_seq_1_is_not_the_answer_before_its_time(tmp_path: Path) -> None:
    reader, log = archive(tmp_path)
    restore_branch(reader, log, fork=1)
    record_all(reader)
    assert reader.point_for_time(t(0.5), 5) == (1, 0)
    assert reader.point_for_time(t(1), 5) == (5, 1)


def test_at_the_fork_snapshots_own_time_the_fork_point_needs_no_parent(tmp_path: Path) -> None:
    """Branch 1 is retired (retention deleted it): at exactly the fork snapshot's time, branch 5
    answers its fork point from its own snapshot."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    record_all(reader)
    for key in [k for k, _ in reader.listing().branches[1].segments] + [
        k for k, _ in reader.listing().branches[1].snapshots
    ]:
        reader.store.delete(key)
    for key, _, _ in reader.listing().branches[1].manifests:
        reader.store.delete(key)
    reader.store.put(retired_key("o", 1), retired_json(1))
    assert reader.point_for_time(t(8), 5) == (5, 8)
    with pytest.raises(
        ArchiveError,
        match=r"^archive of 'o' branch 1 holds nothing any more: retention deleted it \(it stopped being current "
        r"before the retention window\)$",
    ):
        reader.restore_image(2, 5)


def test_the_end_of_the_log_is_proved_by_the_next_entry_or_the_recorded_end(tmp_path: Path) -> None:
    """A last segment of one entry (20-20) is the end, not a gap; one missing seq (19) before the
    last segment (20-20) is a gap naming exactly seq 19, never answered as seq 18 (entry 19 may be
    at or before the time)."""
    reader, _ = archive(tmp_path / "a", [(1, 12), (13, 19), (20, 20)])
    assert reader.point_for_time(t(25)) == (1, 20)
    gap, _ = archive(tmp_path / "b", [(1, 6), (7, 12), (13, 18), (20, 20)])
    with pytest.raises(ArchiveError, match=r"has a gap: no segment holds seq 19 \(seqs 19\.\.19 are missing\)"):
        gap.point_for_time(t(19.5))


def test_an_archive_of_the_empty_database_answers_seq_0_or_refuses_on_the_command_line(tmp_path: Path) -> None:
    reader, _ = archive(tmp_path, [], (0,), record=False)
    assert reader.point_for_time(t(5)) == (1, 0)
    with pytest.raises(ArchiveError, match=after_end(5, 0)):
        reader.point_for_time(t(5), past_end_ok=False)


def test_after_the_newest_entry_the_error_names_its_seq_and_time_if_archived(tmp_path: Path) -> None:
    """With its segment there, the newest entry's time is named; retention kept only the snapshot
    at 20 (every segment deleted): its seq is named, without a time read from a missing segment."""
    reader, _ = archive(tmp_path, THIRDS, (0, 4, 8, 12, 16, 20))
    with pytest.raises(ArchiveError, match=after_end(25, 20, at=f", {iso_time(20)}")):
        reader.point_for_time(t(25), past_end_ok=False)
    plan = plan_retention(reader, reader.branch(1), now_us=t(35), window_us=14 * DAY, grace_us=0)
    assert plan.keep_snapshot == (snap(20), 20)
    apply_retention(reader, plan)
    assert reader.listing().branches[1].segments == []
    with pytest.raises(ArchiveError, match=after_end(25, 20)):
        reader.point_for_time(t(25), past_end_ok=False)


def test_before_the_oldest_point_held_the_error_names_it(tmp_path: Path) -> None:
    """After retention (floor at 8), day 3 is before the oldest point held: snapshot 8, named with
    its time. A branch with no snapshot names none. Day 7.5 is answered (segment 7-9 is still
    there: entry 7, proved by entry 8), though no snapshot restores it any more."""
    reader, log = staged(tmp_path)
    assert retain(reader, 25) == 8
    with pytest.raises(
        ArchiveError,
        match=rf"^time {iso_time(3)} is before the oldest point the archive of 'o' branch 1 still holds \(seq 8 at "
        rf"{iso_time(8)}\) \(retention deleted what came before\)$",
    ):
        reader.point_for_time(t(3))
    assert reader.point_for_time(t(7.5)) == (1, 7)
    restore_branch(reader, log)
    reader.store.delete(snap(8, 5))
    with pytest.raises(
        ArchiveError,
        match=rf"^time {iso_time(20)} is before the oldest point the archive of 'o' branch 5 still holds "
        r"\(retention deleted what came before\)$",
    ):
        reader.seq_for_time(t(20), 5)


def test_a_branch_without_a_snapshot_before_the_point_is_named_so(tmp_path: Path) -> None:
    """Not "retention deleted it": branch 5 still has segments (its fork snapshot is missing), and
    an emptied genesis branch with no retirement mark only a manifest."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    reader.store.delete(snap(8, 5))
    with pytest.raises(ArchiveError, match=r"^archive of 'o' branch 5 has no snapshot at or before seq 9$"):
        reader.restore_image(9, 5)
    for key in [k for k, _ in reader.listing().branches[1].segments] + [
        k for k, _ in reader.listing().branches[1].snapshots
    ]:
        reader.store.delete(key)
    with pytest.raises(ArchiveError, match=r"^archive of 'o' branch 1 has no snapshot at or before seq 3$"):
        reader.base_snapshot(reader.branch(1), 3)


def test_only_a_manifest_that_follows_none_says_when_the_archive_was_created(tmp_path: Path) -> None:
    reader, _ = staged(tmp_path)
    assert reader.created_us(reader.branch(1)) == 0
    assert retain(reader, 25) == 8
    m = reader.manifest(man(2))
    assert m.prev is not None
    odd = Manifest(m.branch, m.writer, m.n, m.prev, m.prev_through, m.objects, m.through, m.through_chain, 5 * DAY)
    reader.store.put(man(2), odd.to_json())
    assert reader.created_us(reader.branch(1)) is None


def test_a_stray_genesis_record_is_not_read(tmp_path: Path) -> None:
    """The genesis branch has no record (verify reports one); reading the archive ignores it
    rather than failing on it."""
    reader, log = archive(tmp_path)
    reader.store.put(branch_record_key("o", 1), b'{"format": 1, "branch": 1, "parent": 0}')
    assert reader.restore_image(5).image == log.images[5]
    assert reader.point_for_time(t(5.5)) == (1, 5)


def test_a_snapshot_before_a_branchs_fork_does_not_make_earlier_points_its_own(tmp_path: Path) -> None:
    """Branch 5 (fork at 8) holds a stray snapshot at 4 (verify reports it): seq 5 of branch 5's
    history is still read from branch 1, where it is archived."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    reader.store.put(snap(4, 5), log.snapshot(4, 5))
    bl, seq = reader.resolve(5, 5)
    assert (bl.branch, seq) == (1, 5)


def test_a_branch_forked_at_seq_0_answers_seq_0_before_it_was_created(tmp_path: Path) -> None:
    """A restore to the empty database made branch 5 at day 30 (its first manifest says so):
    retention asks it for day 10, when its history was the empty database: seq 0, not "before
    the object existed" (that is the genesis branch's creation, day 0)."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log, fork=0)
    record_all(reader, created_us=30 * DAY)
    assert reader.seq_for_time(t(10), 5) == 0


def test_the_nearest_fork_names_the_point_when_forks_coincide(tmp_path: Path) -> None:
    """Branch 7 forked from branch 5 at seq 8, where branch 5 forked from branch 1; both fork
    snapshots are gone. At day 15 branch 7's state was that fork point: named as branch 7's own
    bookmark (the nearest fork), not branch 5's."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    reader.store.put(snap(8, 7), log.snapshot(8, 7))
    reader.store.put(branch_record_key("o", 7), BranchRecord(7, 5, 8, log.chain(8), bm(5, 12)).to_json())
    record_all(reader)
    reader.store.delete(snap(8, 5))
    reader.store.delete(snap(8, 7))
    assert reader.point_for_time(t(15), 7) == (7, 8)


def test_a_segment_of_pre_fork_entries_on_a_branch_is_not_its_first_own(tmp_path: Path) -> None:
    """Branch 5 (fork at 8) also holds a copy of entries 7-8 (its parent's, before the fork): its
    first own entry is still seq 9 (day 39), so day 40 is answered from its own log, not taken
    for a time before the branch's first entry (which then fails proving the fork point)."""
    reader, log = archive(tmp_path)
    restore_branch(reader, log)
    record_all(reader)
    reader.store.put(seg(7, 8, 5), log.segment(7, 8, 5))
    assert reader.point_for_time(t(40), 5) == (5, 10)


def test_segments_that_contradict_each_other_in_time_are_an_error_not_an_answer(tmp_path: Path) -> None:
    """A broken archive (verify reports it): segment 2-5 of another history, at day 52 on, sorts
    between the log's 1-3 and 4-20, so the search by time stops at 1-3 and takes seq 3 for day 4;
    but entry 4 (in 4-20, which holds seq 4 furthest) is at day 4 itself. The reader refuses,
    naming that segment, the entry and the time, instead of answering seq 3."""
    reader, log = archive(tmp_path, [(1, 3), (4, 20)], (0,))
    other = grow(log.images[1], log.chain(1), 2, 4, seed=6, ts=lambda s: (s + 50) * DAY)[0]
    reader.store.put(seg(2, 5), encode_segment(1, tuple(other), log.chain(1)))
    with pytest.raises(
        ArchiveError,
        match=rf"^{seg(4, 20)}: entry seq 4 is at or before {iso_time(4)} although an earlier segment ends at seq 3: "
        r"the archive's segments are inconsistent; run walrelay archive verify$",
    ):
        reader.point_for_time(t(4))


def test_entries_between_two_seqs_are_exactly_those_across_segments(tmp_path: Path) -> None:
    """What a primary reads back from the archive for a replica that needs older entries: seqs
    first..last inclusive, across segment boundaries, one entry when first is last."""
    reader, log = archive(tmp_path)
    b = reader.branch(1)
    assert reader.entries_between(b, 5, 11) == tuple(log.entries[5:12])
    assert reader.entries_between(b, 7, 7) == (log.entries[7],)
    assert reader.entries_between(b, 19, 20) == tuple(log.entries[19:21])
