"""Ctrl-C on ``./dev demo --dir D`` (issue 18, item 8; the README's command to keep the data): the
first SIGINT stops it at once, kills every node process it started (a SIGSTOPped primary too, and one
whose start was under way), prints one line and exits 130. Run as a real process group, as a
terminal's Ctrl-C reaches it; the signal is sent when the demo has printed that a primary is stopped
mid-burst (an event in its output, never a sleep)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from interrupts import sigint_as_in_a_terminal
from walrelay_chaos.pace import budget

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def _nodes_of(run_dir: str) -> dict[int, str]:
    """Every live process whose command line names the run directory (the demo's nodes): pid -> argv."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if run_dir in argv and state != b"Z":
            found[int(entry)] = argv
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_demo_kills_its_nodes_and_prints_one_line(tmp_path: Path) -> None:
    run_dir = str(tmp_path / "demo")
    proc = subprocess.Popen(
        [str(ROOT / "dev"), "demo", "--dir", run_dir, "--bookings", "12"],  # ./dev execs walrelay demo
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the signal goes to the group, as Ctrl-C does
        preexec_fn=sigint_as_in_a_terminal,
    )
    assert proc.stdout is not None and proc.stderr is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.strip().startswith("A stopped:"):  # phase 8: primary A is SIGSTOPped, B is starting
                break
        else:
            pytest.fail("the demo ended before phase 8 paused its primary:\n" + "".join(seen) + proc.stderr.read())
        running = _nodes_of(run_dir)
        # 5 replicas and primary A (stopped) at least: the interrupt has processes to kill.
        assert len(running) >= 6, running
        assert any(" replica " in argv for argv in running.values()), running
        os.killpg(proc.pid, signal.SIGINT)
        rest, err = proc.communicate(timeout=budget(120))  # a demo that ignores Ctrl-C fails here, never hangs
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 130, out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("walrelay demo: interrupted (SIGINT); killed ") and run_dir in lines[0], err
    assert "Traceback" not in out + err and "ExceptionGroup" not in out + err, out + err
    assert "demo passed" not in out and "demo failed" not in out, out
    # Nothing it started outlives it: not the nodes seen running, nor one started after the signal.
    assert not (set(running) & set(_nodes_of(run_dir))), _nodes_of(run_dir)
    assert _nodes_of(run_dir) == {}
