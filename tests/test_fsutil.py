"""replace_durably: a crash leaves the old file or the new one, whole, and nothing else visible."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from walrelay.archive.dir_store import DirStore
from walrelay.fsutil import fsync_dir, replace_durably


def test_a_crash_mid_replace_leaves_the_old_file_and_no_object_a_listing_shows(tmp_path: Path) -> None:
    """A process killed between writing the temporary file and renaming it (os._exit: no cleanup
    runs) leaves its temporary behind; the directory archive must not list it as an object."""
    store = DirStore(str(tmp_path))
    store.put("obj/key", b"old")
    pid = os.fork()
    if pid == 0:  # the child dies at the rename, as under SIGKILL
        os.replace = lambda *a: os._exit(0)
        store.put("obj/key", b"new")
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    leftovers = [p.name for p in (tmp_path / "obj").iterdir() if p.name != "key"]
    assert len(leftovers) == 1  # the temporary is there (the crash happened)...
    assert [o.key for o in store.list("")] == ["obj/key"]  # ...and is not an object
    assert store.get("obj/key") == b"old"


def test_the_temporary_file_is_renamed_from_the_target_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename is atomic only within one filesystem, and the directory fsync after it covers only
    that directory: the temporary must be beside the target."""
    renames: list[tuple[str, str]] = []
    real = os.replace

    def spy(a: str, b: str) -> None:
        renames.append((str(a), str(b)))
        real(a, b)

    monkeypatch.setattr(os, "replace", spy)
    replace_durably(tmp_path / "f", b"x")
    [(src, dst)] = renames
    assert os.path.dirname(src) == os.path.dirname(dst) == str(tmp_path)
    assert (tmp_path / "f").read_bytes() == b"x"


def test_a_failed_write_raises_its_own_error_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f").write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError) as caught:
        replace_durably(tmp_path / "f", b"new")
    assert caught.value.errno == errno.EIO  # not a TypeError from the cleanup
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    assert (tmp_path / "f").read_bytes() == b"old"


def test_fsync_dir_refuses_a_path_that_is_not_a_directory(tmp_path: Path) -> None:
    """Syncing the renamed *file* instead of its directory would not make the rename durable:
    O_DIRECTORY turns that mistake into an error."""
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "f")
    fsync_dir(tmp_path)
