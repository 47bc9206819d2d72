"""The archiver state machine: only durable entries, cut at size or age, confirm in order, retry
forever with the same bytes, snapshots only of archived states. Spec: CutSegment, ConfirmUpload,
TakeSnapshot (ArchiveIsCommittedPrefix, TruncateAfterArchive)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from test_replica_state import make_log
from walrelay.archive.archiver import Archived, ArchiverState, Put, SnapshotImage, WantSnapshot
from walrelay.archive.format import decode_segment, decode_snapshot, parse_key
from walrelay.archive.manifest import Manifest, Vouched
from walrelay.entry import GENESIS_CHAIN

LOG = make_log(40, epoch=1, salt=5)
ENTRY = LOG[0].size


def new(**kw: int) -> tuple[ArchiverState, Put]:
    a = ArchiverState("obj", 1, segment_bytes=kw.get("segment_bytes", 4 * ENTRY), segment_age_us=10_000_000)
    [genesis] = a.start()
    assert isinstance(genesis, Put) and genesis.kind == "snapshot" and genesis.first == 0
    snap = decode_snapshot(genesis.data, what=genesis.key)
    assert (snap.seq, snap.image, snap.chain) == (0, b"", GENESIS_CHAIN)
    return a, genesis


def puts(effects: list[object]) -> list[Put]:
    return [e for e in effects if isinstance(e, Put)]


def confirm(a: ArchiverState, put: Put) -> list[object]:
    """The store confirms ``put``, then the manifest that vouches for it (if one is due now):
    the effects of both, the manifest's put left out."""
    effects = list(a.on_put_done(put.key))
    manifests = [p for p in puts(effects) if p.kind == "manifest"]
    if not manifests:
        return effects
    [m] = manifests
    assert a.archived_through < m.last or m.last == a.archived_through  # not archived before it
    vouched = Manifest.from_json(m.data, what=m.key).objects
    assert put.key in [o.key for o in vouched]
    return [e for e in effects if e != m] + list(a.on_put_done(m.key))


def test_cut_by_size_and_by_age_and_confirm_in_order() -> None:
    a, genesis = new()
    assert a.on_durable(LOG[:3], now_us=0) == []  # 3 entries: below 4 and younger than 10 s
    assert confirm(a, genesis) == []  # no segment queued yet
    [seg] = puts(a.on_durable(LOG[3:4], now_us=1))  # the 4th reaches the size
    assert (seg.first, seg.last) == (1, 4) and parse_key(seg.key).kind == "segment"
    assert [e.seq for e in decode_segment(seg.data).entries] == [1, 2, 3, 4]
    assert a.on_durable(LOG[4:6], now_us=2) == []
    assert a.on_tick(now_us=9_999_999) == []  # in flight: one upload at a time, and not 10 s yet
    [manifest] = puts(a.on_put_done(seg.key))  # stored, but archived only once a manifest says so
    assert manifest.kind == "manifest" and a.archived_through == 0
    assert a.on_put_done(manifest.key) == [Archived(4)]
    [seg2] = puts(a.on_tick(now_us=10_000_002))  # the oldest pending waited 10 s
    assert (seg2.first, seg2.last) == (5, 6)
    assert decode_segment(seg2.data).prev_chain == LOG[3].chain
    assert a.cuts == {"size": 1, "age": 1, "flush": 0}  # why each was cut (__status__, chaos coverage)
    a.on_durable(LOG[6:7], now_us=10_000_003)
    a.flush()
    assert a.cuts == {"size": 1, "age": 1, "flush": 1}


def test_a_failed_upload_is_retried_with_the_same_bytes_and_nothing_overtakes_it() -> None:
    a, genesis = new()
    confirm(a, genesis)
    [seg] = puts(a.on_durable(LOG[:4], now_us=0))
    a.on_durable(LOG[4:8], now_us=1)  # a second segment is cut, and waits
    for i in range(5):
        assert a.on_put_failed(seg.key, "503 SlowDown") == [seg]
        assert a.archived_through == 0 and a.failures == i + 1
    effects = confirm(a, seg)
    assert Archived(4) in effects
    assert [(p.first, p.last) for p in puts(effects)] == [(5, 8)]


