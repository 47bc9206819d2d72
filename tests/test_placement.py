"""The epoch allocator never issues an epoch twice: across calls, processes, and restarts."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from walrelay.placement import EpochAllocator, PlacementError


def test_epochs_start_at_one_and_strictly_increase_per_object(tmp_path: Path) -> None:
    a = EpochAllocator(tmp_path)
    assert a.current("flights") == 0
    assert [a.allocate("flights") for _ in range(3)] == [1, 2, 3]
    assert a.current("flights") == 3
    assert a.allocate("kv") == 1  # objects are independent


def test_a_restarted_allocator_continues_after_the_last_issued_epoch(tmp_path: Path) -> None:
    EpochAllocator(tmp_path).allocate("flights")
    EpochAllocator(tmp_path).allocate("flights")
    assert EpochAllocator(tmp_path).allocate("flights") == 3


def _allocate_many(directory: str, n: int, out: multiprocessing.Queue[list[int]]) -> None:
    a = EpochAllocator(directory)
    out.put([a.allocate("flights") for _ in range(n)])


def test_concurrent_processes_never_get_the_same_epoch(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[int]] = ctx.Queue()
    procs = [ctx.Process(target=_allocate_many, args=(str(tmp_path), 20, out)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [e for _ in procs for e in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(got) == list(range(1, 81))


@pytest.mark.parametrize("content", ["", "abc\n", "-1\n", "1.5\n", str(2**64) + "\n"])
def test_a_damaged_epoch_file_is_an_error_naming_it_never_a_restart_from_zero(tmp_path: Path, content: str) -> None:
    (tmp_path / "flights.epoch").write_text(content)
    a = EpochAllocator(tmp_path)
    with pytest.raises(PlacementError, match=r"flights\.epoch.*not an epoch"):
        a.allocate("flights")
    with pytest.raises(PlacementError, match=r"flights\.epoch"):
        a.current("flights")


def test_a_bad_object_name_is_a_placement_error(tmp_path: Path) -> None:
    with pytest.raises(PlacementError, match="object name"):
        EpochAllocator(tmp_path).allocate("../etc")


def test_an_unusable_directory_is_a_placement_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(PlacementError, match="placement directory"):
        EpochAllocator(tmp_path / "file" / "sub")
