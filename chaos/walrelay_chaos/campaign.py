"""A chaos campaign: many seeded random schedules on the simulated cluster, each judged.

Seed ``s`` gives one schedule (``random_schedule(Random(s))``: the same mix of workload and faults
the property tests draw) and seeds the run's scheduling, so ``seed`` alone names a run. Every seed
gets a replay file (``seed-S/replay.json``) that ``walrelay chaos replay`` runs again, exactly; a
failing one also its report and a shrunk reproduction (``seed-S/shrunk/``: ``mutants.shrink``
under the same seed, within the campaign's shrink budget). Hypothesis shrinks schedules in the
tests; a campaign explores more of them, for longer.

The run directory (``walrelay_chaos.runs``: by default ``runs/<timestamp>-<mode>/``, with
``runs/latest``) gets ``results.json``, written when the campaign starts ("running") and when it
ends:

    {"valid": true | false | "unknown" | "interrupted" | "running", "mode", "mutant", "runs": N,
     "seeds": [first, last], "seconds": T, "simulated_seconds": S, "real_run_seconds": R,
     "coverage": {target: runs}, "coverage_required", "coverage_missing": [...],
     "invalid": [{"seed", "ops", "replay", "timeline", "message", "verdicts": [record, ...],
                  "shrunk": null | {"ops", "schedule", "replay", "timeline", "message", "verdicts", "runs",
                                    "seconds"}}],
     "errors": [{"seed", "ops", "replay", "timeline", "error"}],
     "shrink_budget": B, "shrink_runs": U,
     "seed_runs": [{"seed", "verdict": "valid" | "invalid" | "unknown", "ops", "writes": {"ok", "fail", "unknown"}}]}

``simulated_seconds`` is the mock-clock time the valid runs covered: divided by ``seconds`` it is
how much faster than real time the simulation runs (issue 6 asks for at least 50x). ``writes``
counts the writes of the whole history, every branch and stale primary included. ``verdicts``: the
checker's records (``walrelay_chaos.verdicts``: property, operations involved, expected, found,
sentence), [] for a failure that has none.

``valid`` is false if a checker failed on any run, "unknown" if the harness itself failed on one
(an exception that is not a checker's verdict), true otherwise; ``walrelay chaos run`` exits 0, 1
or 2 accordingly. Ctrl-C stops the campaign at once ("interrupted", exit 130).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from walrelay_chaos import coverage, sim
from walrelay_chaos import schedule as op
from walrelay_chaos.coverage import Tally
from walrelay_chaos.replay import replay_command, write_replay
from walrelay_chaos.schedule import Op
from walrelay_chaos.sim import N, run_schedule, scratch_root

if TYPE_CHECKING:
    from walrelay_chaos.real import NodeCommands

MAX_OPS = 25


def op_mix(rng: random.Random, *, settles: tuple[int, ...] = (1, 20, 300)) -> list[tuple[type, Callable[[], Op]]]:
    """The random mix, as (op type, draw) pairs, with the weights of the property tests' strategy
    (writes and settles twice). Its order and draws are part of what a seed means: a change here
    changes every seed's schedule."""
    return [
        (op.Write, lambda: op.Write(rng.randint(1, 4))),
        (op.Write, lambda: op.Write(rng.randint(1, 4))),
        (op.Settle, lambda: op.Settle(rng.choice(settles))),
        (op.Settle, lambda: op.Settle(rng.choice(settles))),
        (op.Cut, lambda: op.Cut(rng.randint(1, 2**N - 1))),
        (op.Heal, lambda: op.Heal()),
        (op.CrashPrimary, lambda: op.CrashPrimary()),
        (op.NewPrimary, lambda: op.NewPrimary()),
        (op.WriteStale, lambda: op.WriteStale(rng.randint(1, 2))),
        (op.CrashReplica, lambda: op.CrashReplica(rng.randrange(N))),
        (op.LoseDisk, lambda: op.LoseDisk(rng.randrange(N))),
        (op.StoreDown, lambda: op.StoreDown(rng.random() < 0.5)),
        (op.StoreUp, lambda: op.StoreUp()),
        (op.Check, lambda: op.Check()),
        (op.Bookmark, lambda: op.Bookmark()),
        (op.Restore, lambda: op.Restore(rng.randint(0, 7), rng.random() < 0.5)),
        (
            op.MinorityFailover,
            lambda: op.MinorityFailover(rng.randrange(N), rng.randint(1, 3), rng.random() < 0.5, rng.random() < 0.5),
        ),
        (op.PairFailover, lambda: op.PairFailover(rng.randrange(len(op.PAIRS)), rng.randint(1, 3))),
        (op.SplitBrain, lambda: op.SplitBrain(rng.randint(1, 2))),
        (op.OneWay, lambda: op.OneWay(rng.randint(1, 2**N - 1), rng.random() < 0.5)),
        (op.Delay, lambda: op.Delay(rng.randint(1, 2**N - 1), rng.choice([5, 50, 500]))),
        (op.Reset, lambda: op.Reset(rng.randint(1, 2**N - 1))),
        (op.Orphan, lambda: op.Orphan(rng.randint(1, 2**N - 1), rng.choice([20, 300, 1000]))),
        (op.ClockJump, lambda: op.ClockJump(rng.choice([1, 1000, 5000, 60_000]), rng.random() < 0.3)),
        # A power loss takes several machines at once (a rack): often all five replicas.
        (op.PowerFail, lambda: op.PowerFail(rng.choice([2**N - 1, rng.randint(1, 2**N - 1)]), rng.random() < 0.5)),
        (op.RestoreCrash, lambda: op.RestoreCrash(rng.randint(0, 7), rng.random() < 0.5, rng.random() < 0.5)),
        (op.TornRename, lambda: op.TornRename(rng.randrange(N))),
        (op.SlowStore, lambda: op.SlowStore(rng.choice([50, 500, 3000]))),
        (op.Bridge, lambda: op.Bridge(rng.randrange(N), rng.randint(1, 2))),
    ]


