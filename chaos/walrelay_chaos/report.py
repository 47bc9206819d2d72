"""A chaos run's report, Jepsen-style: the history as data, a timeline to read, a latency plot.

``write_report`` writes into a run directory:

- ``history.jsonl``: the events, one JSON object a line (format: docs/chaos-history.md), so the
  run can be re-drawn or re-checked later without running it again;
- ``timeline.html``: one self-contained page (inline CSS, no script, no network): one column per
  client process and one for the nemesis, time flowing down, each operation a box from its invoke
  to its completion coloured by outcome, faults as shaded bands and lines across every column;
- ``latency.png``: each operation's latency against its invoke time (matplotlib, the ``chaos``
  extra; without it the other two files are still written and the page says what to install).

``report_main`` re-draws the page and the plot from a ``history.jsonl`` (``walrelay chaos``).

The timeline's vertical axis is one row per event in history order, not time to scale: under the
mock clock most operations take no simulated time at all and many events share one instant, so a
time-proportional page would stack them on one line; the order within an instant (the
scheduler's) is often what explains a failure. Where time passes between two events the page adds
space that grows with the log of the elapsed time (at most ``MAX_GAP_PX``) and prints the time at
the left; a gap shorter than a thousandth of the run adds none (wall-clock runs: every event has
its own time). Past ``MAX_PAGE_PX`` rows and gaps shrink together (rows to ``MIN_ROW_PX`` at
least) so ~5000 events stay one scrollable page; box labels then only show where they fit, and
every box's hover title has the full details.
"""

from __future__ import annotations

import html
import json
import math
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from walrelay_chaos.verdicts import Verdict

Event = dict[str, Any]

TYPES = ("invoke", "ok", "fail", "info")
REQUIRED = ("index", "time", "process", "type", "f", "value")
NEMESIS = "nemesis"
INSTALL_HINT = "latency plot needs: pip install 'walrelay[chaos]'"

ROW_PX = 11.0  # one event
MIN_ROW_PX = 4.0
MAX_GAP_PX = 48.0  # time passing between two events, however long
MAX_PAGE_PX = 40000.0
LATENCY_FLOOR_MS = 0.1  # a log axis has no 0: zero-latency operations are drawn here


def floor_note(latencies_ms: list[float]) -> str | None:
    """What the latency plot says when most points sit on the floor (zero latency, as most are in
    simulation, where the network and disks take no simulated time): else the plot reads as
    "everything took 0.1 ms"."""
    at_floor = sum(1 for y in latencies_ms if y <= LATENCY_FLOOR_MS)
    if at_floor * 2 <= len(latencies_ms):
        return None
    return (
        f"{at_floor} of {len(latencies_ms)} operations took no time on this run's clock (drawn on the dotted "
        "line); in simulation the network and disks take none"
    )


# Box and point colours by outcome (Jepsen's meaning: fail = did not happen, info = may have).
OUTCOME_FILL = {"ok": "#8fd694", "fail": "#f7a1b5", "info": "#ffc857"}
OUTCOME_EDGE = {"ok": "#2e8b3a", "fail": "#c2185b", "info": "#d98e04"}
# Light tints per fault kind X of "start-X"/"stop-X"; kinds not named here get one from PALETTE by
# a stable hash of the name, so one kind has one tint in every report.
FAULT_TINT = {
    "partition": "#bcd7ff",
    "store-down": "#dcc6f5",
    "pause": "#cfd8dc",
    "clock-skew": "#b9ece4",
}
PALETTE = ("#ffd8b0", "#f6c6dc", "#fff0a0", "#c8e6f5", "#e8d9c4", "#d0d0f5", "#f0d0f0", "#d8e8e8")  # no greens: ok is
F_MARKERS = {"write": "o", "read": "s", "bookmark": "D", "restore": "*"}
OTHER_MARKERS = ("^", "v", "P", "X", "h", "<", ">", "p")


@dataclass(frozen=True)
class Op:
    """One client operation: an invoke and the completion that answers it (None: still in flight
    when the history ends, which counts as "info": it may or may not have happened).
    ``invoke_at``/``completion_at``: positions in the event list (the timeline's rows)."""

    process: int | str
    invoke: Event
    completion: Event | None
    invoke_at: int
    completion_at: int | None

    @property
    def f(self) -> str:
        return str(self.invoke["f"])

    @property
    def outcome(self) -> str:
        return "info" if self.completion is None else str(self.completion["type"])

    @property
    def in_flight(self) -> bool:
        return self.completion is None

    @property
    def start(self) -> float:
        return float(self.invoke["time"])

    @property
    def end(self) -> float | None:
        return None if self.completion is None else float(self.completion["time"])

    @property
    def latency(self) -> float | None:
        """Seconds; None while in flight."""
        return None if self.completion is None else float(self.completion["time"]) - self.start

    @property
    def node(self) -> str | None:
        node = self.invoke.get("node")
        if node is None and self.completion is not None:
            node = self.completion.get("node")
        return None if node is None else str(node)

    @property
    def error(self) -> str | None:
        error = None if self.completion is None else self.completion.get("error")
        return None if error is None else str(error)

    def label(self) -> str:
        """What the box says: the invoke's value, and the answer when it adds something (a read's
        count, a bookmark's name)."""
        text = self.f
        value = self.invoke.get("value")
        if value is not None:
            text += " " + _short(value)
        if self.completion is not None:
            answer = self.completion.get("value")
            if answer is not None and answer != value:
                text += " → " + _short(answer)
        if self.node is not None:
            text += " @" + self.node
        return text


