"""Run directories: where campaigns write, the ``latest`` links, and the pages that browse them.

By default a campaign writes to ``runs/<timestamp>-<kind>/`` (``kind``: ``sim``, ``real`` or
``mutants``; the timestamp is UTC, ``20261207T144551Z``) and points ``runs/latest`` and
``runs/latest-<kind>`` at it when it starts (Maelstrom's ``store/latest``), so that
``walrelay chaos replay runs/latest/seed-17/replay.json`` names the last campaign's seed 17.

Pages (static HTML, no scripts, no network): ``runs/index.html`` lists every run directory with
its verdict; each run directory's ``index.html`` lists its seeds (failing ones first) with their
verdicts, replay files, timelines and shrunk reproductions, or a mutant table's rows. Campaigns
write them when they end (an interrupted one too); ``walrelay chaos serve`` serves ``runs/`` over
HTTP on loopback and draws the pages afresh on every request (a campaign still running shows
as ``running``; a seed replayed since shows its timeline).
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import os
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUNS = Path("runs")
KINDS = ("sim", "real", "mutants")

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}code{font-size:12px}
.valid{color:#176b2c;font-weight:600}.invalid{color:#b00020;font-weight:700}.unknown,.running,.interrupted
{color:#a35a00;font-weight:600}.note{color:#555}
"""


def new_run_dir(root: Path, kind: str, *, now: datetime | None = None) -> Path:
    """Make ``root/<timestamp>-<kind>/`` (``-2``, ``-3``.. if that exists) and point
    ``root/latest`` and ``root/latest-<kind>`` at it."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while True:
        path = root / (f"{stamp}-{kind}" if n == 1 else f"{stamp}-{kind}-{n}")
        try:
            path.mkdir()
            break
        except FileExistsError:
            n += 1
    for name in ("latest", f"latest-{kind}"):
        _link(root / name, path.name)
    return path


def _link(link: Path, target: str) -> None:
    """``link`` -> ``target`` (relative), replaced atomically."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def runs_root_of(run_dir: Path) -> Path | None:
    """The runs root that holds ``run_dir`` (its parent, if that has a ``latest`` link), else None."""
    parent = run_dir.resolve().parent
    return parent if (parent / "latest").is_symlink() else None


def read_results(run_dir: Path) -> dict[str, Any] | None:
    try:
        body = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def verdict_word(body: dict[str, Any]) -> str:
    v = body.get("valid")
    return "valid" if v is True else "invalid" if v is False else str(v)


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _page(title: str, body: list[str]) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_STYLE}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )


def _rel(path: str | None, run_dir: Path) -> str | None:
    """A link to ``path`` (as results.json holds it: relative to where the campaign ran, or
    absolute) from ``run_dir``'s page: the part after the run directory's name, so that it works
    wherever the pages are read or served from."""
    if not path:
        return None
    parts = Path(path).parts
    if run_dir.name in parts:
        at = len(parts) - 1 - parts[::-1].index(run_dir.name)
        return "/".join(parts[at + 1 :])
    return os.path.relpath(Path(path).resolve(), run_dir.resolve())


def _a(href: str | None, text: str) -> str:
    return f'<a href="{_esc(href)}">{_esc(text)}</a>' if href else ""


def write_index(root: Path) -> Path:
    """``root/index.html``: every run directory under ``root``, newest first; each run's own page too."""
    rows = []
    runs = sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink()), reverse=True)
    links = {p.name: os.readlink(p) for p in root.iterdir() if p.is_symlink()}
    for run in runs:
        body = read_results(run)
        if body is None:
            continue
        write_run_page(run, body)
        word = verdict_word(body)
        names = " ".join(n for n, t in sorted(links.items()) if t == run.name)
        if body.get("mode") == "mutants":
            rows_ = body.get("mutants", [])
            what = f"{sum(1 for r in rows_ if r.get('killed'))} of {len(rows_)} mutants killed"
        else:
            what = f"{body.get('runs', 0)} runs, seeds {body.get('seeds')}"
            if body.get("invalid"):
                what += f"; {len(body['invalid'])} invalid"
            if body.get("errors"):
                what += f"; {len(body['errors'])} harness errors"
        rows.append(
            f"<tr><td>{_a(run.name + '/index.html', run.name)} <span class='note'>{_esc(names)}</span></td>"
            f"<td>{_esc(body.get('mode'))}</td><td>{_esc(body.get('mutant') or '')}</td>"
            f'<td class="{_esc(word)}">{_esc(word)}</td><td>{_esc(what)}</td>'
            f"<td>{_esc(body.get('seconds', ''))} s</td></tr>"
        )
    page = _page(
        "walrelay chaos runs",
        [
            "<h1>walrelay chaos runs</h1>",
            f'<p class="note">{_esc(root.resolve())}: {len(rows)} runs, newest first '
            "(<code>walrelay chaos serve</code> redraws this page on every request)</p>",
            "<table><tr><th>run</th><th>mode</th><th>mutant</th><th>verdict</th><th>what</th><th>time</th></tr>",
            *rows,
            "</table>",
        ],
    )
    out = root / "index.html"
    out.write_text(page, encoding="utf-8")
    return out