def random_op(rng: random.Random) -> Op:
    return rng.choice(op_mix(rng))[1]()


def random_schedule(rng: random.Random) -> list[Op]:
    return [random_op(rng) for _ in range(rng.randint(1, MAX_OPS))]


@dataclass
class CampaignResult:
    runs: int = 0
    first_seed: int = 0
    mode: str = "sim"
    mutant: str | None = None
    impl: NodeCommands | None = None  # real mode: another implementation (--impl), kept in replay files
    coverage: Tally | None = None  # runs that reached each coverage target
    require_coverage: bool = False  # a target no run reached makes the batch "unknown"
    seconds: float = 0.0
    simulated_seconds: float = 0.0  # mock-clock time of the valid runs (sim mode)
    real_seconds: float = 0.0  # wall time of the valid runs (real mode)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    seed_runs: list[dict[str, Any]] = field(default_factory=list)  # every seed: verdict, ops, write counts
    shrink_budget: int = 0  # runs the campaign may spend shrinking failing seeds, in all
    shrink_runs: int = 0  # runs spent so far
    interrupted: bool = False  # Ctrl-C: the verdict is "interrupted", whatever ran before
    running: bool = False  # results.json written at the start: the campaign has not ended

    @property
    def coverage_missing(self) -> list[str]:
        return self.coverage.missing if self.coverage is not None else []

    @property
    def verdict(self) -> bool | str:
        if self.running:
            return "running"
        if self.interrupted:
            return "interrupted"
        if self.invalid:
            return False
        return "unknown" if self.errors or (self.require_coverage and self.coverage_missing) else True

    @property
    def exit_code(self) -> int:
        verdict = self.verdict
        if verdict == "interrupted":
            return 130
        if verdict is False:
            return 1
        return 0 if verdict is True else 2

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.verdict,
            "mode": self.mode,
            "mutant": self.mutant,
            "runs": self.runs,
            "seeds": [self.first_seed, self.first_seed + self.runs - 1] if self.runs else [],
            "seconds": round(self.seconds, 3),
            "simulated_seconds": round(self.simulated_seconds, 3),
            "real_run_seconds": round(self.real_seconds, 3),
            "coverage": self.coverage.counts if self.coverage is not None else {},
            "coverage_required": self.require_coverage,
            "coverage_missing": self.coverage_missing,
            "invalid": self.invalid,
            "errors": self.errors,
            "shrink_budget": self.shrink_budget,
            "shrink_runs": self.shrink_runs,
            "seed_runs": self.seed_runs,
        }


