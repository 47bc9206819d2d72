"""Run one TLC model check and summarise what it found.

Observed with TLC 2.15 (rev d5b5a7f) on Java 17, on the toy spec in tests/fixtures/tlc:

=========================================  ====  =====================================
outcome                                    exit  message code (see messages.py)
=========================================  ====  =====================================
no error                                   0     2193
invariant violated                         12    2110 (2107 if by the initial state)
action property ``[][A]_v`` violated       13    2112 "Action property X is violated."
temporal (liveness) property violated      13    2116, names NO property; 2108 if a
                                                 state-level PROPERTY fails initially
deadlock (only without ``-deadlock``)      11    2114
failed Assert                              75    1000 wrapping 2132
other evaluation error (e.g. 1 + {1})      75    1000 wrapping 2154 (with a trace)
TLA+ parse/semantic error, missing module  150   3002, SANY's text is untagged
undefined INVARIANT/PROPERTY name in .cfg  151   2229
.cfg syntax error                          255   1000 wrapping 5006
=========================================  ====  =====================================

Quirks this module works around: with an *absolute* path to the .tla file TLC cannot find the
``-config`` file (5001 "File not found", exit 255), so TLC runs with the spec dir as its working
directory and the module's bare file name. Each run gets a fresh ``-metadir`` in a temporary
directory, so no ``states/`` directory is left behind and runs can go in parallel. ``-deadlock``
*disables* deadlock checking (CHECK_DEADLOCK, ALIAS and POSTCONDITION in a .cfg are misread as
invariant names: exit 151). TLC asks for ``-XX:+UseParallelGC`` (warning 2401 without it).
Because 2116 names no property, a temporal violation is attributed to a property only when the
.cfg lists exactly one PROPERTY. Not used: ``-generateSpecTE`` (hangs with a non-default config
name) and plain ``-simulate`` (never stops by itself; ``-simulate num=K`` stops after K
behaviours, which is what a ``simulate:`` header runs). With more than one worker the counterexample is
not always a shortest one (seen: 6 states instead of 5).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from walrelay.tlc import messages as mc
from walrelay.tlc.configs import ModelConfig
from walrelay.tlc.trace import TraceState, trace_from

# A simulation (``-simulate num=K``) reports "-1 distinct states": it counts no distinct states.
_STATS_RE = re.compile(r"([\d,]+) states generated, (-1|[\d,]+) distinct states found")
_INIT_RE = re.compile(r"([\d,]+) distinct states? generated")
_DEPTH_RE = re.compile(r"depth of the complete state graph search is ([\d,]+)")
_PROGRESS_DEPTH_RE = re.compile(r"Progress\(([\d,]+)\)")
_NAMED_RE = re.compile(r"(?:Invariant|Property|Action property) (\S+) is violated")
_VERSION_RE = re.compile(r"TLC2 Version (\S+)")

# Informational messages left out of an error's explanation.
_QUIET = {
    mc.VERSION, mc.INIT_DONE, mc.PROGRESS, mc.STATS, mc.SIMULATION_STATS, mc.DEPTH, mc.STATE, mc.STUTTERING,
    mc.BACK_TO_STATE,
    2121, 2185, 2186, 2187, 2189, 2192, 2193, 2212, 2219, 2220, 2264, 2267, 2268, 2401,
}  # fmt: skip
_UNEXPECTED_EXCEPTION = 1000
# TLC prints progress once a minute and once more at the end; for short runs that is noise.
PROGRESS_AFTER_SECONDS = 10.0
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class TlcRun:
    """What one TLC run reported.

    ``outcome`` is one of: ok, invariant, action property, property (state-level PROPERTY false
    initially), temporal, deadlock, assert, error (other evaluation error), parse error, config
    error, timeout, cancelled, crash (an exit code we do not know). ``violated`` names the invariant or
    property for the violation outcomes when TLC (or the single-PROPERTY rule) tells us which.
    """

    outcome: str
    exit_code: int | None
    seconds: float
    violated: str | None = None
    states_generated: int | None = None
    distinct_states: int | None = None
    depth: int | None = None
    tlc_version: str | None = None
    trace: tuple[TraceState, ...] = ()
    detail: str = ""
    output: str = field(default="", repr=False)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _counts(parsed: mc.ParsedOutput) -> tuple[int | None, int | None, int | None]:
    generated = distinct = depth = None
    for msg in parsed.all(mc.INIT_DONE, mc.PROGRESS, mc.STATS, mc.SIMULATION_STATS):
        if m := _STATS_RE.search(msg.text):
            generated = _int(m.group(1))
            distinct = None if m.group(2) == "-1" else _int(m.group(2))
        elif msg.code == mc.INIT_DONE and (m := _INIT_RE.search(msg.text)):
            distinct = _int(m.group(1))
        if msg.code == mc.PROGRESS and (m := _PROGRESS_DEPTH_RE.search(msg.text)):
            depth = _int(m.group(1))
    depth_msg = parsed.first(mc.DEPTH)
    if depth_msg is not None and (m := _DEPTH_RE.search(depth_msg.text)):
        depth = _int(m.group(1))
    return generated, distinct, depth


def _detail(parsed: mc.ParsedOutput, max_lines: int = 40) -> str:
    """The part of the output that explains an error, without progress chatter or the trace."""
    lines: list[str] = []
    for raw in parsed.untagged.splitlines():
        if raw.strip() and not raw.startswith(("Parsing file ", "Semantic processing of module ")):
            lines.append(raw.rstrip())
    for msg in parsed.messages:
        if msg.code in _QUIET:
            continue
        if msg.code == _UNEXPECTED_EXCEPTION:
            lines.extend(line for line in msg.text.splitlines() if line.startswith("The exception was"))
            continue
        lines.extend(line.rstrip() for line in msg.text.splitlines() if line.strip())
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)


def _outcome(parsed: mc.ParsedOutput, exit_code: int | None, properties: Sequence[str]) -> tuple[str, str | None]:
    named = {
        mc.INVARIANT_VIOLATED: "invariant",
        mc.INVARIANT_VIOLATED_INITIAL: "invariant",
        mc.ACTION_PROPERTY_VIOLATED: "action property",
        mc.PROPERTY_VIOLATED_INITIAL: "property",
    }
    for msg in parsed.messages:
        if msg.code in named:
            m = _NAMED_RE.search(msg.text)
            return named[msg.code], m.group(1) if m else None
        if msg.code == mc.TEMPORAL_VIOLATED:
            return "temporal", properties[0] if len(properties) == 1 else None
        if msg.code == mc.DEADLOCK:
            return "deadlock", None
        if msg.code == mc.ASSERT_FAILED:
            return "assert", None
    if exit_code == 0:
        return ("ok", None) if not any(m.severity == mc.SEVERITY_ERROR for m in parsed.messages) else ("error", None)
    if exit_code == 150 or parsed.first(mc.PARSE_FAILED):
        return "parse error", None
    if exit_code is not None and 151 <= exit_code <= 255:
        return "config error", None
    if exit_code == 75:
        return "error", None
    return "crash", None


def summarize(
    output: str, exit_code: int | None, seconds: float, properties: Sequence[str] = (), stopped: str | None = None
) -> TlcRun:
    """Build a TlcRun from TLC's ``-tool`` output and exit code (None if we killed it).

    ``stopped`` is "timeout" or "cancelled" when we killed TLC; it becomes the outcome.
    """
    parsed = mc.parse_messages(output)
    generated, distinct, depth = _counts(parsed)
    version_msg = parsed.first(mc.VERSION)
    version_match = _VERSION_RE.search(version_msg.text) if version_msg else None
    outcome, violated = (stopped, None) if stopped else _outcome(parsed, exit_code, properties)
    return TlcRun(
        outcome=outcome,
        exit_code=exit_code,
        seconds=seconds,
        violated=violated,
        states_generated=generated,
        distinct_states=distinct,
        depth=depth,
        tlc_version=version_match.group(1) if version_match else None,
        trace=tuple(trace_from(parsed)),
        detail="" if outcome == "ok" else _detail(parsed),
        output=output,
    )


def effective_workers(config: ModelConfig, workers: int) -> int:
    """Configs that expect a counterexample run on ONE worker.

    With several workers TLC's breadth-first search is not strictly level by level, so the
    counterexample is not always a shortest one, and when a bug breaks two invariants a few steps
    apart, which one TLC reports first could change from run to run: a flaky verdict. One worker
    makes the search, the trace and the named invariant deterministic. Correct models, which must
    explore everything anyway, keep all workers.
    """
    return workers if config.expect.kind == "ok" and config.simulate is None else 1


def tlc_command(
    java: str, jar: Path, config: ModelConfig, workers: int, metadir: str, java_tmp: str | None = None
) -> list[str]:
    """The java command line for one config (run it with the spec dir as working directory).

    ``java_tmp`` becomes ``java.io.tmpdir``: SANY unpacks the standard modules (TLC.tla,
    Naturals.tla, ...) there, and two TLCs sharing one directory race on those files ("Module-Table
    lookup failure", seen with ``--jobs 2``). Each run gets its own.
    """
    cmd = [java, "-XX:+UseParallelGC"]
    if java_tmp is not None:
        cmd.append(f"-Djava.io.tmpdir={java_tmp}")
    cmd += ["-cp", str(jar), "tlc2.TLC", "-tool", "-metadir", metadir]
    cmd += ["-config", str(config.path.resolve()), "-workers", str(effective_workers(config, workers))]
    if not config.check_deadlock:
        cmd.append("-deadlock")
    if config.simulate is not None:
        sim = config.simulate
        cmd += ["-simulate", f"num={sim.traces}", "-depth", str(sim.depth), "-seed", str(sim.seed)]
    return [*cmd, f"{config.module}.tla"]


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill TLC's whole process group (it was started in its own session) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait(proc: subprocess.Popen[str], timeout: float | None, cancel: threading.Event | None) -> str | None:
    """Wait for TLC; kill it and return "timeout" or "cancelled" if that comes first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            try:
                proc.wait(timeout=_POLL_SECONDS)
                return None
            except subprocess.TimeoutExpired:
                pass
            stop = "cancelled" if cancel is not None and cancel.is_set() else None
            if stop is None and deadline is not None and time.monotonic() >= deadline:
                stop = "timeout"
            if stop is not None:
                _kill(proc)
                return stop
    except BaseException:  # Ctrl-C or SIGTERM (the CLI maps it to KeyboardInterrupt): no orphan TLC.
        _kill(proc)
        raise


def run_tlc(
    java: str,
    jar: Path,
    config: ModelConfig,
    spec_dir: Path,
    workers: int,
    on_progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> TlcRun:
    """Run TLC on one config, killing it after ``config.timeout`` seconds or once ``cancel`` is set.

    ``on_progress`` gets TLC's progress lines, but only once the run has lasted 10 seconds.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="walrelay-tlc-") as tmp:
        java_tmp = os.path.join(tmp, "java-tmp")
        os.mkdir(java_tmp)
        cmd = tlc_command(java, jar, config, workers, os.path.join(tmp, "meta"), java_tmp)
        proc = subprocess.Popen(
            cmd,
            cwd=spec_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        lines: list[str] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                long_run = time.monotonic() - started >= PROGRESS_AFTER_SECONDS
                if on_progress is not None and long_run and line.startswith("Progress("):
                    on_progress(line.strip())

        reader = threading.Thread(target=read, name=f"tlc-{config.name}", daemon=True)
        reader.start()
        stopped = _wait(proc, config.timeout, cancel)
        reader.join()
    seconds = time.monotonic() - started
    exit_code = None if stopped else proc.returncode
    return summarize("".join(lines), exit_code, seconds, config.properties, stopped)
