"""Replay files: a schedule written down is the same schedule read back, a bad file is refused with
its problem named, and a failing run's replay file makes the same verdict again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given

from test_failover_property import PLANTED, run_or_record, schedules
from walrelay.procs import walrelay_argv
from walrelay_chaos.replay import HARNESS, read_replay, run_replay, write_replay
from walrelay_chaos.schedule import Op, ScheduleError, Settle, Write


@given(schedules)
def test_a_schedule_reads_back_as_written(schedule: list[Op]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = write_replay(Path(d) / "r.json", schedule, quorum=3)
        assert read_replay(path) == (schedule, 3)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "not JSON"),
        ("[]", "not a replay file"),
        ('{"harness": "other/9", "quorum": 3, "schedule": []}', "written by harness 'other/9'"),
        (f'{{"harness": "{HARNESS}", "quorum": 0, "schedule": []}}', "quorum must be 1..5"),
        (f'{{"harness": "{HARNESS}", "quorum": 3, "schedule": {{}}}}', "schedule must be a list"),
        (f'{{"harness": "{HARNESS}", "quorum": 3, "schedule": [{{"op": "Explode"}}]}}', "schedule[0]: unknown op"),
        (f'{{"harness": "{HARNESS}", "quorum": 3, "schedule": [{{"op": "Write"}}]}}', "Write takes ['count']"),
        (
            f'{{"harness": "{HARNESS}", "quorum": 3, "schedule": [{{"op": "Write", "count": -1}}]}}',
            "Write.count must be a non-negative integer",
        ),
        (
            f'{{"harness": "{HARNESS}", "quorum": 3, "schedule": [{{"op": "Restore", "pick": 1, "by_request": 1}}]}}',
            "Restore.by_request must be a boolean",
        ),
    ],
)
def test_a_bad_replay_file_is_refused_naming_the_problem(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScheduleError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        read_replay(path)


def test_the_cli_replays_a_file_and_refuses_a_bad_one(tmp_path: Path) -> None:
    good = write_replay(tmp_path / "good.json", [Write(2), Settle(300)])
    proc = subprocess.run(walrelay_argv("chaos", "replay", str(good)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("valid: 2 operations"), proc.stdout + proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"harness": HARNESS, "quorum": 3, "schedule": [{"op": "Nope"}]}))
    proc = subprocess.run(walrelay_argv("chaos", "replay", str(bad)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown op 'Nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_failing_run_writes_a_replay_file_that_fails_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WALRELAY_CHAOS_OUT", str(tmp_path))
    plant, schedule = PLANTED["ack_after_2"]
    plant(monkeypatch)
    with pytest.raises(AssertionError) as failed:
        run_or_record(schedule, "walrelay-test-")
    message = str(failed.value)
    path = tmp_path / "walrelay-test-last-failure.json"
    assert f"replay: walrelay chaos replay {path}" in message
    assert "acknowledged writes missing" in message, message
    valid, verdict = run_replay(path)  # the planted bug is still in: the same verdict
    assert not valid and verdict.startswith("invalid: ") and "acknowledged writes missing" in verdict, verdict
