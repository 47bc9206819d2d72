"""How fast the chaos harness runs (``walrelay bench`` part (f)): not a test.

* simulated seconds per wall second: the whole simulated cluster (5 replicas, a primary, the
  archive with its store, clients) under a steady write load (``per_tick`` writes every 100 ms of
  mock time), then the final checks; 1.0 would be real time (issue 6 aims for at least 50x). The
  ratio falls as the load grows: each write costs real work (capture, 5 replica fsyncs, archive);
  only idle time is free;
* schedules per minute: random campaign seeds (the sim mix of faults), judged, for a while.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Iterator

from walrelay_chaos.campaign import random_schedule
from walrelay_chaos.schedule import Op, Settle, Write
from walrelay_chaos.sim import run_schedule, scratch_root


def steady_load(simulated_s: float, per_tick: int) -> list[Op]:
    return [op for _ in range(int(simulated_s * 10)) for op in (Write(per_tick), Settle(100))]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The simulated nodes run in this process and log every fault they meet: not bench output."""
    log = logging.getLogger("walrelay")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def sim_speed(simulated_s: float = 30.0, per_tick: int = 4) -> tuple[float, float, int]:
    """(simulated seconds, wall seconds, writes acknowledged) of one steady-load run."""
    root = tempfile.mkdtemp(prefix="walrelay-speed-", dir=scratch_root())
    try:
        started = time.perf_counter()
        with _quiet():
            out = run_schedule(root, steady_load(simulated_s, per_tick), seed=0)
        return out.simulated_s, time.perf_counter() - started, len(out.ok)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def schedules_per_minute(seconds: float) -> tuple[int, float]:
    """(runs, wall seconds): random seeds from 0 for about ``seconds``."""
    started = time.perf_counter()
    runs = 0
    while time.perf_counter() - started < seconds:
        root = tempfile.mkdtemp(prefix="walrelay-speed-", dir=scratch_root())
        try:
            with _quiet():
                run_schedule(root, random_schedule(random.Random(runs)), seed=runs)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        runs += 1
    return runs, time.perf_counter() - started
