"""The chaos report: operations pair as Jepsen pairs them, the timeline draws every operation and
fault where it happened (escaped), history.jsonl reads back as written and a bad one is refused
by line, the latency plot is a real PNG, and without matplotlib the rest is still written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from walrelay_chaos import mutants
from walrelay_chaos.report import (
    INSTALL_HINT,
    faults,
    operations,
    read_history,
    render_timeline,
    report_main,
    write_report,
)
from walrelay_chaos.sim import run_schedule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(*rows: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Events from (time, process, type, f, value[, extra]) rows, indexed in order."""
    events = []
    for i, (time, process, type_, f, value, *extra) in enumerate(rows):
        event = {"index": i, "time": time, "process": process, "type": type_, "f": f, "value": value}
        for more in extra:
            event.update(more)
        events.append(event)
    return events


# Two interleaved processes, a fail, an info, one op still in flight at the end; a partition
# from 0.5 to 1.5 (with a second start inside it), a crash, a stop with no start, a new fault kind
# left on to the end, and a value that is HTML.
EVENTS = _history(
    (0.0, 0, "invoke", "write", 1, {"node": "p0"}),  # 0
    (0.0, 1, "invoke", "write", 2, {"node": "p0"}),  # 1
    (0.1, 1, "ok", "write", 2),  # 2
    (0.2, 0, "info", "write", 1, {"error": "connection: reset"}),  # 3
    (0.5, "nemesis", "info", "start-partition", ["r3", "r4"]),  # 4
    (0.5, 0, "invoke", "read", None, {"node": "p0"}),  # 5
    (0.7, "nemesis", "info", "start-partition", ["r2"]),  # 6
    (0.8, 0, "ok", "read", 1),  # 7
    (1.0, "nemesis", "info", "crash-primary", "p0"),  # 8
    (1.0, 1, "invoke", "write", "<script>alert(1)</script>", {"node": "p1"}),  # 9
    (1.2, 1, "fail", "write", "<script>alert(1)</script>", {"error": "not primary & <b>"}),  # 10
    (1.5, "nemesis", "info", "stop-partition", None),  # 11
    (1.6, "nemesis", "info", "stop-store-down", None),  # 12: no start: ignored
    (1.7, "nemesis", "info", "start-clock-skew", "+5 s"),  # 13: never stopped
    (1.8, 2, "invoke", "bookmark", None, {"node": "p1"}),  # 14: in flight at the end
    (2.0, 0, "invoke", "restore", "00000001-0000000000000002", {"by_request": True}),  # 15
    (2.5, 0, "ok", "restore", "00000001-0000000000000002", {"undo_bookmark": "00000002-0000000000000003"}),  # 16
)


def _boxes(page: str) -> list[tuple[str, float, float, str]]:
    """Every operation box: (classes, top px, height px, text)."""
    return [
        (m[1], float(m[2]), float(m[3]), m[4])
        for m in re.finditer(
            r'<div class="(op [^"]*)"(?: id="ev-\d+")? title="[^"]*" '
            r'style="top:([\d.]+)px;height:([\d.]+)px;[^"]*">([^<]*)<',
            page,
        )
    ]


def _page_height(page: str) -> float:
    m = re.search(r'class="tl" style="[^"]*height:([\d.]+)px', page)
    assert m
    return float(m[1])


def _row_top(page: str, label: str) -> float:
    """The top of the nemesis label ``label`` (the row of its event)."""
    m = re.search(
        r'class="nl[^"]*"(?: id="ev-\d+")? title="[^"]*" style="top:([\d.]+)px;[^"]*">' + re.escape(label) + "<", page
    )
    assert m, label
    return float(m[1])


def test_operations_pair_each_invoke_with_the_next_event_of_its_process() -> None:
    ops = operations(EVENTS)
    got = [(op.process, op.f, op.outcome, op.invoke_at, op.completion_at) for op in ops]
    assert got == [
        (0, "write", "info", 0, 3),
        (1, "write", "ok", 1, 2),
        (0, "read", "ok", 5, 7),
        (1, "write", "fail", 9, 10),
        (2, "bookmark", "info", 14, None),
        (0, "restore", "ok", 15, 16),
    ]
    write1, _, read, _, bookmark, _ = ops
    assert write1.latency == pytest.approx(0.2) and write1.error == "connection: reset" and write1.node == "p0"
    assert bookmark.in_flight and bookmark.latency is None and bookmark.end is None
    assert read.label() == "read → 1 @p0"  # the answer shows when the invoke had no value