@dataclass(frozen=True)
class Band:
    """Fault X on: from "start-X" to the next "stop-X" (None: on until the end). A "start-X" while
    X is already on does not end the band (partitions add up, one stop heals them all): it is
    listed in ``restarts``."""

    kind: str
    start_at: int
    stop_at: int | None
    start: Event
    stop: Event | None
    restarts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Instant:
    """A nemesis event that is not "start-X"/"stop-X": a crash, a takeover, a lost disk."""

    at: int
    event: Event


@dataclass
class _Paired:
    ops: list[Op] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_event(event: object) -> str | None:
    """What is wrong with one event (None: nothing), so that a bad history is refused with its
    problem named instead of failing somewhere in the drawing."""
    if not isinstance(event, dict):
        return f"not a JSON object but {type(event).__name__}"
    missing = [k for k in REQUIRED if k not in event]
    if missing:
        return "missing " + ", ".join(repr(k) for k in missing)
    if not isinstance(event["index"], int) or isinstance(event["index"], bool):
        return f"'index' must be an integer, not {event['index']!r}"
    t = event["time"]
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        return f"'time' must be a finite number of seconds, not {t!r}"
    p = event["process"]
    if not isinstance(p, int | str) or isinstance(p, bool):
        return f"'process' must be an integer or \"nemesis\", not {p!r}"
    if event["type"] not in TYPES:
        return f"'type' must be one of {', '.join(TYPES)}, not {event['type']!r}"
    if not isinstance(event["f"], str):
        return f"'f' must be a string, not {event['f']!r}"
    return None


def _checked(events: Sequence[Event]) -> None:
    for i, event in enumerate(events):
        problem = check_event(event)
        if problem is not None:
            raise ValueError(f"event {i}: {problem}")


