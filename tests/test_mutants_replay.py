"""Tests written for survivors of mutation testing of ``walrelay.replay`` (scripts/mutate.py).

Each test names the bug (the mutant) it stands for; each was seen failing with that mutant
planted in a copy of the package.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from walrelay.replay import open_image


def wal_image(tmp_path: Path) -> bytes:
    """A database image as captured from a WAL-mode database (header bytes 18-19 = 2, 2)."""
    path = tmp_path / "w.db"
    db = apsw.Connection(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    image = path.read_bytes()
    path.unlink()
    assert image[18:20] == b"\x02\x02"
    return image


def test_open_image_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: the image opened through a named database instead of ``":memory:"`` (mutants
    ``"XX:memory:XX"``, ``":MEMORY:"``, which SQLite takes as file names): every restore check
    or query of an image would leave a database file in the working directory."""
    image = wal_image(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    conn = open_image(image)
    assert list(conn.execute("SELECT v FROM kv")) == [("one",)]
    conn.close()
    assert list(work.iterdir()) == []


def test_open_image_switches_both_header_bytes_of_a_wal_image_to_rollback_mode(tmp_path: Path) -> None:
    """Bug: only the read-version byte switched (mutant ``data[19] = data[19] = 1``): the copy
    opened would still say "WAL" for writes (byte 18 = 2), so a database serialized from it is
    not the rollback-mode image the docstring promises."""
    image = wal_image(tmp_path)
    conn = open_image(image)
    copy = conn.serialize("main")
    conn.close()
    assert copy[18:20] == b"\x01\x01"
    assert copy[:18] == image[:18] and copy[20:] == image[20:]


def test_open_image_leaves_a_header_that_is_not_wal_mode_as_it_is(tmp_path: Path) -> None:
    """Bug: a header rewritten when only its read version says WAL (mutant ``data[19] == 2 and
    data[19] == 2``): open_image may change the two bytes of a WAL-mode header (2, 2) and
    nothing else; any other header reaches SQLite as given."""
    image = bytearray(wal_image(tmp_path))
    image[18] = 1  # write version 1, read version 2: not what a WAL-mode capture says
    conn = open_image(bytes(image))
    assert conn.serialize("main") == bytes(image)
    conn.close()
