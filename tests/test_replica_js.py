"""A second implementation in the tree: examples/replica-js, a replica in Node.js written from the docs.

``walrelay conform --replica`` must pass it, and each deliberately broken variant (``--bug NAME``,
its implementation file in examples/replica-js/bugs/) must fail with a verdict that names the rule
it breaks. This is the conformance door measured on bugs planted in an outside implementation,
not in the reference (issue 15's table: before the per-rule cases, 1 of 5 was caught).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from walrelay_chaos import schedule as op
from walrelay_chaos.conform.suite import run_replica_suite, select
from walrelay_chaos.mutants import ACKED_THEN_POWER_LOSS
from walrelay_chaos.pace import budget
from walrelay_chaos.powermount import power_loss_unavailable
from walrelay_chaos.real import NodeCommands, run_real
from walrelay_chaos.s3server import S3Server

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "examples" / "replica-js"

# Each planted bug and the rule its verdict must name (the first rule the suite sees broken).
KILLS = {
    "ack-before-fsync": "R-6.2-3",
    "ack-one-more": "R-6.2-4",
    "no-chain-check": "R-6.2-5",
    "no-epoch-check": "R-6.2-1",
    "volatile-promise": "R-6.1-1",
}


def _impl(bug: str | None) -> NodeCommands:
    node = shutil.which("node")
    assert node, "examples/replica-js needs Node.js (node) on PATH"
    argv = [node, str(JS / "replica.js"), "replica", "--id", "{id}", "--listen", "{listen}", "--data", "{data}"]
    argv += ["--placement", "{placement}", "--ca", "{ca}", "--cert", "{cert}", "--key", "{key}"]
    if bug:
        argv += ["--bug", bug]
    return NodeCommands(tuple(argv), ("unused",))


def test_every_broken_variant_has_an_implementation_file_that_the_harness_accepts() -> None:
    for bug in KILLS:
        commands = NodeCommands.from_file(JS / "bugs" / f"{bug}.json")
        assert "--bug" in commands.replica and bug in commands.replica, commands.replica
    NodeCommands.from_file(JS / "impl.json")


@pytest.mark.integration
def test_the_js_replica_passes_every_case(tmp_path: Path) -> None:
    results = run_replica_suite(_impl(None), cases=select(None), timeout=budget(30), workdir=tmp_path)
    missing = power_loss_unavailable()
    assert missing is None or os.environ.get("CI") != "true", missing
    bad = [
        (r.id, r.rule, r.why) for r in results if r.verdict != "pass" and not (missing and r.id.startswith("power."))
    ]
    assert not bad, bad


@pytest.mark.integration
@pytest.mark.parametrize("bug", sorted(KILLS))
def test_each_broken_js_variant_fails_naming_the_rule_it_breaks(bug: str, tmp_path: Path) -> None:
    results = run_replica_suite(_impl(bug), cases=select(None), timeout=budget(5), workdir=tmp_path)
    failed = [r for r in results if r.verdict == "fail"]
    assert failed, f"--bug {bug} passed every case"
    assert KILLS[bug] in {r.rule for r in failed}, [(r.id, r.rule, r.why) for r in failed]
    # No case of the good implementation's behaviour is blamed for a harness problem.
    assert not [r for r in results if r.verdict == "unknown" and "harness error" in r.why]


@pytest.mark.integration
def test_the_js_selftest_passes() -> None:
    """Its hashes against Python's hashlib and protocol.md's vectors, then a wire conversation."""
    node = shutil.which("node")
    assert node
    proc = subprocess.run(
        [node, str(JS / "selftest.js")], capture_output=True, text=True, timeout=budget(300), cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.integration
def test_a_mixed_cluster_of_js_replicas_and_the_reference_primary_is_valid_through_a_power_failure(
    tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    """The chaos door with the outside replicas: writes, a power failure of three replicas and the
    primary right after an acknowledged write, a takeover; every check of real mode, including the
    replicas' logs read over the wire at the end."""
    schedule = [op.Write(5), op.Settle(300), *ACKED_THEN_POWER_LOSS, op.Write(5), op.Settle(300), op.Check()]
    out = run_real(str(tmp_path / "run"), schedule, s3_servers[0], impl=NodeCommands.from_file(JS / "impl.json"))
    assert len(out.ok) >= 5, out
