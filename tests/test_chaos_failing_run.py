"""A deliberately failing campaign, end to end through the CLI: a planted bug is found, the
failing seed's replay file reproduces the run exactly (the same history, byte for byte, in another
process), and its timeline says what failed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from walrelay.procs import walrelay_argv
from walrelay_chaos.pace import budget
from walrelay_chaos.replay import load_replay
from walrelay_chaos.verdicts import PROPERTIES


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(walrelay_argv("chaos", *args), capture_output=True, text=True, timeout=budget(300))


def test_a_failing_seed_replays_exactly_and_its_timeline_says_why(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    proc = _run("run", "--mutant", "archive_before_durable", "--seeds", "3", "--out", str(out))
    assert proc.returncode == 1 and "sim: INVALID" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    body = json.loads((out / "results.json").read_text())
    assert body["valid"] is False and body["mutant"] == "archive_before_durable"
    first = body["invalid"][0]
    replay = Path(first["replay"])
    assert load_replay(replay).mutant == "archive_before_durable"  # the replay plants it again
    assert f"walrelay chaos replay {replay}" in proc.stdout  # the one command that re-runs it

    timeline = Path(first["timeline"]).read_text()
    assert "INVALID" in timeline and first["message"][:60] in timeline.replace("&#x27;", "'")
    # The seed's directory carries the checker's record, and the timeline names its property.
    record = json.loads((Path(first["timeline"]).parent / "verdict.json").read_text())["verdicts"][0]
    assert record["property"] in PROPERTIES and record["property"] != "check-failed"
    assert record["sentence"] == first["message"]
    assert f'property violated: <b class="pid">{record["property"]}</b>' in timeline
    assert (replay.parent / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = _run("replay", str(replay), "--out", str(tmp_path / "again"))
    assert again.returncode == 1 and "invalid (mutant archive_before_durable planted)" in again.stdout
    assert first["message"][:200] in again.stdout
    # The same run, byte for byte: every event at the same mock-clock time, in the same order.
    original = (replay.parent / "history.jsonl").read_bytes()
    assert original and (tmp_path / "again" / "history.jsonl").read_bytes() == original


def test_a_replay_naming_an_unknown_mutant_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text(
        json.dumps({"harness": "walrelay-chaos-sim/1", "quorum": 3, "seed": 0, "mutant": "x", "schedule": []})
    )
    proc = _run("replay", str(bad))
    assert proc.returncode == 2 and "mutant 'x' is not one of" in proc.stderr and "Traceback" not in proc.stderr
