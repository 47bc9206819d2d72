"""Run many configs, print progress as it happens, then a table, and optionally a JSON record.

Progress is printed (and flushed) when each config starts and ends because deep configs take
minutes and CI logs should show where time goes. A failure shows its counterexample right away,
next to its config's name, so the log reads top to bottom; an *expected* violation gets one line,
since its trace is the point of a mutant and not news, unless traces were asked for (``--trace``).

A counterexample that is shown is replayed in TLC once more (``actions.replay_labels``, about 2
s) so each step is named with its action and parameters. Every trace is in the JSON record; one
that was not replayed names its steps from TLC's source ranges only (no parameters).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from walrelay.tlc.actions import replay_labels, static_labels
from walrelay.tlc.configs import ModelConfig
from walrelay.tlc.tlcproc import TlcRun, run_tlc
from walrelay.tlc.trace import Step, describe, render_steps, trace_length
from walrelay.tlc.verdict import VIOLATIONS, Verdict, judge


@dataclass(frozen=True)
class ConfigResult:
    """One config's result; ``run`` is None if it was skipped after a failure (--fail-fast).

    ``steps`` is the counterexample as shown; ``replayed`` says whether its actions were found
    by a replay (with parameters), and ``trace_note`` why not when a replay was tried and failed.
    """

    config: ModelConfig
    run: TlcRun | None
    verdict: Verdict
    steps: tuple[Step, ...] = field(default=(), repr=False)
    replayed: bool = False
    trace_note: str = ""

    @property
    def label(self) -> str:
        if self.run is None:
            return "SKIP"
        return "PASS" if self.verdict.passed else "FAIL"


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _trace_lines(result: ConfigResult, pad: str) -> list[str]:
    lines = render_steps(result.steps, indent=pad + "  ")
    if result.trace_note:
        lines.append(f"{pad}  (actions named from TLC's source ranges only: {result.trace_note})")
    return lines


def _report(result: ConfigResult, show_trace: bool = False) -> list[str]:
    """Lines printed when a config ends (besides the PASS/FAIL line)."""
    run, verdict, expect = result.run, result.verdict, result.config.expect
    if run is None:
        return []
    pad = "      "
    if verdict.passed:
        if expect.name is None:
            return [f"{pad}no counterexample: TLC found no error"] if show_trace else []
        what = "reached" if expect.kind == "witness" else "violated"
        head = f"{pad}{what} {expect.name} as expected (trace of {trace_length(list(run.trace))} states)"
        if not show_trace or not result.steps:
            return [head]
        return [head + ":", *_trace_lines(result, pad)]
    lines = [f"{pad}{verdict.why}"]
    if run.trace:
        lines.append(f"{pad}counterexample ({trace_length(list(run.trace))} states):")
        lines.extend(_trace_lines(result, pad))
    if run.detail and run.outcome not in ("deadlock", *VIOLATIONS):
        lines.append(f"{pad}TLC said:")
        lines.extend(f"{pad}  {line}" for line in run.detail.splitlines())
    return lines


def with_trace(
    result: ConfigResult, java: str, jar: Path, spec_dir: Path, replay: bool, timeout: float = 120.0
) -> ConfigResult:
    """``result`` with its counterexample described: replayed for action parameters if ``replay``."""
    run = result.run
    if run is None or not run.trace:
        return result
    trace = list(run.trace)
    static = static_labels(result.config, spec_dir, trace)
    labels, note = replay_labels(java, jar, result.config, spec_dir, trace, timeout) if replay else ({}, "")
    steps = tuple(describe(trace, labels, static))
    return ConfigResult(result.config, run, result.verdict, steps, bool(labels), note)


def run_suite(
    configs: Sequence[ModelConfig],
    java: str,
    jar: Path,
    spec_dir: Path,
    workers: int,
    jobs: int = 1,
    fail_fast: bool = False,
    out: TextIO | None = None,
    show_traces: bool = False,
) -> list[ConfigResult]:
    """Run every config (``jobs`` at a time) and return their results in the configs' order.

    A failure's counterexample is always replayed and printed; with ``show_traces`` every one is.
    """
    lock = threading.Lock()
    stop = threading.Event()  # --fail-fast: start nothing new
    cancel = threading.Event()  # Ctrl-C: kill what runs
    total = len(configs)

    def say(lines: list[str]) -> None:
        if out is None:
            return
        with lock:
            for line in lines:
                print(line, file=out)
            out.flush()

    def one(index: int, config: ModelConfig) -> ConfigResult:
        tag = f"[{index + 1}/{total}]"
        if stop.is_set():
            return ConfigResult(config, None, Verdict("skipped", False, "skipped after an earlier failure"))
        say([f"{tag} start {config.name} (expect {config.expect})"])
        run = run_tlc(java, jar, config, spec_dir, workers, lambda line: say([f"{tag}   {line}"]), cancel)
        result = ConfigResult(config, run, judge(run, config.expect))
        if not result.verdict.passed and fail_fast:
            stop.set()
        replay = (show_traces or not result.verdict.passed) and not cancel.is_set()
        result = with_trace(result, java, jar, spec_dir, replay, config.timeout or 120.0)
        if config.simulate is not None:
            sim = config.simulate
            stats = f"{_num(run.states_generated)} states checked in {sim.traces:,} behaviours, {run.seconds:.1f}s"
        else:
            stats = f"{_num(run.distinct_states)} distinct states, depth {_num(run.depth)}, {run.seconds:.1f}s"
        say([f"{tag} {result.label} {config.name}: {result.verdict.got}; {stats}", *_report(result, show_traces)])
        return result

    if jobs <= 1:
        return [one(i, c) for i, c in enumerate(configs)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, i, c) for i, c in enumerate(configs)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            # TLC runs in its own session, so Ctrl-C reaches only us: stop the workers' TLCs too,
            # or leaving this block would wait for them to finish.
            stop.set()
            cancel.set()
            raise


def render_table(results: Sequence[ConfigResult]) -> list[str]:
    """The summary table: config, expected, got, distinct states, depth, seconds, verdict."""
    header = ("config", "expected", "got", "distinct", "depth", "seconds", "verdict")
    rows = [header]
    for r in results:
        run = r.run
        rows.append(
            (
                r.config.name,
                str(r.config.expect),
                r.verdict.got,
                (f"sim {_num(run.states_generated)}" if r.config.simulate else _num(run.distinct_states))
                if run
                else "-",
                (f"<={r.config.simulate.depth}" if r.config.simulate else _num(run.depth)) if run else "-",
                f"{run.seconds:.1f}" if run else "-",
                r.label,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {3, 4, 5}
    return [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def to_json(results: Sequence[ConfigResult], workers: int) -> dict[str, Any]:
    """The CI record: one entry per config plus the overall verdict."""
    versions = {r.run.tlc_version for r in results if r.run is not None and r.run.tlc_version}
    return {
        "passed": all(r.verdict.passed for r in results),
        "tlc_version": ", ".join(sorted(versions)) or None,
        "workers": workers,
        "results": [
            {
                "name": r.config.name,
                "path": str(r.config.path),
                "suite": r.config.suite,
                "expected": str(r.config.expect),
                "got": r.verdict.got,
                "verdict": r.label,
                "exit_code": r.run.exit_code if r.run else None,
                "distinct_states": r.run.distinct_states if r.run else None,
                "states_generated": r.run.states_generated if r.run else None,
                "depth": r.run.depth if r.run else None,
                "seconds": round(r.run.seconds, 3) if r.run else None,
                "violated": r.run.violated if r.run else None,
                "trace_length": trace_length(list(r.run.trace)) if r.run else None,
                **_trace_json(r),
            }
            for r in results
        ],
    }


def _trace_json(r: ConfigResult) -> dict[str, Any]:
    if not r.steps:
        return {"trace": None}
    how = "replayed" if r.replayed else "source ranges"
    out: dict[str, Any] = {"trace_actions": how, "trace": [step.to_json() for step in r.steps]}
    if r.trace_note:
        out["trace_note"] = r.trace_note
    return out


def write_json(path: str, results: Sequence[ConfigResult], workers: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_json(results, workers), f, indent=2)
        f.write("\n")
