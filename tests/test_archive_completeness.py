"""The archive knows what it must contain (docs/archive-format.md §10): every deleted object is
found by verify, a restore by time never answers across a gap, and retention never leaves an
archive that verify calls broken, whenever it stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_retention import DAY_US, build
from walrelay.archive.format import parse_key, segment_key, snapshot_key
from walrelay.archive.reader import ArchiveError
from walrelay.archive.retention import apply_retention, plan_retention
from walrelay.archive.verify import verify


def test_every_single_deletion_is_found_and_named(tmp_path: Path) -> None:
    reader, _ = build(tmp_path / "a", [4, 8, 12, 16], seg_len=3)
    assert verify(reader).ok, verify(reader).problems
    keys = [info.key for info in reader.store.list("o/")]
    assert {parse_key(k).kind for k in keys} == {"segment", "snapshot", "manifest"}
    for key in keys:
        data = reader.store.get(key)
        reader.store.delete(key)
        report = verify(reader)
        assert not report.ok, f"deleting {key} went unnoticed"
        kind = parse_key(key).kind
        # A manifest is named by its successor, or (the newest) leaves what it vouched for unrecorded.
        named = key in report.problems[0] or (kind == "manifest" and "unrecorded" in report.problems[0])
        assert named, (key, report.problems)
        if kind == "segment":
            assert "cannot be restored: bookmarks" in " ".join(report.problems)
        reader.store.put(key, data)
    assert verify(reader).ok


def test_a_time_restore_never_answers_across_a_missing_segment(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [4, 16], seg_len=3)  # entry s at day s; segments 1-3, 4-6, 7-9, ...
    assert reader.point_for_time(8 * DAY_US) == (1, 8)
    reader.store.delete(segment_key("o", 1, 7, 9))
    for day in (6, 7, 8, 9):  # the answer is 6..9: unknowable without entries 7..9
        with pytest.raises(ArchiveError, match=r"has a gap: no segment holds seq 7 \(seqs 7\.\.9 are missing\)"):
            reader.point_for_time(day * DAY_US)
    assert reader.point_for_time(5 * DAY_US) == (1, 5)  # entry 6 is there, and later than day 5
    assert reader.point_for_time(11 * DAY_US) == (1, 11)


def test_the_missing_last_segment_of_the_current_branch_is_found(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [4], seg_len=3)
    last = segment_key("o", 1, 19, 20)
    reader.store.delete(last)
    report = verify(reader)
    assert not report.ok and f"{last}: missing (vouched for by" in report.problems[0], report.problems
    with pytest.raises(ArchiveError, match="has a gap: no segment holds seq 19"):
        reader.point_for_time(30 * DAY_US)  # after the end the archive still holds: not that end


def test_a_time_after_the_newest_archived_entry_is_refused_on_the_command_line_path(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [4], seg_len=3)
    assert reader.point_for_time(30 * DAY_US) == (1, 20)  # a primary (which checks its own log) takes the end
    with pytest.raises(ArchiveError, match=r"after the newest archived entry .*\(seq 20, "):
        reader.point_for_time(30 * DAY_US, past_end_ok=False)


@pytest.mark.parametrize("stop_after", range(0, 9))
def test_retention_that_stops_anywhere_leaves_an_archive_that_verifies(tmp_path: Path, stop_after: int) -> None:
    reader, images = build(tmp_path, [4, 8, 12, 16], seg_len=3)
    plan = plan_retention(reader, reader.branch(1), now_us=25 * DAY_US, window_us=14 * DAY_US, grace_us=0)
    assert plan.floor is not None and len(plan.delete) >= 4
    partial = type(plan)(plan.horizon_us, plan.horizon_seq, plan.keep_snapshot, plan.delete[:stop_after], plan.floor)
    apply_retention(reader, partial)
    report = verify(reader)
    assert report.ok, (stop_after, report.problems)
    for seq in range(8, 21):
        assert reader.restore_image(seq).image == images[seq]
    # Below the floor nothing is owed; deleting the floor itself is found (it vouched for the base).
    reader.store.delete(plan.floor.key("o"))
    if stop_after >= 1:  # the genesis snapshot is gone: without the floor that is a loss
        assert not verify(reader).ok


def test_deleting_the_kept_snapshot_after_retention_is_found(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [4, 8, 12, 16], seg_len=3)
    plan = plan_retention(reader, reader.branch(1), now_us=25 * DAY_US, window_us=14 * DAY_US, grace_us=0)
    apply_retention(reader, plan)
    reader.store.delete(snapshot_key("o", 1, 8))
    report = verify(reader)
    assert not report.ok and snapshot_key("o", 1, 8) in report.problems[0], report.problems
