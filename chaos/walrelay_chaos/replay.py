"""Replay files: one chaos run, written down so that the same run can be made again.

Format (JSON, one object):

    {"harness": "walrelay-chaos-sim/1", "quorum": 3, "seed": 7, "mutant": "ack_after_2",
     "schedule": [{"op": "Write", "count": 2}, ...]}

``harness`` names what runs it and its version: a file written by another harness version is
refused, not guessed at; ``walrelay-chaos-real/1`` is a real-mode run (``walrelay_chaos.real``).
``schedule`` is a list of operations (``walrelay_chaos.schedule``). ``seed`` seeds trio's
scheduling (``sim.deterministic_scheduling``). ``mutant`` (optional) names a planted bug the run
had (``walrelay_chaos.mutants``): the replay plants it too. ``walrelay chaos replay FILE`` runs it
and prints the verdict and, in sim mode, the run's history digest: exit 0 valid, 1 invalid (a
checker failed: its message), 2 a bad file. A real-mode replay runs the same schedule against
processes again: the same faults in the same order, not the same timing.

A replay is exact: time is the mock clock's (entry timestamps too), disk I/O is inline, and the
scheduling order is the seed's, so the same file gives the same history, byte for byte, in any
process (tests/test_chaos_replay.py runs each twice and compares digests).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walrelay_chaos.schedule import Op, ScheduleError, op_from_json, op_to_json, read_json_file

HARNESS = "walrelay-chaos-sim/1"
HARNESS_REAL = "walrelay-chaos-real/1"
HARNESSES = {"sim": HARNESS, "real": HARNESS_REAL}


@dataclass(frozen=True)
class Replay:
    schedule: list[Op]
    quorum: int
    seed: int
    mode: str  # "sim" or "real"
    mutant: str | None  # planted for the run (walrelay_chaos.mutants), or None: the reference
    impl: dict[str, list[str]] | None = None  # real mode: the implementation under test (--impl)


def write_replay(
    path: str | os.PathLike[str],
    schedule: Sequence[Op],
    *,
    quorum: int = 3,
    seed: int = 0,
    mode: str = "sim",
    mutant: str | None = None,
    impl: dict[str, list[str]] | None = None,
) -> Path:
    body: dict[str, Any] = {"harness": HARNESSES[mode], "quorum": quorum, "seed": seed}
    if mutant is not None:
        body["mutant"] = mutant
    if impl is not None:
        body["impl"] = impl
    body["schedule"] = [op_to_json(op) for op in schedule]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return out


def read_replay(path: str | os.PathLike[str]) -> tuple[list[Op], int, int]:
    """The schedule, quorum and seed in a replay file; ScheduleError naming what is wrong."""
    r = load_replay(path)
    return r.schedule, r.quorum, r.seed


def load_replay(path: str | os.PathLike[str]) -> Replay:
    """Everything in a replay file; ScheduleError naming what is wrong."""
    from walrelay_chaos.mutants import MUTANTS

    body = read_json_file(path, ScheduleError)
    if not isinstance(body, dict):
        raise ScheduleError(f"{path}: not a replay file (expected a JSON object)")
    modes = {h: m for m, h in HARNESSES.items()}
    if body.get("harness") not in modes:
        raise ScheduleError(
            f"{path}: written by harness {body.get('harness')!r}; this reads {HARNESS} and {HARNESS_REAL}"
        )
    quorum = body.get("quorum")
    if not isinstance(quorum, int) or isinstance(quorum, bool) or not 1 <= quorum <= 5:
        raise ScheduleError(f"{path}: quorum must be 1..5, got {quorum!r}")
    seed = body.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ScheduleError(f"{path}: seed must be a non-negative integer, got {seed!r}")
    mutant = body.get("mutant")
    if mutant is not None and mutant not in MUTANTS:
        raise ScheduleError(f"{path}: mutant {mutant!r} is not one of {', '.join(MUTANTS)}")
    impl = body.get("impl")
    if impl is not None:
        from walrelay_chaos.real import ImplError, NodeCommands

        if modes[body["harness"]] != "real" or mutant is not None:
            raise ScheduleError(f"{path}: impl goes with a real-mode file and no mutant")
        try:
            impl = NodeCommands.from_json(impl, where=f"{path}: impl").to_json()
        except ImplError as e:
            raise ScheduleError(str(e)) from None
    items = body.get("schedule")
    if not isinstance(items, list):
        raise ScheduleError(f"{path}: schedule must be a list of operations")
    ops = [op_from_json(item, where=f"{path}: schedule[{i}]") for i, item in enumerate(items)]
    return Replay(ops, quorum, seed, modes[body["harness"]], mutant, impl)


def replay_command(path: str | os.PathLike[str]) -> str:
    return f"walrelay chaos replay {path}"


def report_dir_beside(path: str | os.PathLike[str]) -> Path | None:
    """Where ``walrelay chaos replay FILE`` writes the report without ``--out``: beside a replay
    file a campaign wrote (``seed-S/replay.json``, ``seed-S/shrunk/replay.json``) that has no
    report yet (a passing simulated seed's: the campaign keeps only its replay file); None
    otherwise (a failing seed keeps the report of the run that found it)."""
    p = Path(path)
    if p.name != "replay.json" or (p.parent / "history.jsonl").exists():
        return None
    seed_dir = p.parent.parent if p.parent.name == "shrunk" else p.parent
    return p.parent if seed_dir.name.startswith("seed-") else None


def run_replay(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *, beside: bool = False
) -> tuple[bool, str]:
    """(valid, verdict) of one replay; ScheduleError for a bad file. ``out_dir``: write the run's
    report there (history.jsonl, timeline.html, latency.png; ``walrelay_chaos.report``); with
    ``beside`` and no ``out_dir``, beside a campaign's replay file that has none yet
    (``report_dir_beside``). The verdict then ends with a line naming the timeline."""
    from walrelay_chaos.campaign import write_counts
    from walrelay_chaos.mutants import planted
    from walrelay_chaos.sim import run_schedule, scratch_root

    r = load_replay(path)
    kept = ""
    if out_dir is None and beside:
        out_dir = report_dir_beside(path)
        timeline = Path(path).parent / "timeline.html"
        if out_dir is None and Path(path).name == "replay.json" and timeline.exists():
            kept = f"\ntimeline: {timeline} (the campaign's run; --out DIR writes this replay's)"
    planted_note = f" (mutant {r.mutant} planted)" if r.mutant else ""
    events: list[dict[str, Any]] = []
    if r.mode == "real":
        valid, verdict = _run_real_replay(r, planted_note, events)
        return valid, verdict + (_report(out_dir, events, valid, verdict, path, "s") or kept)
    root = tempfile.mkdtemp(prefix="walrelay-replay-", dir=scratch_root())
    try:
        with planted(r.mutant) if r.mutant else contextlib.nullcontext():
            out = run_schedule(root, r.schedule, quorum=r.quorum, seed=r.seed, history=events)
    except AssertionError as e:
        return False, f"invalid{planted_note}: {e}" + (
            _report(out_dir, events, False, str(e), path, "simulated s") or kept
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    c = write_counts(events)
    return True, (
        f"valid{planted_note}: {len(r.schedule)} operations; writes (every branch): {c['ok']} acknowledged, "
        f"{c['fail']} failed, {c['unknown']} unknown; history {out.history}"
    ) + (_report(out_dir, events, True, "", path, "simulated s") or kept)


def _report(
    out_dir: str | os.PathLike[str] | None,
    events: list[dict[str, Any]],
    valid: bool,
    message: str,
    path: str | os.PathLike[str],
    unit: str,
) -> str:
    """Write the report into ``out_dir`` (if given); the line that names its timeline, or ""."""
    if out_dir is None:
        return ""
    from walrelay_chaos import runs
    from walrelay_chaos.report import write_report

    out = Path(out_dir)
    write_report(
        out,
        events,
        verdict=valid,
        message="" if valid else message.splitlines()[0][:500],
        title=f"replay of {path}",
        replay=replay_command(path),
        time_unit=unit,
    )
    seed_dir = out.parent if out.name == "shrunk" else out
    if seed_dir.name.startswith("seed-") and (seed_dir.parent / "results.json").exists():
        runs.refresh(seed_dir.parent)  # the run's page links the new timeline
    return f"\ntimeline: {out / 'timeline.html'}"


def _run_real_replay(r: Replay, planted_note: str, events: list[dict[str, Any]]) -> tuple[bool, str]:
    """A real-mode file runs its schedule against processes again: the same faults in the same
    order, but not the same timing (the operating system schedules the processes)."""
    from walrelay_chaos.campaign import s3_server
    from walrelay_chaos.real import NodeCommands, run_real, scratch_dir

    root = scratch_dir(r.seed)
    try:
        with s3_server() as s3:
            impl = NodeCommands.from_json(r.impl, where="impl") if r.impl else NodeCommands.walrelay(r.mutant)
            out = run_real(root, r.schedule, s3, quorum=r.quorum, impl=impl, history=events)
    except AssertionError as e:
        return False, f"invalid{planted_note}: {e}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return True, (
        f"valid{planted_note} (real mode: the same schedule, not the same timing): {len(r.schedule)} operations; "
        f"{len(out.ok)} acknowledged, {len(out.failed)} failed, {len(out.unknown)} unknown, in {out.seconds:.1f} s"
    )
