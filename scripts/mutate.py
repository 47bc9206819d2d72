"""``just mutate``: mutation testing of the protocol and archive modules with mutmut 3.

Why mutmut and not cosmic-ray (both tried here on 2026-12-07): cosmic-ray makes every operator
replacement of every site (7,342 mutants for the 13 modules, ten per ``+`` alone) and runs the
whole test command once per mutant, in place, in the working tree; mutmut makes about one mutant
per site, runs them in forked workers, and runs for each mutant only the tests that executed the
mutated function (it traces one run of the suite first). The whole nightly set fits the 60-minute
budget on 2 cores with mutmut; with cosmic-ray it would take hours.

mutmut 3 imports the mutated code from ``mutants/src`` (it strips a ``src.`` prefix from module
names), while this repository keeps the package in ``reference/walrelay``. So the run happens in
a scratch tree laid out the way mutmut expects: ``src/walrelay`` (a copy of reference/walrelay),
``tests/``, ``chaos/`` (on PYTHONPATH: some tests use the harness) and a ``pyproject.toml`` with a
generated ``[tool.mutmut]`` section. The working tree is never touched, so an interrupted run
leaves nothing mutated behind.

Survivors are judged against ``tests/mutation/*.toml`` (equivalent.toml, a file per module): each
entry names a module, a function and the exact line before and after, with a one-line reason why no test can tell the
mutant from the original. An entry is keyed by content, not by mutmut's numbered name, so edits
elsewhere in a module do not invalidate it. ``--check`` exits 1 if any survivor is not listed (the
CI sample, ``tests/test_mutation.py``); the report lists every survivor with file:line and diff.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tests" / "mutation"  # equivalent.toml, and one equivalent-MODULE.toml per module

# The tests that exercise each module in-process, fast (no OS processes, no TLC). mutmut traces them
# once and then runs, per mutant, only those that executed the mutated function.
_ARCHIVE_TESTS = [
    "tests/test_archive_completeness.py",
    "tests/test_archive_format.py",
    "tests/test_archive_manifest.py",
    "tests/test_archive_reader_index.py",
    "tests/test_archive_regressions.py",
    "tests/test_archiver.py",
    "tests/test_retention.py",
    "tests/test_restore_branches.py",
    "tests/test_mutants_retention.py",
    "tests/test_mutants_archive_verify.py",
    "tests/test_mutants_archive_reader.py",
    "tests/test_mutants_archive_format.py",
    "tests/test_mutants_archiver.py",
]
_PROTOCOL_TESTS = [
    "tests/test_entry.py",
    "tests/test_wire.py",
    "tests/test_replica_state.py",
    "tests/test_replica_store.py",
    "tests/test_replica_broken_reply.py",
    "tests/test_primary_gate.py",
    "tests/test_primary_diverged_replica.py",
    "tests/test_recovery.py",
    "tests/test_failover_property.py",
    "tests/test_replay.py",
    "tests/test_capture.py",
    "tests/test_walformat.py",
    "tests/test_placement.py",
    "tests/test_demo_replica_check.py",
    "tests/test_mutants_replica.py",
    "tests/test_mutants_entry.py",
    "tests/test_mutants_replay.py",
    "tests/test_mutants_wire.py",
]
MODULES: dict[str, list[str]] = {
    "primary": [
        *_PROTOCOL_TESTS,
        "tests/test_archive_regressions.py",
        "tests/test_restore_branches.py",
        "tests/test_mutants_primary.py",
    ],
    "replica": [*_PROTOCOL_TESTS, "tests/test_archive_regressions.py", "tests/test_restore_branches.py"],
    "recovery": [
        *_PROTOCOL_TESTS,
        "tests/test_archive_regressions.py",
        "tests/test_restore_branches.py",
        "tests/test_mutants_recovery.py",
    ],
    "entry": _PROTOCOL_TESTS,
    "wire": _PROTOCOL_TESTS,
    "replay": _PROTOCOL_TESTS,
    "placement": ["tests/test_placement.py", "tests/test_replica_store.py"],
    "fsutil": ["tests/test_fsutil.py", "tests/test_placement.py", "tests/test_replica_store.py"],
    "archive/archiver": _ARCHIVE_TESTS,
    "archive/retention": _ARCHIVE_TESTS,
    "archive/reader": _ARCHIVE_TESTS,
    "archive/verify": [*_ARCHIVE_TESTS, "tests/test_archive_fuzz.py"],
    "archive/format": _ARCHIVE_TESTS,
}
SAMPLE = ["fsutil", "placement"]  # the CI sample: small, fast, fully triaged
# The nightly job takes one group a night, in turn, within its hour: the whole set takes more than
# an hour on 2 cores (the primary's and replica's mutants run the simulation-based tests).
NIGHTLY_GROUPS = [
    ["primary", "fsutil", "placement"],
    ["replica", "recovery", "entry", "wire", "replay"],
    ["archive/archiver", "archive/retention", "archive/reader", "archive/verify", "archive/format"],
]


@dataclass
class Survivor:
    name: str  # mutmut's name (numbered; changes when the module changes)
    module: str
    function: str
    line: int  # in reference/walrelay/<module>.py
    before: str
    after: str
    diff: str
    reason: str | None = None  # from equivalent.toml, if listed


@dataclass
class ModuleScore:
    module: str
    total: int = 0
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    no_tests: int = 0
    not_checked: int = 0  # the --minutes budget ran out first
    other: int = 0
    survivors: list[Survivor] = field(default_factory=list)

    @property
    def score(self) -> float:
        judged = self.killed + self.survived + self.timeout
        return (self.killed + self.timeout) / judged if judged else 0.0


def load_equivalents(path: Path = EQUIVALENTS) -> list[dict[str, str]]:
    """The committed list of equivalent mutants: ``[[equivalent]]`` tables with module, function,
    before, after (the mutated line, stripped) and reason. ``path``: a file, or a directory whose
    ``*.toml`` files are read in name order (a file per module keeps parallel triage apart)."""
    if path.is_dir():
        return [item for f in sorted(path.glob("*.toml")) for item in load_equivalents(f)]
    if not path.exists():
        return []
    body = tomllib.loads(path.read_text(encoding="utf-8"))
    items = body.get("equivalent", [])
    for i, item in enumerate(items):
        missing = {"module", "function", "before", "after", "reason"} - set(item)
        if missing:
            raise SystemExit(f"{path}: entry {i + 1} lacks {sorted(missing)}")
    return list(items)


def build_scratch(scratch: Path, modules: list[str]) -> None:
    """The tree mutmut runs in (see the module docstring)."""
    if scratch.exists():
        shutil.rmtree(scratch)
    (scratch / "src").mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "reference" / "walrelay", scratch / "src" / "walrelay", ignore=ignore)
    shutil.copytree(ROOT / "tests", scratch / "tests", ignore=ignore)
    shutil.copytree(ROOT / "chaos", scratch / "chaos", ignore=ignore)
    shutil.copytree(ROOT / "spec", scratch / "spec", ignore=ignore)
    shutil.copytree(ROOT / "docs", scratch / "docs", ignore=ignore)
    tests = sorted({t for m in modules for t in MODULES[m]})
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    config = {
        "source_paths": ["src"],
        "only_mutate": [f"src/walrelay/{m}.py" for m in modules],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-x"],
        # mutmut runs the tests inside mutants/: what they read beside tests/ must be there too
        "also_copy": ["docs", "spec", "chaos", "examples"],
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    (scratch / "pyproject.toml").write_text(pyproject + "\n".join(lines) + "\n", encoding="utf-8")


def mutmut(
    scratch: Path, *args: str, capture: bool = True, limit_s: float | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(scratch / "chaos"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("HYPOTHESIS_PROFILE", "mutate")  # derandomized, 20 examples (tests/conftest.py)
    exe = Path(sys.executable).with_name("mutmut")
    proc = subprocess.Popen(
        [str(exe), *args],
        cwd=scratch,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:  # the budget: stop mutmut and its workers
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        print(f"mutate: stopped mutmut after {(limit_s or 0) / 60:.0f} minutes (--minutes)", flush=True)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


_HUNK = re.compile(r"^@@ -(\d+)")


def _survivor(scratch: Path, name: str, module: str) -> Survivor:
    shown = mutmut(scratch, "show", name).stdout
    minus = [ln[1:] for ln in shown.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in shown.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    before = minus[0].strip() if minus else ""
    after = plus[0].strip() if plus else ""
    mangled = name.rsplit("__mutmut_", 1)[0].split(".")[-1]  # x_func, or xǁClassǁmethod
    function = mangled[2:].replace("ǁ", ".") if mangled.startswith("xǁ") else mangled.removeprefix("x_")
    source = (ROOT / "reference" / "walrelay" / f"{module}.py").read_text(encoding="utf-8").splitlines()
    line = next((i + 1 for i, text in enumerate(source) if before and text.strip() == before), 0)
    return Survivor(name, module, function, line, before, after, shown)


def _status(code: int | None) -> str:
    """mutmut's own reading of a mutant's exit code (killed, survived, timeout, no tests, ...)."""
    from mutmut.stats import status_by_exit_code

    return str(status_by_exit_code[code])


def collect(scratch: Path, modules: list[str], equivalents: list[dict[str, str]]) -> list[ModuleScore]:
    """Read mutmut's per-file results (``mutants/src/walrelay/<module>.py.meta``)."""
    scores = []
    for module in modules:
        meta = scratch / "mutants" / "src" / "walrelay" / f"{module}.py.meta"
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        s = ModuleScore(module)
        for name, code in sorted(codes.items()):
            s.total += 1
            status = _status(code)
            if status in ("killed", "caught by type check"):
                s.killed += 1
            elif status == "survived":
                s.survived += 1
                sv = _survivor(scratch, name, module)
                for eq in equivalents:
                    same = (eq["module"], eq["before"], eq["after"]) == (module, sv.before, sv.after)
                    if same and eq["function"] in (sv.function, sv.function.split(".")[-1]):
                        sv.reason = eq["reason"]
                s.survivors.append(sv)
            elif status == "timeout":
                s.timeout += 1
            elif status == "no tests":
                s.no_tests += 1
            elif status == "not checked":
                s.not_checked += 1
            else:
                s.other += 1
        scores.append(s)
    return scores


