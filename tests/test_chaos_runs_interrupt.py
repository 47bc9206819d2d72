"""Ctrl-C on a campaign (issue 18, item 8): ``walrelay chaos run`` (sim and real mode) and ``chaos
mutants`` stop on the first SIGINT, stop what they started, write results.json with the verdict
"interrupted", print one line and exit 130. Each test waits for a progress line (an event), not
for a time, before it sends SIGINT."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from interrupts import sigint_as_in_a_terminal
from walrelay.procs import walrelay_argv
from walrelay_chaos.pace import budget


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    # TMPDIR: the run's scratch directories and the real nodes' data, known to the test.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return subprocess.Popen(
        walrelay_argv(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"},
        preexec_fn=sigint_as_in_a_terminal,
    )


def _until_line(proc: subprocess.Popen[str], fragment: str) -> list[str]:
    """stdout's lines up to and including the first holding ``fragment`` (fails if the process
    ends first)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if fragment in line:
            return seen
    raise AssertionError(f"the campaign ended before printing {fragment!r}: {''.join(seen)}")


def _interrupted(proc: subprocess.Popen[str], command: str, results: Path) -> dict[str, object]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=budget(120))  # a command that ignores Ctrl-C fails here, not hangs
    assert proc.returncode == 130, (out, err)
    # Nothing after the interrupt but one line on stderr. stdout may still hold progress lines the
    # campaign wrote before the signal landed (a loaded machine runs on between our read and it),
    # but only whole progress lines: no traceback, no partial report.
    assert "Traceback" not in out + err, (out, err)
    progress = r"(\[\d+/\d+\] seed \d+: |    |\w+: directed )"  # a seed's line, its details, a mutant's line
    assert all(re.match(progress, line) for line in out.splitlines()), out
    (line,) = err.splitlines()
    assert line.startswith(f"walrelay {command}: interrupted after ") and line.endswith(f"; {results}"), line
    body = json.loads(results.read_text())
    assert body["valid"] == "interrupted", body
    return dict(body)


def _processes_naming(fragment: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
            except (OSError, IndexError):
                continue
            if fragment in cmd and state != "Z":
                found.append(cmd)
    return found


def _children(pid: int) -> set[int]:
    kids = set()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if int(Path(f"/proc/{p}/stat").read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                    kids.add(int(p))
            except (OSError, IndexError, ValueError):
                continue
    return kids


def test_ctrl_c_stops_a_simulated_campaign_with_its_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(["chaos", "run", "--seeds", "3000", "--out", str(out)], tmp_path)
    try:
        _until_line(proc, "[2/3000] seed 1:")
        body = _interrupted(proc, "chaos run", out / "results.json")
    finally:
        proc.kill()
        proc.wait()
    # What ran is kept: every finished seed's verdict and replay file.
    assert isinstance(body["runs"], int) and body["runs"] >= 2 and body["runs"] < 3000
    assert len(body["seed_runs"]) == body["runs"]  # type: ignore[arg-type]
    assert all((out / f"seed-{s}" / "replay.json").exists() for s in range(body["runs"]))
    assert (out / "index.html").exists()
    assert os.listdir(tmp_path / "scratch") == []  # the interrupted run's scratch directory is gone


def test_ctrl_c_stops_a_real_campaign_and_every_process_it_started(tmp_path: Path) -> None:
    """Before: the KeyboardInterrupt became the seed's "HARNESS ERROR" and the next seed ran."""
    out = tmp_path / "run"
    proc = _start(["chaos", "run", "--mode", "real", "--seeds", "50", "--out", str(out)], tmp_path)
    scratch = str(tmp_path / "scratch")
    try:
        _until_line(proc, "[1/50] seed 0: ")  # started before the first run: the S3 server
        s3 = _children(proc.pid)
        assert s3, "the campaign's S3 server is not running"
        # The replicas are up (an event, however long they take: the campaign ending fails this).
        while len([c for c in _processes_naming(scratch) if " replica " in c]) < 5:
            assert proc.poll() is None, "the campaign ended before its replicas ran"
            time.sleep(0.05)  # polling for the event, not a limit
        body = _interrupted(proc, "chaos run", out / "results.json")
    finally:
        proc.kill()
        proc.wait()
    assert body["runs"] == 0 and body["errors"] == [] and body["invalid"] == []  # no "harness error"
    assert _processes_naming(scratch) == []  # every node it started, stopped before it exited
    assert not {pid for pid in s3 if Path(f"/proc/{pid}").exists()}  # and its S3 server
    assert os.listdir(scratch) == []


def test_ctrl_c_stops_the_mutant_table_with_its_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    only = ["--only", "restore_before_archived", "--only", "branch_number_reused"]  # two quick kills
    proc = _start(["chaos", "mutants", *only, "--out", str(out)], tmp_path)
    try:
        _until_line(proc, "shrunk: ")  # the first mutant killed and shrunk: interrupt the second
        body = _interrupted(proc, "chaos mutants", out / "results.json")
    finally:
        proc.kill()
        proc.wait()
    rows = body["mutants"]
    assert isinstance(rows, list) and rows[0]["mutant"] == "restore_before_archived"
    assert rows[0]["killed"] and rows[0]["shrunk"]["ops"] >= 1
    assert (out / "restore_before_archived" / "directed" / "replay.json").exists()
