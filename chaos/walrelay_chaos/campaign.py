"""A chaos campaign: many seeded random schedules on the simulated cluster, each judged.

Seed ``s`` gives one schedule (``random_schedule(Random(s))``: the same mix of workload and faults
the property tests draw) and seeds the run's scheduling, so ``seed`` alone names a run: a failing
one is written to a replay file (``seed-S.json``) that ``walrelay chaos replay`` runs again,
exactly. Hypothesis shrinks schedules in the tests; a campaign explores more of them, for longer.

The run directory gets ``results.json``:

    {"valid": true | false | "unknown", "runs": N, "seeds": [first, last], "seconds": T,
     "simulated_seconds": S, "invalid": [{"seed", "replay", "message"}],
     "errors": [{"seed", "replay", "error"}]}

``simulated_seconds`` is the mock-clock time the valid runs covered: divided by ``seconds`` it is
how much faster than real time the simulation runs (issue 6 asks for at least 50x).

``valid`` is false if a checker failed on any run, "unknown" if the harness itself failed on one
(an exception that is not a checker's verdict), true otherwise; ``walrelay chaos run`` exits 0, 1
or 2 accordingly.
"""

from __future__ import annotations

import contextlib
import functools
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

    @property
    def coverage_missing(self) -> list[str]:
        return self.coverage.missing if self.coverage is not None else []

    @property
    def verdict(self) -> bool | str:
        if self.invalid:
            return False
        return "unknown" if self.errors or (self.require_coverage and self.coverage_missing) else True

    @property
    def exit_code(self) -> int:
        verdict = self.verdict
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
        }


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
    progress: Callable[[str], None] = print,
) -> CampaignResult:
    """Run seeds ``first_seed ..`` until ``seeds`` ran or ``minutes`` passed; write results.json.

    ``mode`` "sim": the simulated cluster, exact replays; "real": OS processes over TCP with a real
    S3-protocol server (``walrelay_chaos.real``), each run in its own ``seed-S/`` directory with its
    timeline. A failing run's directory holds its replay file, history, timeline.html and
    latency.png (and in real mode the processes' logs). ``mutant``: plant that bug (in this process
    in sim mode, in every node process in real mode); replay files record it."""
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
    )
    started = time.monotonic()
    deadline = None if minutes is None else started + minutes * 60
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
            outcome = _one_run(out_dir, seed, result, s3, impl)
            result.runs += 1
            result.seconds = time.monotonic() - started
            progress(f"[{result.runs}/{seeds}] seed {seed}: {outcome}")
    result.seconds = time.monotonic() - started
    if result.coverage_missing:
        progress(f"coverage: no run reached {', '.join(result.coverage_missing)}")
    (out_dir / "results.json").write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    return result


def _one_run(out_dir: Path, seed: int, result: CampaignResult, s3: Any, impl: NodeCommands | None) -> str:
    """Run one seed, add its verdict to ``result``, write its report if it failed (or ran for real)."""
    from walrelay_chaos.report import write_report

    real = s3 is not None
    if real:
        from walrelay_chaos.real import random_real_schedule, run_real, scratch_dir

        schedule = random_real_schedule(random.Random(seed))
        root = scratch_dir(seed)
    else:
        schedule = random_schedule(random.Random(seed))
        root = tempfile.mkdtemp(prefix=f"walrelay-chaos-{seed}-", dir=scratch_root())
    events: list[dict[str, Any]] = []
    reached: list[str] = []  # coverage targets the simulation reports (sim.EVENT_HOOK)
    run_dir = out_dir / f"seed-{seed}"
    verdict: bool | str = True
    message = ""
    try:
        if real:
            out = run_real(root, schedule, s3, history=events, impl=impl)
            reached.extend(out.reached)
            summary = f"{len(out.ok)} acknowledged, {len(out.failed)} failed, {len(out.unknown)} unknown"
            result.real_seconds += out.seconds
        else:
            saved, sim.EVENT_HOOK = sim.EVENT_HOOK, reached.append
            try:
                sim_out = run_schedule(root, schedule, seed=seed, history=events)
            finally:
                sim.EVENT_HOOK = saved
            result.simulated_seconds += sim_out.simulated_s
            summary = f"{len(sim_out.ok)} acknowledged, {len(sim_out.failed)} failed, {len(sim_out.unknown)} unknown"
        text = f"{len(schedule)} ops: valid ({summary})"
    except AssertionError as e:
        verdict, message = False, str(e).splitlines()[0][:500]
        text = f"{len(schedule)} ops: INVALID: {message[:200]}"
    except Exception as e:  # the harness failed, not the system under test: no verdict
        verdict, message = "unknown", "".join(traceback.format_exception_only(e)).strip()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(getattr(e, "detail", "") or "".join(traceback.format_exception(e)))
        text = f"{len(schedule)} ops: HARNESS ERROR: {type(e).__name__}: {e}"
    finally:
        assert result.coverage is not None
        result.coverage.add(coverage.from_history(events) | set(reached))
        if real and verdict is not True:
            from walrelay_chaos.real import dump_logs

            dump_logs(root, run_dir / "logs")
        shutil.rmtree(root, ignore_errors=True)
    if verdict is not True or real:
        path = write_replay(
            run_dir / "replay.json",
            schedule,
            seed=seed,
            mode=result.mode,
            mutant=result.mutant,
            impl=result.impl.to_json() if result.impl is not None else None,
        )
        write_report(
            run_dir,
            events,
            verdict=verdict,
            message=message,
            title=f"walrelay chaos, {result.mode} mode, seed {seed}",
            replay=replay_command(path),
            time_unit="s" if real else "simulated s",
        )
        if verdict is not True:
            entry = {"seed": seed, "replay": str(path), "timeline": str(run_dir / "timeline.html")}
            if verdict is False:
                result.invalid.append({**entry, "message": message})
            else:
                result.errors.append({**entry, "error": message})
            text += f"\n    replay: {replay_command(path)}\n    timeline: {run_dir / 'timeline.html'}"
    return text


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

    @property
    def killed(self) -> bool:
        return self.directed_killed or self.random_seed is not None