def test_a_snapshot_waits_until_its_seq_is_cut_and_goes_after_that_segment() -> None:
    a, genesis = new(segment_bytes=2 * ENTRY)
    confirm(a, genesis)
    [s1] = puts(a.on_durable(LOG[:2], now_us=0))
    confirm(a, s1)
    # The archived log (2 entries) outgrew the database (the empty genesis): a snapshot is due.
    assert WantSnapshot() in a.on_tick(now_us=1)
    image = bytes(512)
    a.on_snapshot_image(SnapshotImage(3, 33, LOG[2].chain, 512, image, 0))
    assert a.uploads == type(a.uploads)()  # seq 3 is not durable yet: held
    [s2] = puts(a.on_durable(LOG[2:4], now_us=2))
    assert (s2.kind, s2.first, s2.last) == ("segment", 3, 4)
    effects = a.on_put_done(s2.key)
    [snap] = puts(effects)
    assert (snap.kind, snap.first) == ("snapshot", 3)
    # The segment and the snapshot right behind it share one manifest, which archives through 4.
    [m] = puts(a.on_put_done(snap.key))
    assert [o.key for o in Manifest.from_json(m.data, what=m.key).objects] == [s2.key, snap.key]
    assert a.on_put_done(m.key)[0] == Archived(4)


def test_an_automatic_snapshot_of_an_archived_point_waits_for_the_next_segment() -> None:
    a, genesis = new(segment_bytes=2 * ENTRY)
    confirm(a, genesis)
    [s1] = puts(a.on_durable(LOG[:2], now_us=0))
    confirm(a, s1)
    a.on_tick(now_us=1)
    assert puts(a.on_snapshot_image(SnapshotImage(2, 22, LOG[1].chain, 512, bytes(512), 0))) == []
    [s2] = puts(a.on_durable(LOG[2:4], now_us=2))
    [snap] = puts(a.on_put_done(s2.key))  # then it goes, behind that segment, in its manifest
    assert (snap.kind, snap.first) == ("snapshot", 2)
    [m] = puts(a.on_put_done(snap.key))
    assert [o.key for o in Manifest.from_json(m.data, what=m.key).objects] == [s2.key, snap.key]


def test_a_snapshot_on_demand_replaces_a_held_automatic_one_and_goes_alone() -> None:
    a, genesis = new(segment_bytes=2 * ENTRY)
    confirm(a, genesis)
    [s1] = puts(a.on_durable(LOG[:2], now_us=0))
    confirm(a, s1)
    a.on_tick(now_us=1)
    a.on_snapshot_image(SnapshotImage(2, 22, LOG[1].chain, 512, bytes(512), 0))  # held, waiting to pair
    assert a.request_snapshot() == [WantSnapshot()]  # a fresh image of "now", not the held one
    [snap] = puts(a.on_snapshot_image(SnapshotImage(2, 23, LOG[1].chain, 512, bytes(512), 0)))
    assert (snap.kind, snap.first) == ("snapshot", 2)  # alone: nothing new to pair with
    [m] = puts(a.on_put_done(snap.key))
    assert [o.key for o in Manifest.from_json(m.data, what=m.key).objects] == [snap.key]
    assert a.on_put_done(m.key) == [] and a.snapshot_through == 2


OPS = st.lists(st.sampled_from(["durable", "tick", "done", "fail", "image", "demand"]), max_size=80)


@given(OPS, st.integers(1, 6))
def test_confirmed_uploads_are_always_a_gap_free_prefix_of_the_durable_log(ops: list[str], per_seg: int) -> None:
    check_history(ops, per_seg)


def check_history(ops: list[str], per_seg: int) -> None:
    a, genesis = new(segment_bytes=per_seg * ENTRY)
    now, durable = 0, 0
    in_flight: Put | None = genesis
    confirmed: list[Put] = []
    archived_marks: list[int] = []
    demanded = "demand" in ops
    for op in ops:
        now += 3_000_000
        effects: list[object] = []
        if op == "durable" and durable < len(LOG):
            n = min(len(LOG), durable + 3)
            effects = list(a.on_durable(LOG[durable:n], now))
            durable = n
        elif op == "tick":
            effects = list(a.on_tick(now))
        elif op == "done" and in_flight is not None:
            confirmed.append(in_flight)
            in_flight = None
            effects = list(a.on_put_done(confirmed[-1].key))
        elif op == "fail" and in_flight is not None:
            effects = list(a.on_put_failed(in_flight.key, "timeout"))
            in_flight = None
        elif op == "demand":
            effects = list(a.request_snapshot())
        elif op == "image":
            s = durable + 1 if durable < len(LOG) else durable  # maybe ahead of what is durable
            chain = LOG[s - 1].chain if s else GENESIS_CHAIN
            effects = list(a.on_snapshot_image(SnapshotImage(s, 0, chain, 512, b"", 0)))
        for e in effects:
            if isinstance(e, Put):
                assert in_flight is None or e == in_flight, "two uploads in flight"
                in_flight = e
            elif isinstance(e, Archived):
                archived_marks.append(e.seq)
        segs = [p for p in confirmed if p.kind == "segment"]
        assert [p.first for p in segs] == [1, *(p.last + 1 for p in segs[:-1])][: len(segs)], "a gap"
        assert all(p.last <= durable for p in segs), "archived a non-durable entry"
        # Each confirmed manifest vouches for exactly the uploads confirmed since the one before,
        # follows it, and only a manifest lets replicas truncate (through what it records).
        data: list[Put] = []
        prev: str | None = None
        recorded: list[int] = []
        for p in confirmed:
            if p.kind != "manifest":
                data.append(p)
                continue
            m = Manifest.from_json(p.data, what=p.key)
            assert [o.key for o in m.objects] == [d.key for d in data], "a manifest that misses an upload"
            assert all(o == Vouched.of(d.key, d.data) for o, d in zip(m.objects, data, strict=True))
            assert m.prev == prev and m.n == len(recorded) + 1
            assert m.through == max([d.last for d in segs if confirmed.index(d) < confirmed.index(p)], default=0)
            if recorded and m.through <= recorded[-1]:
                # A manifest that advances nothing vouches for snapshots only: the genesis one,
                # or one on demand (automatic snapshots wait for a segment to share its manifest).
                assert m.through == recorded[-1] and all(d.kind == "snapshot" for d in data), (m, data)
                assert demanded or m.through == 0, "an automatic snapshot that did not pair with a segment"
            recorded.append(m.through)
            data, prev = [], p.key
        assert archived_marks == sorted(set(recorded) - {0}), "truncation allowed before a confirmed manifest"
        for p in confirmed:
            if p.kind == "snapshot":  # a snapshot is confirmed only after its seq's segment
                assert p.first == 0 or any(s.last >= p.first for s in segs[: confirmed.index(p)]), "early snapshot"


