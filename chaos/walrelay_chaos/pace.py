"""How slow this machine is right now, so that time budgets scale with it instead of being fixed.

A fixed limit ("the new primary serves within 60 s") is a test of the machine, not of the code:
a CI runner with a CPU-heavy neighbour misses it and the run reports a failure nobody planted.
Budgets that guard a wait (the harness's settle and run limits, the tests' ``fail_after``) are
therefore ``budget(seconds)``: the number measured on a quiet 2-core machine, times
``slowdown()``.

``slowdown()`` times a small fixed workload (hashing and a Python loop, about 20 ms on the quiet
reference machine) a few times and takes the median: a slower CPU and a CPU shared with other
runnable processes both make it take longer. It never goes below 1, and
``WALRELAY_SLOWDOWN=F`` multiplies it (a runner known to be slow, or one that is fast when
measured and loaded later).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time

REFERENCE_S = 0.020  # the workload's median on the quiet reference machine (2 cores, 2026-12-07)
MAX_SLOWDOWN = 20.0


def _workload() -> int:
    h = hashlib.blake2b()
    block = b"x" * 65536
    for _ in range(200):
        h.update(block)
    s = 0
    for i in range(300_000):
        s += i * i % 7
    return s + h.digest()[0]


def slowdown(samples: int = 5) -> float:
    """This machine's slowness now, relative to the quiet reference machine (>= 1)."""
    took = []
    for _ in range(samples):
        started = time.perf_counter()
        _workload()
        took.append(time.perf_counter() - started)
    factor = min(MAX_SLOWDOWN, max(1.0, statistics.median(took) / REFERENCE_S))
    extra = os.environ.get("WALRELAY_SLOWDOWN")
    if extra:
        try:
            factor *= max(1.0, float(extra))
        except ValueError:
            raise ValueError(f"WALRELAY_SLOWDOWN={extra!r} is not a number (a factor >= 1)") from None
    return factor


def budget(seconds: float) -> float:
    """``seconds`` (a budget measured on the quiet reference machine) scaled to this one, now."""
    return seconds * slowdown()
