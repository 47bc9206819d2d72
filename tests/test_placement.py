"""The epoch allocator never issues an epoch twice: across calls, processes, and restarts."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import examples
from walrelay.placement import MAX_EPOCH, EpochAllocator, PlacementError
from walrelay.statefile import encode_state
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


def _state(epoch: object) -> bytes:
    return encode_state({"epoch": epoch})


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"abc\n",
        b"7\n",  # the plain decimal of before issue 17: a flipped digit there went unnoticed
        _state(7).replace(b"7}", b"9}"),  # a flipped digit now: the checksum says so
        _state(7).rstrip(b"\n"),  # parses to the same state, but is not the canonical line
    ],
)
def test_a_damaged_epoch_file_is_an_error_naming_it_never_a_restart_from_zero(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "flights.epoch").write_bytes(content)
    a = EpochAllocator(tmp_path)
    with pytest.raises(
        PlacementError, match=r"^\S*flights\.epoch: .*; fix or restore the file by hand \(docs/failover.md\)$"
    ):
        a.allocate("flights")
    with pytest.raises(PlacementError, match=r"flights\.epoch"):
        a.current("flights")
    assert (tmp_path / "flights.epoch").read_bytes() == content  # nothing rewritten


@pytest.mark.parametrize("epoch", [-1, MAX_EPOCH + 1, 1.5, True, "7", None, "x" * 80])
def test_a_checksummed_file_that_holds_no_epoch_is_refused_naming_what_it_holds(tmp_path: Path, epoch: object) -> None:
    """The checksum proves the file is what was written, not that a u64 was: a wrong writer (a
    hand edit with a recomputed CRC, another implementation) is refused too, quoting the file."""
    data = _state(epoch)
    (tmp_path / "kv.epoch").write_bytes(data)
    with pytest.raises(PlacementError) as caught:
        EpochAllocator(tmp_path).current("kv")
    where = tmp_path / "kv.epoch"
    assert (
        str(caught.value)
        == f"{where}: holds {data[:60]!r}, not an epoch; fix or restore the file by hand (docs/failover.md)"
    )


@settings(max_examples=examples(1.0), deadline=None)
@given(epoch=st.integers(0, MAX_EPOCH), at=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_a_flipped_bit_anywhere_in_an_epoch_file_is_detected(
    tmp_path_factory: pytest.TempPathFactory, epoch: int, at: int, bit: int
) -> None:
    """Issue 17: every small state file says when it is damaged. Any one flipped bit in the
    allocator's file is refused, never read as another epoch."""
    d = tmp_path_factory.mktemp("p")
    good = _state(epoch)
    (d / "kv.epoch").write_bytes(good)
    assert EpochAllocator(d).current("kv") == epoch
    bad = bytearray(good)
    bad[at % len(bad)] ^= 1 << bit
    (d / "kv.epoch").write_bytes(bytes(bad))
    with pytest.raises(PlacementError, match=r"kv\.epoch"):
        EpochAllocator(d).current("kv")


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
    assert a.allocate("kv") == 1
    assert (tmp_path / "a" / "b" / "c" / "kv.epoch").read_bytes() == b'{"crc32":3598357113,"state":{"epoch":1}}\n'


def test_the_whole_u64_range_is_an_epoch_and_the_last_one_is_issued_once(tmp_path: Path) -> None:
    """0 and 2**64 - 1 are epochs a file may hold (the wire carries u64); the allocator issues
    2**64 - 1 and then refuses, naming the object, rather than wrapping around."""
    a = EpochAllocator(tmp_path)
    (tmp_path / "kv.epoch").write_bytes(_state(0))
    assert a.current("kv") == 0
    (tmp_path / "kv.epoch").write_bytes(_state(MAX_EPOCH - 1))
    assert a.allocate("kv") == MAX_EPOCH
    assert a.current("kv") == MAX_EPOCH
    with pytest.raises(PlacementError) as caught:
        a.allocate("kv")
    assert str(caught.value) == "object 'kv': epochs exhausted"


@pytest.mark.parametrize("content", ["\u0661\u0662\n".encode(), b"\xff\n"])  # Arabic-Indic "12"; not text
def test_an_epoch_file_must_be_a_state_file_not_other_digits(tmp_path: Path, content: bytes) -> None:
    """str.isdigit() and int() accept other scripts' digits: a file holding the Arabic-Indic
    digits for 12 must not be taken for epoch 12."""
    (tmp_path / "kv.epoch").write_bytes(content)
    with pytest.raises(PlacementError, match=r"kv\.epoch: not a state file"):
        EpochAllocator(tmp_path).current("kv")


def test_an_epoch_path_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "kv.epoch").mkdir()
    with pytest.raises(PlacementError) as caught:
        EpochAllocator(tmp_path).current("kv")
    assert str(caught.value) == f"{tmp_path / 'kv.epoch'}: cannot read the epoch: Is a directory"  # strerror
