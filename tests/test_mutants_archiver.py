"""The archiver, from the survivors of its mutation run (docs/testing.md, "Mutation testing").

Each test pins down what the state machine emits (which PUTs, with which keys, fields and bytes,
in which order; when it asks for a snapshot; when it says entries are archived) or what it
reports in ``__status__`` (``snapshot_through``, ``last_error``, the cut counts), in a case the bug
it stands for gets wrong. Every one was seen failing with its mutant applied by hand to
``reference/walrelay/archive/archiver.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from test_archiver import ENTRY, LOG, confirm, new
from walrelay.archive.archiver import Archived, ArchiverState, Put, SnapshotImage, WantSnapshot
from walrelay.archive.format import (
    decode_segment,
    decode_snapshot,
    encode_snapshot,
    segment_key,
    snapshot_key,
)
from walrelay.archive.manifest import Manifest, manifest_key
from walrelay.entry import GENESIS_CHAIN

PREV_MANIFEST = manifest_key("obj", 1, 2, 7)  # the branch's newest manifest, by an earlier primary


def continuing() -> ArchiverState:
    """An archiver for branch 1 of "obj" as a new primary (epoch 3) opens it: the archive holds the
    genesis snapshot and entries 1-2, vouched for by manifest 7 of epoch 2."""
    return ArchiverState(
        "obj",
        1,
        archived_through=2,
        archived_chain=LOG[1].chain,
        snapshot_through=0,
        segment_bytes=2 * ENTRY,
        writer=3,
        manifest_n=8,
        prev_manifest=(PREV_MANIFEST, 2),
    )


def puts(effects: Sequence[object]) -> list[Put]:
    return [e for e in effects if isinstance(e, Put)]


def want(effects: Sequence[object]) -> int:
    return effects.count(WantSnapshot())


def test_an_archive_with_segments_but_no_snapshot_is_refused_with_its_reason() -> None:
    """Bugs: the check inverted (a branch with a snapshot refused, one without continued) or its
    message lost or garbled: the operator is told why the primary will not archive."""
    with pytest.raises(ValueError) as refused:
        ArchiverState("obj", 1, archived_through=4, archived_chain=LOG[3].chain)
    assert str(refused.value) == "an archive with segments but no snapshot cannot be continued"
    a = ArchiverState("obj", 1, archived_through=4, archived_chain=LOG[3].chain, snapshot_through=0)
    assert (a.archived_through, a.snapshot_through, a.durable_through) == (4, 0, 4)


def test_a_continuing_archiver_uploads_nothing_at_start_then_follows_the_branchs_newest_manifest() -> None:
    """Bugs: a continuing archiver starting with a held non-snapshot (it would crash at start, and
    never ask for a snapshot), forgetting the branch's newest snapshot (``__status__`` and
    ``snapshot_now`` read it) or its newest manifest (the chain of manifests would break: verify
    reports a manifest that follows none), or recording a creation time (only a branch's first
    manifest may)."""
    a = continuing()
    assert a.start() == [] and a.snapshot_through == 0 and a.last_error is None
    [seg] = puts(a.on_durable(LOG[2:4], now_us=0))
    assert (seg.kind, seg.first, seg.last, seg.last_chain) == ("segment", 3, 4, LOG[3].chain)
    assert decode_segment(seg.data).prev_chain == LOG[1].chain
    [m] = puts(a.on_put_done(seg.key))
    manifest = Manifest.from_json(m.data, what=m.key)
    assert (manifest.writer, manifest.n, manifest.prev, manifest.prev_through) == (3, 8, PREV_MANIFEST, 2)
    assert (manifest.through, manifest.through_chain, manifest.created_us) == (4, LOG[3].chain, None)
    assert m.key == manifest_key("obj", 1, 3, 8)
    assert a.on_put_done(m.key) == [Archived(4)]


def test_a_continuing_archivers_first_automatic_snapshot_waits_to_pair_and_gives_way_to_one_on_demand() -> None:
    """Bugs: a continuing archiver starting "on demand" would upload its first automatic snapshot
    alone (a manifest that advances nothing, which hides a deleted newest manifest from verify);
    one that forgot it has snapshots would keep that held older image when an operator asks for
    a snapshot now (and never ask for a fresh one)."""
    a = continuing()
    a.start()
    [seg] = puts(a.on_durable(LOG[2:4], now_us=0))
    confirm(a, seg)
    assert want(a.on_tick(now_us=1)) == 1  # 2 entries archived outgrew the (unknown, 0) database
    assert puts(a.on_snapshot_image(SnapshotImage(4, 44, LOG[3].chain, 512, bytes(512), 0))) == []  # held
    assert a.request_snapshot() == [WantSnapshot()]  # the held image is older than "now": a fresh one
    [snap] = puts(a.on_snapshot_image(SnapshotImage(4, 45, LOG[3].chain, 512, bytes(1024), 0)))
    assert (snap.kind, snap.first, snap.last, snap.last_chain) == ("snapshot", 4, 4, LOG[3].chain)
    assert snap.data == encode_snapshot(1, 4, 45, LOG[3].chain, 512, bytes(1024), 0)  # the fresh image


def test_a_snapshot_on_demand_before_start_keeps_the_genesis_snapshot() -> None:
    """Bug: ``held_snapshot is not None or snapshot_through is not None``: a snapshot requested
    before a new branch's archiver started would drop the genesis snapshot (seq 0), the one every
    restore of the branch starts from."""
    a = ArchiverState("obj", 1)
    assert a.request_snapshot() == []  # the genesis snapshot is held: nothing more to ask for
    [genesis] = puts(a.start())
    assert (genesis.kind, genesis.key) == ("snapshot", snapshot_key("obj", 1, 0))


def test_the_genesis_snapshot_is_the_empty_database_at_time_zero() -> None:
    """Bugs: the genesis snapshot stamped with another time than 0 (a restore by time before the
    first entry must find it), or its PUT without its seq or chain."""
    _, genesis = new()
    assert (genesis.first, genesis.last, genesis.last_chain) == (0, 0, GENESIS_CHAIN)
    snap = decode_snapshot(genesis.data, what=genesis.key)
    assert (snap.seq, snap.timestamp_us, snap.page_size, snap.db_pages, snap.db_checksum) == (0, 0, 4096, 0, 0)


def test_every_key_names_the_object_and_every_put_says_what_it_holds() -> None:
    """Bugs: a key built without the object's name (another object's prefix, or "None"), a
    manifest PUT without its number or the chain it records, a snapshot PUT without its seq or chain."""
    a = ArchiverState("obj", 1, segment_bytes=2 * ENTRY, writer=5, created_us=123)
    [genesis] = puts(a.start())
    assert genesis.key == snapshot_key("obj", 1, 0)
    [m1] = puts(a.on_put_done(genesis.key))
    assert m1.key == manifest_key("obj", 1, 5, 1)
    assert (m1.kind, m1.first, m1.last, m1.last_chain) == ("manifest", 1, 0, GENESIS_CHAIN)
    assert Manifest.from_json(m1.data, what=m1.key).created_us == 123  # the branch's first manifest
    a.on_put_done(m1.key)
    [seg] = puts(a.on_durable(LOG[:2], now_us=0))
    assert seg.key == segment_key("obj", 1, 1, 2)
    [m2] = puts(a.on_put_done(seg.key))
    assert m2.key == manifest_key("obj", 1, 5, 2)
    assert (m2.kind, m2.first, m2.last, m2.last_chain) == ("manifest", 2, 2, LOG[1].chain)
    manifest = Manifest.from_json(m2.data, what=m2.key)
    assert (manifest.prev, manifest.prev_through, manifest.created_us) == (m1.key, 0, None)
    a.on_put_done(m2.key)
    a.request_snapshot()
    [snap] = puts(a.on_snapshot_image(SnapshotImage(2, 22, LOG[1].chain, 512, bytes(512), 0)))
    assert snap.key == snapshot_key("obj", 1, 2)
    assert (snap.first, snap.last, snap.last_chain) == (2, 2, LOG[1].chain)


def test_a_segment_is_cut_only_once_pending_entries_reach_the_size() -> None:
    """Bug: the pending size starting at 1 instead of 0: a segment would be cut one byte early
    (here two entries against a limit of two entries and a byte)."""
    a, genesis = new(segment_bytes=2 * ENTRY + 1)
    confirm(a, genesis)
    assert a.on_durable(LOG[:2], now_us=0) == [] and a.pending_bytes == 2 * ENTRY
    [seg] = puts(a.on_durable(LOG[2:3], now_us=1))
    assert (seg.first, seg.last) == (1, 2)


def test_cuts_are_counted_each_time() -> None:
    """Bugs: the size or age count set to 1 instead of counted (``__status__`` and the chaos
    harness's coverage read how many segments each rule cut)."""
    a, genesis = new(segment_bytes=2 * ENTRY)
    confirm(a, genesis)
    for i in range(2):
        [seg] = puts(a.on_durable(LOG[2 * i : 2 * i + 2], now_us=i))
        confirm(a, seg)
    now = 100
    for i in range(2):
        a.on_durable(LOG[4 + i : 5 + i], now_us=now)
        now += 10_000_000
        [seg] = puts(a.on_tick(now_us=now))
        confirm(a, seg)
    assert a.cuts == {"size": 2, "age": 2, "flush": 0}


def test_entries_given_again_are_skipped_and_a_gap_is_refused_by_name() -> None:
    """Bugs: ``seq < durable_through`` (the last durable entry given again would be taken for a
    gap), ``break`` for ``continue`` (the new entries after an old one would be dropped), or the
    gap's message lost."""
    a, genesis = new()
    confirm(a, genesis)
    a.on_durable(LOG[:2], now_us=0)
    a.on_durable(LOG[1:2], now_us=1)  # seq 2 again
    [seg] = puts(a.on_durable(LOG[0:4], now_us=2))  # 1 and 2 again, then 3 and 4
    assert (seg.first, seg.last) == (1, 4) and a.durable_through == 4
    with pytest.raises(ValueError) as gap:
        a.on_durable(LOG[5:6], now_us=3)
    assert str(gap.value) == "archiver got seq 6 after 4: a gap"


def test_a_confirmation_for_an_upload_not_in_flight_is_refused_by_name() -> None:
    """Bugs: ``put is None and ...`` (a confirmation of another key would confirm the upload in
    flight: an unwritten object vouched for), or the message lost or naming the whole PUT."""
    a, genesis = new()
    with pytest.raises(ValueError) as wrong:
        a.on_put_done("nope")
    assert str(wrong.value) == f"confirmation for nope, but the upload in flight is {genesis.key}"
    assert a.in_flight == genesis and a.snapshot_through is None
    confirm(a, genesis)
    assert a.in_flight is None
    with pytest.raises(ValueError) as idle:
        a.on_put_done("late")
    assert str(idle.value) == "confirmation for late, but the upload in flight is None"


def test_the_last_error_is_none_until_a_failure_and_again_after_a_success() -> None:
    """Bugs: ``last_error`` "" instead of None (``__status__`` would report an empty error where
    there is none), at start or after the failed PUT went through."""
    a, genesis = new()
    assert a.last_error is None
    a.on_put_failed(genesis.key, "503 SlowDown")
    assert a.last_error == "503 SlowDown"
    a.on_put_done(genesis.key)
    assert a.last_error is None and a.failures == 0


def test_the_genesis_snapshot_counts_as_a_snapshot_at_seq_0() -> None:
    """Bug: ``max(snapshot_through or 1, ...)``: once the genesis snapshot is confirmed,
    ``snapshot_through`` would say 1, and ``snapshot_now(1)`` would answer before any snapshot of
    seq 1 exists."""
    a, genesis = new()
    assert a.snapshot_through is None
    confirm(a, genesis)
    assert a.snapshot_through == 0


def test_a_snapshot_is_asked_for_when_the_log_archived_since_the_last_one_outgrows_the_database() -> None:
    """Bugs: the bytes archived since the last snapshot restarting at 1 instead of 0 (a snapshot
    asked for as soon as the log equals the database), or replaced by the last segment's size
    instead of summed (never asked for while every segment is smaller than the database).

    The database is then made exactly one segment long: one segment after it does not outgrow it,
    two do. (A real snapshot of whole 512-byte pages cannot be exactly as long as a segment of
    this log: both lengths are fixed mod 8, 4 apart; so after checking that the archiver takes the
    snapshot's length, the test sets that length to a segment's.)"""
    a, genesis = new(segment_bytes=2 * ENTRY)
    confirm(a, genesis)
    [s1] = puts(a.on_durable(LOG[:2], now_us=0))
    confirm(a, s1)
    assert want(a.on_tick(now_us=1)) == 1
    seg_len = len(s1.data)
    image = SnapshotImage(2, 22, LOG[1].chain, 512, bytes(512), 0)
    assert puts(a.on_snapshot_image(image)) == []  # held: waits for the next segment
    [s2] = puts(a.on_durable(LOG[2:4], now_us=2))
    [snap] = puts(a.on_put_done(s2.key))
    assert snap.kind == "snapshot" and len(s2.data) == seg_len
    [m] = puts(a.on_put_done(snap.key))
    assert a.on_put_done(m.key) == [Archived(4)]
    assert a.db_bytes == len(snap.data) and a.since_snapshot_bytes == 0
    a.db_bytes = seg_len
    effects: list[object] = list(a.on_tick(now_us=3))
    [s3] = puts(a.on_durable(LOG[4:6], now_us=4))
    assert len(s3.data) == seg_len
    effects += confirm(a, s3)
    effects += a.on_tick(now_us=5)
    assert want(effects) == 0  # one segment: as large as the database, not larger
    [s4] = puts(a.on_durable(LOG[6:8], now_us=6))
    effects = confirm(a, s4)
    effects += a.on_tick(now_us=7)
    assert want(effects) == 1  # two segments outgrow it