FAILING_UPLOAD = ["done", "done", "durable", "durable", "fail", "durable", "done", "done", "done"]


def test_a_retry_that_skips_the_failed_segment_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    check_history(FAILING_UPLOAD, 2)  # the real archiver passes

    def skip(self: ArchiverState, key: str, error: str) -> list[object]:
        self.in_flight = None
        return list(self._next_upload())

    monkeypatch.setattr(ArchiverState, "on_put_failed", skip)
    with pytest.raises(AssertionError, match="a gap"):
        check_history(FAILING_UPLOAD, 2)


def test_an_off_by_one_at_the_cut_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = ArchiverState._cut

    def cut_drops_last(self: ArchiverState) -> None:
        if len(self.pending) > 1:
            last = self.pending.pop()  # the segment ends one entry early ...
            orig(self)
            self.cut_through, self.cut_chain = last.seq, last.chain  # ... but the archiver thinks not
        else:
            orig(self)

    monkeypatch.setattr(ArchiverState, "_cut", cut_drops_last)
    with pytest.raises(AssertionError, match="a gap"):
        check_history(["done", "done", "durable", "durable", "durable", "done", "done", "done", "done", "done"], 2)


def test_many_entries_at_once_are_cut_into_segments_each_within_the_size() -> None:
    """Ten entries at once with room for four a segment: 4, 4, then the 2 left (greedy, in order)."""
    a, genesis = new()
    confirm(a, genesis)
    first = puts(a.on_durable(LOG[:10], now_us=0))
    assert [(p.first, p.last) for p in first] == [(1, 4)]  # one upload at a time; the rest queued
    assert [(u.first, u.last) for u in a.uploads if u.kind == "segment"] == [(5, 8), (9, 10)]
    assert a.cuts["size"] == 1 and a.pending_bytes == 0
    # After a cut the count starts from nothing: three more entries stay below the size.
    assert puts(a.on_durable(LOG[10:13], now_us=1)) == [] and a.pending_bytes == 3 * ENTRY


def test_a_failure_for_an_upload_not_in_flight_is_refused_and_a_real_one_is_recorded() -> None:
    a, genesis = new()
    with pytest.raises(ValueError, match=f"failure for nope, but the upload in flight is {genesis.key}"):
        a.on_put_failed("nope", "boom")
    assert a.on_put_failed(genesis.key, "503 SlowDown") == [genesis]  # the same PUT again
    assert (a.failures, a.last_error) == (1, "503 SlowDown")


def test_flushes_are_counted_and_a_snapshot_is_asked_for_once_until_it_comes() -> None:
    a, genesis = new()
    confirm(a, genesis)
    effects: list[object] = []
    for i in range(2):
        effects += a.on_durable(LOG[i : i + 1], now_us=i)
        effects += a.flush()
        while a.in_flight is not None:
            effects += confirm(a, a.in_flight)
    for t in range(3):
        effects += a.on_tick(now_us=10 + t)
    assert a.cuts["flush"] == 2
    assert effects.count(WantSnapshot()) == 1 and a.snapshot_asked  # once, until the image comes
