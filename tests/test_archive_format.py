"""Archive formats v1: segments, snapshots, keys and bookmarks round-trip, and any damage is refused.

Corruption is the point: a flipped, missing or added byte anywhere in an object must make decoding
fail with an error naming the object, never return different content (docs/archive-format.md).
"""

from __future__ import annotations

import apsw
import pytest
from hypothesis import given
from hypothesis import strategies as st

from test_replica_state import LOG, make_log
from walrelay.archive.format import (
    ArchiveFormatError,
    ArchiveKey,
    bookmark,
    branch_record_key,
    decode_segment,
    decode_snapshot,
    encode_segment,
    encode_snapshot,
    parse_bookmark,
    parse_key,
    segment_key,
    snapshot_key,
)
from walrelay.entry import GENESIS_CHAIN
from walrelay.pagehash import DbChecksum


def _segment(first: int = 1, n: int = 4) -> bytes:
    entries = tuple(LOG[first - 1 : first - 1 + n])
    prev = GENESIS_CHAIN if first == 1 else LOG[first - 2].chain
    return encode_segment(7, entries, prev)


def _image() -> tuple[bytes, int]:
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000)), ('hello')")
    image = bytes(conn.serialize("main"))
    page_size = int(conn.pragma("page_size"))
    return image, DbChecksum.of_image(image, page_size).value


def test_a_segment_round_trips() -> None:
    seg = decode_segment(_segment(3, 4), what="k")
    assert (seg.branch, seg.first, seg.last) == (7, 3, 6)
    assert [e.raw for e in seg.entries] == [e.raw for e in LOG[2:6]]
    assert seg.prev_chain == LOG[1].chain and seg.last_chain == LOG[5].chain
    assert (seg.first_ts, seg.last_ts) == (LOG[2].timestamp_us, LOG[5].timestamp_us)


def test_segment_content_is_deterministic() -> None:
    """What makes a retried or ambiguous PUT harmless: the same entries give the same bytes."""
    assert _segment(2, 3) == _segment(2, 3)


def test_encoding_refuses_what_is_not_one_log() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        encode_segment(1, (LOG[0], LOG[2]), GENESIS_CHAIN)
    with pytest.raises(ValueError, match="does not follow"):
        encode_segment(1, (LOG[1],), GENESIS_CHAIN)
    other = make_log(2, epoch=3, salt=9)
    with pytest.raises(ValueError, match="does not follow"):
        encode_segment(1, (LOG[0], other[1]), GENESIS_CHAIN)


@given(st.data())
def test_any_damage_to_a_segment_is_refused_by_name(data: st.DataObject) -> None:
    good = _segment(1, 5)
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        bad = good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1 :]
    elif kind == "truncate":
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    else:
        bad = good + data.draw(st.binary(min_size=1, max_size=64))
    with pytest.raises(ArchiveFormatError, match="obj/b00000007/seg/x"):
        decode_segment(bad, what="obj/b00000007/seg/x")


def test_a_snapshot_round_trips_and_checks_the_database() -> None:
    image, checksum = _image()
    raw = encode_snapshot(2, 41, 123, LOG[0].chain, 4096, image, checksum)
    snap = decode_snapshot(raw, what="s")
    assert (snap.branch, snap.seq, snap.timestamp_us, snap.chain) == (2, 41, 123, LOG[0].chain)
    assert snap.image == image and snap.db_pages == len(image) // 4096
    wrong = encode_snapshot(2, 41, 123, LOG[0].chain, 4096, image, checksum ^ 1)
    with pytest.raises(ArchiveFormatError, match="database checksum"):
        decode_snapshot(wrong, what="s")


@given(st.integers(0, 10**9), st.integers(1, 255))
def test_any_flipped_byte_in_a_snapshot_is_refused(position: int, xor: int) -> None:
    image, checksum = _image()
    good = encode_snapshot(1, 5, 9, LOG[4].chain, 4096, image, checksum)
    i = position % len(good)
    bad = good[:i] + bytes([good[i] ^ xor]) + good[i + 1 :]
    with pytest.raises(ArchiveFormatError, match="snap-key"):
        decode_snapshot(bad, what="snap-key")


def test_keys_round_trip_and_sort_in_seq_order() -> None:
    assert parse_key(segment_key("flights", 3, 10, 99)) == ArchiveKey("segment", "flights", 3, 10, 99)
    assert parse_key(snapshot_key("flights", 1, 0)) == ArchiveKey("snapshot", "flights", 1, 0, 0)
    assert parse_key(branch_record_key("flights", 2)) == ArchiveKey("branch", "flights", 2)
    keys = [segment_key("o", 1, f, f + 1) for f in (1, 9, 10, 100, 2**40)]
    assert sorted(keys) == keys


@pytest.mark.parametrize("key", ["o/b1/seg/1-2", "o/b00000001/seg/" + "0" * 20 + "-" + "0" * 20, "o/b00000001/x", "x"])
def test_foreign_keys_are_named_in_the_error(key: str) -> None:
    with pytest.raises(ArchiveFormatError, match=r"seg|not an archive object key"):
        parse_key(key)


@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.integers(0, 2**64 - 1)), min_size=2, max_size=20))
def test_bookmarks_sort_in_history_order_and_round_trip(points: list[tuple[int, int]]) -> None:
    marks = [bookmark(b, s) for b, s in points]
    assert [parse_bookmark(m) for m in marks] == points
    assert sorted(marks) == [bookmark(b, s) for b, s in sorted(points)]


@pytest.mark.parametrize("text", ["", "1-2", "00000001-2a", "00000000-000000000000002a", "0000000G-000000000000002a"])
def test_bad_bookmarks_get_a_clear_error(text: str) -> None:
    with pytest.raises(ArchiveFormatError, match="is not a bookmark"):
        parse_bookmark(text)