def default_shrink_budget(mode: str) -> int:
    """Runs a campaign spends shrinking failing seeds, in all: a simulated run takes about 0.1 s,
    a real one about 10 s."""
    return SHRINK_BUDGET_SIM if mode == "sim" else SHRINK_BUDGET_REAL


SHRINK_BUDGET_SIM = 100
SHRINK_BUDGET_REAL = 10


def is_interrupt(e: BaseException | None) -> bool:
    """Whether ``e`` is, holds or was raised while handling a KeyboardInterrupt (Ctrl-C): trio wraps
    it in an ExceptionGroup, and real mode turns such a group into a HarnessError (whose context
    keeps it)."""
    seen: set[int] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, KeyboardInterrupt):
            return True
        if isinstance(x, BaseExceptionGroup):
            stack.extend(x.exceptions)
        stack += [x.__cause__, x.__context__]
    return False


def _clip(text: str, limit: int = 600) -> str:
    """A verdict sentence whole on the console (they are one readable line); only a runaway
    message is cut, and then visibly."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_message(e: BaseException) -> str:
    """A checker's verdict in one line: its ``sentence()`` if it has one (a structured failure
    record), else the first line of its text."""
    for record in (e, *getattr(e, "verdicts", ())[:1]):  # walrelay_chaos.verdicts.Violation: its records
        sentence = getattr(record, "sentence", None)
        if callable(sentence):
            with contextlib.suppress(Exception):
                return str(sentence())
    text = str(e).strip()
    return text.splitlines()[0][:500] if text else type(e).__name__


def verdict_records(e: BaseException) -> list[dict[str, Any]]:
    """A checker failure's structured records (``walrelay_chaos.verdicts.Violation``: the property,
    the operations involved, expected and found), as JSON; [] for a plain AssertionError."""
    records = []
    for v in getattr(e, "verdicts", ()):
        with contextlib.suppress(Exception):
            records.append(dict(v.to_json()))
    return records


def write_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    """Writes by outcome over the whole history (every branch, the stale primaries' too): ok,
    fail, and unknown (info, or still in flight at the end)."""
    counts = {"ok": 0, "fail": 0, "unknown": 0}
    pending: dict[Any, bool] = {}  # process -> its open invoke is a write
    for e in events:
        p = e.get("process")
        if p == "nemesis":
            continue
        if e.get("type") == "invoke":
            pending[p] = e.get("f") == "write"
        elif pending.pop(p, False):
            counts["ok" if e.get("type") == "ok" else "fail" if e.get("type") == "fail" else "unknown"] += 1
    counts["unknown"] += sum(pending.values())
    return counts


def format_schedule(schedule: list[Op]) -> list[str]:
    return [repr(o) for o in schedule]


@dataclass
class Played:
    """One run of a schedule: its verdict (True, False: a checker failed, "unknown": the harness
    failed), the checker's or the harness's message, and its history."""

    verdict: bool | str
    message: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    reached: set[str] = field(default_factory=set)
    detail: str = ""  # the harness failure's whole traceback
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # a checker's records (verdicts.Verdict.to_json)
    simulated_s: float = 0.0
    real_s: float = 0.0


def run_campaign(
    out_dir: Path,
    *,
    seeds: int,
    first_seed: int = 0,
    minutes: float | None = None,
    mode: str = "sim",
    impl: NodeCommands | None = None,
    mutant: str | None = None,
    require_coverage: bool = False,
    shrink_budget: int | None = None,
    progress: Callable[[str], None] = print,
) -> CampaignResult:
    """Run seeds ``first_seed ..`` until ``seeds`` ran or ``minutes`` passed; write results.json
    (at the start, as "running", and at the end) and the run's index.html.

    ``mode`` "sim": the simulated cluster, exact replays; "real": OS processes over TCP with a real
    S3-protocol server (``walrelay_chaos.real``). Every seed gets ``seed-S/replay.json``; a failing
    one (every one in real mode) also its history, timeline.html and latency.png (and in real mode
    the processes' logs of a failing run). A failing seed is then shrunk (``mutants.shrink``, with
    the same seed) while ``shrink_budget`` runs remain (default: ``default_shrink_budget``; 0: no
    shrinking), into ``seed-S/shrunk/`` with its own replay file and report. ``mutant``: plant that
    bug (in this process in sim mode, in every node process in real mode); replay files record it.

    Ctrl-C (KeyboardInterrupt) stops the campaign at once: what it started is stopped, results.json
    says "interrupted", and the result comes back with ``interrupted`` set (no exception)."""
    if mode not in ("sim", "real"):
        raise ValueError(f"mode must be sim or real, not {mode!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = coverage.TARGETS if mode == "sim" else coverage.REAL_TARGETS
    result = CampaignResult(
        first_seed=first_seed,
        mode=mode,
        mutant=mutant,
        impl=impl,
        coverage=Tally(targets),
        require_coverage=require_coverage,
        shrink_budget=default_shrink_budget(mode) if shrink_budget is None else shrink_budget,
        running=True,
    )
    _write_results(out_dir, result)
    started = time.monotonic()
    deadline = None if minutes is None else started + minutes * 60
    try:
        with contextlib.ExitStack() as stack:
            s3 = None
            if mode == "real":
                from walrelay_chaos.real import NodeCommands

                s3 = stack.enter_context(s3_server())
                impl = impl or NodeCommands.walrelay(mutant)
            elif mutant is not None:
                from walrelay_chaos.mutants import planted

                stack.enter_context(planted(mutant))
            for seed in range(first_seed, first_seed + seeds):
                if deadline is not None and time.monotonic() >= deadline:
                    progress(f"time is up after {result.runs} runs")
                    break
                _one_run(out_dir, seed, result, s3, impl, progress, f"[{result.runs + 1}/{seeds}] seed {seed}:")
                result.seconds = time.monotonic() - started
    except BaseException as e:
        if not is_interrupt(e):
            raise
        result.interrupted = True
    result.running = False
    result.seconds = time.monotonic() - started
    _write_results(out_dir, result)
    from walrelay_chaos import runs

    runs.refresh(out_dir)
    return result


def _write_results(out_dir: Path, result: CampaignResult | MutantsResult) -> None:
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "results.json")


def _play(schedule: list[Op], seed: int, s3: Any, impl: NodeCommands | None, *, logs_to: Path | None = None) -> Played:
    """Run ``schedule`` once (real mode if ``s3``) and judge it. A Ctrl-C during the run comes out
    as KeyboardInterrupt, whatever the harness wrapped it in. ``logs_to``: real mode, where to keep
    the processes' logs if the run failed."""
    real = s3 is not None
    played = Played(True)
    if real:
        from walrelay_chaos.real import run_real, scratch_dir

        root = scratch_dir(seed)
    else:
        root = tempfile.mkdtemp(prefix=f"walrelay-chaos-{seed}-", dir=scratch_root())
    reached: list[str] = []  # coverage targets the simulation reports (sim.EVENT_HOOK)
    try:
        if real:
            out = run_real(root, schedule, s3, history=played.events, impl=impl)
            reached.extend(out.reached)
            played.real_s = out.seconds
        else:
            saved, sim.EVENT_HOOK = sim.EVENT_HOOK, reached.append
            try:
                sim_out = run_schedule(root, schedule, seed=seed, history=played.events)
            finally:
                sim.EVENT_HOOK = saved
            played.simulated_s = sim_out.simulated_s
    except BaseException as e:
        if is_interrupt(e):
            raise KeyboardInterrupt from None
        if isinstance(e, AssertionError):
            played.verdict, played.message = False, failure_message(e)
            played.verdicts = verdict_records(e)
        elif isinstance(e, Exception):  # the harness failed, not the system under test: no verdict
            played.verdict = "unknown"
            played.message = "".join(traceback.format_exception_only(e)).strip()
            played.detail = getattr(e, "detail", "") or "".join(traceback.format_exception(e))
        else:
            raise
    finally:
        played.reached = coverage.from_history(played.events) | set(reached)
        if real and played.verdict is not True and logs_to is not None:
            from walrelay_chaos.real import dump_logs

            dump_logs(root, logs_to)
        shutil.rmtree(root, ignore_errors=True)
    return played


def _report(run_dir: Path, played: Played, *, title: str, replay: Path, real: bool) -> Path:
    from walrelay_chaos.report import write_report

    write_report(
        run_dir,
        played.events,
        verdict=played.verdict,
        message=played.message,
        title=title,
        replay=replay_command(replay),
        time_unit="s" if real else "simulated s",
    )
    return run_dir / "timeline.html"


def _one_run(
    out_dir: Path,
    seed: int,
    result: CampaignResult,
    s3: Any,
    impl: NodeCommands | None,
    progress: Callable[[str], None],
    head: str,
) -> None:
    """Run one seed, add its verdict to ``result`` and print it (after ``head``); write its replay
    file (every seed), its report (if it failed, or ran for real) and, if it failed, its shrunk
    reproduction (printed first: the shortest way to see the bug)."""
    real = s3 is not None
    if real:
        from walrelay_chaos.real import random_real_schedule

        schedule = random_real_schedule(random.Random(seed))
        progress(f"{head} {len(schedule)} ops against processes...")
    else:
        schedule = random_schedule(random.Random(seed))
    run_dir = out_dir / f"seed-{seed}"
    path = _write_replay(run_dir / "replay.json", schedule, seed, result)
    played = _play(schedule, seed, s3, impl, logs_to=run_dir / "logs")
    assert result.coverage is not None
    result.coverage.add(played.reached)
    counts = write_counts(played.events)
    word = "valid" if played.verdict is True else "invalid" if played.verdict is False else "unknown"
    result.seed_runs.append({"seed": seed, "verdict": word, "ops": len(schedule), "writes": counts})
    result.runs += 1  # from here on, a Ctrl-C leaves this seed's verdict counted (its report may be missing)
    timeline = run_dir / "timeline.html"
    entry: dict[str, Any] = {"seed": seed, "ops": len(schedule), "replay": str(path), "timeline": str(timeline)}
    if played.verdict is True:
        result.simulated_seconds += played.simulated_s
        result.real_seconds += played.real_s
        summary = f"{counts['ok']} acknowledged, {counts['fail']} failed, {counts['unknown']} unknown"
        text = f"{len(schedule)} ops: valid ({summary})"
    elif played.verdict is False:
        result.invalid.append({**entry, "message": played.message, "verdicts": played.verdicts, "shrunk": None})
        text = f"{len(schedule)} ops: INVALID: {_clip(played.message)}"
    else:
        result.errors.append({**entry, "error": played.message})
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(played.detail)
        text = f"{len(schedule)} ops: HARNESS ERROR: {played.message}"
    progress(f"{head} {text}")
    if played.verdict is True and not real:
        return
    _report(run_dir, played, title=f"walrelay chaos, {result.mode} mode, seed {seed}", replay=path, real=real)
    if played.verdict is True:
        return
    if played.verdict is not False:
        progress(f"    replay: {replay_command(path)}\n    timeline: {timeline}")
        return
    entry = result.invalid[-1]
    _shrink_seed(run_dir, schedule, seed, played, result, s3, impl, progress, entry)
    shrunk = entry["shrunk"]
    lines = []
    if shrunk is not None:
        lines += [
            f"    shrunk to {shrunk['ops']} ops ({shrunk['runs']} runs, {shrunk['seconds']:.1f} s): "
            + ", ".join(shrunk["schedule"]),
            f"      {_clip(shrunk['message'])}" if shrunk["message"] != played.message else "",
            f"      replay: {replay_command(shrunk['replay'])}",
            f"      timeline: {shrunk['timeline']}",
        ]
    lines += [f"    original ({len(schedule)} ops): {replay_command(path)}", f"      timeline: {timeline}"]
    progress("\n".join(line for line in lines if line))


def _write_replay(path: Path, schedule: list[Op], seed: int, result: CampaignResult) -> Path:
    return write_replay(
        path,
        schedule,
        seed=seed,
        mode=result.mode,
        mutant=result.mutant,
        impl=result.impl.to_json() if result.impl is not None else None,
    )


def _shrink_seed(
    run_dir: Path,
    schedule: list[Op],
    seed: int,
    played: Played,
    result: CampaignResult,
    s3: Any,
    impl: NodeCommands | None,
    progress: Callable[[str], None],
    entry: dict[str, Any],
) -> None:
    """Shrink a failing seed's schedule within what is left of the campaign's shrink budget; write
    ``seed-S/shrunk/`` (replay file and report of the shortest schedule found that still fails a
    checker with the same seed) and describe it in ``entry["shrunk"]``. A Ctrl-C while shrinking
    keeps what was found so far, then goes on as an interrupt."""
    from walrelay_chaos.mutants import shrink

    left = result.shrink_budget - result.shrink_runs
    if left <= 0:
        if result.shrink_budget:
            progress(f"    not shrunk: the shrink budget ({result.shrink_budget} runs) is spent")
        return
    best: list[tuple[list[Op], Played]] = [(schedule, played)]  # the shortest failing schedule so far
    started = time.monotonic()
    runs = 0

    def fails(candidate: list[Op]) -> bool:
        nonlocal runs
        runs += 1
        result.shrink_runs += 1
        p = _play(candidate, seed, s3, impl)
        if p.verdict is not False:
            return False
        best[0] = (candidate, p)  # shrink keeps every candidate that fails: the last one is its answer
        progress(f"    shrinking seed {seed}: {len(schedule)} -> {len(candidate)} ops (run {runs} of at most {left})")
        return True

    interrupt: KeyboardInterrupt | None = None
    try:
        shrink(schedule, fails, max_runs=left)
    except KeyboardInterrupt as e:  # keep the shortest schedule found before Ctrl-C
        interrupt = e
    shrunk, shrunk_played = best[0]
    shrunk_dir = run_dir / "shrunk"
    path = _write_replay(shrunk_dir / "replay.json", shrunk, seed, result)
    timeline = _report(
        shrunk_dir,
        shrunk_played,
        title=f"walrelay chaos, {result.mode} mode, seed {seed}, shrunk to {len(shrunk)} of {len(schedule)} ops",
        replay=path,
        real=s3 is not None,
    )
    entry["shrunk"] = {
        "ops": len(shrunk),
        "schedule": format_schedule(shrunk),
        "replay": str(path),
        "timeline": str(timeline),
        "message": shrunk_played.message,
        "verdicts": shrunk_played.verdicts,
        "runs": runs,
        "seconds": round(time.monotonic() - started, 3),
    }
    if interrupt is not None:
        raise interrupt


@contextlib.contextmanager
def s3_server() -> Iterator[Any]:
    """The S3-protocol server real mode archives to: MinIO if WALRELAY_MINIO_BINARY names one,
    else moto_server (installed with the dev extras). Stopped when the campaign ends."""
    from walrelay_chaos import s3server

    binary = os.environ.get("WALRELAY_MINIO_BINARY")
    try:
        server = s3server.start_minio(binary) if binary else s3server.start_moto()
    except (OSError, RuntimeError) as e:
        raise CampaignError(
            f"real mode needs an S3-protocol server and could not start one ({e}); install the dev extras "
            "(pip install -e '.[dev]' provides moto_server) or set WALRELAY_MINIO_BINARY to a MinIO binary"
        ) from None
    try:
        yield server
    finally:
        server.stop()


class CampaignError(Exception):
    """The campaign could not start (bad arguments, no S3 server): a clear message, exit 2."""


@dataclass
class KillRow:
    mutant: str
    directed_killed: bool
    random_seed: int | None = None  # the first random seed that killed it
    random_seconds: float | None = None  # wall seconds of random search until then
    random_ops: int | None = None  # that schedule's length
    random_runs: int = 0
    message: str = ""
    shrunk: list[Op] | None = None  # the killing schedule, shrunk (mutants.shrink): still kills it
    shrink_runs: int = 0
    shrunk_message: str = ""  # the checker's verdict on the shrunk schedule
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # "directed", "random", "shrunk": replay, timeline

    @property
    def killed(self) -> bool:
        return self.directed_killed or self.random_seed is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "mutant": self.mutant,
            "killed": self.killed,
            "directed_killed": self.directed_killed,
            "random_seed": self.random_seed,
            "random_seconds": None if self.random_seconds is None else round(self.random_seconds, 3),
            "random_ops": self.random_ops,
            "random_runs": self.random_runs,
            "message": self.message,
            "shrunk": None
            if self.shrunk is None
            else {
                "ops": len(self.shrunk),
                "schedule": format_schedule(self.shrunk),
                "runs": self.shrink_runs,
                "message": self.shrunk_message,
                **self.files.get("shrunk", {}),
            },
            "directed": self.files.get("directed"),
            "random": self.files.get("random"),
        }


