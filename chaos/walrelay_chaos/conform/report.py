"""The conformance report: a console table, ``results.json`` and a self-contained ``report.html``.

A reader of a failure needs three things side by side: which rule (id and text), what the
implementation did instead, and the frames exchanged. The HTML report shows them per case, the
failures open, with nothing fetched from the network.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from walrelay_chaos.conform.rules import RULES
from walrelay_chaos.conform.suite import CaseResult


def console_line(r: CaseResult) -> str:
    mark = {"pass": "PASS", "fail": "FAIL", "unknown": "UNKNOWN"}[r.verdict]
    line = f"{mark:<8} {r.id:<36} {','.join(r.rules):<20} {r.seconds:6.2f}s"
    if r.verdict == "fail":
        line += f"\n         broke {r.rule}: {r.rule_text}\n         {r.why}"
    elif r.verdict == "unknown":
        line += f"\n         no verdict: {r.why}"
    return line


def summary(results: list[CaseResult], role: str) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "unknown")}
    return (
        f"conform --{role}: {len(results)} cases: {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['unknown']} unknown ({sum(r.seconds for r in results):.1f} s)"
    )


def write_json(path: Path, results: list[CaseResult], role: str, impl: object) -> None:
    body = {
        "role": role,
        "impl": impl,
        "verdict": "valid"
        if all(r.verdict == "pass" for r in results)
        else "invalid"
        if any(r.verdict == "fail" for r in results)
        else "unknown",
        "cases": [r.to_json() for r in results],
    }
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


_CSS = (
    "body{font:14px system-ui,sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;width:100%}"
    "td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}"
    ".pass{color:#176317}.fail{color:#a31515;font-weight:bold}.unknown{color:#8a6d00;font-weight:bold}"
    "pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}details{margin:.2em 0}"
)


def write_html(path: Path, results: list[CaseResult], role: str) -> None:
    rows = []
    for r in results:
        rules = "<br>".join(
            f"<b>{html.escape(rid)}</b> {html.escape(RULES[rid].text)}" for rid in r.rules if rid in RULES
        )
        detail = ""
        if r.verdict != "pass":
            broke = (
                f"<p>broke <b>{html.escape(r.rule or '')}</b>: {html.escape(r.rule_text or '')}</p>" if r.rule else ""
            )
            detail = f"{broke}<p>{html.escape(r.why)}</p>"
        frames = html.escape("\n".join(r.transcript))
        open_ = " open" if r.verdict != "pass" else ""
        rows.append(
            f"<tr><td class={r.verdict}>{r.verdict.upper()}</td><td><code>{html.escape(r.id)}</code><br>"
            f"{html.escape(r.title)}</td><td>{rules}</td><td>{detail}<details{open_}><summary>frames "
            f"({len(r.transcript)})</summary><pre>{frames}</pre></details></td><td>{r.seconds:.2f}s</td></tr>"
        )
    doc = (
        f"<!doctype html><meta charset=utf-8><title>walrelay conform --{role}</title><style>{_CSS}</style>"
        f"<h1>walrelay conform --{role}</h1><p>{html.escape(summary(results, role))}</p>"
        "<p>Rules: docs/protocol.md (each rule id is written at its rule). <code>-&gt;</code> harness to the "
        "implementation, <code>&lt;-</code> back, <code>..</code> an event.</p>"
        "<table><tr><th>verdict</th><th>case</th><th>rules</th><th>what happened</th><th>time</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    path.write_text(doc, encoding="utf-8")
