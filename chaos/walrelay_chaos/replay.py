"""Replay files: one chaos run, written down so that the same run can be made again.

Format (JSON, one object):

    {"harness": "walrelay-chaos-sim/1", "quorum": 3, "seed": 7,
     "schedule": [{"op": "Write", "count": 2}, ...]}

``harness`` names what runs it and its version: a file written by another harness version is
refused, not guessed at. ``schedule`` is a list of operations (``walrelay_chaos.schedule``).
``seed`` seeds trio's scheduling (``sim.deterministic_scheduling``). ``walrelay chaos replay FILE``
runs it on the simulated cluster (``walrelay_chaos.sim``) and prints the verdict and the run's
history digest: exit 0 valid, 1 invalid (a checker failed: its message), 2 a bad file.

A replay is exact: time is the mock clock's (entry timestamps too), disk I/O is inline, and the
scheduling order is the seed's, so the same file gives the same history, byte for byte, in any
process (tests/test_chaos_replay.py runs each twice and compares digests).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from walrelay_chaos.schedule import Op, ScheduleError, op_from_json, op_to_json

HARNESS = "walrelay-chaos-sim/1"


def write_replay(path: str | os.PathLike[str], schedule: Sequence[Op], *, quorum: int = 3, seed: int = 0) -> Path:
    body = {"harness": HARNESS, "quorum": quorum, "seed": seed, "schedule": [op_to_json(op) for op in schedule]}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return out


def read_replay(path: str | os.PathLike[str]) -> tuple[list[Op], int, int]:
    """The schedule, quorum and seed in a replay file; ScheduleError naming what is wrong."""
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ScheduleError(f"{path}: cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScheduleError(f"{path}: not JSON ({e})") from None
    if not isinstance(body, dict):
        raise ScheduleError(f"{path}: not a replay file (expected a JSON object)")
    if body.get("harness") != HARNESS:
        raise ScheduleError(f"{path}: written by harness {body.get('harness')!r}; this is {HARNESS}")
    quorum = body.get("quorum")
    if not isinstance(quorum, int) or isinstance(quorum, bool) or not 1 <= quorum <= 5:
        raise ScheduleError(f"{path}: quorum must be 1..5, got {quorum!r}")
    seed = body.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ScheduleError(f"{path}: seed must be a non-negative integer, got {seed!r}")
    items = body.get("schedule")
    if not isinstance(items, list):
        raise ScheduleError(f"{path}: schedule must be a list of operations")
    ops = [op_from_json(item, where=f"{path}: schedule[{i}]") for i, item in enumerate(items)]
    return ops, quorum, seed


def replay_command(path: str | os.PathLike[str]) -> str:
    return f"walrelay chaos replay {path}"


def run_replay(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """(valid, verdict) of one replay; ScheduleError for a bad file."""
    from walrelay_chaos.sim import run_schedule, scratch_root

    schedule, quorum, seed = read_replay(path)
    root = tempfile.mkdtemp(prefix="walrelay-replay-", dir=scratch_root())
    try:
        out = run_schedule(root, schedule, quorum=quorum, seed=seed)
    except AssertionError as e:
        return False, f"invalid: {e}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return True, (
        f"valid: {len(schedule)} operations; last branch's writes: {len(out.ok)} acknowledged, "
        f"{len(out.failed)} failed, {len(out.unknown)} unknown; history {out.history}"
    )