@dataclass
class MutantsResult:
    rows: list[KillRow] = field(default_factory=list)
    finished: int = 0  # rows complete (the last may not be, after Ctrl-C)
    interrupted: bool = False
    running: bool = False
    seconds: float = 0.0

    @property
    def verdict(self) -> bool | str:
        """True: every mutant planted was killed; False: one survived."""
        if self.running or self.interrupted:
            return "running" if self.running else "interrupted"
        return all(r.killed for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 0 if self.verdict is True else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.verdict,
            "mode": "mutants",
            "mutant": None,
            "seconds": round(self.seconds, 3),
            "mutants": [r.to_json() for r in self.rows],
        }


def run_mutants(
    *,
    seeds: int,
    seconds: float,
    only: list[str] | None = None,
    progress: Callable[[str], None] = print,
    out_dir: Path | None = None,
    shrink_budget: int = 60,
) -> MutantsResult:
    """Each mutant planted in turn: its directed schedule, then random seeds 0.. until one kills
    it, ``seeds`` ran, or ``seconds`` passed; a killing schedule is then shrunk (at most
    ``shrink_budget`` runs, with the same seed). A kill is a checker's verdict (AssertionError).

    ``out_dir``: write ``results.json`` (each row; "valid": every mutant killed) and, per mutant,
    ``NAME/directed/replay.json``, and ``NAME/seed-S/`` (the random kill) and
    ``NAME/seed-S/shrunk/``, each with its replay file and report. Ctrl-C stops at once: the rows
    so far, ``interrupted`` set, and results.json says "interrupted"."""
    from walrelay_chaos.mutants import MUTANTS, planted, shrink

    result = MutantsResult(running=True)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_results(out_dir, result)
    started = time.monotonic()

    def keep(row: KillRow, role: str, where: str, schedule: list[Op], seed: int, played: Played) -> None:
        if out_dir is None:
            return
        run_dir = out_dir / row.mutant / where
        path = write_replay(run_dir / "replay.json", schedule, seed=seed, mutant=row.mutant)
        row.files[role] = {"replay": str(path)}
        if role != "directed":  # a report takes about 0.6 s (the latency plot); replaying one is quick
            title = f"walrelay chaos, mutant {row.mutant}, {role} schedule, seed {seed}"
            row.files[role]["timeline"] = str(_report(run_dir, played, title=title, replay=path, real=False))

    try:
        for name, mutant in MUTANTS.items():
            if only and name not in only:
                continue
            row = KillRow(name, directed_killed=False)
            result.rows.append(row)
            with planted(name):
                played = _play(mutant.directed, 0, None, None)
                if played.verdict is False:
                    row.directed_killed, row.message = True, played.message[:160]
                elif played.verdict == "unknown":  # the harness failed: no verdict, so no kill
                    row.message = f"harness error: {played.message}"[:160]
                keep(row, "directed", "directed", mutant.directed, 0, played)
                search_started = time.monotonic()
                for seed in range(seeds):
                    if time.monotonic() - search_started >= seconds:
                        break
                    schedule = random_schedule(random.Random(seed))
                    row.random_runs += 1
                    played = _play(schedule, seed, None, None)
                    if played.verdict == "unknown":  # the harness failed: no verdict; go on searching
                        row.message = row.message or f"harness error at seed {seed}: {played.message}"[:160]
                    if played.verdict is not False:
                        continue
                    row.random_seed, row.random_ops = seed, len(schedule)
                    row.random_seconds = time.monotonic() - search_started
                    row.message = row.message or played.message[:160]
                    keep(row, "random", f"seed-{seed}", schedule, seed, played)
                    best: list[tuple[list[Op], Played]] = [(schedule, played)]

                    def fails(
                        candidate: list[Op],
                        seed: int = seed,
                        best: list[tuple[list[Op], Played]] = best,
                        row: KillRow = row,
                    ) -> bool:
                        row.shrink_runs += 1
                        p = _play(candidate, seed, None, None)
                        if p.verdict is False:
                            best[0] = (candidate, p)
                            progress(
                                f"    shrinking {row.mutant} seed {seed}: {row.random_ops} -> {len(candidate)} ops "
                                f"(run {row.shrink_runs} of at most {shrink_budget})"
                            )
                        return p.verdict is False

                    try:
                        shrink(schedule, fails, max_runs=shrink_budget)
                    finally:  # on Ctrl-C too: the shortest found so far
                        row.shrunk, shrunk_played = best[0]
                        row.shrunk_message = shrunk_played.message
                        keep(row, "shrunk", f"seed-{seed}/shrunk", row.shrunk, seed, shrunk_played)
                    break
            _progress_row(row, progress)
            result.finished += 1
    except BaseException as e:
        if not is_interrupt(e):
            raise
        result.interrupted = True
    result.running = False
    result.seconds = time.monotonic() - started
    if out_dir is not None:
        _write_results(out_dir, result)
        from walrelay_chaos import runs

        runs.refresh(out_dir)
    return result


