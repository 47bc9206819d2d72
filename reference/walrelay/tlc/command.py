"""``walrelay tlc``: pick the configs, check the tools, run the suite, print the verdict.

The CLI module only parses arguments and calls ``run_command``; everything TLC-specific stays in
this package. An empty selection is an error, not a pass: a suite that checked nothing must not
look green in CI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from walrelay.tlc.configs import ModelConfig, select
from walrelay.tlc.errors import TlcError, UnknownConfigError
from walrelay.tlc.jar import find_jar, find_java
from walrelay.tlc.suite import render_table, run_suite, write_json


def default_spec_dir() -> Path:
    """``<repo>/spec`` next to this source tree, else ``./spec``; error if neither exists."""
    repo_spec = Path(__file__).resolve().parents[3] / "spec"
    cwd_spec = Path.cwd() / "spec"
    for candidate in (repo_spec, cwd_spec):
        if candidate.is_dir():
            return candidate
    raise TlcError(f"no spec directory: neither {repo_spec} nor {cwd_spec} exists; pass --spec-dir DIR")


def default_workers(jobs: int) -> int:
    """All CPUs for one config at a time; shared out when ``jobs`` configs run side by side."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _list(configs: Sequence[ModelConfig], spec_dir: Path, out: TextIO) -> None:
    if not configs:
        print(f"no configs selected under {spec_dir}", file=out)
        return
    width = max(len(c.name) for c in configs)
    print(f"{'config':<{width}}  {'suite':<5}  {'expect':<28}  about", file=out)
    for c in configs:
        print(f"{c.name:<{width}}  {c.suite:<5}  {c.expect!s:<28}  {c.about}".rstrip(), file=out)


def run_command(
    names: Sequence[str],
    spec_dir: str | None = None,
    suite: str = "ci",
    workers: int | None = None,
    jobs: int = 1,
    list_only: bool = False,
    json_path: str | None = None,
    fail_fast: bool = False,
    out: TextIO | None = None,
    trace: bool = False,
    err: TextIO | None = None,
) -> int:
    """Run (or list) the selected configs; 0 iff every one got its expected outcome, 2 if a named
    config does not exist (a usage error, like a bad option). ``trace``: print every
    counterexample, expected ones included, each step named with its action and parameters."""
    out = out if out is not None else sys.stdout
    root = Path(spec_dir).resolve() if spec_dir is not None else default_spec_dir()
    if not root.is_dir():
        raise TlcError(f"spec directory {root} does not exist")
    try:
        configs = select(root, names, suite)
    except UnknownConfigError as e:
        print(f"walrelay tlc: error: {e}", file=err if err is not None else sys.stderr)
        return 2
    if list_only:
        _list(configs, root, out)
        return 0
    if not configs:
        raise TlcError(f"no .cfg files of suite '{suite}' under {root}; nothing to model-check")
    java = find_java()
    jar = find_jar()
    n_workers = workers if workers is not None else default_workers(jobs)
    print(
        f"TLC: {len(configs)} config(s) from {root}, {n_workers} worker(s) each, {jobs} at a time "
        f"(Java {java.major}, {jar})",
        file=out,
        flush=True,
    )
    results = run_suite(
        configs, java.path, jar, root, n_workers, jobs=jobs, fail_fast=fail_fast, out=out, show_traces=trace
    )
    print("", file=out)
    for line in render_table(results):
        print(line, file=out)
    failed = [r.config.name for r in results if r.run is not None and not r.verdict.passed]
    skipped = [r.config.name for r in results if r.run is None]
    if failed:
        print(f"\nTLC: {len(failed)} of {len(results)} config(s) FAILED: {', '.join(failed)}", file=out)
        if skipped:
            print(f"TLC: {len(skipped)} skipped after the failure (--fail-fast): {', '.join(skipped)}", file=out)
    else:
        print(f"\nTLC: all {len(results)} config(s) got their expected outcome", file=out)
    out.flush()
    if json_path is not None:
        write_json(json_path, results, n_workers)
    return 1 if failed else 0
