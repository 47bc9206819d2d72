"""Run the conformance cases of one role against an implementation and collect per-case verdicts.

Verdicts: ``pass``; ``fail`` (a rule broken, named, with the frames that show it); ``unknown`` (the
harness could not run the case: the process did not start, say). Exit status 0 when every case
passed, 1 when any failed, 2 when none failed but some are unknown (never "valid" by default).
A harness exception is reported as ``unknown`` with its type, not as a verdict on the
implementation, so a harness bug can never make an implementation fail.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from walrelay_chaos.conform.context import Ctx, Fail, ReplicaUnderTest, Unknown
from walrelay_chaos.conform.primary_cases import PRIMARY_CASES, PrimaryCase, PrimaryCtx
from walrelay_chaos.conform.replica_cases import CASES, Case
from walrelay_chaos.conform.rules import RULES
from walrelay_chaos.real import NodeCommands
from walrelay_chaos.s3server import S3Server


@dataclass
class CaseResult:
    id: str
    rules: list[str]
    title: str
    verdict: str  # pass | fail | unknown
    rule: str | None  # the rule a failure broke
    rule_text: str | None
    why: str
    transcript: list[str]
    seconds: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def judge(
    case_id: str,
    rules: tuple[str, ...],
    title: str,
    run: Callable[[], None],
    close: Callable[[], None],
    transcript: Callable[[], list[str]],
    note: Callable[[str], str] = lambda why: why,
) -> CaseResult:
    """Run one case and turn how it ended into a verdict: a Fail names a rule, an Unknown or any
    other exception (a harness bug) is no verdict on the implementation. ``note`` adds where to
    look (a log) to a verdict that is not a pass."""
    t0 = time.monotonic()
    verdict, rule, why = "pass", None, ""
    try:
        run()
    except Fail as f:
        verdict, rule, why = "fail", f.rule, f.why
    except Unknown as u:
        verdict, why = "unknown", str(u)
    except Exception as e:  # a harness bug is no verdict on the implementation
        verdict, why = "unknown", f"harness error: {type(e).__name__}: {e}"
    finally:
        close()
    return CaseResult(
        id=case_id,
        rules=list(rules),
        title=title,
        verdict=verdict,
        rule=rule,
        rule_text=RULES[rule].text if rule in RULES else None,
        why=why if verdict == "pass" else note(why),
        transcript=transcript(),
        seconds=round(time.monotonic() - t0, 3),
    )  # fmt: skip


def _with_log(log: Path, why: str) -> str:
    return f"{why} (the primary's log: {log})"


def select(only: list[str] | None) -> list[Case]:
    """The cases to run: all, or those whose id or rule id starts with one of ``only``."""
    if not only:
        return list(CASES)
    picked = [c for c in CASES if any(c.id.startswith(o) or any(r.startswith(o) for r in c.rules) for o in only)]
    if not picked:
        raise ValueError(f"no case matches {', '.join(only)}; see --list")
    return picked


def run_replica_suite(
    commands: NodeCommands,
    *,
    cases: list[Case],
    timeout: float,
    workdir: Path | None = None,
    progress: Callable[[CaseResult], None] | None = None,
    power_loss: bool = True,
) -> list[CaseResult]:
    """Every case against one replica process (restarted where a case kills it or it died).

    With ``power_loss`` (and FUSE here) the replica's data directory is a power-loss filesystem;
    without, the ``power.*`` cases have no verdict (``unknown``), which keeps the suite from
    passing: they are the only cases that see a missing fsync."""
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="walrelay-conform-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    replica = ReplicaUnderTest(commands, root, start_timeout=max(30.0, 3 * timeout), power_loss=power_loss)
    results: list[CaseResult] = []
    try:
        for i, case in enumerate(cases):
            ctx = Ctx(replica, f"conform-{i:02d}-{case.id.replace('.', '-')}", timeout)

            def exited(why: str) -> str:
                return why if replica.alive else f"{why} (the replica process had exited; its log: {replica.log_path})"

            result = judge(
                case.id,
                case.rules,
                case.title,
                functools.partial(case.run, ctx),
                ctx.close,
                ctx.transcript.render,
                exited,
            )
            results.append(result)
            if progress is not None:
                progress(result)
    finally:
        replica.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return results


def run_primary_suite(
    commands: NodeCommands,
    *,
    cases: list[PrimaryCase],
    timeout: float,
    workdir: Path,
    s3: S3Server,
    progress: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every primary case: a fresh primary process and five scripted replicas each."""
    results: list[CaseResult] = []
    for i, case in enumerate(cases):
        root = workdir / f"{i:02d}-{case.id}"
        root.mkdir(parents=True, exist_ok=True)
        ctx = PrimaryCtx(commands, root, s3, timeout, f"{i:02d}-{case.id}")
        log = root / "primary.log"
        result = judge(
            case.id, case.rules, case.title, functools.partial(case.run, ctx), ctx.close, ctx.transcript.render,
            functools.partial(_with_log, log),
        )  # fmt: skip
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def select_primary(only: list[str] | None) -> list[PrimaryCase]:
    if not only:
        return list(PRIMARY_CASES)
    picked = [
        c for c in PRIMARY_CASES if any(c.id.startswith(o) or any(r.startswith(o) for r in c.rules) for o in only)
    ]
    if not picked:
        raise ValueError(f"no case matches {', '.join(only)}; see --list")
    return picked


def exit_status(results: list[CaseResult]) -> int:
    if any(r.verdict == "fail" for r in results):
        return 1
    if any(r.verdict != "pass" for r in results):
        return 2
    return 0
