"""Directed schedules through the door: the chaos mutant table's schedules, run as real processes.

Each planted bug of the reference (walrelay_chaos.mutants) comes with a directed schedule: a short
run that the reference passes and the bug fails. Run against another implementation (its
implementation file, both roles), the same schedules are a set of known-dangerous shapes that a
random campaign reaches rarely. Run against the reference with each bug planted in its processes
(``NodeCommands.walrelay(mutant)``), they measure what real mode catches from the outside (the
kill table): a step real mode cannot make here (a clock jump without libfaketime, a restore by flag
the implementation file gives no arguments for) is skipped, and the line says so.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
    timeline: str | None = None  # with a report directory: the run's timeline.html
    replay: str | None = None  # ... and the command that runs it again


def run_one(
    name: str, commands: NodeCommands, impl: str, s3: S3Server, root: str, report_dir: Path | None = None
) -> DirectedResult:
    """One directed schedule; with ``report_dir``, the run's replay file, history and timeline go
    there (``walrelay chaos replay`` runs it again against the same implementation)."""
    schedule = MUTANTS[name].directed
    t0 = time.monotonic()
    os.makedirs(root, exist_ok=True)
    events: list[dict[str, Any]] = []
    try:
        out = run_real(root, schedule, s3, impl=commands, history=events)
        r = DirectedResult(name, impl, "valid", "", len(out.ok), list(out.skipped), time.monotonic() - t0)
    except AssertionError as e:
        r = DirectedResult(name, impl, "invalid", str(e)[:2000], 0, [], time.monotonic() - t0)
    except (WalrelayError, OSError) as e:
        r = DirectedResult(name, impl, "unknown", f"{type(e).__name__}: {e}"[:2000], 0, [], time.monotonic() - t0)
    if report_dir is not None:
        from walrelay_chaos.replay import replay_command, write_replay
        from walrelay_chaos.report import write_report

        run_dir = report_dir / name
        path = write_replay(run_dir / "replay.json", schedule, mode="real", impl=commands.to_json())
        r.replay = replay_command(path)
        verdict: bool | str = True if r.verdict == "valid" else False if r.verdict == "invalid" else "unknown"
        files = write_report(
            run_dir,
            events,
            verdict=verdict,
            message=r.why,
            title=f"walrelay conform --directed: {name} against {impl}",
            replay=r.replay,
            time_unit="s",
        )
        r.timeline = str(files.get("timeline", run_dir / "timeline.html"))
    return r


def run_directed(
    commands: NodeCommands,
    impl: str,
    s3: S3Server,
    *,
    only: list[str] | None = None,
    progress: Callable[[DirectedResult], None] | None = None,
    report_dir: Path | None = None,
) -> list[DirectedResult]:
    """Every directed schedule (or ``only`` these) against one implementation."""
    results = []
    for name in only or list(MUTANTS):
        r = run_one(name, commands, impl, s3, tempfile.mkdtemp(prefix=f"walrelay-directed-{name}-"), report_dir)
        results.append(r)
        if progress is not None:
            progress(r)
    return results


def kill_table(
    s3: S3Server,
    *,
    only: list[str] | None = None,
    progress: Callable[[DirectedResult], None] | None = None,
    report_dir: Path | None = None,
) -> list[DirectedResult]:
    """Each reference bug planted in every process, run through its own directed schedule in real
    mode: ``invalid`` means real mode caught it from the outside."""
    results = []
    for name in only or list(MUTANTS):
        commands = NodeCommands.walrelay(name)
        root = tempfile.mkdtemp(prefix=f"walrelay-kill-{name}-")
        r = run_one(name, commands, f"walrelay + {name}", s3, root, report_dir)
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


def write_results(report_dir: Path, results: list[DirectedResult], title: str, kill: bool) -> Path:
    """``results.json`` and ``report.html``: one row per schedule (verdict, why, what was skipped,
    the ops it plays), each linked to its run's timeline. Returns the HTML's path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    body = {"kind": "kill-table" if kill else "directed", "results": [asdict(r) for r in results]}
    (report_dir / "results.json").write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    good = "invalid" if kill else "valid"  # a kill table wants every planted bug caught
    rows = []
    for r in results:
        ops = ", ".join(type(o).__name__ for o in MUTANTS[r.schedule].directed)
        link = f'<a href="{html.escape(r.schedule)}/timeline.html">timeline</a>' if r.timeline else ""
        skipped = f"<p>skipped: {html.escape(', '.join(r.skipped))}</p>" if r.skipped else ""
        cls = "pass" if r.verdict == good else "fail" if r.verdict in ("valid", "invalid") else "unknown"
        rows.append(
            f"<tr><td class={cls}>{r.verdict.upper()}</td><td><code>{html.escape(r.schedule)}</code><br>"
            f"<small>{html.escape(ops)}</small></td><td><pre>{html.escape(r.why)}</pre>{skipped}"
            f"<small>{html.escape(r.replay or '')}</small></td><td>{r.acknowledged}</td>"
            f"<td>{r.seconds:.1f}s</td><td>{link}</td></tr>"
        )
    css = (
        "body{font:14px system-ui,sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse;width:100%}"
        "td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}"
        ".pass{color:#176317}.fail{color:#a31515;font-weight:bold}.unknown{color:#8a6d00;font-weight:bold}"
        "pre{white-space:pre-wrap;margin:0;font-size:12px}"
    )
    want = "every planted bug caught (INVALID)" if kill else "every schedule VALID"
    doc = (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{css}</style>"
        f"<h1>{html.escape(title)}</h1><p>Wanted: {want}. Schedules: chaos/walrelay_chaos/mutants.py; "
        "format: docs/conformance.md.</p><table><tr><th>verdict</th><th>schedule</th><th>why</th>"
        "<th>acked</th><th>time</th><th></th></tr>" + "".join(rows) + "</table>"
    )
    path = report_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