def report(scores: list[ModuleScore], seconds: float) -> str:
    out = [f"# mutation report ({seconds / 60:.1f} min)", ""]
    out.append("| module | mutants | killed | survived (equivalent) | timeout | no test | not checked | score |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in scores:
        eq = sum(1 for sv in s.survivors if sv.reason)
        out.append(
            f"| {s.module} | {s.total} | {s.killed} | {s.survived} ({eq}) | {s.timeout} | {s.no_tests} | "
            f"{s.not_checked} | {100 * s.score:.1f}% |"
        )
    for s in scores:
        open_ = [sv for sv in s.survivors if not sv.reason]
        if open_:
            out += ["", f"## {s.module}: {len(open_)} survivors not triaged", ""]
            for sv in open_:
                out += [f"### reference/walrelay/{s.module}.py:{sv.line} ({sv.function})", "```diff", sv.diff, "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="just mutate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", nargs="+", choices=sorted(MODULES), help="default: all 13")
    ap.add_argument("--sample", action="store_true", help=f"the CI sample: {', '.join(SAMPLE)}")
    ap.add_argument(
        "--nightly",
        action="store_true",
        help="tonight's group of modules (one of three, in turn by date) within 55 minutes",
    )
    ap.add_argument("--scratch", type=Path, help="the scratch tree (default: a new temporary directory)")
    ap.add_argument("--out", type=Path, help="write report.md and results.json here")
    ap.add_argument("--check", action="store_true", help="exit 1 if a survivor is not listed in tests/mutation/*.toml")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="stop mutmut after this long (0: no limit); mutants not reached are reported as not checked",
    )
    ap.add_argument("--equivalents", type=Path, default=EQUIVALENTS, help="the list of equivalent mutants")
    args = ap.parse_args(argv)
    if args.nightly:
        group = NIGHTLY_GROUPS[time.localtime().tm_yday % len(NIGHTLY_GROUPS)]
        modules, args.minutes = group, args.minutes or 55.0
    else:
        modules = SAMPLE if args.sample else args.modules or list(MODULES)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="walrelay-mutate-"))
    equivalents = load_equivalents(args.equivalents)
    started = time.monotonic()
    print(f"mutate: {', '.join(modules)} in {scratch}", flush=True)
    build_scratch(scratch, modules)
    budget = args.minutes * 60 or None
    run = mutmut(scratch, "run", "--max-children", str(args.max_children), capture=False, limit_s=budget)
    if run.returncode not in (0, 1, -9):
        print(f"mutate: mutmut run exited {run.returncode}", file=sys.stderr)
        return 2
    scores = collect(scratch, modules, equivalents)
    text = report(scores, time.monotonic() - started)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text, encoding="utf-8")
        body = [
            {**{k: v for k, v in vars(s).items() if k != "survivors"}, "score": s.score,
             "survivors": [vars(sv) for sv in s.survivors]}
            for s in scores
        ]  # fmt: skip
        (args.out / "results.json").write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    untriaged = [sv for s in scores for sv in s.survivors if not sv.reason]
    unjudged = [
        s.module for s in scores if s.total and not (s.killed + s.survived + s.timeout) and s.not_checked < s.total
    ]
    if unjudged:
        print(f"mutate: no mutant of {unjudged} was judged (see mutmut's output above)", file=sys.stderr)
        return 2
    if any(s.total == 0 for s in scores):
        print(f"mutate: no mutants for {[s.module for s in scores if s.total == 0]}", file=sys.stderr)
        return 2
    if args.check and untriaged:
        print(f"mutate: {len(untriaged)} survivors are neither killed nor listed as equivalent", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
