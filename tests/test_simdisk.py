"""The simulation's disk model: a power loss reverts what the last fsyncs did not cover, for file
data and for directory entries (walrelay_chaos.simdisk), and the simulation catches a reference
that forgets the directory fsync after a rename (issue 16: that bug survived every check before)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import walrelay.fsutil as fsutil
import walrelay.replica_store as replica_store
import walrelay.statefile as statefile
from walrelay.placement import EpochAllocator
from walrelay_chaos import schedule as op
from walrelay_chaos.sim import run_schedule
from walrelay_chaos.simdisk import SimDisk


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_durable_replace_survives_a_power_loss(tmp_path: Path) -> None:
    disk = SimDisk()
    disk.track(str(tmp_path))
    with disk.installed():
        fsutil.makedirs_durably(tmp_path / "a" / "b")
        fsutil.replace_durably(tmp_path / "a" / "b" / "f", b"one")
        fsutil.replace_durably(tmp_path / "a" / "b" / "f", b"two")
        disk.lose_unsynced(str(tmp_path))
    assert _files(tmp_path) == {"a/b/f": b"two"} and disk.reverted == 0


def test_a_rename_without_the_directory_fsync_is_undone_and_the_old_file_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = SimDisk()
    disk.track(str(tmp_path))
    with disk.installed():
        fsutil.replace_durably(tmp_path / "f", b"old")
        monkeypatch.setattr(fsutil, "fsync_dir", lambda path: None)  # the bug: no directory fsync
        fsutil.replace_durably(tmp_path / "f", b"new")
        fsutil.replace_durably(tmp_path / "g", b"brand new")
        (tmp_path / "h").write_bytes(b"never synced")
        assert _files(tmp_path) == {"f": b"new", "g": b"brand new", "h": b"never synced"}
        disk.lose_unsynced(str(tmp_path))
    assert _files(tmp_path) == {"f": b"old"}  # the rename undone, the new names gone
    assert disk.reverted == 4  # f's new inode out and its old one back, g and h out


def test_a_deletion_without_the_directory_fsync_is_undone(tmp_path: Path) -> None:
    disk = SimDisk()
    disk.track(str(tmp_path))
    with disk.installed():
        fsutil.replace_durably(tmp_path / "f", b"kept")
        os.unlink(tmp_path / "f")
        disk.lose_unsynced(str(tmp_path))
    assert _files(tmp_path) == {"f": b"kept"}


def test_unsynced_data_is_cut_and_a_new_directory_needs_its_parent_synced(tmp_path: Path) -> None:
    disk = SimDisk()
    disk.track(str(tmp_path))
    with disk.installed():
        fsutil.makedirs_durably(tmp_path / "d")
        with open(tmp_path / "d" / "log", "wb") as f:
            f.write(b"synced")
            f.flush()
            os.fsync(f.fileno())
            f.write(b" and not")
        fsutil.fsync_dir(tmp_path / "d")  # the log's name is durable, its tail is not
        (tmp_path / "e").mkdir()  # no parent fsync: gone after the power loss, with its contents
        fsutil.replace_durably(tmp_path / "e" / "f", b"x")
        disk.lose_unsynced(str(tmp_path))
    assert _files(tmp_path) == {"d/log": b"synced"} and not (tmp_path / "e").exists()


def test_the_epoch_allocator_never_reissues_an_epoch_across_a_power_loss(tmp_path: Path) -> None:
    disk = SimDisk()
    disk.track(str(tmp_path / "placement"))
    with disk.installed():
        a = EpochAllocator(tmp_path / "placement")
        assert [a.allocate("o") for _ in range(3)] == [1, 2, 3]
        disk.lose_unsynced(str(tmp_path / "placement"))
        assert a.allocate("o") == 4


# Writes acknowledged by every replica, then every replica and the primary lose power together.
ACKED_THEN_EVERYONE_LOSES_POWER: list[op.Op] = [
    op.Settle(300),
    op.Write(3),
    op.Settle(300),
    op.PowerFail(0b11111, primary=True),
    op.NewPrimary(),
    op.Write(1),
    op.Settle(300),
    op.Check(),
]


def test_the_simulation_catches_a_replace_without_the_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference passes; with replace_durably's directory fsync removed, the replicas'
    entries.log (whose name only a later directory fsync makes durable) and state are lost in the
    power loss, and acknowledged writes with them."""
    run_schedule(str(tmp_path / "ref"), ACKED_THEN_EVERYONE_LOSES_POWER, seed=0)

    def replace_without_dir_fsync(path: str | os.PathLike[str], data: bytes) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # and no fsync of the directory: the bug

    monkeypatch.setattr(replica_store, "replace_durably", replace_without_dir_fsync)
    monkeypatch.setattr(statefile, "replace_durably", replace_without_dir_fsync)  # state.json's writer
    with pytest.raises(AssertionError):
        run_schedule(str(tmp_path / "mut"), ACKED_THEN_EVERYONE_LOSES_POWER, seed=0)


def test_a_replica_that_loses_power_between_a_rename_and_its_directory_fsync_loses_nothing_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TornRename: the rename is undone (the replica's state file comes back as it was), the
    replica restarts, and the run is valid: nothing was answered before that fsync."""
    import walrelay_chaos.sim as sim

    seen: list[str] = []
    monkeypatch.setattr(sim, "EVENT_HOOK", seen.append)
    schedule: list[op.Op] = [
        op.Settle(300),
        op.Write(3),  # in flight: archived segments make replica 1 record a truncation point
        op.TornRename(1),  # (a state file replaced): the power goes before that directory's fsync
        op.Write(2),
        op.Settle(300),
        op.Check(),
    ]
    run_schedule(str(tmp_path), schedule, seed=0)
    assert "power-loss-reverted-rename" in seen
