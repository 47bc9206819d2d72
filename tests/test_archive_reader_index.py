"""The reader finds the segment holding a seq by binary search (it scanned every segment per seq,
which made a restore across 30 days of 10-second segments quadratic): the same answer as the scan,
for overlapping segments too (a stale primary's uploads overlap a newer one's)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from walrelay.archive.format import ArchiveKey, segment_key
from walrelay.archive.reader import BranchListing

spans = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 15)), max_size=25)


def _listing(pairs: list[tuple[int, int]]) -> BranchListing:
    b = BranchListing(1)
    for first, length in pairs:
        key = segment_key("obj", 1, first, first + length)
        b.segments.append((key, ArchiveKey("segment", "obj", 1, first, first + length)))
    b.segments.sort(key=lambda s: (s[1].first, s[1].last))
    return b


@given(spans)
def test_covering_is_the_scan_s_answer(pairs: list[tuple[int, int]]) -> None:
    b = _listing(pairs)
    for seq in range(0, 80):
        candidates = [(k.last, key) for key, k in b.segments if k.first <= seq <= k.last]
        assert b.covering(seq) == (max(candidates)[1] if candidates else None), seq


def test_the_index_follows_segments_added_after_it_was_built() -> None:
    b = _listing([(1, 4)])
    assert b.covering(7) is None
    b.segments.append((segment_key("obj", 1, 6, 9), ArchiveKey("segment", "obj", 1, 6, 9)))
    assert b.covering(7) == segment_key("obj", 1, 6, 9)
