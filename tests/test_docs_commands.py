"""Runnable docs (issue 18, item 2): every command in the fenced shell blocks of README.md,
docs/conformance.md, spec/README.md and chaos/README.md is run by a test, or marked as a template.

``COVERAGE`` says, for each command line, how: ``RUN`` (run here, by
``test_the_readme_commands_run_as_written``, against one cluster and one archive made from the
README's own commands, in a scratch directory), ``("test", "tests/FILE.py::NAME ...")`` (that test
runs it, or the same command in small: a long campaign with fewer seeds or trials), ``CI`` (what
``.ci/run`` runs), or ``TEMPLATE`` (the line is a shape for the reader to fill in: it carries a
``# template`` marker or names ``myimpl.json``, the reader's implementation file). A command added
to a doc without an entry here, or an entry whose command left the docs, fails
``test_every_doc_command_is_run_or_marked_a_template``.

Substitutions in the run (the README says so): ``HOST:PORT`` and ``...`` are the addresses of the
processes started here, a bookmark is the one the primary answered, the TLS flags the README leaves
out are added, and ``./dev``, ``.venv`` and ``demo-run`` are the checkout's and the scratch
directory's absolute paths.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pytest

from walrelay.demo import Facts, Mark, _next_steps

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/conformance.md", "spec/README.md", "chaos/README.md")
SHELL_BLOCKS = ("", "sh", "bash", "shell", "console")
LEADS = ("walrelay", "./dev", "just", "source")
PLACEHOLDER_FILES = ("myimpl.json",)  # docs/conformance.md: the reader's implementation file

RUN = ("run", "")
CI = ("ci", ".ci/run")
TEMPLATE = ("template", "")


def _test(*names: str) -> tuple[str, str]:
    return ("test", " ".join(names))


DEMO_TESTS = _test(
    "tests/test_processes.py::test_demo_scenario_end_to_end",
    "tests/test_demo_interrupt.py::test_ctrl_c_stops_the_demo_kills_its_nodes_and_prints_one_line",
)
IMPL_TEST = _test("tests/test_docs_commands.py::test_the_ready_impl_file_runs_the_reference_through_the_chaos_door")

COVERAGE: dict[str, tuple[str, str]] = {
    # README.md
    "./dev demo": DEMO_TESTS,
    "./dev test": CI,
    "./dev demo --dir demo-run": DEMO_TESTS,
    "./dev walrelay archive verify flights --archive demo-run/archive": RUN,
    "source .venv/bin/activate": RUN,
    "walrelay certs init --dir certs --cluster prod": RUN,
    "walrelay certs node --dir certs --role replica --name r0 --host 10.0.0.5": RUN,
    "walrelay certs node --dir certs --role primary --name p1": RUN,
    "walrelay certs client --dir certs --name ops --admin": RUN,
    "walrelay replica --id 0 --data data-r0 --placement placement --ca certs/ca.crt --cert certs/r0.crt "
    "--key certs/r0.key": RUN,
    "walrelay call --primary HOST:PORT --ca certs/ca.crt --cert certs/ops.crt --key certs/ops.key __status__": RUN,
    "walrelay primary --object flights --placement placement --replicas ... --data data-p1 --archive archive": RUN,
    "walrelay call --primary HOST:PORT create_flight WR100 400": RUN,
    "walrelay call --primary HOST:PORT book WR100 7 alice": RUN,
    "walrelay call --primary HOST:PORT __bookmark__": RUN,
    "walrelay call --primary HOST:PORT --list": RUN,
    "walrelay call --primary HOST:PORT __restore__ 00000001-000000000000002a": RUN,
    "walrelay primary ... --restore-to 00000001-000000000000002a": RUN,
    "walrelay archive ls flights --archive archive": RUN,
    "walrelay archive verify flights --archive archive": RUN,
    "walrelay archive fuzz --trials 600": RUN,  # in small: --trials 3
    "walrelay restore flights --to 00000001-000000000000002a --out f.db --archive archive": RUN,
    "walrelay restore flights --to latest --out now.db --archive archive": RUN,
    "walrelay archive retain flights --archive archive --window-days 30 --dry-run": RUN,
    "walrelay --version": RUN,
    "just chaos": _test("tests/test_chaos_campaign.py::test_a_campaign_of_the_real_code_is_valid"),
    "just chaos-mutants": _test(
        "tests/test_chaos_campaign.py::test_the_cli_kill_table_kills_every_mutant_by_directed_and_by_random_search"
    ),
    "walrelay chaos run --seeds 20": RUN,
    "walrelay chaos replay runs/latest/seed-17/replay.json": RUN,
    "walrelay chaos run --mutant ack_after_2 --seeds 10": _test(
        "tests/test_chaos_campaign.py::test_a_failing_check_makes_the_campaign_invalid_with_a_replay_per_seed"
    ),
    "walrelay chaos run --mode real --impl myimpl.json --seeds 20": TEMPLATE,
    "walrelay conform --replica myimpl.json --out report/": TEMPLATE,
    "walrelay conform --replica examples/replica-js/impl.json": _test(
        "tests/test_replica_js.py::test_the_js_replica_passes_every_case"
    ),
    "walrelay conform --primary myimpl.json": TEMPLATE,
    "$ ./dev bench": _test("tests/test_docs_commands.py::test_the_bench_command_is_the_benchmark"),
    # docs/conformance.md
    "walrelay conform --replica myimpl.json --out conform-report/": TEMPLATE,
    "walrelay conform": _test("tests/test_conform.py::test_the_reference_replica_passes_every_case"),
    "walrelay conform --list": RUN,
    "walrelay conform --only append. --only R-5.15": RUN,
    "walrelay chaos run --mode real --impl myimpl.json --seeds 20 --out runs/": TEMPLATE,
    "walrelay chaos run --mode real --impl examples/impl-walrelay.json --seeds 1 --out runs/": IMPL_TEST,
    # spec/README.md
    "just tlc": _test("tests/test_spec_tlc.py::test_tlc_ci_suite_gets_every_expected_outcome"),
    "just tlc-deep": _test("tests/test_tlc_runner.py::test_select_by_suite_name_and_path"),
    "./dev walrelay tlc --list": RUN,
    "./dev walrelay tlc no_fencing r3_q2_e2_w2_failover": _test(
        "tests/test_spec_tlc.py::test_tlc_ci_suite_gets_every_expected_outcome"
    ),
    # chaos/README.md (its commands are another engineer's: an entry here, never an edit there)
    "walrelay chaos run --mode sim --seeds 3000 --require-coverage": _test(
        "tests/test_chaos_campaign.py::test_a_campaign_of_the_real_code_is_valid"
    ),
    "walrelay chaos run --mode real --seeds 10": _test(
        "tests/test_chaos_real.py::test_the_cli_runs_a_real_campaign_through_an_implementation_file_and_replays_it"
    ),
    "walrelay chaos run --mode real --impl myimpl.json": TEMPLATE,
    "walrelay chaos replay runs/latest-sim/seed-17/replay.json": RUN,
    "walrelay chaos replay runs/latest-sim/seed-17/replay.json --out again/": RUN,
    "walrelay chaos report runs/latest-sim/seed-17/history.jsonl": RUN,
}


@dataclass(frozen=True)
class DocCommand:
    doc: str
    line: int
    raw: str  # the line as written
    key: str  # the command: a console prompt kept, the comment cut, spaces collapsed


def _key(text: str) -> str:
    """``walrelay x   # why`` -> ``walrelay x``: a comment starts at a ``#`` after a space."""
    return " ".join(re.split(r"\s#(?:\s|$)", text, maxsplit=1)[0].split())