def test_a_history_that_breaks_the_pairing_is_drawn_and_its_anomalies_named() -> None:
    events = _history(
        (0.0, 0, "invoke", "write", 1),
        (0.1, 0, "invoke", "write", 2),  # 0 is still busy with write 1
        (0.2, 0, "ok", "write", 2),
        (0.3, 3, "ok", "read", 5),  # answers nothing
    )
    ops = operations(events)
    assert [(op.invoke["value"], op.completion_at) for op in ops] == [(1, None), (2, 2)]
    page = render_timeline(events, verdict=True)
    assert len(_boxes(page)) == 2
    assert "event 1 invokes while event 0 is unanswered" in page and "event 3 (ok read) answers no invoke" in page


def test_faults_make_bands_from_start_to_stop_and_instants_of_the_rest() -> None:
    bands, instants = faults(EVENTS)
    assert [(b.kind, b.start_at, b.stop_at, b.restarts) for b in bands] == [
        ("partition", 4, 11, (6,)),  # the second start is inside the band, not a new one
        ("clock-skew", 13, None, ()),  # never stopped: to the end
    ]
    assert [i.event["f"] for i in instants] == ["crash-primary"]  # stop-store-down without a start: ignored


def test_timeline_draws_one_box_per_operation_with_its_outcome() -> None:
    page = render_timeline(EVENTS, verdict=True)
    boxes = _boxes(page)
    assert [(cls, text.split(" ")[0]) for cls, *_, text in boxes] == [
        ("op info", "write"),
        ("op ok", "write"),
        ("op ok", "read"),
        ("op fail", "write"),
        ("op info flight", "bookmark"),
        ("op ok", "restore"),
    ]
    tops = {text.split(" @")[0]: (top, top + height) for _, top, height, text in boxes}
    # A box spans from its invoke's row to its completion's: the read (events 5..7) contains the
    # second partition start (event 6), the in-flight bookmark reaches the bottom of the page.
    second_start = _row_top(page, "start-partition r2")
    assert tops["read → 1"][0] < second_start < tops["read → 1"][1]
    height = _page_height(page)
    assert tops["bookmark"][1] == pytest.approx(height)
    assert "in flight at the end" in page and "counts" in page


def test_timeline_shades_the_partition_between_its_start_and_stop_and_lines_the_crash() -> None:
    page = render_timeline(EVENTS, verdict=True)
    bands = re.findall(r'<div class="band" title="([^"]*)" style="top:([\d.]+)px;height:([\d.]+)px', page)
    assert [b[0].split(":")[0] for b in bands] == ["partition", "clock-skew"]
    start, stop = _row_top(page, "start-partition r3 r4"), _row_top(page, "stop-partition")
    top, height = float(bands[0][1]), float(bands[0][2])
    assert start <= top <= start + 11 and stop <= top + height <= stop + 11
    assert "0.5 to 1.5 simulated s" in bands[0][0]
    crash = _row_top(page, "crash-primary p0")
    lines = [float(y) for y in re.findall(r'<div class="inst" style="top:([\d.]+)px', page)]
    assert len(lines) == 1 and crash <= lines[0] <= crash + 11
    assert "stop-store-down" in page  # still labelled, but no band
    assert "clock-skew (start-clock-skew … stop-clock-skew)" in page  # a new kind gets a legend entry


def test_timeline_escapes_every_string_and_shows_the_verdict() -> None:
    page = render_timeline(
        EVENTS, verdict=False, message="lost <write> & more", title="run <1>", replay="walrelay chaos replay 'a b'"
    )
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "not primary &amp; &lt;b&gt;" in page
    assert "INVALID" in page and "lost &lt;write&gt; &amp; more" in page and "run &lt;1&gt;" in page
    assert "walrelay chaos replay &#x27;a b&#x27;" in page
    assert "unknown" in render_timeline(EVENTS, verdict="unknown")
    # Counts per f: write has 1 ok, 1 fail, 1 info.
    assert "<tr><td>write</td><td>1</td><td>1</td><td>1</td><td>0</td></tr>" in page


def test_a_long_history_stays_one_page_of_bounded_height() -> None:
    events = []
    for i in range(2500):
        t = i * 0.01
        events += _history((t, i % 7, "invoke", "write", i), (t, i % 7, "ok", "write", i))
    for i, e in enumerate(events):
        e["index"] = i
    page = render_timeline(events, verdict=True)
    height = _page_height(page)
    assert 20000 <= height <= 41000
    assert len(_boxes(page)) == 2500


