"""Time budgets scale with the machine (walrelay_chaos.pace), never below the quiet-machine value."""

from __future__ import annotations

import pytest

from walrelay_chaos import pace


def test_a_budget_is_never_below_the_quiet_machine_value_and_follows_the_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WALRELAY_SLOWDOWN", raising=False)
    base = pace.slowdown()
    assert 1.0 <= base <= pace.MAX_SLOWDOWN
    assert pace.budget(60) >= 60
    monkeypatch.setenv("WALRELAY_SLOWDOWN", "3")
    assert pace.slowdown() >= 3.0  # at least the factor asked for, on top of what was measured
    monkeypatch.setenv("WALRELAY_SLOWDOWN", "fast")
    with pytest.raises(ValueError, match="WALRELAY_SLOWDOWN='fast' is not a number"):
        pace.slowdown()


def test_a_slower_workload_gives_a_larger_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the factor measures: the workload's time against the reference (here made 4x slower
    by lowering the reference), clamped to MAX_SLOWDOWN."""
    monkeypatch.delenv("WALRELAY_SLOWDOWN", raising=False)
    monkeypatch.setattr(pace, "REFERENCE_S", pace.REFERENCE_S / 1000)
    assert pace.slowdown() == pace.MAX_SLOWDOWN