def _progress_row(row: KillRow, progress: Callable[[str], None]) -> None:
    progress(
        f"{row.mutant}: directed {'killed' if row.directed_killed else 'SURVIVED'}; random "
        + (
            f"killed at seed {row.random_seed} ({row.random_ops} ops, shrunk to {len(row.shrunk or ())} in "
            f"{row.shrink_runs} runs) after {row.random_seconds:.1f} s"
            if row.random_seed is not None
            else f"survived {row.random_runs} seeds"
        )
    )
    if row.shrunk is not None:
        progress(f"    shrunk: {', '.join(format_schedule(row.shrunk))}")
        if "shrunk" in row.files:
            progress(f"      replay: {replay_command(row.files['shrunk']['replay'])}")


def kill_table(rows: list[KillRow]) -> str:
    """One row per mutant; "ops": the killing random schedule's length, "shrunk": after shrinking."""
    width = max([30, *(len(r.mutant) for r in rows)])
    head = (
        f"{'mutant':<{width}} {'killed':<7} {'directed':<9} {'random seed':>11} {'s to kill':>9} {'ops':>4} "
        f"{'shrunk':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        seed = "-" if r.random_seed is None else str(r.random_seed)
        secs = "-" if r.random_seconds is None else f"{r.random_seconds:.1f}"
        ops = "-" if r.random_ops is None else str(r.random_ops)
        shrunk = "-" if r.shrunk is None else str(len(r.shrunk))
        lines.append(
            f"{r.mutant:<{width}} {'yes' if r.killed else 'NO':<7} {'yes' if r.directed_killed else 'no':<9} "
            f"{seed:>11} {secs:>9} {ops:>4} {shrunk:>6}"
        )
    return "\n".join(lines)
