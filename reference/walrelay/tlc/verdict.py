"""Judge one TLC run against its config's ``expect:`` header.

Kept apart from running and printing so the rule is in one place and easy to test: a config
passes only on exactly the outcome it expects. A mutant that violates a *different* invariant
fails, because then the planted bug was caught by accident, not by the property meant to catch
it; and an ``ok`` config fails on anything but a clean exit 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from walrelay.tlc.configs import Expectation
from walrelay.tlc.tlcproc import TlcRun

VIOLATIONS = ("invariant", "action property", "property", "temporal")
_VIOLATION_EXITS = (12, 13)


@dataclass(frozen=True)
class Verdict:
    """``got`` is the short outcome for the table; ``why`` explains a failure in one sentence."""

    got: str
    passed: bool
    why: str = ""


def describe(run: TlcRun, expect: Expectation) -> str:
    """Short text for what TLC found, e.g. ``ok``, ``violation Inv``, ``reached NotReached``."""
    if run.outcome in VIOLATIONS:
        if run.violated is None:
            return "temporal violation (unnamed)"
        if expect.kind == "witness" and run.violated == expect.name:
            return f"reached {run.violated}"
        return f"violation {run.violated}"
    if run.outcome == "timeout":
        return f"timeout after {run.seconds:.0f}s"
    if run.outcome == "assert":
        return "assert failed"
    if run.outcome in ("error", "crash"):
        return f"{run.outcome} (exit {run.exit_code})"
    return run.outcome


def judge(run: TlcRun, expect: Expectation) -> Verdict:
    """PASS iff TLC reported exactly the expected outcome (and the matching exit code)."""
    got = describe(run, expect)
    if expect.kind == "ok":
        if run.outcome == "ok" and run.exit_code == 0:
            return Verdict(got, True)
        return Verdict(got, False, f"expected no error, got {got}")
    if run.outcome in VIOLATIONS and run.violated == expect.name and run.exit_code in _VIOLATION_EXITS:
        return Verdict(got, True)
    if run.outcome == "ok":
        return Verdict(got, False, f"expected {expect}, but TLC found no error")
    if run.outcome in VIOLATIONS and run.violated is None:
        return Verdict(
            got,
            False,
            "TLC does not say which temporal property failed; list only "
            f"{expect.name} under PROPERTY in this config so the violation can be attributed",
        )
    return Verdict(got, False, f"expected {expect}, got {got}")
