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
from walrelay_chaos.pace import budget
from walrelay_chaos.replay import load_replay, read_replay
from walrelay_chaos.schedule import Op
from walrelay_chaos.sim import World, run_schedule


def test_a_seed_names_one_schedule() -> None:
    assert random_schedule(random.Random(7)) == random_schedule(random.Random(7))
    assert any(random_schedule(random.Random(s)) != random_schedule(random.Random(7)) for s in range(3))


def test_a_campaign_of_the_real_code_is_valid(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_campaign(tmp_path, seeds=6, first_seed=100, progress=lines.append)
    body = json.loads((tmp_path / "results.json").read_text())
    assert (result.exit_code, body["valid"], body["runs"], body["seeds"]) == (0, True, 6, [100, 105])
    assert [line.split(":")[0] for line in lines[:6]] == [f"[{i}/6] seed {99 + i}" for i in range(1, 7)]
    assert body["simulated_seconds"] > 0 and body["invalid"] == [] and body["errors"] == []


def test_a_failing_check_makes_the_campaign_invalid_with_a_replay_per_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def judge_says_no(*args: object, **kwargs: object) -> None:
        raise AssertionError("planted: every check fails")

    monkeypatch.setattr(World, "judge", judge_says_no)
    result = run_campaign(tmp_path, seeds=3, shrink_budget=0, progress=lambda line: None)
    body = json.loads((tmp_path / "results.json").read_text())
    assert result.exit_code == 1 and body["valid"] is False and len(body["invalid"]) == 3
    for item in body["invalid"]:
        schedule, _, seed = read_replay(item["replay"])
        assert seed == item["seed"] and schedule == random_schedule(random.Random(seed))
        assert item["message"] == "planted: every check fails"
        # ... and its report: the history and a timeline that says why it failed.
        timeline = Path(item["timeline"]).read_text()
        assert "INVALID" in timeline and "planted: every check fails" in timeline
        assert (Path(item["timeline"]).parent / "history.jsonl").stat().st_size > 0


def test_a_harness_failure_is_unknown_not_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the harness broke")

    monkeypatch.setattr(campaign, "run_schedule", broken)
    result = run_campaign(tmp_path, seeds=2, progress=lambda line: None)
    body = json.loads((tmp_path / "results.json").read_text())
    assert result.exit_code == 2 and body["valid"] == "unknown" and "the harness broke" in body["errors"][0]["error"]


def test_the_cli_runs_a_campaign_and_refuses_bad_real_mode_options(tmp_path: Path) -> None:
    proc = subprocess.run(
        walrelay_argv("chaos", "run", "--seeds", "3", "--out", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=budget(120),
    )
    assert proc.returncode == 0 and "valid: 3 runs" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["valid"] is True
    for args, fragment in [
        (["--impl", "x.json"], "--impl needs --mode real"),
        (["--mode", "both", "--impl", "x.json"], "--impl needs --mode real"),
        (["--mode", "real", "--mutant", "no_such_bug"], "no mutant 'no_such_bug'"),
        (["--mode", "real", "--impl", str(tmp_path / "missing.json")], "missing.json: cannot read"),
        (["--mode", "real", "--impl", "x.json", "--mutant", "ack_after_2"], "cannot go with --impl"),
    ]:
        proc = subprocess.run(walrelay_argv("chaos", "run", *args), capture_output=True, text=True, timeout=budget(60))
        assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_planting_a_mutant_is_undone_exactly() -> None:
    """The CLI plants mutants without pytest: after the block the reference is what it was
    (a staticmethod stays a staticmethod), else a later run would test a mutant unknowingly."""
    import walrelay.recovery
    from walrelay.archive.archiver import ArchiverState
    from walrelay.archive.shipper import ArchiveShipper
    from walrelay.primary import PrimaryState
    from walrelay.primary_node import PrimaryNode
    from walrelay.replica import ReplicaState
    from walrelay.replica_store import ReplicaStore
    from walrelay_chaos.mutants import MUTANTS, planted

    classes = (ArchiveShipper, PrimaryNode, ArchiverState, PrimaryState, ReplicaState, ReplicaStore, walrelay.recovery)
    before = [dict(vars(cls)) for cls in classes]
    for name in MUTANTS:
        with planted(name):
            assert [dict(vars(cls)) for cls in classes] != before, f"{name} planted nothing"
    assert [dict(vars(cls)) for cls in classes] == before


def test_the_cli_kill_table_kills_every_mutant_by_directed_and_by_random_search(tmp_path: Path) -> None:
    """The mutant table CI runs (issue 6: every mutant killed within a 10-minute budget): each
    mutant's directed schedule, then random seeds until one kills it (40 s each at most); each
    shrunk killing schedule is written and still kills its mutant."""
    proc = subprocess.run(
        walrelay_argv("chaos", "mutants", "--seeds", "1000", "--seconds", f"{budget(40):.0f}", "--out", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=budget(900),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    from walrelay_chaos.mutants import MUTANTS

    n = len(MUTANTS)
    assert n == 12 and f"{n} of {n} mutants killed" in proc.stdout and "NO " not in proc.stdout, proc.stdout
    lines = proc.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("mutant ") and line.endswith(" shrunk"))
    rows = [line.split() for line in lines[head + 2 : head + 2 + n]]
    assert sorted(r[0] for r in rows) == sorted(MUTANTS)
    for r in rows:  # killed, directed, random seed, seconds, ops, shrunk: random search killed it too
        assert r[1:3] == ["yes", "yes"] and r[3].isdigit() and int(r[6]) <= int(r[5]), r
    body = json.loads((tmp_path / "results.json").read_text())
    assert body["valid"] is True and sorted(r["mutant"] for r in body["mutants"]) == sorted(MUTANTS)
    for r in body["mutants"]:  # the shrunk schedule is kept, and replays as a kill of its mutant
        replay = load_replay(r["shrunk"]["replay"])
        assert (replay.mutant, replay.seed, len(replay.schedule)) == (r["mutant"], r["random_seed"], r["shrunk"]["ops"])
    bad = subprocess.run(
        walrelay_argv("chaos", "mutants", "--only", "nope"), capture_output=True, text=True, timeout=budget(60)
    )
    assert bad.returncode == 2 and "no mutant 'nope'" in bad.stderr


def test_shrinking_keeps_only_what_the_failure_needs() -> None:
    from walrelay_chaos.mutants import shrink
    from walrelay_chaos.schedule import Check, Heal, Settle, Write

    noise: list[Op] = [Settle(1), Heal(), Write(1)] * 6
    schedule: list[Op] = [*noise[:7], Write(7), *noise[7:], Check(), *noise[:4]]
    calls: list[int] = []

    def fails(s: list[Op]) -> bool:
        calls.append(len(s))
        return Write(7) in s and Check() in s and s.index(Write(7)) < s.index(Check())

    assert shrink(schedule, fails) == [Write(7), Check()]
    assert len(calls) <= 60  # the budget
    assert len(shrink(schedule, fails, max_runs=3)) > 2  # out of budget: shrunk only partly


def test_a_random_kill_is_shrunk_to_a_schedule_that_still_kills(tmp_path: Path) -> None:
    """The kill table's "shrunk" column: the shrunk schedule kills the mutant under the same seed,
    and the real code passes it (no false alarm made by shrinking); the run directory keeps the
    killing schedule and the shrunk one, each replaying as that kill."""
    from walrelay_chaos.mutants import planted
    from walrelay_chaos.replay import run_replay

    lines: list[str] = []
    result = campaign.run_mutants(
        seeds=30, seconds=60, only=["off_by_one_segment_cut"], progress=lines.append, out_dir=tmp_path / "run"
    )
    row = result.rows[0]
    assert row.directed_killed and row.random_seed is not None and row.random_ops is not None
    assert row.shrunk is not None and 0 < len(row.shrunk) < row.random_ops and 0 < row.shrink_runs <= 60
    with planted("off_by_one_segment_cut"), pytest.raises(AssertionError):
        run_schedule(str(tmp_path / "mutant"), row.shrunk, seed=row.random_seed)
    run_schedule(str(tmp_path / "real"), row.shrunk, seed=row.random_seed)
    table = campaign.kill_table(result.rows)
    assert table.splitlines()[2].split()[-2:] == [str(row.random_ops), str(len(row.shrunk))]
    # Progress while shrinking, then the shrunk schedule and its replay command.
    assert any(line.startswith(f"    shrinking off_by_one_segment_cut seed {row.random_seed}:") for line in lines)
    assert f"    shrunk: {', '.join(repr(o) for o in row.shrunk)}" in lines
    body = json.loads((tmp_path / "run" / "results.json").read_text())
    (entry,) = body["mutants"]
    assert body["valid"] is True and entry["shrunk"]["ops"] == len(row.shrunk)
    for role, schedule in (("random", None), ("shrunk", row.shrunk)):
        replay = load_replay(entry[role]["replay"] if role == "random" else entry["shrunk"]["replay"])
        assert replay.mutant == "off_by_one_segment_cut" and replay.seed == row.random_seed
        assert schedule is None or replay.schedule == schedule
        assert (
            "INVALID" in Path(entry[role]["timeline"] if role == "random" else entry["shrunk"]["timeline"]).read_text()
        )
    valid, verdict = run_replay(entry["shrunk"]["replay"])
    assert not valid and verdict.startswith("invalid (mutant off_by_one_segment_cut planted)"), verdict