def test_report_files_round_trip_and_the_png_is_real(tmp_path: Path) -> None:
    written = write_report(tmp_path / "run", EVENTS, verdict=True, replay="walrelay chaos replay x.json")
    assert set(written) == {"history", "verdict", "timeline", "latency"}
    lines = written["history"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(EVENTS) and list(json.loads(lines[0])) == list(EVENTS[0])  # key order kept
    assert read_history(written["history"]) == EVENTS
    png = written["latency"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert 'href="latency.png"' in written["timeline"].read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1}\n{"index":1,', "line 2: not JSON"),
        ("\n[1, 2]\n", "line 2: not a JSON object"),
        ('{"index":0,"process":0,"type":"invoke","f":"w","value":1}', "line 1: missing 'time'"),
        ('{"index":0,"time":0,"process":0,"type":"done","f":"w","value":1}', "line 1: 'type' must be one of"),
        ('{"index":0,"time":"soon","process":0,"type":"ok","f":"w","value":1}', "line 1: 'time' must be"),
        (b'{"index":0,"time":0,"process":0,"type":"ok","f":"\xff","value":1}', "line 1: not UTF-8"),
    ],
)
def test_a_malformed_history_is_refused_naming_the_line(tmp_path: Path, content: str | bytes, fragment: str) -> None:
    path = tmp_path / "history.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(fragment)):
        read_history(path)


def test_report_main_rerenders_and_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_report(tmp_path / "run", EVENTS, verdict=True)
    out = tmp_path / "again"
    assert report_main(tmp_path / "run" / "history.jsonl", out) == 0
    assert (out / "latency.png").read_bytes().startswith(PNG_MAGIC)
    assert len(_boxes((out / "timeline.html").read_text(encoding="utf-8"))) == len(operations(EVENTS))
    capsys.readouterr()

    assert report_main(tmp_path / "missing.jsonl", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.jsonl: no such file" in err

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"index":0,"time":0,"process":0,"type":"invoke","f":"w","value":1}\nnope\n', encoding="utf-8")
    assert report_main(bad, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "line 2: not JSON" in err and "Traceback" not in err


def test_without_matplotlib_the_history_and_timeline_are_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "latency.png").write_bytes(b"an older run's plot")
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.lines"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    written = write_report(tmp_path, EVENTS, verdict=True)
    assert set(written) == {"history", "verdict", "timeline"}
    assert not (tmp_path / "latency.png").exists()  # not left to pass for this run's
    page = written["timeline"].read_text(encoding="utf-8")
    assert "pip install &#x27;walrelay[chaos]&#x27;" in page and INSTALL_HINT.startswith("latency plot needs")
    assert read_history(written["history"]) == EVENTS


def test_a_failing_simulated_run_reports_its_history(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    with pytest.raises(AssertionError) as failed, mutants.planted("ack_after_2"):
        run_schedule(str(tmp_path / "sim"), mutants.ACK_AFTER_2, seed=0, history=events)
    written = write_report(tmp_path / "run", events, verdict=False, message=str(failed.value))
    assert read_history(written["history"]) == events
    page = written["timeline"].read_text(encoding="utf-8")
    ops = operations(events)
    assert ops and len(_boxes(page)) == len(ops)
    assert all(op.completion is None or op.completion["process"] == op.process for op in ops)
    # The verdict names the bug: the property, the lost write, and (outlined) the operations involved.
    sentence = "acknowledged writes missing from p1's database at a check: k=1 (ok at 0.3 s on p0)"
    assert str(failed.value) == sentence
    assert "INVALID" in page and "acked-write-lost" in page and sentence.replace("'", "&#x27;") in page
    write = next(op for op in ops if op.f == "write" and op.invoke["value"] == 1)
    read = [op for op in ops if op.f == "read" and op.node == "p1"][-1]
    assert write.outcome == "ok" and write.node == "p0"
    outlined = {int(i) for i in re.findall(r'<div class="op [^"]*\bhl\b[^"]*" id="ev-(\d+)"', page)}
    assert outlined == {write.invoke_at, read.invoke_at}
    assert f'href="#ev-{write.invoke_at}"' in page  # the header links to the box
    body = json.loads(written["verdict"].read_text(encoding="utf-8"))
    assert body["valid"] is False and body["verdicts"][0]["property"] == "acked-write-lost"
    assert [o["index"] for o in body["verdicts"][0]["ops"]] == [write.invoke_at, read.invoke_at]
    instants = [e["f"] for e in events if e["process"] == "nemesis" and not e["f"].startswith(("start-", "stop-"))]
    assert "crash-primary" in instants and page.count('<div class="inst"') == len(instants)
    assert written["latency"].read_bytes().startswith(PNG_MAGIC)


def test_a_latency_plot_mostly_on_its_floor_says_why() -> None:
    """Issue 18: a 12-operation simulated run's plot was mostly points on the 0.1 ms floor, with
    nothing saying those took no time at all. Half or fewer on the floor: no note."""
    from walrelay_chaos.report import LATENCY_FLOOR_MS, floor_note

    assert floor_note([LATENCY_FLOOR_MS] * 7 + [5.0] * 5) == (
        "7 of 12 operations took no time on this run's clock (drawn on the dotted line); in simulation the "
        "network and disks take none"
    )
    assert floor_note([LATENCY_FLOOR_MS] * 6 + [5.0] * 6) is None
    assert floor_note([]) is None
