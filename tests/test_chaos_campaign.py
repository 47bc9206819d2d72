"""Chaos campaigns: seeded random schedules, each judged; results.json and replay files."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from walrelay.procs import walrelay_argv
from walrelay_chaos import campaign
from walrelay_chaos.campaign import random_schedule, run_campaign
from walrelay_chaos.replay import read_replay
from walrelay_chaos.sim import World


def test_a_seed_names_one_schedule() -> None:
    assert random_schedule(random.Random(7)) == random_schedule(random.Random(7))
    assert any(random_schedule(random.Random(s)) != random_schedule(random.Random(7)) for s in range(3))


def test_a_campaign_of_the_real_code_is_valid(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_campaign(tmp_path, seeds=6, first_seed=100, progress=lines.append)
    body = json.loads((tmp_path / "results.json").read_text())
    assert (result.exit_code, body["valid"], body["runs"], body["seeds"]) == (0, True, 6, [100, 105])
    assert len(lines) == 6 and lines[0].startswith("[1/6] seed 100: ")  # progress for every run
    assert body["simulated_seconds"] > 0 and body["invalid"] == [] and body["errors"] == []


def test_a_failing_check_makes_the_campaign_invalid_with_a_replay_per_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def judge_says_no(*args: object, **kwargs: object) -> None:
        raise AssertionError("planted: every check fails")

    monkeypatch.setattr(World, "judge", judge_says_no)
    result = run_campaign(tmp_path, seeds=3, progress=lambda line: None)
    body = json.loads((tmp_path / "results.json").read_text())
    assert result.exit_code == 1 and body["valid"] is False and len(body["invalid"]) == 3
    for item in body["invalid"]:
        schedule, _, seed = read_replay(item["replay"])
        assert seed == item["seed"] and schedule == random_schedule(random.Random(seed))
        assert item["message"] == "planted: every check fails"


def test_a_harness_failure_is_unknown_not_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the harness broke")

    monkeypatch.setattr(campaign, "run_schedule", broken)
    result = run_campaign(tmp_path, seeds=2, progress=lambda line: None)
    body = json.loads((tmp_path / "results.json").read_text())
    assert result.exit_code == 2 and body["valid"] == "unknown" and "the harness broke" in body["errors"][0]["error"]


def test_the_cli_runs_a_campaign_and_refuses_real_mode_for_now(tmp_path: Path) -> None:
    proc = subprocess.run(
        walrelay_argv("chaos", "run", "--seeds", "3", "--out", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "valid: 3 runs" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["valid"] is True
    proc = subprocess.run(walrelay_argv("chaos", "run", "--mode", "real"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not built yet" in proc.stderr and "Traceback" not in proc.stderr


def test_planting_a_mutant_is_undone_exactly() -> None:
    """The CLI plants mutants without pytest: after the block the reference is what it was
    (a staticmethod stays a staticmethod), else a later run would test a mutant unknowingly."""
    from walrelay.archive.shipper import ArchiveShipper
    from walrelay.primary_node import PrimaryNode
    from walrelay_chaos.mutants import MUTANTS, planted

    before = {name: dict(vars(cls)) for name, cls in (("shipper", ArchiveShipper), ("node", PrimaryNode))}
    for name in MUTANTS:
        with planted(name):
            pass
    after = {name: dict(vars(cls)) for name, cls in (("shipper", ArchiveShipper), ("node", PrimaryNode))}
    assert before == after


def test_the_cli_kill_table_kills_every_mutant_with_its_directed_schedule() -> None:
    proc = subprocess.run(
        walrelay_argv("chaos", "mutants", "--seeds", "0"), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "8 of 8 mutants killed" in proc.stdout and "NO " not in proc.stdout, proc.stdout
    bad = subprocess.run(
        walrelay_argv("chaos", "mutants", "--only", "nope"), capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "no mutant 'nope'" in bad.stderr