def write_run_page(run_dir: Path, body: dict[str, Any] | None = None) -> Path | None:
    """``run_dir/index.html`` from its ``results.json``: None if it has none."""
    body = body if body is not None else read_results(run_dir)
    if body is None:
        return None
    word = verdict_word(body)
    head = [
        f"<h1>{_esc(run_dir.name)}</h1>",
        '<p><a href="../index.html">all runs</a> · <a href="results.json">results.json</a></p>',
        f'<p>verdict: <span class="{_esc(word)}">{_esc(word)}</span>; mode {_esc(body.get("mode"))}'
        + (f", mutant {_esc(body['mutant'])}" if body.get("mutant") else "")
        + f"; {_esc(body.get('seconds', ''))} s</p>",
    ]
    parts = head + (_mutant_rows(run_dir, body) if body.get("mode") == "mutants" else _seed_rows(run_dir, body))
    out = run_dir / "index.html"
    out.write_text(_page(run_dir.name, parts), encoding="utf-8")
    return out


def _seed_links(run_dir: Path, seed_dir: Path) -> str:
    links = [_a(_rel(str(seed_dir / "replay.json"), run_dir), "replay.json")]
    if (seed_dir / "timeline.html").exists():
        links.append(_a(_rel(str(seed_dir / "timeline.html"), run_dir), "timeline"))
    if (seed_dir / "error.txt").exists():
        links.append(_a(_rel(str(seed_dir / "error.txt"), run_dir), "error.txt"))
    if (seed_dir / "logs").is_dir():
        links.append(_a(_rel(str(seed_dir / "logs"), run_dir), "logs"))
    return " · ".join(x for x in links if x)


