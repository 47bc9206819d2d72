"""The ``walrelay conform`` command: pick the role and cases, run them, print and write the report."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from walrelay_chaos.conform.primary_cases import PRIMARY_CASES, PrimaryCase
from walrelay_chaos.conform.replica_cases import CASES, Case
from walrelay_chaos.conform.report import console_line, summary, write_html, write_json
from walrelay_chaos.conform.suite import exit_status, run_primary_suite, run_replica_suite, select, select_primary
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
    primary: str | None = None,
) -> int:
    if rules_index_only:
        print(rules_index(), end="")
        return 0
    if list_only:
        for c in _all_cases():
            print(f"{c.id:<36} {','.join(c.rules):<20} {c.title}")
        return 0
    if primary is not None:
        return _run_primary(primary, out=out, only=only, timeout=timeout)
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


def _all_cases() -> list[Case | PrimaryCase]:
    return [*CASES, *PRIMARY_CASES]


def rules_index() -> str:
    """docs/conformance.md's rules index: each rule, its section, its text and the cases that check it
    (``walrelay conform --rules-index``; a test keeps the doc equal to this)."""
    from walrelay_chaos.conform.rules import RULES

    rows = ["| rule | § | the rule | cases (`walrelay conform --only ID`) |", "|---|---|---|---|"]
    for r in RULES.values():
        cases = ", ".join(f"`{c.id}`" for c in _all_cases() if r.id in c.rules)
        rows.append(f"| {r.id} | {r.section} | {r.text} | {cases} |")
    return "\n".join(rows) + "\n"


def run_directed_command(impl_file: str | None, *, kill: bool, only: list[str] | None, out: str | None = None) -> int:
    """``walrelay conform --directed IMPL`` / ``--kill-table``: directed schedules as real processes;
    ``out``: a directory for results.json, report.html and each run's replay file and timeline."""
    from walrelay_chaos.campaign import CampaignError, s3_server
    from walrelay_chaos.conform.directed import kill_table, line, run_directed, write_results
    from walrelay_chaos.mutants import MUTANTS

    unknown = sorted(set(only or ()) - set(MUTANTS))
    if unknown:
        print(
            f"walrelay conform: error: no directed schedule {unknown[0]!r}; known: {', '.join(MUTANTS)}",
            file=sys.stderr,
        )
        return 2
    try:
        commands = NodeCommands.walrelay() if impl_file in (None, "walrelay") else NodeCommands.from_file(impl_file)
    except ImplError as e:
        print(f"walrelay conform: error: {e}", file=sys.stderr)
        return 2
    what = (
        "kill table: each reference bug through its own directed schedule"
        if kill
        else f"directed schedules against {impl_file}"
    )
    print(f"walrelay conform ({what}), real processes over TCP", flush=True)
    report_dir = Path(out) if out else None
    try:
        with s3_server() as s3:
            show = lambda r: print(line(r), flush=True)  # noqa: E731
            results = (
                kill_table(s3, only=only, progress=show, report_dir=report_dir)
                if kill
                else run_directed(commands, str(impl_file), s3, only=only, progress=show, report_dir=report_dir)
            )
    except CampaignError as e:
        print(f"walrelay conform: error: {e}", file=sys.stderr)
        return 2
    if report_dir is not None:
        print(f"report: {write_results(report_dir, results, f'walrelay conform ({what})', kill)}")
    verdicts = [r.verdict for r in results]
    if kill:
        caught = verdicts.count("invalid")
        print(f"kill table: {caught} of {len(results)} planted bugs caught from the outside")
        return 0 if caught == len(results) else 1
    print(f"directed: {verdicts.count('valid')} of {len(results)} schedules valid")
    return 1 if "invalid" in verdicts else 2 if "unknown" in verdicts else 0


def _run_primary(impl_file: str, *, out: str | None, only: list[str] | None, timeout: float) -> int:
    """``walrelay conform --primary IMPL``: the primary cases against the file's primary template."""
    from walrelay_chaos.campaign import CampaignError, s3_server

    try:
        commands = NodeCommands.walrelay() if impl_file == "walrelay" else NodeCommands.from_file(impl_file)
        cases = select_primary(only)
    except (ImplError, ValueError) as e:
        print(f"walrelay conform: error: {e}", file=sys.stderr)
        return 2
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="walrelay-conform-"))
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "work", ignore_errors=True)
    print(f"walrelay conform --primary {impl_file}: {len(cases)} cases, report in {root}", flush=True)
    try:
        with s3_server() as s3:
            results = run_primary_suite(
                commands,
                cases=cases,
                timeout=timeout,
                workdir=root / "work",
                s3=s3,
                progress=lambda r: print(console_line(r), flush=True),
            )
    except CampaignError as e:
        print(f"walrelay conform: error: {e}", file=sys.stderr)
        return 2
    write_json(root / "results.json", results, "primary", commands.to_json())
    write_html(root / "report.html", results, "primary")
    print(summary(results, "primary"))
    print(f"report: {root / 'report.html'}  (results.json beside it; each case's primary log under {root / 'work'})")
    return exit_status(results)
