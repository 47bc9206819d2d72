"""The ``walrelay conform`` command: pick the role and cases, run them, print and write the report."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from walrelay_chaos.conform.replica_cases import CASES
from walrelay_chaos.conform.report import console_line, summary, write_html, write_json
from walrelay_chaos.conform.suite import exit_status, run_replica_suite, select
from walrelay_chaos.real import ImplError, NodeCommands


def run(
    replica: str | None,
    *,
    out: str | None,
    only: list[str] | None,
    timeout: float,
    list_only: bool,
    power_loss: bool = True,
    rules_index_only: bool = False,
) -> int:
    if rules_index_only:
        print(rules_index(), end="")
        return 0
    if list_only:
        for c in CASES:
            print(f"{c.id:<36} {','.join(c.rules):<20} {c.title}")
        return 0
    try:
        commands = NodeCommands.walrelay() if replica in (None, "walrelay") else NodeCommands.from_file(replica)
        cases = select(only)
    except (ImplError, ValueError) as e:
        print(f"walrelay conform: error: {e}", file=sys.stderr)
        return 2
    impl = "walrelay" if replica in (None, "walrelay") else str(replica)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="walrelay-conform-"))
    root.mkdir(parents=True, exist_ok=True)
    # Every run starts from empty data: objects left by an earlier run into the same --out would
    # change what the cases see.
    shutil.rmtree(root / "work", ignore_errors=True)
    print(f"walrelay conform --replica {impl}: {len(cases)} cases, report in {root}", flush=True)
    results = run_replica_suite(
        commands,
        cases=cases,
        timeout=timeout,
        workdir=root / "work",
        progress=lambda r: print(console_line(r), flush=True),
    )
    write_json(root / "results.json", results, "replica", commands.to_json())
    write_html(root / "report.html", results, "replica")
    print(summary(results, "replica"))
    print(
        f"report: {root / 'report.html'}  (results.json beside it; the replica's log: {root / 'work' / 'replica.log'})"
    )
    return exit_status(results)


def rules_index() -> str:
    """docs/conformance.md's rules index: each rule, its section, its text and the cases that check it
    (``walrelay conform --rules-index``; a test keeps the doc equal to this)."""
    from walrelay_chaos.conform.rules import RULES

    rows = ["| rule | § | the rule | cases (`walrelay conform --only ID`) |", "|---|---|---|---|"]
    for r in RULES.values():
        cases = ", ".join(f"`{c.id}`" for c in CASES if r.id in c.rules)
        rows.append(f"| {r.id} | {r.section} | {r.text} | {cases} |")
    return "\n".join(rows) + "\n"