def read_history(path: Path) -> list[Event]:
    """The events of a ``history.jsonl``. A bad line raises ValueError naming its line number and
    the problem (not json's traceback: the file may come from another tool or a truncated run).
    Blank lines are skipped."""
    events: list[Event] = []
    with Path(path).open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path} line {number}: not UTF-8 (byte {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {number}: not JSON ({e.msg} at column {e.colno})") from None
            problem = check_event(event)
            if problem is not None:
                raise ValueError(f"{path} line {number}: {problem}")
            events.append(event)
    return events


def _pair(events: Sequence[Event]) -> _Paired:
    out = _Paired()
    pending: dict[int | str, tuple[int, Event]] = {}
    for at, event in enumerate(events):
        process = event["process"]
        if process == NEMESIS:
            continue
        if event["type"] == "invoke":
            if process in pending:
                was_at, was = pending.pop(process)
                out.ops.append(Op(process, was, None, was_at, None))
                out.warnings.append(
                    f"process {process}: event {at} invokes while event {was_at} is unanswered "
                    "(drawn as never answered)"
                )
            pending[process] = (at, event)
        elif process not in pending:
            out.warnings.append(
                f"process {process}: event {at} ({event['type']} {event['f']}) answers no invoke (not drawn)"
            )
        else:
            was_at, was = pending.pop(process)
            if was["f"] != event["f"]:
                out.warnings.append(f"process {process}: event {at} ({event['f']}) answers event {was_at} ({was['f']})")
            out.ops.append(Op(process, was, event, was_at, at))
    out.ops.extend(Op(process, event, None, at, None) for process, (at, event) in pending.items())
    out.ops.sort(key=lambda op: op.invoke_at)
    return out


def operations(events: Sequence[Event]) -> list[Op]:
    """Client operations in invoke order: each invoke with the next event of its process (Jepsen's
    pairing: a process runs one operation at a time). An invoke nothing answers is in flight."""
    return _pair(events).ops


def faults(events: Sequence[Event]) -> tuple[list[Band], list[Instant]]:
    """The nemesis events as fault intervals and instants. A stop with no start is ignored (the
    fault was never drawn as on); any kind X is handled, so new faults need no change here."""
    bands: list[Band] = []
    instants: list[Instant] = []
    on: dict[str, tuple[int, list[int]]] = {}
    for at, event in enumerate(events):
        if event["process"] != NEMESIS:
            continue
        name = str(event["f"])
        if name.startswith("start-") and len(name) > 6:
            kind = name[6:]
            if kind in on:
                on[kind][1].append(at)
            else:
                on[kind] = (at, [])
        elif name.startswith("stop-") and len(name) > 5:
            kind = name[5:]
            if kind in on:
                start_at, restarts = on.pop(kind)
                bands.append(Band(kind, start_at, at, events[start_at], event, tuple(restarts)))
        else:
            instants.append(Instant(at, event))
    bands.extend(Band(kind, s, None, events[s], None, tuple(r)) for kind, (s, r) in on.items())
    bands.sort(key=lambda b: b.start_at)
    return bands, instants


def tint(kind: str) -> str:
    return FAULT_TINT.get(kind) or PALETTE[zlib.crc32(kind.encode()) % len(PALETTE)]


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _fmt_time(t: float) -> str:
    return f"{t:.6f}".rstrip("0").rstrip(".") or "0"


def _fmt_tick(t: float) -> str:
    """Milliseconds are enough to place an event by eye; the hover title has the exact time."""
    return f"{t:.3f}".rstrip("0").rstrip(".") or "0"


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f}".rstrip("0").rstrip(".") + " ms"


def verdict_text(verdict: bool | str) -> str:
    if verdict is True:
        return "valid"
    if verdict is False:
        return "INVALID"
    return str(verdict)


def _mpl(text: str) -> str:
    """Text for matplotlib, which would read "$...$" in a message or a name as math."""
    return text.replace("$", r"\$")


def _marker(f: str, others: dict[str, str]) -> str:
    if f in F_MARKERS:
        return F_MARKERS[f]
    return others.setdefault(f, OTHER_MARKERS[len(others) % len(OTHER_MARKERS)])


# --- the timeline ---------------------------------------------------------------------------


@dataclass
class _Layout:
    top: list[float]  # each event's row
    row: float
    height: float
    gaps: list[tuple[float, float, float]]  # (y, px, seconds) where time passed between rows


def _layout(events: Sequence[Event]) -> _Layout:
    n = len(events)
    times = [float(e["time"]) for e in events]
    span = (max(times) - min(times)) if times else 0.0
    quantum = max(span / 1000, 1e-9)
    gap_px = [0.0] * n
    for i in range(1, n):
        dt = times[i] - times[i - 1]
        if dt >= quantum:
            gap_px[i] = min(MAX_GAP_PX, 4 + 6 * math.log2(dt / quantum))
    row = ROW_PX
    total = n * row + sum(gap_px) + row  # + the end's row (in-flight boxes reach it)
    if total > MAX_PAGE_PX:
        scale = MAX_PAGE_PX / total
        row = max(MIN_ROW_PX, row * scale)
        gap_px = [g * scale for g in gap_px]
    top: list[float] = []
    gaps: list[tuple[float, float, float]] = []
    y = 0.0
    for i in range(n):
        if gap_px[i]:
            gaps.append((y, gap_px[i], times[i] - times[i - 1]))
        y += gap_px[i]
        top.append(y)
        y += row
    return _Layout(top, row, y + row, gaps)


CSS = """
body{font:13px/1.35 system-ui,sans-serif;margin:0;color:#222;background:#fff}
header{padding:12px 16px 8px;border-bottom:1px solid #ccc}
h1{font-size:18px;margin:0 0 6px}
.verdict{display:inline-block;font-weight:700;padding:2px 10px;border-radius:4px;font-size:15px}
.verdict.valid{background:#c8efc8;color:#14551c}.verdict.invalid{background:#ffc9d3;color:#8a0020}
.verdict.unknown{background:#ffe3a3;color:#6b4700}
.msg{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;background:#fff4f6;
 border-left:3px solid #c2185b;padding:4px 8px;margin:6px 0;max-height:12em;overflow:auto}
code{font-family:ui-monospace,monospace;font-size:12px;background:#f2f2f2;padding:1px 4px;border-radius:3px}
table.counts{border-collapse:collapse;margin:6px 0;font-size:12px}
table.counts td,table.counts th{border:1px solid #ddd;padding:1px 8px;text-align:right}
table.counts th:first-child,table.counts td:first-child{text-align:left}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;font-size:12px;margin:6px 0}
.sw{display:inline-block;width:22px;height:12px;vertical-align:middle;margin-right:4px;border:1px solid #999}
.note{color:#555;font-size:12px;margin:4px 0}.warn{color:#8a0020;font-size:12px}
.cols{position:sticky;top:0;z-index:20;background:#fafafa;border-bottom:1px solid #bbb;height:20px}
.cols div{position:absolute;top:0;height:20px;line-height:20px;font-weight:600;font-size:12px;
 text-align:center;border-left:1px solid #ddd;overflow:hidden}
.tl{position:relative}
.band{position:absolute;z-index:1}
.stripe{position:absolute;z-index:2;width:5px}
.gap{position:absolute;z-index:2;border-top:1px dashed #c4c4c4;color:#999;font-size:9px;font-style:italic;
 padding-left:2px;line-height:10px}
.tick{position:absolute;z-index:3;font-size:10px;color:#555;text-align:right;font-family:ui-monospace,monospace;
 line-height:1}
.inst{position:absolute;z-index:4;height:0;border-top:1px solid #37474f}
.nl{position:absolute;z-index:6;font-size:10px;line-height:1;white-space:nowrap;overflow:hidden;
 text-overflow:ellipsis;padding:0 3px;box-sizing:border-box}
.nl.i{color:#fff;background:#37474f;border-radius:2px}.nl.x{color:#999;text-decoration:line-through}
.colline{position:absolute;z-index:0;top:0;border-left:1px solid #eee}
.op{position:absolute;z-index:5;box-sizing:border-box;border:1px solid;border-radius:3px;font-size:10px;
 line-height:11px;padding:0 3px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.op.flight{border-style:dashed;border-bottom:none}
.op.tiny{font-size:0}
.op.hl{outline:3px solid #d50000;outline-offset:1px;z-index:8;font-weight:700}
.nl.hl{outline:2px solid #d50000;z-index:8}
.prop{margin:6px 0 2px;font-size:14px}.pid{color:#8a0020;font-family:ui-monospace,monospace}
.ptitle{color:#555}
ol.involved{margin:2px 0 6px;padding-left:22px;font-size:12px}
table.ef{border-collapse:collapse;font-size:12px}table.ef th{text-align:left;vertical-align:top;padding-right:8px}
table.ef pre{margin:0;max-height:12em;overflow:auto}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _op_title(op: Op, unit: str, run_end: float) -> str:
    lines = [f"{op.label()}  (process {op.process})", f"invoke: {_fmt_time(op.start)} {unit} (event {op.invoke_at})"]
    if op.completion is None:
        lines.append(f"no completion: in flight at the end ({_fmt_time(run_end)} {unit}); may or may not have happened")
        lines.append(f"latency: > {_fmt_ms(run_end - op.start)}")
    else:
        lines.append(f"{op.outcome}: {_fmt_time(float(op.completion['time']))} {unit} (event {op.completion_at})")
        lines.append(f"latency: {_fmt_ms(op.latency or 0.0)}")
    if op.error is not None:
        lines.append(f"error: {op.error}")
    for which, event in (("invoke", op.invoke), ("completion", op.completion)):
        for key, value in (event or {}).items():
            if key not in REQUIRED and key not in ("node", "error"):
                lines.append(f"{which} {key}: {_short(value)}")
    if op.completion is not None and op.completion.get("value") not in (None, op.invoke.get("value")):
        lines.append(f"answer: {_short(op.completion['value'])}")
    return "\n".join(lines)


def _nemesis_title(event: Event, at: int, unit: str) -> str:
    text = f"{event['f']} at {_fmt_time(float(event['time']))} {unit} (event {at})"
    if event.get("value") is not None:
        text += f"\nvalue: {_short(event['value'])}"
    return text


def _nemesis_label(event: Event) -> str:
    value = event.get("value")
    if value is None:
        return str(event["f"])
    if isinstance(value, list):
        return f"{event['f']} " + " ".join(_short(v) for v in value)
    return f"{event['f']} {_short(value)}"


def _counts_table(ops: Sequence[Op]) -> str:
    by_f: dict[str, Counter[str]] = {}
    for op in ops:
        c = by_f.setdefault(op.f, Counter())
        c[op.outcome] += 1
        if op.in_flight:
            c["flight"] += 1
    rows = ["<tr><th>f</th><th>ok</th><th>fail</th><th>info</th><th>of which in flight at the end</th></tr>"]
    total: Counter[str] = Counter()
    for f in sorted(by_f):
        c = by_f[f]
        total.update(c)
        rows.append(
            f"<tr><td>{_esc(f)}</td><td>{c['ok']}</td><td>{c['fail']}</td><td>{c['info']}</td><td>{c['flight']}</td></tr>"
        )
    rows.append(
        f"<tr><th>all</th><th>{total['ok']}</th><th>{total['fail']}</th><th>{total['info']}</th>"
        f"<th>{total['flight']}</th></tr>"
    )
    return '<table class="counts">' + "".join(rows) + "</table>"


def _involved(verdicts: Sequence[Verdict], n: int) -> dict[int, str]:
    """Event index (an operation's invoke, or a nemesis event) -> what its hover title adds: the
    properties whose verdicts involve it."""
    out: dict[int, str] = {}
    for v in verdicts:
        for ref in v.ops:
            if 0 <= ref.index < n and v.prop not in out.get(ref.index, ""):
                out[ref.index] = out.get(ref.index, "\n") + f"\n⚑ involved in the verdict: {v.prop}"
    return out


def _verdict_head(verdicts: Sequence[Verdict], marked: dict[int, str]) -> list[str]:
    """The header's account of the verdict: the property named, the sentence, expected vs found,
    and the operations involved, each a link to its (outlined) box."""
    out: list[str] = []
    for n, v in enumerate(verdicts):
        lead = "property violated" if n == 0 else "and"
        out.append(
            f'<div class="prop">{lead}: <b class="pid">{_esc(v.prop)}</b> <span class="ptitle">'
            f"({_esc(v.title)})</span>{' — ' + _esc(v.where) if v.where else ''}</div>"
        )
        out.append(f'<div class="msg">{_esc(v.sentence())}</div>')
        links = [
            f'<li><a href="#ev-{ref.index}">{_esc(ref.describe())}</a> <span class="note">(event {ref.index}'
            + (f"–{ref.completion}" if ref.completion is not None else "")
            + (f", process {_esc(ref.process)}" if ref.outcome != "nemesis" else ", nemesis")
            + ")</span></li>"
            for ref in v.ops
            if ref.index in marked
        ]
        if links:
            out.append('<div class="note">involved (outlined in red below, ⚑):</div><ol class="involved">')
            out.extend(links)
            out.append("</ol>")
        if v.expected is not None or v.found is not None:
            out.append(
                '<details><summary>expected vs found</summary><table class="ef">'
                f"<tr><th>expected</th><td><pre>{_esc(_pretty(v.expected))}</pre></td></tr>"
                f"<tr><th>found</th><td><pre>{_esc(_pretty(v.found))}</pre></td></tr></table></details>"
            )
    return out


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=1, ensure_ascii=False, default=str)
    return text if len(text) <= 4000 else text[:4000] + "\n…"


def render_timeline(
    events: Sequence[Event],
    *,
    verdict: bool | str,
    message: str = "",
    title: str = "",
    replay: str | None = None,
    time_unit: str = "simulated s",
    latency_png: str | None = "latency.png",
    verdicts: Sequence[Verdict] = (),
) -> str:
    """The page. ``latency_png``: the plot's file name to link, None when it could not be drawn
    (the header then says what to install). ``verdicts``: the checker's records
    (``walrelay_chaos.verdicts``): the header names the property and says the sentence, and the
    operations involved are outlined (``hl``) and linked from the header."""
    paired = _pair(events)
    marked = _involved(verdicts, len(events))
    ops = paired.ops
    bands, instants = faults(events)
    lay = _layout(events)
    times = [float(e["time"]) for e in events]
    run_start, run_end = (min(times), max(times)) if times else (0.0, 0.0)
    processes = sorted({op.process for op in ops}, key=lambda p: (isinstance(p, str), str(p).zfill(9)))
    axis_w, nem_w = 78.0, 190.0
    col_w = 150.0 if len(processes) <= 8 else max(70.0, 1200.0 / len(processes))
    col_x = {p: axis_w + nem_w + i * col_w for i, p in enumerate(processes)}
    width = axis_w + nem_w + col_w * len(processes) + 8
    name = title or "walrelay chaos run"

    v = verdict_text(verdict)
    v_class = "valid" if verdict is True else "invalid" if verdict is False else "unknown"
    head = [f"<h1>{_esc(name)}</h1>", f'<div><span class="verdict {v_class}">{_esc(v)}</span></div>']
    if verdicts:
        head.extend(_verdict_head(verdicts, marked))
    elif message:
        head.append(f'<div class="msg">{_esc(message)}</div>')
    if replay:
        head.append(f'<div class="note">replay: <code>{_esc(replay)}</code></div>')
    kinds = sorted({b.kind for b in bands})
    n_faults = sum(1 for e in events if e["process"] == NEMESIS)
    head.append(
        f'<div class="note">{len(events)} events, {len(ops)} operations on {len(processes)} client processes, '
        f"{n_faults} nemesis events; {_fmt_time(run_start)} to {_fmt_time(run_end)} {_esc(time_unit)}</div>"
    )
    head.append(_counts_table(ops))
    if latency_png is None:
        head.append(f'<div class="warn">{_esc(INSTALL_HINT)}</div>')
    else:
        head.append(f'<div class="note">latency plot: <a href="{_esc(latency_png)}">{_esc(latency_png)}</a></div>')
    legend = [
        f'<span><span class="sw" style="background:{OUTCOME_FILL[t]};border-color:{OUTCOME_EDGE[t]}"></span>'
        f"{label}</span>"
        for t, label in (
            ("ok", "ok"),
            ("fail", "fail (did not happen)"),
            ("info", "info (indeterminate: may have happened)"),
        )
    ]
    legend.append(
        f'<span><span class="sw" style="background:{OUTCOME_FILL["info"]};border-style:dashed"></span>'
        "in flight at the end (info)</span>"
    )
    legend.extend(
        f'<span><span class="sw" style="background:{tint(k)}"></span>'
        f"{_esc(k)} (start-{_esc(k)} … stop-{_esc(k)})</span>"
        for k in kinds
    )
    legend.append(
        '<span><span class="sw" style="height:0;border:0;border-top:2px solid #37474f"></span>instant fault</span>'
    )
    head.append('<div class="legend">' + "".join(legend) + "</div>")
    head.append(
        '<div class="note">Time flows down: one row per event in history order (events at one instant '
        "keep their order); where time passes, extra space (log of the elapsed time, dashed line, at most "
        f"{MAX_GAP_PX:.0f} px) and the time at the left, in {_esc(time_unit)}. A box runs from an operation's "
        "invoke to its completion; hover for times, latency and error.</div>"
    )
    head.extend(f'<div class="warn">history anomaly: {_esc(w)}</div>' for w in paired.warnings[:50])
    if len(paired.warnings) > 50:
        head.append(f'<div class="warn">… and {len(paired.warnings) - 50} more anomalies</div>')

    cols = [f'<div style="left:0;width:{axis_w:.0f}px;font-weight:400">{_esc(time_unit)}</div>']
    cols.append(f'<div style="left:{axis_w:.0f}px;width:{nem_w:.0f}px">nemesis</div>')
    cols.extend(f'<div style="left:{col_x[p]:.0f}px;width:{col_w:.0f}px">process {_esc(p)}</div>' for p in processes)

    row = lay.row
    body: list[str] = []
    right = width - axis_w
    for p in processes:
        body.append(f'<div class="colline" style="left:{col_x[p]:.0f}px;height:{lay.height:.1f}px"></div>')
    for y, px, dt in lay.gaps:
        label = f"+{_fmt_time(dt)}" if px >= 11 else ""
        body.append(f'<div class="gap" style="top:{y:.1f}px;left:0;width:{width:.0f}px">{_esc(label)}</div>')
    stripes: dict[str, int] = {}
    for band in bands:
        lane = stripes.setdefault(band.kind, len(stripes))
        y0 = lay.top[band.start_at] + row / 2
        y1 = (lay.top[band.stop_at] + row / 2) if band.stop_at is not None else lay.height
        h = max(y1 - y0, 2.0)
        colour = tint(band.kind)
        tip = _esc(
            f"{band.kind}: {_fmt_time(float(band.start['time']))} to "
            + (_fmt_time(float(band.stop["time"])) if band.stop else "the end")
            + f" {time_unit}"
        )
        body.append(
            f'<div class="band" title="{tip}" style="top:{y0:.1f}px;height:{h:.1f}px;left:{axis_w:.0f}px;'
            f'width:{right:.0f}px;background:{colour};opacity:.55"></div>'
        )
        body.append(
            f'<div class="stripe" title="{tip}" style="top:{y0:.1f}px;height:{h:.1f}px;'
            f'left:{axis_w + 2 + 6 * lane:.0f}px;background:{colour};filter:saturate(3) brightness(.8)"></div>'
        )
    for inst in instants:
        y = lay.top[inst.at] + row / 2
        body.append(f'<div class="inst" style="top:{y:.1f}px;left:{axis_w:.0f}px;width:{right:.0f}px"></div>')
    # Nemesis labels, one per event (each has its own row, so they never overlap).
    instant_at = {i.at for i in instants}
    restart_at = {at for b in bands for at in b.restarts}
    drawn_at = {b.start_at for b in bands} | {b.stop_at for b in bands} | restart_at | instant_at
    label_px = 10.0 if row >= 10 else 9.0  # readable even when rows are thinner (neighbours may touch)
    nl_left = axis_w + 2 + 6 * len(stripes)
    for at, event in enumerate(events):
        if event["process"] != NEMESIS:
            continue
        cls = ("nl i" if at in instant_at else "nl") + (" hl" if at in marked else "")
        title_text = _nemesis_title(event, at, time_unit)
        if at in restart_at:
            title_text += "\n(while already on: the band goes on)"
        elif at not in drawn_at:
            cls, title_text = "nl x", title_text + "\n(a stop with no start: no band)"
        body.append(
            f'<div class="{cls}" id="ev-{at}" title="{_esc(title_text + marked.get(at, ""))}" style="top:'
            f"{lay.top[at] + (row - label_px) / 2:.1f}px;left:{nl_left:.0f}px;"
            f"max-width:{nem_w - nl_left + axis_w - 4:.0f}px;"
            f'font-size:{label_px:.0f}px">{_esc(_nemesis_label(event))}</div>'
        )
    # Times at the left, at each new time, where there is room for the text.
    last_y = -1e9
    last_text = ""
    for at, event in enumerate(events):
        text = _fmt_tick(float(event["time"]))
        y = lay.top[at]
        if text != last_text and y - last_y >= 11:
            body.append(
                f'<div class="tick" style="top:{y + (row - 10) / 2:.1f}px;left:0;width:{axis_w - 6:.0f}px">{text}</div>'
            )
            last_y = y
            last_text = text
    for op in ops:
        y0 = lay.top[op.invoke_at]
        y1 = lay.top[op.completion_at] + row if op.completion_at is not None else lay.height
        h = y1 - y0
        cls = f"op {op.outcome}" + (" flight" if op.in_flight else "") + (" tiny" if h < 11 else "")
        text = op.label() + (" … (in flight at the end)" if op.in_flight else "")
        tip = _op_title(op, time_unit, run_end)
        if op.invoke_at in marked:
            cls += " hl"
            text = "⚑ " + text
            tip += marked[op.invoke_at]
        body.append(
            f'<div class="{cls}" id="ev-{op.invoke_at}" title="{_esc(tip)}" style="top:{y0:.1f}px;'
            f'height:{h:.1f}px;left:{col_x[op.process] + 3:.0f}px;width:{col_w - 6:.0f}px">{_esc(text)}</div>'
        )

    prop = f" ({verdicts[0].prop})" if verdicts else ""
    outcome_css = "".join(
        f".op.{t}{{background:{OUTCOME_FILL[t]};border-color:{OUTCOME_EDGE[t]}}}" for t in OUTCOME_FILL
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(name)}: {_esc(v)}{_esc(prop)}</title><style>{CSS}{outcome_css}</style></head><body>\n"
        "<header>\n" + "\n".join(head) + "\n</header>\n"
        f'<div class="cols" style="width:{width:.0f}px">' + "".join(cols) + "</div>\n"
        f'<div class="tl" style="width:{width:.0f}px;height:{lay.height:.1f}px">\n' + "\n".join(body) + "\n</div>\n"
        "</body></html>\n"
    )


# --- the latency plot -----------------------------------------------------------------------


def write_latency_png(
    path: Path,
    events: Sequence[Event],
    *,
    verdict: bool | str,
    message: str = "",
    title: str = "",
    time_unit: str = "simulated s",
    verdicts: Sequence[Verdict] = (),
) -> bool:
    """Draw the plot; False when matplotlib is not installed (it is an optional extra, and a run's
    history must not be lost for want of a plot). The operations a verdict involves are ringed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        return False

    ops = operations(events)
    bands, instants = faults(events)
    times = [float(e["time"]) for e in events]
    run_end = max(times) if times else 0.0

    # The object API with its own Agg canvas: no pyplot, so no global backend switched under a caller.
    fig = Figure(figsize=(11, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lanes: dict[str, int] = {}
    for band in bands:
        x0 = float(band.start["time"])
        x1 = float(band.stop["time"]) if band.stop is not None else run_end
        # Full height, and a strip of its own along the top: where two kinds overlap the shading
        # blends, the strips still tell them apart.
        lane = 1 - 0.03 * lanes.setdefault(band.kind, len(lanes))
        if x1 > x0:
            ax.axvspan(x0, x1, color=tint(band.kind), alpha=0.5, lw=0, zorder=0)
            ax.axvspan(x0, x1, ymin=lane - 0.025, ymax=lane, color=tint(band.kind), lw=0, zorder=1)
        else:
            ax.axvline(x0, color=tint(band.kind), lw=3, zorder=0)
    for inst in instants:
        ax.axvline(float(inst.event["time"]), color="#37474f", lw=0.7, ls=(0, (4, 3)), alpha=0.7, zorder=1)

    others: dict[str, str] = {}
    groups: dict[tuple[str, str, bool], tuple[list[float], list[float]]] = {}
    for op in ops:
        latency = op.latency if op.latency is not None else run_end - op.start
        xs, ys = groups.setdefault((op.f, op.outcome, op.in_flight), ([], []))
        xs.append(op.start)
        ys.append(max(latency * 1000, LATENCY_FLOOR_MS))
    size = 30.0 if len(ops) <= 500 else 12.0  # thousands of points: smaller, so the bands show through
    # ok first, fail last: the rare outcomes are drawn on top of the common one.
    for (f, outcome, flight), (xs, ys) in sorted(groups.items(), key=lambda g: ("ok", "info", "fail").index(g[0][1])):
        colour = OUTCOME_EDGE[outcome]
        ax.scatter(
            xs,
            ys,
            marker=_marker(f, others),
            s=size * 2.3 if f == "restore" else size,
            facecolors="none" if flight else colour,
            edgecolors=colour,
            linewidths=1.2 if size > 20 else 0.6,
            alpha=0.8,
            zorder=3,
        )
    marked = _involved(verdicts, len(events))
    rings = [
        (op.start, max((op.latency if op.latency is not None else run_end - op.start) * 1000, LATENCY_FLOOR_MS))
        for op in ops
        if op.invoke_at in marked
    ]
    if rings:
        ax.scatter(
            [x for x, _ in rings],
            [y for _, y in rings],
            marker="o",
            s=size * 7,
            facecolors="none",
            edgecolors="#d50000",
            linewidths=2,
            zorder=4,
        )
    ax.set_yscale("log")
    ax.set_xlabel(f"invoke time ({_mpl(time_unit)})")
    ax.set_ylabel(f"latency (ms, log; 0 drawn at {LATENCY_FLOOR_MS:g} ms)")
    left = min(0.0, min(times, default=0.0))
    pad = max(run_end - left, 1e-3) * 0.015  # points at the very start and end stay whole
    ax.set_xlim(left - pad, run_end + pad)
    top = max((max(ys) for _, ys in groups.values()), default=1.0)
    ax.set_ylim(LATENCY_FLOOR_MS / 2, max(top * 2, 10 * LATENCY_FLOOR_MS))
    ax.axhline(LATENCY_FLOOR_MS, color="#999", lw=0.6, ls=":", zorder=2)
    if not ops:
        ax.text(0.5, 0.5, "no client operations", transform=ax.transAxes, ha="center", va="center", color="#777")
    note = floor_note([y for _, ys in groups.values() for y in ys])
    if note:
        ax.text(0.01, 0.02, note, transform=ax.transAxes, fontsize=8, color="#555")
    ax.grid(True, which="major", axis="y", color="#ddd", lw=0.6)

    v = verdict_text(verdict)
    head = f"{title or 'walrelay chaos run'}: {v}"
    if message and verdict is not True:
        first = message.splitlines()[0]
        head += "\n" + (first if len(first) <= 110 else first[:107] + "…")
    ax.set_title(_mpl(head), fontsize=11, color="#8a0020" if verdict is False else "#222", loc="left")

    outcome_handles = [
        Line2D([], [], ls="", marker="o", color=OUTCOME_EDGE[t], label=label)
        for t, label in (("ok", "ok"), ("fail", "fail"), ("info", "info (indeterminate)"))
    ]
    if rings:
        outcome_handles.append(
            Line2D([], [], ls="", marker="o", mfc="none", mec="#d50000", mew=2, label=_mpl(verdicts[0].prop))
        )
    if any(op.in_flight for op in ops):
        outcome_handles.append(
            Line2D(
                [], [], ls="", marker="o", mfc="none", color=OUTCOME_EDGE["info"], label="in flight at the end (so far)"
            )
        )
    fs = sorted({op.f for op in ops})
    f_handles = [Line2D([], [], ls="", marker=_marker(f, others), color="#555", label=_mpl(f)) for f in fs]
    fault_handles: list[Any] = [Patch(color=tint(k), alpha=0.6, label=_mpl(k)) for k in sorted({b.kind for b in bands})]
    if instants:
        names = sorted({str(i.event["f"]) for i in instants})
        shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
        fault_handles.append(Line2D([], [], color="#37474f", lw=0.7, ls=(0, (4, 3)), label=_mpl(shown)))
    # One legend in sections (a header is an entry with no marker), so it never overlaps itself
    # however many kinds of operation and fault there are.
    sections = [("outcome", outcome_handles), ("f", f_handles), ("faults", fault_handles)]
    handles: list[Any] = []
    headers: set[int] = set()
    for header, entries in sections:
        if entries:
            headers.add(len(handles))
            handles.append(Line2D([], [], ls="", marker="", label=header))
            handles.extend(entries)
    legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, handletextpad=0.4)
    for i, text in enumerate(legend.get_texts()):
        if i in headers:
            text.set_fontweight("bold")
    fig.savefig(path, format="png", bbox_inches="tight")  # "tight": the legends outside the axes too
    return True


# --- files ----------------------------------------------------------------------------------


def _render(
    run_dir: Path,
    events: Sequence[Event],
    *,
    verdict: bool | str,
    message: str,
    title: str,
    replay: str | None,
    time_unit: str,
    verdicts: Sequence[Verdict] = (),
) -> dict[str, Path]:
    written: dict[str, Path] = {}
    png = run_dir / "latency.png"
    if verdicts:
        message = verdicts[0].sentence()
    drawn = write_latency_png(
        png, events, verdict=verdict, message=message, title=title, time_unit=time_unit, verdicts=verdicts
    )
    if drawn:
        written["latency"] = png
    else:
        png.unlink(missing_ok=True)  # an older run's plot would pass for this one's
    page = render_timeline(
        events,
        verdict=verdict,
        message=message,
        title=title,
        replay=replay,
        time_unit=time_unit,
        latency_png=png.name if drawn else None,
        verdicts=verdicts,
    )
    timeline = run_dir / "timeline.html"
    timeline.write_text(page, encoding="utf-8")
    written["timeline"] = timeline
    return written


def write_history(path: Path, events: Iterable[Event]) -> Path:
    with Path(path).open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
    return path


def write_report(
    run_dir: Path,
    events: list[dict[str, Any]],
    *,
    verdict: bool | str,
    message: str = "",
    title: str = "",
    replay: str | None = None,
    time_unit: str = "simulated s",
    verdicts: Sequence[Verdict] | None = None,
) -> dict[str, Path]:
    """Write history.jsonl, verdict.json, timeline.html and latency.png into ``run_dir`` (made if
    missing). ``verdict``: True valid, False invalid (``message``: the checker's), or a word
    ("unknown"); ``replay``: the command that makes the run again; ``verdicts``: the checker's
    records (``walrelay_chaos.verdicts``; None: those of the violation raised in this process
    whose sentence is ``message``, if any). Returns the files written by role ("history",
    "verdict", "timeline", "latency"; no "latency" without matplotlib). The history is written
    first, so even a drawing bug leaves the run's data behind."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _checked(events)
    written = {"history": write_history(run_dir / "history.jsonl", events)}
    records = _records(verdict, message, verdicts, events)
    written["verdict"] = write_verdict(run_dir / "verdict.json", verdict, message, records)
    written.update(
        _render(
            run_dir,
            events,
            verdict=verdict,
            message=message,
            title=title,
            replay=replay,
            time_unit=time_unit,
            verdicts=records,
        )
    )
    return written


def _records(
    verdict: bool | str, message: str, verdicts: Sequence[Verdict] | None, events: Sequence[Event]
) -> list[Verdict]:
    from walrelay_chaos.verdicts import Verdict, for_message

    if verdicts is not None:
        return list(verdicts)
    if verdict is not False:
        return []
    found = for_message(message, events)
    if found is not None:
        return found
    first = message.splitlines()[0] if message else "(no message)"
    return [Verdict("check-failed", first)]


def write_verdict(path: Path, verdict: bool | str, message: str, verdicts: Sequence[Verdict]) -> Path:
    """``verdict.json``: ``{"valid": true | false | "unknown" | ..., "message": ..., "verdicts":
    [record, ...]}`` (records: docs/chaos-history.md; empty unless invalid)."""
    body = {
        "valid": verdict,
        "message": verdicts[0].sentence() if verdicts else message,
        "verdicts": [v.to_json() for v in verdicts],
    }
    Path(path).write_text(json.dumps(body, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return Path(path)


def read_verdict(path: Path) -> tuple[bool | str, str, list[Verdict]] | None:
    """A ``verdict.json`` (None if missing or unreadable: a re-drawing goes on without it)."""
    from walrelay_chaos.verdicts import Verdict

    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        return body["valid"], str(body.get("message", "")), [Verdict.from_json(v) for v in body.get("verdicts", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def report_main(
    history_path: str | Path,
    out_dir: str | Path,
    *,
    verdict: bool | str = "unknown",
    message: str = "",
    title: str = "",
    replay: str | None = None,
    time_unit: str = "simulated s",
) -> int:
    """Re-draw timeline.html and latency.png from a history.jsonl (the CLI's hook). The verdict is
    not in the history: the ``verdict.json`` beside it says it (with the checker's records), else
    "unknown" unless the caller knows it. Exit status: 0 drawn, 2 the file is missing or malformed
    (one line on stderr)."""
    path = Path(history_path)
    try:
        events = read_history(path)
    except FileNotFoundError:
        print(f"walrelay chaos report: error: {path}: no such file", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"walrelay chaos report: error: {path}: cannot read: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"walrelay chaos report: error: {e}", file=sys.stderr)
        return 2
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[Verdict] = []
    saved = read_verdict(path.parent / "verdict.json") if verdict == "unknown" and not message else None
    if saved is not None:
        verdict, message, records = saved
    written = _render(
        out,
        events,
        verdict=verdict,
        message=message,
        title=title or f"walrelay chaos run ({path})",
        replay=replay,
        time_unit=time_unit,
        verdicts=records,
    )
    print(f"{len(events)} events: " + ", ".join(str(p) for p in written.values()))
    if "latency" not in written:
        print(INSTALL_HINT, file=sys.stderr)
    return 0
