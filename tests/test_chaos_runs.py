"""Run directories (runs/<timestamp>-<mode>/, runs/latest), shrunk reproductions of failing
campaign seeds, the pages that browse runs, and the campaign's console (issue 18, items 5, 6, 10)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from walrelay.procs import walrelay_argv
from walrelay_chaos import campaign, runs
from walrelay_chaos.campaign import run_campaign, write_counts
from walrelay_chaos.pace import budget
from walrelay_chaos.replay import load_replay
from walrelay_chaos.schedule import Bookmark, Op, Restore, Settle, Write
from walrelay_chaos.sim import World


def test_a_failing_seed_is_shrunk_and_every_seed_can_be_replayed_from_runs_latest(tmp_path: Path) -> None:
    """``walrelay chaos run`` with no --out: runs/<timestamp>-sim/ and runs/latest; a replay file for
    every seed; ack_after_2 fails seed 6 (19 ops), which is shrunk (to 2 ops, with the same seed)
    into seed-6/shrunk/, shown before the original; a passing seed replays with its timeline."""
    proc = subprocess.run(
        walrelay_argv(
            "chaos", "run", "--seeds", "3", "--first-seed", "5", "--mutant", "ack_after_2", "--shrink-budget", "20"
        ),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=budget(300),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    root = tmp_path / "runs"
    run = root / os.readlink(root / "latest")
    assert re.fullmatch(r"\d{8}T\d{6}Z-sim", run.name) and os.readlink(root / "latest-sim") == run.name
    assert f"run directory runs/{run.name} (runs/latest)" in proc.stdout
    for seed in (5, 6, 7):  # every seed, passing or not
        assert load_replay(run / f"seed-{seed}" / "replay.json").seed == seed
    body = json.loads((run / "results.json").read_text())
    assert body["valid"] is False and [s["verdict"] for s in body["seed_runs"]] == ["valid", "invalid", "valid"]
    (bad,) = body["invalid"]
    shrunk = bad["shrunk"]
    assert bad["seed"] == 6 and 0 < shrunk["ops"] < bad["ops"] and shrunk["runs"] == body["shrink_runs"] <= 20
    again = load_replay(tmp_path / shrunk["replay"])  # paths as the console shows them: from where it ran
    assert (again.seed, again.mutant, len(again.schedule)) == (6, "ack_after_2", shrunk["ops"])
    assert [repr(o) for o in again.schedule] == shrunk["schedule"]
    assert "INVALID" in (tmp_path / shrunk["timeline"]).read_text()
    # The checker's records, when it gives them (walrelay_chaos.verdicts), headed by the message.
    for item in (bad, shrunk):
        assert [v["sentence"] for v in item["verdicts"]][:1] in ([], [item["message"]]), item
    # The console: progress while shrinking, then the shrunk reproduction before the original.
    out = proc.stdout
    assert "    shrinking seed 6: 19 -> " in out
    assert out.index(f"replay: walrelay chaos replay {shrunk['replay']}") < out.index(
        f"original (19 ops): walrelay chaos replay {bad['replay']}"
    )
    assert f"first failure, seed 6, shrunk to {shrunk['ops']} of 19 ops:" in out
    # Coverage that no run reached is said once (it was twice in real mode), counts over every branch.
    assert out.count("never reached:") == 1 and "no run reached" not in out
    # The pages: the index lists the run and its verdict; the run's page the shrunk timeline.
    index = (root / "index.html").read_text()
    assert f'href="{run.name}/index.html"' in index and "invalid" in index
    page = (run / "index.html").read_text()
    assert 'href="seed-6/shrunk/timeline.html"' in page and 'href="seed-5/timeline.html"' not in page
    # A passing seed replays with its timeline, written beside its replay file; the page links it.
    proc = subprocess.run(
        walrelay_argv("chaos", "replay", "runs/latest/seed-5/replay.json"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=budget(120),
    )
    assert proc.returncode == 0 and proc.stdout.startswith("valid (mutant ack_after_2 planted)"), proc.stdout
    assert proc.stdout.rstrip().endswith("timeline: runs/latest/seed-5/timeline.html")
    assert "valid" in (run / "seed-5" / "timeline.html").read_text()
    assert 'href="seed-5/timeline.html"' in (run / "index.html").read_text()


def test_the_shrink_budget_bounds_shrinking_over_the_whole_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run fails (a planted checker): the first failing seed spends the budget, the next is
    not shrunk, and says so."""

    def judge_says_no(*args: object, **kwargs: object) -> None:
        raise AssertionError("planted: every check fails")

    monkeypatch.setattr(World, "judge", judge_says_no)
    lines: list[str] = []
    result = run_campaign(tmp_path, seeds=2, first_seed=3, shrink_budget=3, progress=lines.append)
    assert result.shrink_runs == 3 and [e["shrunk"] is None for e in result.invalid] == [False, True]
    first = result.invalid[0]["shrunk"]
    assert first["runs"] == 3 and first["ops"] < result.invalid[0]["ops"]
    assert "    not shrunk: the shrink budget (3 runs) is spent" in lines
    assert json.loads((tmp_path / "results.json").read_text())["shrink_runs"] == 3