def doc_commands() -> list[DocCommand]:
    """Every command line of a fenced shell block (or an untagged one) of the docs. In a block
    tagged as shell, every line that is not blank or a comment must be a command."""
    found: list[DocCommand] = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for m in re.finditer(r"^ *```([\w-]*)\n(.*?)^ *```", text, re.S | re.M):
            if m.group(1) not in SHELL_BLOCKS:
                continue
            first = text[: m.start(2)].count("\n") + 1
            for i, raw in enumerate(m.group(2).splitlines()):
                line = raw.strip()
                bare = line.removeprefix("$ ")
                if bare.split(" ", 1)[0] in LEADS:
                    found.append(DocCommand(doc, first + i, raw, _key(line)))
                elif m.group(1) and line and not line.startswith("#"):
                    pytest.fail(f"{doc}:{first + i}: a line of a shell block that is not a command: {raw!r}")
    return found


def test_every_doc_command_is_run_or_marked_a_template() -> None:
    commands = doc_commands()
    assert len(commands) >= 40, commands  # the extraction finds the blocks
    unknown = [f"{c.doc}:{c.line}: {c.key}" for c in commands if c.key not in COVERAGE]
    assert not unknown, "commands in the docs that no test runs and no marker calls a template:\n" + "\n".join(unknown)
    stale = set(COVERAGE) - {c.key for c in commands}
    assert not stale, f"COVERAGE entries whose command is in no doc any more: {sorted(stale)}"
    for c in commands:
        kind, where = COVERAGE[c.key]
        if kind == "template":
            assert "# template" in c.raw or any(p in c.raw for p in PLACEHOLDER_FILES), (
                f"{c.doc}:{c.line}: a template must say so (# template, or myimpl.json): {c.raw}"
            )
        elif kind == "test":
            for name in where.split():
                path, func = name.split("::")
                assert re.search(rf"^(async )?def {func}\(", (ROOT / path).read_text(), re.M), (
                    f"{c.doc}:{c.line}: {c.key} is said to be run by {name}, which does not exist"
                )
        elif kind == "ci":
            assert "./dev test" in (ROOT / where).read_text()


