"""Replay files: a schedule written down is the same schedule read back, a bad file is refused with
its problem named, and a failing run's replay file makes the same verdict again."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from test_failover_property import PLANTED, RESTORE_AND_UNDO, run_or_record, schedules
from walrelay.procs import walrelay_argv
from walrelay_chaos import mutants
from walrelay_chaos.pace import budget
from walrelay_chaos.replay import HARNESS, read_replay, run_replay, write_replay
from walrelay_chaos.schedule import (
    Bookmark,
    Bridge,
    ClockJump,
    Delay,
    Heal,
    NewPrimary,
    OneWay,
    Op,
    Orphan,
    PairFailover,
    PowerFail,
    Reset,
    RestoreCrash,
    ScheduleError,
    Settle,
    SplitBrain,
    Write,
)
from walrelay_chaos.sim import run_schedule


@given(schedules)
def test_a_schedule_reads_back_as_written(schedule: list[Op]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = write_replay(Path(d) / "r.json", schedule, quorum=3, seed=5)
        assert read_replay(path) == (schedule, 3, 5)


def _file(schedule: object = (), **fields: object) -> str:
    items = list(schedule) if isinstance(schedule, list | tuple) else schedule
    return json.dumps({"harness": HARNESS, "quorum": 3, "seed": 0, "schedule": items, **fields})


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "not JSON"),
        ("[]", "not a replay file"),
        (_file(harness="other/9"), "written by harness 'other/9'"),
        (_file(quorum=0), "quorum must be 1..5"),
        (_file(seed=-1), "seed must be a non-negative integer"),
        (_file(schedule={}), "schedule must be a list"),
        (_file([{"op": "Explode"}]), "schedule[0]: unknown op"),
        (_file([{"op": "Write"}]), "Write takes ['count']"),
        (_file([{"op": "Write", "count": -1}]), "Write.count must be a non-negative integer"),
        (_file([{"op": "Restore", "pick": 1, "by_request": 1}]), "Restore.by_request must be a boolean"),
    ],
)
def test_a_bad_replay_file_is_refused_naming_the_problem(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScheduleError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        read_replay(path)


def test_the_cli_replays_a_file_exactly_and_refuses_a_bad_one(tmp_path: Path) -> None:
    """Two replays of one file, each in its own process (its own hash seed, no hypothesis loaded):
    the same history digest."""
    good = write_replay(tmp_path / "good.json", RESTORE_AND_UNDO, seed=11)
    verdicts = []
    for _ in range(2):
        proc = subprocess.run(
            walrelay_argv("chaos", "replay", str(good)), capture_output=True, text=True, timeout=budget(120)
        )
        assert proc.returncode == 0 and proc.stdout.startswith(f"valid: {len(RESTORE_AND_UNDO)} operations"), (
            proc.stdout + proc.stderr
        )
        verdicts.append(proc.stdout.strip())
    assert verdicts[0] == verdicts[1] and "history " in verdicts[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"harness": HARNESS, "quorum": 3, "seed": 0, "schedule": [{"op": "Nope"}]}))
    proc = subprocess.run(
        walrelay_argv("chaos", "replay", str(bad)), capture_output=True, text=True, timeout=budget(60)
    )
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
    # The checker's sentence (walrelay_chaos.verdicts: "acknowledged write k=1 (ok at ...) is missing
    # from ...", before it "CONTEXT: acknowledged writes missing ..."), and the replay says the same.
    first = message.splitlines()[0]
    assert re.search(r"acknowledged writes? .*missing", first), message
    valid, verdict = run_replay(path)  # the planted bug is still in: the same verdict
    assert not valid and verdict.splitlines()[0] == f"invalid: {first}", verdict


# Every nemesis of the schedule module, so that none of them brings in an order that is not the
# seed's (a set iterated in hash order, a timer the mock clock does not drive).
NEMESES: list[Op] = [
    Write(2),
    Delay(0b00111, 50),
    Write(2),
    Settle(20),
    Orphan(0b00011, 300),
    OneWay(0b11000, to_replica=True),
    Write(1),
    Settle(300),
    Reset(0b00100),
    OneWay(0b00001, to_replica=False),
    Write(1),
    Settle(20),
    Heal(),
    ClockJump(5000, back=False),
    Write(2),
    Settle(20),
    PowerFail(0b11111, primary=True),
    NewPrimary(),
    Write(1),
    Settle(3000),
    Bookmark(),
    RestoreCrash(1, by_request=True, late=True),
    PairFailover(2, 1),
    SplitBrain(1),
    Bridge(2, 1),
    Write(1),
    Settle(300),
]


@pytest.mark.parametrize("name", ["RESTORE_AND_UNDO", "STORE_DOWN_THEN_FAILOVER", "OLDER_LONGER_LOG", "NEMESES"])
def test_the_same_seed_gives_the_same_history(name: str, tmp_path: Path) -> None:
    """The determinism self-test: each schedule under three seeds, twice each; one digest and one
    event history per seed."""
    schedule = NEMESES if name == "NEMESES" else getattr(mutants, name)
    for seed in (1, 2, 3):
        histories: list[list[dict[str, Any]]] = [[], []]
        runs = [
            run_schedule(str(tmp_path / f"s{seed}-{i}"), schedule, seed=seed, history=histories[i]).history
            for i in range(2)
        ]
        assert runs[0] == runs[1], (name, seed, runs)
        assert histories[0] == histories[1], (name, seed)
    if name == "NEMESES":  # every fault acted (and was recorded)
        faults = {e["f"] for e in histories[0] if e["process"] == "nemesis"}
        assert faults >= {"start-delay", "orphan", "start-one-way", "reset", "clock-jump", "power-fail"}, faults
        assert any("mid-restore" in str(e["value"]) for e in histories[0]), "the restore was not crashed half way"
        assert any("bridge r2" in str(e["value"]) for e in histories[0]), "no bridge partition"


REPLAYS = sorted((Path(__file__).parent / "replays").glob("*.json"))


@pytest.mark.parametrize("path", REPLAYS, ids=[p.stem for p in REPLAYS])
def test_every_recorded_finding_stays_fixed(path: Path) -> None:
    """tests/replays/: schedules a chaos campaign found failing, kept as regressions. Each name
    says what it found (stale-truncate-during-recovery: a replica that had promised a newer epoch
    compacted its log on a stale primary's TRUNCATE while the new primary was fetching it;
    reply-lost-before-entries-persisted: a replica whose PROMISE could not be sent left the
    APPEND of the same batch in memory only; diverged-below-the-retained-log: a replica holding an
    uncommitted entry older than the primary's retained log was never repaired)."""
    valid, verdict = run_replay(path)
    assert valid, verdict
