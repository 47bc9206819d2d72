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

import json
import random
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from walrelay_chaos import schedule as op
from walrelay_chaos.replay import replay_command, write_replay
from walrelay_chaos.schedule import Op
from walrelay_chaos.sim import N, run_schedule, scratch_root

MAX_OPS = 25


def random_op(rng: random.Random) -> Op:
    """One operation, with the weights of the property tests' strategy (writes and settles twice)."""
    choices: list[Callable[[], Op]] = [
        lambda: op.Write(rng.randint(1, 4)),
        lambda: op.Write(rng.randint(1, 4)),
        lambda: op.Settle(rng.choice([1, 20, 300])),
        lambda: op.Settle(rng.choice([1, 20, 300])),
        lambda: op.Cut(rng.randint(1, 2**N - 1)),
        lambda: op.Heal(),
        lambda: op.CrashPrimary(),
        lambda: op.NewPrimary(),
        lambda: op.WriteStale(rng.randint(1, 2)),
        lambda: op.CrashReplica(rng.randrange(N)),
        lambda: op.LoseDisk(rng.randrange(N)),
        lambda: op.StoreDown(rng.random() < 0.5),
        lambda: op.StoreUp(),
        lambda: op.Check(),
        lambda: op.Bookmark(),
        lambda: op.Restore(rng.randint(0, 7), rng.random() < 0.5),
        lambda: op.MinorityFailover(rng.randrange(N), rng.randint(1, 3), rng.random() < 0.5, rng.random() < 0.5),
    ]
    return rng.choice(choices)()


def random_schedule(rng: random.Random) -> list[Op]:
    return [random_op(rng) for _ in range(rng.randint(1, MAX_OPS))]


@dataclass
class CampaignResult:
    runs: int = 0
    first_seed: int = 0
    seconds: float = 0.0
    simulated_seconds: float = 0.0  # mock-clock time of the valid runs
    invalid: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> bool | str:
        if self.invalid:
            return False
        return "unknown" if self.errors else True

    @property
    def exit_code(self) -> int:
        if self.invalid:
            return 1
        return 2 if self.errors else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.verdict,
            "runs": self.runs,
            "seeds": [self.first_seed, self.first_seed + self.runs - 1] if self.runs else [],
            "seconds": round(self.seconds, 3),
            "simulated_seconds": round(self.simulated_seconds, 3),
            "invalid": self.invalid,
            "errors": self.errors,
        }


def run_campaign(
    out_dir: Path,
    *,
    seeds: int,
    first_seed: int = 0,
    minutes: float | None = None,
    progress: Callable[[str], None] = print,
) -> CampaignResult:
    """Run seeds ``first_seed ..`` until ``seeds`` ran or ``minutes`` passed; write results.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = CampaignResult(first_seed=first_seed)
    started = time.monotonic()
    deadline = None if minutes is None else started + minutes * 60
    for seed in range(first_seed, first_seed + seeds):
        if deadline is not None and time.monotonic() >= deadline:
            progress(f"time is up after {result.runs} runs")
            break
        schedule = random_schedule(random.Random(seed))
        root = tempfile.mkdtemp(prefix=f"walrelay-chaos-{seed}-", dir=scratch_root())
        try:
            out = run_schedule(root, schedule, seed=seed)
            result.simulated_seconds += out.simulated_s
            outcome = "valid"
        except AssertionError as e:
            path = write_replay(out_dir / f"seed-{seed}.json", schedule, seed=seed)
            result.invalid.append({"seed": seed, "replay": str(path), "message": str(e).splitlines()[0][:500]})
            outcome = f"INVALID: {str(e).splitlines()[0][:200]}\n    replay: {replay_command(path)}"
        except Exception as e:  # the harness failed, not the system under test: no verdict
            path = write_replay(out_dir / f"seed-{seed}.json", schedule, seed=seed)
            result.errors.append(
                {"seed": seed, "replay": str(path), "error": "".join(traceback.format_exception_only(e)).strip()}
            )
            outcome = f"HARNESS ERROR: {type(e).__name__}: {e}\n    replay: {replay_command(path)}"
        finally:
            shutil.rmtree(root, ignore_errors=True)
        result.runs += 1
        result.seconds = time.monotonic() - started
        progress(f"[{result.runs}/{seeds}] seed {seed}: {len(schedule)} ops: {outcome}")
    result.seconds = time.monotonic() - started
    (out_dir / "results.json").write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    return result


@dataclass
class KillRow:
    mutant: str
    directed_killed: bool
    random_seed: int | None = None  # the first random seed that killed it
    random_seconds: float | None = None  # wall seconds of random search until then
    random_ops: int | None = None  # that schedule's length
    random_runs: int = 0
    message: str = ""

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
    it, ``seeds`` ran, or ``seconds`` passed. A kill is a checker's verdict (AssertionError)."""
    from walrelay_chaos.mutants import MUTANTS, planted

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
                    break
                except Exception as e:  # the harness failed: no verdict; go on searching
                    row.message = row.message or f"harness error at seed {seed}: {type(e).__name__}: {e}"[:160]
                finally:
                    shutil.rmtree(root, ignore_errors=True)
        progress(
            f"{name}: directed {'killed' if row.directed_killed else 'SURVIVED'}; random "
            + (
                f"killed at seed {row.random_seed} ({row.random_ops} ops) after {row.random_seconds:.1f} s"
                if row.random_seed is not None
                else f"survived {row.random_runs} seeds"
            )
        )
        rows.append(row)
    return rows


def kill_table(rows: list[KillRow]) -> str:
    head = f"{'mutant':<30} {'killed':<7} {'directed':<9} {'random seed':>11} {'s to kill':>9} {'ops':>4}"
    lines = [head, "-" * len(head)]
    for r in rows:
        seed = "-" if r.random_seed is None else str(r.random_seed)
        secs = "-" if r.random_seconds is None else f"{r.random_seconds:.1f}"
        ops = "-" if r.random_ops is None else str(r.random_ops)
        lines.append(
            f"{r.mutant:<30} {'yes' if r.killed else 'NO':<7} {'yes' if r.directed_killed else 'no':<9} "
            f"{seed:>11} {secs:>9} {ops:>4}"
        )
    return "\n".join(lines)
