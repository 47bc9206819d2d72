"""Directed schedules through the door: the chaos mutant table's schedules, run as real processes.

Each planted bug of the reference (walrelay_chaos.mutants) comes with a directed schedule: a short
run that the reference passes and the bug fails. Run against another implementation (its
implementation file, both roles), the same schedules are a set of known-dangerous shapes that a
random campaign reaches rarely. Run against the reference with each bug planted in its processes
(``NodeCommands.walrelay(mutant)``), they measure what real mode catches from the outside (the
kill table): a schedule that needs what real mode cannot do (restores, clock jumps) is skipped in
part, and its verdict says so.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from walrelay.errors import WalrelayError
from walrelay_chaos.mutants import MUTANTS
from walrelay_chaos.real import NodeCommands, run_real
from walrelay_chaos.s3server import S3Server


@dataclass
class DirectedResult:
    schedule: str  # the mutant whose directed schedule this is
    impl: str
    verdict: str  # valid | invalid | unknown
    why: str
    acknowledged: int
    skipped: list[str]
    seconds: float


def run_one(name: str, commands: NodeCommands, impl: str, s3: S3Server, root: str) -> DirectedResult:
    schedule = MUTANTS[name].directed
    t0 = time.monotonic()
    os.makedirs(root, exist_ok=True)
    try:
        out = run_real(root, schedule, s3, impl=commands)
    except AssertionError as e:
        return DirectedResult(name, impl, "invalid", str(e)[:2000], 0, [], time.monotonic() - t0)
    except (WalrelayError, OSError) as e:
        return DirectedResult(name, impl, "unknown", f"{type(e).__name__}: {e}"[:2000], 0, [], time.monotonic() - t0)
    return DirectedResult(name, impl, "valid", "", len(out.ok), list(out.skipped), time.monotonic() - t0)


def run_directed(
    commands: NodeCommands,
    impl: str,
    s3: S3Server,
    *,
    only: list[str] | None = None,
    progress: Callable[[DirectedResult], None] | None = None,
) -> list[DirectedResult]:
    """Every directed schedule (or ``only`` these) against one implementation."""
    results = []
    for name in only or list(MUTANTS):
        r = run_one(name, commands, impl, s3, tempfile.mkdtemp(prefix=f"walrelay-directed-{name}-"))
        results.append(r)
        if progress is not None:
            progress(r)
    return results


def kill_table(
    s3: S3Server, *, only: list[str] | None = None, progress: Callable[[DirectedResult], None] | None = None
) -> list[DirectedResult]:
    """Each reference bug planted in every process, run through its own directed schedule in real
    mode: ``invalid`` means real mode caught it from the outside."""
    results = []
    for name in only or list(MUTANTS):
        commands = NodeCommands.walrelay(name)
        r = run_one(name, commands, f"walrelay + {name}", s3, tempfile.mkdtemp(prefix=f"walrelay-kill-{name}-"))
        results.append(r)
        if progress is not None:
            progress(r)
    return results


def line(r: DirectedResult) -> str:
    extra = f" (skipped in real mode: {', '.join(sorted(set(r.skipped)))})" if r.skipped else ""
    text = f"{r.verdict.upper():<8} {r.schedule:<42} {r.acknowledged:>4} acked {r.seconds:6.1f}s{extra}"
    if r.why:
        text += f"\n         {r.why.splitlines()[0][:300]}"
    return text