BRANCHES: list[Op] = [Write(2), Settle(300), Bookmark(), Write(2), Settle(300), Restore(0, True), Write(1), Settle(300)]


def test_the_campaign_counts_the_writes_of_every_branch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore starts a new branch: the simulation's outcome holds only the last one's writes
    (1 here); the campaign's line counts all five."""
    monkeypatch.setattr(campaign, "random_schedule", lambda rng: BRANCHES)
    lines: list[str] = []
    run_campaign(tmp_path, seeds=1, progress=lines.append)
    assert lines[0] == "[1/1] seed 0: 8 ops: valid (5 acknowledged, 0 failed, 0 unknown)", lines
    events = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "write", "value": 2},
        {"process": "nemesis", "type": "info", "f": "crash-primary"},
        {"process": 1, "type": "fail", "f": "write", "value": 2},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "info", "f": "read", "value": None},
        {"process": 1, "type": "invoke", "f": "write", "value": 3},
        {"process": 1, "type": "info", "f": "write", "value": 3},
        {"process": 2, "type": "invoke", "f": "write", "value": 4},
        {"process": 2, "type": "ok", "f": "write", "value": 4},
    ]
    assert write_counts(events) == {"ok": 1, "fail": 1, "unknown": 2}  # process 0's is still in flight


def test_the_runs_are_browsed_over_http_drawn_afresh(tmp_path: Path) -> None:
    """``walrelay chaos serve``'s server: the index lists every run with its verdict and follows a
    campaign still running (results.json rewritten since the last page was drawn)."""
    root = tmp_path / "runs"
    run = runs.new_run_dir(root, "sim")
    second = runs.new_run_dir(root, "sim")
    assert second.name == f"{run.name}-2" or second.name > run.name  # never the same directory twice
    assert os.readlink(root / "latest") == second.name
    (run / "results.json").write_text(json.dumps({"valid": "running", "mode": "sim", "runs": 0, "seeds": []}))
    with runs.server(root) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            page = urllib.request.urlopen(f"{base}/").read().decode()
            assert run.name in page and 'class="running"' in page
            body = {"valid": False, "mode": "sim", "runs": 1, "seeds": [4, 4], "invalid": [], "seed_runs": []}
            body["seed_runs"] = [{"seed": 4, "verdict": "invalid", "ops": 3, "writes": {"ok": 1, "fail": 0}}]
            (run / "results.json").write_text(json.dumps(body))
            page = urllib.request.urlopen(f"{base}/").read().decode()
            assert 'class="running"' not in page and 'class="invalid"' in page
            page = urllib.request.urlopen(f"{base}/{run.name}/").read().decode()
            assert "<td>4</td><td class='invalid'>invalid</td><td>3</td>" in page
        finally:
            httpd.shutdown()


def test_chaos_mutants_help_lists_the_mutants() -> None:
    from walrelay_chaos.mutants import MUTANTS

    proc = subprocess.run(
        walrelay_argv("chaos", "mutants", "--help"), capture_output=True, text=True, timeout=budget(60)
    )
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps the list
    assert "mutants: " + ", ".join(MUTANTS) in text, proc.stdout
