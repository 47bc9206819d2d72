"""The archive commands as a user meets them (issue 18): bookmarks next to seqs in ``archive ls``,
``restore --to latest``, branches shown as bookmarks show them (hex), errors that name the
accepted forms and exit 2, the segment-age hint only where it can be the reason, ``--version``,
and a cut pipe (``archive ls --json | head``) that ends quietly.

One archive (tests/test_mutants_archive_verify.py): branch 1, entries 1-20 at days 1-20, and
branch 5 restored from its seq 8 with own entries 9-12 (the current branch). Commands run in this
process through cli.main, except the pipe, which needs a real one.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest

from archive_records import record_all
from test_mutants_archive_verify import DAY, archive, bm, iso_day, restore_branch, seg
from walrelay import __version__, cli
from walrelay.archive import command
from walrelay.procs import walrelay_argv

IMAGES: dict[str, bytes] = {}


@pytest.fixture
def two_branches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    reader, log = archive(tmp_path / "a")
    _, own = restore_branch(reader, log)
    record_all(reader)
    IMAGES.update({"latest": own[-1], "day 6.5": log.images[6]})
    # The archive's pages are not SQLite's: restore writes the image as it is (no integrity check).
    monkeypatch.setattr(command, "_write_sqlite", lambda restored, out: Path(out).write_bytes(restored.image))
    return tmp_path / "a"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_shows_hex_branches_and_the_bookmark_of_every_point(
    two_branches: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "archive", "ls", "o", "--archive", str(two_branches))
    assert code == 0
    lines = out.splitlines()
    assert (
        f"branch 00000001  segment   seq 4..6  {bm(1, 4)} .. {bm(1, 6)}  {iso_day(4)} .. {iso_day(6)}  {seg(4, 6)}"
        in lines
    )
    assert any(line.startswith(f"branch 00000001  snapshot  seq 8  {bm(1, 8)}  ") for line in lines), out
    [fork] = [line for line in lines if "restored from" in line]
    assert fork.startswith(f"branch 00000005  restored from {bm(1, 8)} (branch 00000001 seq 8, bookmark {bm(5, 8)})")
    assert fork.endswith("(current)")
    code, out, _ = _run(capsys, "archive", "ls", "o", "--json", "--archive", str(two_branches))
    rows = json.loads(out)
    mine = next(r for r in rows if r["kind"] == "segment" and r["branch"] == 5)
    assert (mine["first"], mine["first_bookmark"], mine["last"], mine["last_bookmark"]) == (9, bm(5, 9), 12, bm(5, 12))


def test_restore_to_latest_is_the_current_branch_end_and_the_default(
    two_branches: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in (["--to", "latest"], []):
        out = tmp_path / f"latest{len(extra)}.db"
        code, said, err = _run(capsys, "restore", "o", *extra, "--out", str(out), "--archive", str(two_branches))
        assert code == 0, err
        assert said.startswith(
            f"restored 'o' to bookmark {bm(5, 12)} (seq 12, {command.iso_time(42 * DAY)}) (the newest archived point;"
        )
        assert out.read_bytes() == IMAGES["latest"]


@pytest.mark.parametrize(
    ("lost", "missing", "last"),
    [((16, 18), "seq 17 (seqs 17..18 are missing)", 16), ((19, 20), "seq 19 (seqs 19..20 are missing)", 18)],
)
def test_restore_to_latest_refuses_an_end_before_a_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lost: tuple[int, int], missing: str, last: int
) -> None:
    """After the newest snapshot (16), a segment is gone: with a later one still there, or with
    only the manifests recording the log through 20. Latest is unknown then, not the gap's start."""
    reader, _ = archive(tmp_path / "a")
    reader.store.delete(seg(*lost))
    code, _, err = _run(capsys, "restore", "o", "--out", str(tmp_path / "x.db"), "--archive", str(tmp_path / "a"))
    assert code == 1 and not (tmp_path / "x.db").exists()
    assert f"branch 00000001 has a gap: no segment holds {missing}, so its latest point is unknown" in err, err
    assert f"bookmark {bm(1, last)} is the last before the gap" in err, err


