"""Retention (spec: Retain, RetentionKeepsWindow): after it runs, every point in the window still
restores exactly, the archive still verifies, at least one snapshot older than the window start is
kept, and only objects no window restore needs are gone."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import walrelay.archive.retention as retention_mod
from archive_records import record_all
from strategies import examples
from walrelay.archive.archiver import GENESIS_PAGE_SIZE
from walrelay.archive.dir_store import DirStore
from walrelay.archive.format import encode_segment, encode_snapshot, segment_key, snapshot_key
from walrelay.archive.reader import ArchiveError, ArchiveReader
from walrelay.archive.retention import apply_retention, plan_retention
from walrelay.archive.verify import verify
from walrelay.entry import GENESIS_CHAIN, Entry, encode
from walrelay.errors import WalrelayError
from walrelay.pagehash import DbChecksum
from walrelay.procs import walrelay_argv

# A day in microseconds, written out: not the module's DAY_US, so a wrong unit there (a retention
# window of 20 minutes for "--window-days 14") changes what these tests see.
DAY_US = 86_400 * 1_000_000

PAGE = 512
DAYS = 20  # one entry per day, entry d at the start of day d


def grow(
    image: bytes, chain: bytes, first: int, n: int, *, seed: int, page: int = PAGE, ts: Callable[[int], int] = int
) -> tuple[list[Entry], list[bytes]]:
    """``n`` real, consistent entries from seq ``first`` on top of ``image`` (images[i]: the database
    after entries[i]); entry ``s`` has timestamp ``ts(s)``."""
    rng = random.Random(seed)
    img = bytearray(image)
    checksum = DbChecksum.of_image(image, page)
    entries: list[Entry] = []
    images: list[bytes] = []
    for seq in range(first, first + n):
        db_pages = min(1 + seq // 3, 6)
        pages = {rng.randint(1, db_pages): rng.randbytes(page)}
        img.extend(bytes(max(0, db_pages * page - len(img))))
        for p, data in pages.items():
            img[(p - 1) * page : p * page] = data
        value = checksum.apply(pages, db_pages)
        e = encode(
            epoch=1, seq=seq, timestamp_us=ts(seq), page_size=page, db_pages=db_pages,
            db_checksum=value, frames=pages, prev_chain=chain,
        )  # fmt: skip
        entries.append(e)
        images.append(bytes(img))
        chain = e.chain
    return entries, images


def build(root: Path, snapshot_seqs: list[int], seg_len: int, seed: int = 0) -> tuple[ArchiveReader, list[bytes]]:
    """An archive of a real, consistent log (images[s] = the database after entry s)."""
    entries, grown = grow(b"", GENESIS_CHAIN, 1, DAYS, seed=seed, ts=lambda seq: seq * DAY_US)
    images = [b"", *grown]
    store = DirStore(root)
    store.put(snapshot_key("o", 1, 0), encode_snapshot(1, 0, 0, GENESIS_CHAIN, GENESIS_PAGE_SIZE, b"", 0))
    for first in range(1, DAYS + 1, seg_len):
        batch = tuple(entries[first - 1 : first - 1 + seg_len])
        prev = entries[first - 2].chain if first > 1 else GENESIS_CHAIN
        store.put(segment_key("o", 1, first, batch[-1].seq), encode_segment(1, batch, prev))
    for s in snapshot_seqs:
        e = entries[s - 1]
        img = images[s]
        store.put(
            snapshot_key("o", 1, s),
            encode_snapshot(1, s, e.timestamp_us, e.chain, PAGE, img, DbChecksum.of_image(img, PAGE).value),
        )
    reader = ArchiveReader(store, "o")
    record_all(reader)
    return reader, images


def test_retention_keeps_the_window_and_the_snapshot_before_it(tmp_path: Path) -> None:
    reader, images = build(tmp_path, [4, 8, 12, 16], seg_len=3)
    # Now = day 25, window 14 days, no grace: the window starts at day 11 (entry 11).
    plan = plan_retention(reader, reader.branch(1), now_us=25 * DAY_US, window_us=14 * DAY_US, grace_us=0)
    assert plan.horizon_seq == 11 and plan.keep_snapshot == (snapshot_key("o", 1, 8), 8)
    assert plan.delete == [  # snapshots first, oldest first, then segments: after a floor at seq 8
        snapshot_key("o", 1, 0),
        snapshot_key("o", 1, 4),
        segment_key("o", 1, 1, 3),
        segment_key("o", 1, 4, 6),
    ]
    assert plan.floor is not None and plan.floor.seq == 8
    apply_retention(reader, plan)
    assert verify(reader).ok
    for seq in range(11, DAYS + 1):
        assert reader.restore_image(seq).image == images[seq]
    with pytest.raises(ArchiveError, match="no snapshot at or before seq 5"):
        reader.restore_image(5)


def test_without_a_snapshot_before_the_window_nothing_is_deleted(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [15], seg_len=5)
    plan = plan_retention(reader, reader.branch(1), now_us=20 * DAY_US, window_us=10 * DAY_US, grace_us=0)
    assert plan.keep_snapshot == (snapshot_key("o", 1, 0), 0) and plan.delete == []


@settings(max_examples=examples(0.4))  # grows with the nightly profile
@given(
    st.lists(st.integers(1, DAYS), unique=True, max_size=6),
    st.integers(1, 6),
    st.integers(0, 30),
    st.integers(0, 25),
    st.integers(0, 48),
)
def test_every_point_in_the_window_restores_exactly_after_retention(
    snaps: list[int], seg_len: int, now_day: int, window_days: int, grace_hours: int
) -> None:
    check_retention(sorted(snaps), seg_len, now_day, window_days, grace_hours)


def check_retention(snaps: list[int], seg_len: int, now_day: int, window_days: int, grace_hours: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        reader, images = build(Path(d), snaps, seg_len)
        now, window, grace = now_day * DAY_US, window_days * DAY_US, grace_hours * 3_600_000_000
        start = max(0, now - window)  # every time from here on (and from the creation) a user may ask for
        first = reader.seq_for_time(start, 1)
        plan = plan_retention(reader, reader.branch(1), now_us=now, window_us=window, grace_us=grace)
        apply_retention(reader, plan)
        assert verify(reader).ok, verify(reader).problems
        assert reader.seq_for_time(start, 1) == first  # bookmark_for_time still answers the same
        for seq in range(first, DAYS + 1):
            assert reader.restore_image(seq).image == images[seq], f"seq {seq} no longer restores"
        if plan.keep_snapshot is not None:  # a snapshot at or before the window start is kept
            assert plan.keep_snapshot[1] <= first


def test_deleting_the_snapshot_before_the_window_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    check_retention([4, 8, 12, 16], 3, 25, 14, 0)  # the real planner passes
    real = retention_mod.plan_retention

    def greedy(*args: Any, **kw: Any) -> retention_mod.RetentionPlan:
        plan = real(*args, **kw)
        if plan.keep_snapshot is not None:
            plan.delete.append(plan.keep_snapshot[0])  # off by one: the kept snapshot goes too
        return plan

    monkeypatch.setattr(sys.modules[__name__], "plan_retention", greedy)
    with pytest.raises((AssertionError, ArchiveError)):
        check_retention([4, 8, 12, 16], 3, 25, 14, 0)


def test_the_retain_command_dry_run_then_deletes(tmp_path: Path) -> None:
    build(tmp_path / "a", [4, 8, 12, 16], seg_len=3)
    args = ["archive", "retain", "o", "--archive", str(tmp_path / "a"), "--window-days", "14", "--grace-hours", "0"]
    now = "@" + str(25 * DAY_US)
    dry = subprocess.run(walrelay_argv(*args, "--now", now, "--dry-run"), capture_output=True, text=True)
    assert dry.returncode == 0 and "4 objects would be deleted" in dry.stdout, dry.stdout + dry.stderr
    assert len(list((tmp_path / "a").rglob("*"))) > 0
    real = subprocess.run(walrelay_argv(*args, "--now", now), capture_output=True, text=True)
    assert real.returncode == 0 and "4 objects deleted" in real.stdout
    again = subprocess.run(walrelay_argv(*args, "--now", now), capture_output=True, text=True)
    assert "0 objects deleted" in again.stdout
    bad = subprocess.run(walrelay_argv(*args, "--now", "tomorrow"), capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "tomorrow" in bad.stderr  # a usage error


@settings(max_examples=examples(0.3))
@given(
    st.lists(st.integers(1, DAYS), unique=True, max_size=5), st.integers(1, 7), st.integers(-2 * DAY_US, 25 * DAY_US)
)
def test_bookmark_for_time_by_bisection_is_the_last_entry_at_or_before_t(
    snaps: list[int], seg_len: int, t: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        reader, _ = build(Path(d), sorted(snaps), seg_len)  # created at time 0
        if t < 0:
            with pytest.raises(ArchiveError, match="before object 'o' existed: it was created at 1970-01-01T00"):
                reader.seq_for_time(t, 1)
            return
        assert reader.seq_for_time(t, 1) == min(DAYS, t // DAY_US)  # entry s is at day s


def _manifests_below(reader: ArchiveReader, seq: int) -> list[str]:
    return [k for k, _, _ in reader.listing().branches[1].manifests if reader.manifest(k).through < seq]


def test_the_grace_keeps_more_than_the_window_never_less(tmp_path: Path) -> None:
    """Now day 25, a 14-day window and 2 days of grace: everything from day 9 on stays (the
    window starts at day 11); a grace that were subtracted from the window would lose days 11-12."""
    reader, images = build(tmp_path, [4, 8, 12, 16], seg_len=4)
    plan = plan_retention(reader, reader.branch(1), now_us=25 * DAY_US, window_us=14 * DAY_US, grace_us=2 * DAY_US)
    assert (plan.horizon_us, plan.horizon_seq, plan.keep_snapshot) == (9 * DAY_US, 9, (snapshot_key("o", 1, 8), 8))
    apply_retention(reader, plan)
    for seq in range(8, DAYS + 1):
        assert reader.restore_image(seq).image == images[seq]


def test_a_snapshot_exactly_at_the_horizon_is_the_one_kept_and_what_ends_there_goes(tmp_path: Path) -> None:
    """The horizon falls on entry 8, which a snapshot holds: that snapshot is the one kept (not
    the one before it), and the segment and manifests that end at 8 go with everything older; a
    second pass then has nothing left to delete, the floor it wrote at 8 included."""
    reader, images = build(tmp_path, [4, 8, 12, 16], seg_len=4)
    plan = plan_retention(reader, reader.branch(1), now_us=22 * DAY_US, window_us=14 * DAY_US, grace_us=0)
    assert (plan.horizon_us, plan.horizon_seq, plan.keep_snapshot) == (8 * DAY_US, 8, (snapshot_key("o", 1, 8), 8))
    assert plan.delete == [
        snapshot_key("o", 1, 0),
        snapshot_key("o", 1, 4),
        segment_key("o", 1, 1, 4),
        segment_key("o", 1, 5, 8),
        *_manifests_below(reader, 8),
    ]
    assert plan.floor is not None and (plan.floor.seq, plan.floor.branch) == (8, 1)
    assert apply_retention(reader, plan) == len(plan.delete)
    again = plan_retention(reader, reader.branch(1), now_us=22 * DAY_US, window_us=14 * DAY_US, grace_us=0)
    assert again.delete == [] and again.floor is None and again.keep_snapshot == (snapshot_key("o", 1, 8), 8)
    assert verify(reader).ok and reader.restore_image(8).image == images[8]


def test_a_damaged_snapshot_to_keep_is_named_in_the_error(tmp_path: Path) -> None:
    reader, _ = build(tmp_path, [4, 8, 12, 16], seg_len=4)
    key = snapshot_key("o", 1, 8)
    data = bytearray(reader.store.get(key))
    data[len(data) // 2] ^= 0xFF
    reader.store.put(key, bytes(data))
    with pytest.raises(WalrelayError, match=key):
        plan_retention(reader, reader.branch(1), now_us=22 * DAY_US, window_us=14 * DAY_US, grace_us=0)
