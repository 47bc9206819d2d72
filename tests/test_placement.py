"""The epoch allocator never issues an epoch twice: across calls, processes, and restarts."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from walrelay.placement import MAX_EPOCH, EpochAllocator, PlacementError
from walrelay_chaos.pace import budget


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
    got = [e for _ in procs for e in out.get(timeout=budget(60))]
    for p in procs:
        p.join(timeout=budget(60))
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


def test_an_unusable_directory_error_says_why_in_words(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(PlacementError) as caught:
        EpochAllocator(tmp_path / "file")
    assert str(caught.value) == f"placement directory {tmp_path / 'file'}: File exists"  # strerror, no errno repr


def test_a_placement_directory_is_created_with_its_parents(tmp_path: Path) -> None:
    a = EpochAllocator(tmp_path / "a" / "b" / "c")
    assert a.allocate("kv") == 1 and (tmp_path / "a" / "b" / "c" / "kv.epoch").read_text() == "1\n"


def test_the_whole_u64_range_is_an_epoch_and_the_last_one_is_issued_once(tmp_path: Path) -> None:
    """0 and 2**64 - 1 are epochs a file may hold (the wire carries u64); the allocator issues
    2**64 - 1 and then refuses, naming the object, rather than wrapping around."""
    a = EpochAllocator(tmp_path)
    (tmp_path / "kv.epoch").write_text("0\n")
    assert a.current("kv") == 0
    (tmp_path / "kv.epoch").write_text(f"{MAX_EPOCH - 1}\n")
    assert a.allocate("kv") == MAX_EPOCH
    assert a.current("kv") == MAX_EPOCH
    with pytest.raises(PlacementError) as caught:
        a.allocate("kv")
    assert str(caught.value) == "object 'kv': epochs exhausted"


@pytest.mark.parametrize("content", ["\u0661\u0662\n".encode(), b"\xff\n"])  # Arabic-Indic "12"; not text
def test_an_epoch_file_must_be_ascii_digits(tmp_path: Path, content: bytes) -> None:
    """str.isdigit() and int() accept other scripts' digits: read as UTF-8, a file holding the
    Arabic-Indic digits for 12 would be taken for epoch 12."""
    (tmp_path / "kv.epoch").write_bytes(content)
    with pytest.raises(PlacementError, match=r"kv\.epoch: cannot read the epoch: 'ascii' codec"):
        EpochAllocator(tmp_path).current("kv")


def test_an_epoch_path_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "kv.epoch").mkdir()
    with pytest.raises(PlacementError, match=r"kv\.epoch: cannot read the epoch: \[Errno 21\] Is a directory"):
        EpochAllocator(tmp_path).current("kv")