@pytest.mark.parametrize(
    ("mark", "says", "age"),
    [
        (bm(0x99, 1), "object 'o' has no branch 00000099 in directory", False),
        (bm(5, 13), "seq 13 is beyond the archive's end (seq 12)", True),  # the current branch: maybe not uploaded yet
        (bm(1, 21), "seq 21 is beyond the archive's end (seq 20)", False),  # an old branch's end is final
    ],
)
def test_a_bookmark_the_archive_cannot_restore_names_why_with_the_segment_age_only_where_relevant(
    two_branches: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mark: str, says: str, age: bool
) -> None:
    code, _, err = _run(
        capsys, "restore", "o", "--to", mark, "--out", str(tmp_path / "x.db"), "--archive", str(two_branches)
    )
    assert code == 1
    assert err.startswith(f"walrelay restore: error: bookmark {mark}: ") and says in err, err
    assert ("segment age" in err) is age, err
    if "no branch" in says:
        assert "(its branches: 00000001, 00000005)" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["restore", "o", "--to", "yesterday"], "bad point 'yesterday': expected latest, a bookmark BRANCH-SEQ"),
        (["restore", "o", "--to", "1-2a"], "'1-2a' is not a bookmark: expected BRANCH-SEQ as 8 and 16"),
        (["restore", "o", "--to", "2026-11-26T12:00:00"], "has no zone: add Z (UTC)"),
        (["restore", "o", "--to", "@soon"], "after '@' come the microseconds"),
        (["archive", "retain", "o", "--now", "noon"], "bad time 'noon': expected an ISO 8601 time with a zone"),
        (["archive", "retain", "o", "--window-days", "nan"], "must be between 0 and 36500"),
        (["archive", "ls", "a/b"], "object name 'a/b' must match"),
        (["archive", "verify", "o", "--s3", "http://KEY:hush@h/b"], "put credentials in AWS_ACCESS_KEY_ID"),
        (["call", "--primary", "127.0.0.1:1", "--insecure"], "give an operation (OP ARGS...), or --list"),
        (["call", "--primary", "127.0.0.1:1", "--insecure", "--list", "put"], "or --list, not both"),
        (
            ["primary", "--object", "o", "--app", "nope", "--replicas", "127.0.0.1:1", "--data", "d", "--epoch", "1"],
            "invalid choice: 'nope'",
        ),
    ],
)
def test_bad_values_exit_2_naming_the_accepted_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    store = ["--archive", str(tmp_path)] if argv[0] in ("restore", "archive") and "--s3" not in argv else []
    out = ["--out", str(tmp_path / "x.db")] if argv[0] == "restore" else []
    code, _, err = _run(capsys, *argv, *out, *store)
    assert code == 2 and says in err and "hush" not in err, err
    assert not (tmp_path / "x.db").exists()


def test_restore_by_time_and_version(two_branches: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A time before branch 5's own entries is branch 1's history (the bookmark says so); no
    "newest" note on a point asked for."""
    out = str(tmp_path / "t.db")
    code, said, err = _run(
        capsys, "restore", "o", "--to", "1970-01-07T12:00:00Z", "--out", out, "--archive", str(two_branches)
    )
    assert code == 0, err
    assert said == f"restored 'o' to bookmark {bm(1, 6)} (seq 6, {iso_day(6)}) into {out}\n"
    assert Path(out).read_bytes() == IMAGES["day 6.5"]
    code, said, _ = _run(capsys, "--version")
    assert code == 0 and said == f"walrelay {__version__}\n"


def test_a_cut_pipe_ends_archive_ls_quietly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``walrelay archive ls --json | head -c 100``: no "Broken pipe", no traceback, exit 141 (the
    output is bigger than the pipe, shrunk to one page, so the cut always lands mid-output)."""
    archive(tmp_path / "a", segs=[(s, s) for s in range(1, 21)])
    code, whole, _ = _run(capsys, "archive", "ls", "o", "--json", "--archive", str(tmp_path / "a"))
    assert code == 0 and len(whole) > 4096
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen(
        walrelay_argv("archive", "ls", "o", "--json", "--archive", str(tmp_path / "a")),
        stdout=write,
        stderr=subprocess.PIPE,
    )
    os.close(write)
    with os.fdopen(read, "rb", buffering=0) as r:  # unbuffered: a buffered read drains the pipe, and the run may end
        assert r.read(100)
    _, err = proc.communicate()
    assert proc.returncode == 141 and err == b"", err