def test_the_bench_command_is_the_benchmark() -> None:
    """``./dev bench`` (README, measured numbers) is ``walrelay bench``: a benchmark, not a test, so
    here only its command line is checked; the numbers are re-measured by hand."""
    dev = (ROOT / "dev").read_text()
    assert re.search(r'^bench\)\n.*\n.*\n    exec "\$VENV/bin/walrelay" bench "\$@"', dev, re.M), dev
    out = subprocess.run(_walrelay("bench", "--help"), capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "--seconds" in out.stdout, out.stdout + out.stderr


def _walrelay(*args: str) -> list[str]:
    return [sys.executable, "-m", "walrelay", *args]


def _in_process(args: list[str]) -> tuple[int, str, str]:
    """``walrelay ARGS`` by its entry point: (exit status, stdout, stderr). The signal handlers it
    sets for itself are put back."""
    from walrelay.cli import main

    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(args)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return rc, out.getvalue(), err.getvalue()


class Session:
    """The docs' commands run in one scratch directory, each once (or more), recording which ran."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.commands = {c.key: c for c in doc_commands()}
        self.ran: set[str] = set()
        self.procs: list[subprocess.Popen[str]] = []
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def argv(self, key: str, subs: dict[str, str], extra: tuple[str, ...]) -> list[str]:
        assert key in self.commands, f"not a doc command: {key}"
        assert COVERAGE[key] == RUN, key
        self.ran.add(key)
        text = key
        for old, new in subs.items():
            assert old in text, (old, text)
            text = text.replace(old, new)
        argv = [*shlex.split(text), *extra]
        if argv[0] == "./dev":
            argv[0] = str(ROOT / "dev")
        return argv

    def run(self, key: str, subs: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> str:
        """Run a doc command to its end; it must exit 0. Its stdout. A ``walrelay`` command that
        ends by itself runs in this process (``walrelay.cli.main``, what the ``walrelay`` script
        calls, in the scratch directory): a second of Python start-up saved per command."""
        argv = self.argv(key, subs or {}, extra)
        if argv[0] == "walrelay":
            rc, out, err = _in_process(argv[1:])
        else:
            proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, check=False)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        assert rc == 0, f"{key}\n$ {shlex.join(argv)}\nexit {rc}\n{out}{err}"
        return out

    def call(self, key: str, address: str, subs: dict[str, str] | None = None, *, tls: bool = True) -> dict[str, Any]:
        """A ``walrelay call`` doc command on the primary at ``address`` (with the ops client's TLS
        flags, which the README leaves out): the reply's body."""
        out = self.run(key, {"HOST:PORT": address, **(subs or {})}, TLS_CLIENT if tls else ())
        reply = json.loads(out)
        assert reply["status"] == "OK", reply
        body: dict[str, Any] = reply["body"]
        return body

    def start(self, key: str, subs: dict[str, str], extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], str]:
        """A node from its doc command, in the background: its address from ``LISTENING HOST:PORT``."""
        proc = self.spawn(key, subs, extra)
        return proc, self.listening(key, proc)

    def start_many(self, key: str, subs: list[dict[str, str]]) -> list[str]:
        """Several nodes from one doc command, started together: their addresses, in order."""
        procs = [self.spawn(key, one, ()) for one in subs]
        return [self.listening(key, proc) for proc in procs]

    def spawn(self, key: str, subs: dict[str, str], extra: tuple[str, ...]) -> subprocess.Popen[str]:
        argv = self.argv(key, subs, extra)
        if argv[0] == "walrelay":
            argv[:1] = _walrelay()
        log = self.cwd / f"node-{len(self.procs)}.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=err, text=True)
        self.procs.append(proc)
        return proc

    def listening(self, key: str, proc: subprocess.Popen[str]) -> str:
        log = self.cwd / f"node-{self.procs.index(proc)}.log"
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("LISTENING "), f"{key}: said {first!r}; its log:\n{log.read_text()}"
        return first.split(" ", 1)[1]

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """SIGTERM, a clean stop (a primary archives what is durable first)."""
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        assert proc.returncode == 0, proc.returncode

    def stop_all(self) -> None:
        """SIGTERM to every node still running, then wait for each: clean stops, side by side."""
        running = [p for p in self.procs if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            proc.wait()
            assert proc.returncode == 0, proc.returncode

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


TLS_PRIMARY = ("--ca", "certs/ca.crt", "--cert", "certs/p1.crt", "--key", "certs/p1.key")
TLS_CLIENT = ("--ca", "certs/ca.crt", "--cert", "certs/ops.crt", "--key", "certs/ops.key")
PRIMARY = "walrelay primary --object flights --placement placement --replicas ... --data data-p1 --archive archive"
CALL = "walrelay call --primary HOST:PORT "
DOC_BOOKMARK = "00000001-000000000000002a"


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    monkeypatch.chdir(tmp_path)  # where the commands run in this process find their relative paths
    s = Session(tmp_path)
    try:
        yield s
    finally:
        s.close()


def _wait_serving(address: str, cwd: Path) -> None:
    """Poll the primary's ``__status__`` (as the ops client) until it serves: recovery done, a quorum up."""
    import trio

    from walrelay.certs import CertPaths
    from walrelay.client import Client
    from walrelay.tls import TlsTransport
    from walrelay.transport import TcpTransport

    async def poll() -> None:
        tr = TlsTransport(TcpTransport(), CertPaths.in_dir(cwd / "certs", "ops"))
        async with Client.connect(tr, address) as client:
            while True:
                if (await client.call("__status__")).body["phase"] == "serving":
                    return
                await trio.sleep(0.05)

    trio.run(poll)


def _bookings(address: str) -> set[str]:
    """The bookings of WR100 the primary at ``address`` serves, as "SEAT PASSENGER"."""
    rc, out, err = _in_process(["call", "--primary", address, *TLS_CLIENT, "bookings", "WR100"])
    assert rc == 0, out + err
    return {f"{row['seat']} {row['passenger']}" for row in json.loads(out)["body"]}


@pytest.mark.integration
def test_the_readme_commands_run_as_written(session: Session) -> None:
    """The README's own cluster: certificates, five replicas and a primary from its commands; writes,
    a bookmark, a restore by request and one at start (undoing it); then the archive commands on
    the archive those primaries wrote. Each result is checked, not only the exit status."""
    s, cwd = session, session.cwd
    s.run("walrelay certs init --dir certs --cluster prod")
    s.run("walrelay certs node --dir certs --role replica --name r0 --host 10.0.0.5")
    s.run("walrelay certs node --dir certs --role primary --name p1")
    s.run("walrelay certs client --dir certs --name ops --admin")
    assert {p.name for p in (cwd / "certs").iterdir()} >= {"ca.crt", "r0.crt", "p1.key", "ops.crt"}

    replica = (
        "walrelay replica --id 0 --data data-r0 --placement placement --ca certs/ca.crt --cert certs/r0.crt "
        "--key certs/r0.key"
    )
    addresses = s.start_many(replica, [{"--id 0": f"--id {i}", "data-r0": f"data-r{i}"} for i in range(5)])
    replicas = {"...": ",".join(addresses)}

    p1, address = s.start(PRIMARY, replicas, TLS_PRIMARY)
    _wait_serving(address, cwd)
    status = s.call(CALL + "--ca certs/ca.crt --cert certs/ops.crt --key certs/ops.key __status__", address, tls=False)
    assert status["phase"] == "serving" and status["epoch"] == 1, status
    s.call(CALL + "create_flight WR100 400", address)
    s.call(CALL + "book WR100 7 alice", address)
    bookmark = str(s.call(CALL + "__bookmark__", address)["bookmark"])
    listed = s.run(CALL + "--list", {"HOST:PORT": address}, TLS_CLIENT)
    assert "operations of app 'flights'" in listed and "  book " in listed and "__ops__" in listed, listed
    t_mid = time.time_ns() // 1000  # after alice, before bob: names the bookmark's point
    time.sleep(0.02)  # so that bob's timestamp lies strictly after t_mid
    s.call(CALL + "book WR100 7 alice", address, {"7 alice": "8 bob"})
    undo = s.call(CALL + f"__restore__ {DOC_BOOKMARK}", address, {DOC_BOOKMARK: bookmark})
    s.stop(p1)

    p2, address = s.start(PRIMARY, replicas, TLS_PRIMARY)  # performs the restore asked for
    _wait_serving(address, cwd)
    assert _bookings(address) == {"7 alice"}
    s.stop(p2)
    rest = PRIMARY.removeprefix("walrelay primary ").replace("...", replicas["..."])
    p3, address = s.start(
        f"walrelay primary ... --restore-to {DOC_BOOKMARK}",
        {"...": rest, DOC_BOOKMARK: str(undo["undo_bookmark"])},
        TLS_PRIMARY,
    )
    _wait_serving(address, cwd)
    assert _bookings(address) == {"7 alice", "8 bob"}  # the restore undone
    s.stop(p3)
    s.stop_all()

    listing = s.run("walrelay archive ls flights --archive archive")
    assert listing.count("restored from") == 2, listing
    assert s.run("walrelay archive verify flights --archive archive").strip().endswith("valid")
    s.run(f"walrelay restore flights --to {DOC_BOOKMARK} --out f.db --archive archive", {DOC_BOOKMARK: bookmark})
    conn = apsw.Connection(str(cwd / "f.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("SELECT seat, passenger FROM bookings").fetchall() == [(7, "alice")]
    finally:
        conn.close()
    s.run("walrelay restore flights --to latest --out now.db --archive archive")
    conn = apsw.Connection(str(cwd / "now.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:  # the newest archived point: the last branch, where the restore was undone (alice and bob)
        assert sorted(conn.execute("SELECT seat, passenger FROM bookings").fetchall()) == [(7, "alice"), (8, "bob")]
    finally:
        conn.close()
    s.run("walrelay archive retain flights --archive archive --window-days 30 --dry-run")
    assert s.run("walrelay --version").startswith("walrelay ")

    # The commands the demo prints at the end of a run kept with --dir run as printed, on an archive.
    mark = Mark(bookmark, 0, 1, set(), t_mid)
    printed = _next_steps(str(cwd), ("--archive", str(cwd / "archive")), Facts(mark=mark, latest=bookmark))
    tried = [shlex.split(_key(line))[1:] for line in printed if line.startswith("  walrelay ")]
    assert len(tried) == 5, printed
    for args in tried:
        rc, out, err = _in_process(args)
        assert rc == 0, f"{args}: exit {rc}\n{out}{err}"
        if args[0] == "restore":
            assert f"to bookmark {bookmark} " in out, out  # by bookmark and by time: the same point

    # The README's way to walrelay: ./dev walrelay (from anywhere), and the activated venv.
    (cwd / "demo-run").mkdir()
    (cwd / "demo-run" / "archive").symlink_to(cwd / "archive")
    out = s.run("./dev walrelay archive verify flights --archive demo-run/archive", {"demo-run": str(cwd / "demo-run")})
    assert out.strip().endswith("valid"), out
    activate = s.argv("source .venv/bin/activate", {".venv": str(Path(sys.executable).parent.parent)}, ())
    shell = subprocess.run(
        ["bash", "-c", f"{shlex.join(activate)} && command -v walrelay && walrelay --help"],
        cwd=cwd,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert shell.returncode == 0, f"exit {shell.returncode}: {shell.stdout[:300]}{shell.stderr}"
    found = shell.stdout.splitlines()[0]
    assert found == os.path.normpath(Path(sys.executable).parent / "walrelay"), shell.stdout[:300]

    # The README's and chaos/README.md's campaign in small (20 simulated seeds, a few seconds), and
    # seed 17 of it replayed and redrawn from the paths the docs name.
    out = s.run("walrelay chaos run --seeds 20")
    seed17 = cwd / "runs" / "latest-sim" / "seed-17"
    results = json.loads((cwd / "runs" / "latest-sim" / "results.json").read_text())
    assert (results["valid"], results["runs"]) == (True, 20), out
    assert (seed17 / "replay.json").is_file(), out  # a passing seed keeps its replay file
    for key in (
        "walrelay chaos replay runs/latest/seed-17/replay.json",
        "walrelay chaos replay runs/latest-sim/seed-17/replay.json",
        "walrelay chaos replay runs/latest-sim/seed-17/replay.json --out again/",
    ):
        assert s.run(key).startswith("valid: "), key
    history = (seed17 / "history.jsonl").read_text()  # written beside the replay file by a replay
    assert history and (cwd / "again" / "history.jsonl").read_text() == history  # the simulation replays exactly
    s.run("walrelay chaos report runs/latest-sim/seed-17/history.jsonl")
    assert "<html" in (cwd / "runs" / "latest-sim" / "seed-17" / "timeline.html").read_text().lower()

    # The corruption campaign in small, and docs/conformance.md's cases by prefix, the listings.
    out = s.run("walrelay archive fuzz --trials 600", {"--trials 600": "--trials 3"})
    assert out.splitlines()[-1].startswith("valid: 3 trials"), out
    out = s.run("walrelay conform --only append. --only R-5.15", extra=("--out", "conform-report"))
    assert "0 failed, 0 unknown" in out and "append.chain-break" in out and "truncate.applies" in out, out
    assert "append.ack-exact" in s.run("walrelay conform --list")
    assert "no_fencing" in s.run("./dev walrelay tlc --list")

    assert s.ran == {k for k, v in COVERAGE.items() if v == RUN}, {k for k, v in COVERAGE.items() if v == RUN} - s.ran


@pytest.mark.integration
def test_the_ready_impl_file_runs_the_reference_through_the_chaos_door(tmp_path: Path) -> None:
    """``examples/impl-walrelay.json``: the reference as another implementation would be given, over
    mutual TLS with the primary's ``--app kv``, through real mode. In small: the docs' ``chaos run
    --seeds 1`` is a 21-operation random schedule (about a minute); this is a replay file with
    that implementation and three writes, a wait and a check, judged by every real-mode check."""
    # The dev extras bring moto_server (./dev test installs them): missing, this fails, never skips.
    assert shutil.which("moto_server", path=str(Path(sys.executable).parent)), "moto_server is not installed"
    impl = json.loads((ROOT / "examples" / "impl-walrelay.json").read_text())
    assert "--app" in impl["primary"] and impl["primary"][impl["primary"].index("--app") + 1] == "kv"
    assert all("{cert}" in impl[role] for role in ("replica", "primary"))  # run over TLS
    replay = tmp_path / "replay.json"
    schedule = [{"op": "Write", "count": 3}, {"op": "Settle", "ms": 200}, {"op": "Check"}]
    replay.write_text(
        json.dumps({"harness": "walrelay-chaos-real/1", "seed": 0, "quorum": 3, "schedule": schedule, "impl": impl})
    )
    proc = subprocess.run(
        _walrelay("chaos", "replay", str(replay), "--out", str(tmp_path / "run")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "valid" in proc.stdout and "invalid" not in proc.stdout, proc.stdout
    history = (tmp_path / "run" / "history.jsonl").read_text()
    assert history.count('"ok"') >= 3, history[-2000:]  # the three writes were acknowledged