def _seed_rows(run_dir: Path, body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if body.get("coverage"):
        cov = ", ".join(f"{k} {v}" for k, v in body["coverage"].items())
        out.append(f'<p class="note">coverage (runs that reached each case): {_esc(cov)}</p>')
    failing = [*body.get("invalid", []), *body.get("errors", [])]
    if failing:
        out += [
            "<h2>failing seeds</h2>",
            "<table><tr><th>seed</th><th>verdict</th><th>shrunk</th><th>original</th></tr>",
        ]
        for item in failing:
            seed_dir = run_dir / f"seed-{item['seed']}"
            word = "invalid" if "message" in item else "unknown"
            shrunk = item.get("shrunk") or {}
            shrunk_html = ""
            if shrunk:
                shrunk_html = (
                    f"{_esc(shrunk.get('ops'))} ops: <code>{_esc(', '.join(shrunk.get('schedule', [])))}</code><br>"
                    + _entry_links(run_dir, shrunk)
                    + (f"<br>{_esc(shrunk['message'])}" if shrunk.get("message") else "")
                )
            out.append(
                f"<tr><td>{_esc(item['seed'])}</td><td><span class='{word}'>{word}</span>: "
                f"{_esc(item.get('message') or item.get('error'))}</td><td>{shrunk_html}</td>"
                f"<td>{_esc(item.get('ops', ''))} ops<br>{_seed_links(run_dir, seed_dir)}</td></tr>"
            )
        out.append("</table>")
    seeds = body.get("seed_runs", [])
    out += [
        f"<h2>every seed ({len(seeds)})</h2>",
        '<p class="note">a seed with no timeline yet: <code>walrelay chaos replay '
        f"{_esc(run_dir)}/seed-S/replay.json</code> runs it again and writes its timeline beside it</p>",
        "<table><tr><th>seed</th><th>verdict</th><th>ops</th><th>writes (ok / fail / unknown)</th><th>files</th></tr>",
    ]
    for s in seeds:
        w = s.get("writes") or {}
        links = _seed_links(run_dir, run_dir / f"seed-{s['seed']}")
        out.append(
            f"<tr><td>{_esc(s['seed'])}</td><td class='{_esc(s['verdict'])}'>{_esc(s['verdict'])}</td>"
            f"<td>{_esc(s.get('ops'))}</td><td>{_esc(w.get('ok', ''))} / {_esc(w.get('fail', ''))} / "
            f"{_esc(w.get('unknown', ''))}</td><td>{links}</td></tr>"
        )
    out.append("</table>")
    return out


def _entry_links(run_dir: Path, entry: dict[str, Any] | None) -> str:
    """Links to an entry's ``replay`` and ``timeline`` (paths as results.json holds them)."""
    if not entry:
        return ""
    links = [
        _a(_rel(entry.get("replay"), run_dir), "replay.json"),
        _a(_rel(entry.get("timeline"), run_dir), "timeline"),
    ]
    return " · ".join(x for x in links if x)


def _mutant_rows(run_dir: Path, body: dict[str, Any]) -> list[str]:
    out = [
        "<table><tr><th>mutant</th><th>killed</th><th>directed</th><th>random seed</th><th>s to kill</th>"
        "<th>ops</th><th>shrunk</th><th>message</th></tr>"
    ]
    for r in body.get("mutants", []):
        shrunk = r.get("shrunk") or {}
        cell = ""
        if shrunk:
            cell = (
                f"{_esc(shrunk.get('ops'))}: <code>{_esc(', '.join(shrunk.get('schedule', [])))}</code><br>"
                + _entry_links(run_dir, shrunk)
            )
        original = ""
        if r.get("random_seed") is not None:
            original = f"{_esc(r.get('random_ops'))}<br>" + _entry_links(run_dir, r.get("random"))
        directed = ("yes" if r.get("directed_killed") else "no") + "<br>" + _entry_links(run_dir, r.get("directed"))
        seed = r.get("random_seed")
        secs = r.get("random_seconds")
        out.append(
            f"<tr><td>{_esc(r['mutant'])}</td><td class='{'valid' if r.get('killed') else 'invalid'}'>"
            f"{'yes' if r.get('killed') else 'NO'}</td><td>{directed}</td>"
            f"<td>{_esc('-' if seed is None else seed)}</td><td>{_esc('-' if secs is None else secs)}</td>"
            f"<td>{original}</td><td>{cell}</td><td>{_esc(r.get('message', ''))}</td></tr>"
        )
    out.append("</table>")
    return out


def refresh(run_dir: Path) -> None:
    """Redraw ``run_dir``'s page, and its runs root's index if it has one (best effort: a page
    that cannot be written does not change a verdict)."""
    with contextlib.suppress(OSError):
        write_run_page(run_dir)
        root = runs_root_of(run_dir)
        if root is not None:
            write_index(root)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files under the runs root; a directory or index.html page is drawn afresh first."""

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        root = Path(self.directory)
        if path in ("/", "/index.html"):
            write_index(root)
        elif path.endswith(("/", "/index.html")):
            run = (root / urllib.parse.unquote(path).strip("/").removesuffix("index.html")).resolve()
            if run.parent == root.resolve() or run.parent == root:
                write_run_page(run)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the console is the user's
        pass


@contextlib.contextmanager
def server(root: Path, port: int = 0, host: str = "127.0.0.1") -> Iterator[http.server.ThreadingHTTPServer]:
    """An HTTP server for ``root`` (not yet serving: call ``serve_forever``)."""
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer((host, port), handler)
    try:
        yield httpd
    finally:
        httpd.server_close()


def serve_main(root: Path, port: int, host: str = "127.0.0.1") -> int:
    """``walrelay chaos serve``: browse ``root`` until Ctrl-C (then exit 130, one line)."""
    if not root.is_dir():
        print(
            f"walrelay chaos serve: error: {root} is not a directory (campaigns write runs/ by default)",
            file=sys.stderr,
        )
        return 2
    write_index(root)
    with server(root, port, host) as httpd:
        host_, port_ = httpd.server_address[:2]
        print(f"serving {root.resolve()} at http://{host_!s}:{port_}/ (Ctrl-C to stop)", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            print("stopped", flush=True)
            return 130
    return 0