def run_mutants(
    *,
    seeds: int,
    seconds: float,
    only: list[str] | None = None,
    progress: Callable[[str], None] = print,
) -> list[KillRow]:
    """Each mutant planted in turn: its directed schedule, then random seeds 0.. until one kills
    it, ``seeds`` ran, or ``seconds`` passed; a killing schedule is then shrunk (within 60 runs or
    10 s more, run with the same seed). A kill is a checker's verdict (AssertionError)."""
    from walrelay_chaos.mutants import MUTANTS, planted, shrink

    def _kills(schedule: list[Op], *, seed: int) -> bool:
        root = tempfile.mkdtemp(prefix="walrelay-shrink-", dir=scratch_root())
        try:
            run_schedule(root, schedule, seed=seed)
        except AssertionError:
            return True
        except Exception:  # the harness failed: not a kill
            return False
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return False

    rows: list[KillRow] = []
    for name, mutant in MUTANTS.items():
        if only and name not in only:
            continue
        row = KillRow(name, directed_killed=False)
        with planted(name):
            root = tempfile.mkdtemp(prefix="walrelay-mutant-", dir=scratch_root())
            try:
                run_schedule(root, mutant.directed, seed=0)
            except AssertionError as e:
                row.directed_killed, row.message = True, str(e).splitlines()[0][:160]
            except Exception as e:  # the harness failed: no verdict, so no kill
                row.message = f"harness error: {type(e).__name__}: {e}"[:160]
            finally:
                shutil.rmtree(root, ignore_errors=True)
            started = time.monotonic()
            for seed in range(seeds):
                if time.monotonic() - started >= seconds:
                    break
                schedule = random_schedule(random.Random(seed))
                root = tempfile.mkdtemp(prefix="walrelay-mutant-", dir=scratch_root())
                row.random_runs += 1
                try:
                    run_schedule(root, schedule, seed=seed)
                except AssertionError as e:
                    row.random_seed, row.random_ops = seed, len(schedule)
                    row.random_seconds = time.monotonic() - started
                    row.message = row.message or str(e).splitlines()[0][:160]
                    row.shrunk = shrink(schedule, functools.partial(_kills, seed=seed))
                    break
                except Exception as e:  # the harness failed: no verdict; go on searching
                    row.message = row.message or f"harness error at seed {seed}: {type(e).__name__}: {e}"[:160]
                finally:
                    shutil.rmtree(root, ignore_errors=True)
        progress(
            f"{name}: directed {'killed' if row.directed_killed else 'SURVIVED'}; random "
            + (
                f"killed at seed {row.random_seed} ({row.random_ops} ops, shrunk to {len(row.shrunk or ())}) "
                f"after {row.random_seconds:.1f} s"
                if row.random_seed is not None
                else f"survived {row.random_runs} seeds"
            )
        )
        rows.append(row)
    return rows


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
