"""Coverage ("sometimes") assertions: a batch that never reached a dangerous case is not valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from walrelay_chaos import campaign, coverage
from walrelay_chaos.campaign import run_campaign
from walrelay_chaos.schedule import Settle, Write


def _ev(process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "value": value, **extra}


def test_a_takeover_counts_only_with_writes_in_flight_after_an_acknowledged_one() -> None:
    acked = [_ev(0, "invoke", "write", 1), _ev(0, "ok", "write", 1)]
    in_flight = [_ev(0, "invoke", "write", 2)]
    crash = [_ev("nemesis", "info", "crash-primary", "p0")]
    final = [
        _ev("nemesis", "info", "crash-primary", "p0", final=True),
        _ev("nemesis", "info", "new-primary", "p1 (the final takeover)", final=True),
    ]
    assert coverage.from_history(acked + in_flight + crash) == {"takeover-with-writes-in-flight"}
    assert coverage.from_history(acked + crash + in_flight) == set()  # nothing in flight at the crash
    assert coverage.from_history(in_flight + crash) == set()  # nothing acknowledged: nothing to lose
    assert coverage.from_history(acked + in_flight + final) == set()  # the harness's own last takeover
    answered = [_ev(0, "info", "write", 2, error="connection: closed")]
    assert coverage.from_history(acked + in_flight + answered + crash) == set()


def test_a_fenced_answer_counts_as_a_fenced_stale_primary() -> None:
    fenced = [_ev(0, "invoke", "write", 1), _ev(0, "info", "write", 1, error="fenced: replica 2 promised epoch 3 > 1")]
    other = [_ev(0, "invoke", "write", 1), _ev(0, "fail", "write", 1, error="not serving")]
    assert coverage.from_history(fenced) == {"stale-primary-fenced"}
    assert coverage.from_history(other) == set()


def test_a_batch_that_avoids_the_dangerous_cases_is_unknown_when_coverage_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A harness whose schedules have no faults passes every checker: only coverage says so."""
    monkeypatch.setattr(campaign, "random_schedule", lambda rng: [Write(2), Settle(300)])
    result = run_campaign(tmp_path, seeds=3, require_coverage=True, progress=lambda line: None)
    body = json.loads((tmp_path / "results.json").read_text())
    assert result.exit_code == 2 and body["valid"] == "unknown" and body["invalid"] == []
    faults = {
        "takeover-with-writes-in-flight",
        "stale-primary-fenced",
        "restore-inside-unuploaded-window",
        "ambiguous-put",
        "retention-deleted-during-restore",
    }
    assert faults <= set(body["coverage_missing"])  # segments are still cut, by size or age: no fault needed
    result = run_campaign(tmp_path / "lax", seeds=3, progress=lambda line: None)
    assert result.exit_code == 0  # not required: valid, and results.json still says what was missed
    assert json.loads((tmp_path / "lax" / "results.json").read_text())["coverage_missing"]


def test_a_ci_batch_reaches_every_dangerous_case(tmp_path: Path) -> None:
    """The simulation campaign CI runs: 300 seeds, all valid, every coverage target reached."""
    result = run_campaign(tmp_path, seeds=300, require_coverage=True, progress=lambda line: None)
    body = json.loads((tmp_path / "results.json").read_text())
    assert result.exit_code == 0 and body["valid"] is True, body["invalid"] or body["errors"] or body["coverage"]
    assert body["coverage_missing"] == [] and all(n > 0 for n in body["coverage"].values())
