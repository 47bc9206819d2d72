"""Verdicts that name the bug (issue 18, item 4): every checker failure is a record (the property
violated, the operations of the history involved, expected vs found) said in one sentence, and the
records reach verdict.json and the timeline's outlines."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from walrelay_chaos import mutants
from walrelay_chaos import schedule as op
from walrelay_chaos.report import operations, report_main, write_report
from walrelay_chaos.sim import run_schedule, scratch_root
from walrelay_chaos.verdicts import PROPERTIES, OpRef, Verdict, Violation, for_message, from_exception


def _fails(schedule: list[op.Op], mutant: str, seed: int) -> tuple[Violation, list[dict[str, Any]], str]:
    """Run ``schedule`` with ``mutant`` planted: its violation, the history, and the scratch root."""
    root = tempfile.mkdtemp(prefix="walrelay-verdicts-", dir=scratch_root())
    events: list[dict[str, Any]] = []
    try:
        with pytest.raises(AssertionError) as failed, mutants.planted(mutant):
            run_schedule(root, schedule, seed=seed, history=events)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert isinstance(failed.value, Violation), f"a bare assertion, not a record: {failed.value}"
    return failed.value, events, root


# Each mutant's directed schedule breaks one property: the record must name that one.
EXPECTED = {
    "ack_after_2": "acked-write-lost",
    "no_epoch_check_at_replica": "acked-write-lost",
    "longest_log_ignoring_epochs": "acked-write-lost",
    "replica_acks_before_fsync": "acked-write-lost",
    "archive_before_durable": "archive-inconsistent",
    "truncate_before_confirm": "archive-inconsistent",
    "bookmark_before_durable": "pitr-inexact",
    "restore_before_archived": "retention-took-window",
    "branch_number_reused": "replicas-disagree",
    "off_by_one_segment_cut": "replica-truncated-unarchived",
    "retry_that_skips_a_failed_segment": "replica-truncated-unarchived",
    "timestamps_not_monotonic_across_failover": "timestamps-go-back",
}


@pytest.mark.parametrize("name", sorted(mutants.MUTANTS))
def test_every_directed_mutant_fails_with_a_record_naming_its_property_and_real_operations(name: str) -> None:
    violation, events, root = _fails(mutants.MUTANTS[name].directed, name, 0)
    first = violation.verdicts[0]
    assert first.prop == EXPECTED[name] and first.prop in PROPERTIES
    sentence = str(violation)
    assert sentence == first.sentence() and "\n" not in sentence
    assert "{'" not in sentence and root not in sentence and "/dev/shm" not in sentence  # no dict repr, no path
    for v in violation.verdicts:
        json.dumps(v.to_json())  # JSON as it is
        assert Verdict.from_json(json.loads(json.dumps(v.to_json()))) == v
        for ref in v.ops:  # each names an operation of this history, as it happened
            event = events[ref.index]
            assert (event["f"], event["process"], event["time"]) == (ref.f, ref.process, ref.time)
            if ref.completion is not None:
                done = events[ref.completion]
                assert done["process"] == ref.process and done["type"] == ref.outcome
    if first.prop in ("acked-write-lost", "replica-truncated-unarchived", "pitr-inexact"):
        named = {int(k) for group in re.findall(r"\bk=(\d+(?:, \d+)*)", sentence) for k in group.split(", ")}
        writes = {ref.value for ref in first.ops if ref.f == "write"}
        assert writes and writes == named, "the sentence names exactly the writes the record involves"


def test_the_ack_after_2_verdict_names_the_lost_write_its_ack_and_the_final_primary() -> None:
    # Seed 8 of `walrelay chaos run --mutant ack_after_2`, shrunk: write k=2 is acknowledged by p3
    # after two replicas stored it; the other side of a bridge takes over without it.
    schedule: list[op.Op] = [op.RestoreCrash(3, True, True), op.Restore(7, True), op.Bridge(3, 1)]
    violation, events, _ = _fails(schedule, "ack_after_2", 8)
    assert (
        str(violation) == "acknowledged writes missing from the final primary p5's database: k=2 (ok at 0.57 s on p3)"
    )
    (v,) = violation.verdicts
    assert v.prop == "acked-write-lost" and v.where == "after the final takeover"
    assert (v.expected, v.found) == ({"2": "v2"}, {"2": None})
    ops = operations(events)
    write = next(o for o in ops if o.f == "write" and o.invoke["value"] == 2)
    final_read = [o for o in ops if o.f == "read"][-1]
    assert write.outcome == "ok" and write.node == "p3" and final_read.node == "p5"
    assert [(r.index, r.completion) for r in v.ops] == [
        (write.invoke_at, write.completion_at),
        (final_read.invoke_at, final_read.completion_at),
    ]
    assert v.highlighted == {write.invoke_at, write.completion_at, final_read.invoke_at, final_read.completion_at}


def test_a_replica_that_disagrees_is_named_with_the_write_its_entry_carries() -> None:
    # Seed 8 of the same campaign, unshrunk: the serving primary, once healed, leaves replica r0
    # with an entry at seq 5 that its own log does not have.
    schedule: list[op.Op] = [
        op.StoreDown(False),
        op.Cut(7),
        op.Orphan(2, 20),
        op.Cut(8),
        op.RestoreCrash(3, True, True),
        op.Restore(7, True),
        op.SplitBrain(1),
        op.Bridge(3, 1),
    ]
    violation, events, _ = _fails(schedule, "ack_after_2", 8)
    v = violation.verdicts[0]
    assert v.prop == "replicas-disagree" and v.found["replica"] == "r0" and v.found["differing_seqs"] == [5]
    assert str(violation) == (
        "once healed, replica r0 holds only seq 5, which differs from the serving primary p5's log: its entry "
        "carries write k=3 (ok at 1.17 s on p5)"
    )
    (ref,) = v.ops
    assert (ref.f, ref.value, ref.outcome, ref.node) == ("write", 3, "ok", "p5")
    assert events[ref.index]["value"] == 3 and events[ref.completion or 0]["type"] == "ok"


def test_records_reach_verdict_json_and_the_timeline_and_a_redraw_keeps_them(tmp_path: Path) -> None:
    violation, events, _ = _fails(mutants.BOOKMARK_LOST_IN_FAILOVER, "bookmark_before_durable", 0)
    # As a campaign does it: only the message is passed; the records are found by it.
    assert for_message(str(violation)[:150], events) == list(violation.verdicts)
    assert for_message(str(violation), events[:3]) is None  # the same words about another history: not it
    written = write_report(tmp_path / "run", events, verdict=False, message=str(violation))
    body = json.loads(written["verdict"].read_text(encoding="utf-8"))
    assert body["valid"] is False and body["message"] == str(violation)
    assert body["verdicts"] == [v.to_json() for v in violation.verdicts]
    (v,) = violation.verdicts
    kinds = sorted(r.f for r in v.ops)
    assert v.prop == "pitr-inexact" and kinds == ["bookmark", "restore", "write", "write"]

    def outlined(page: str) -> set[int]:
        return {int(i) for i in re.findall(r'<div class="op [^"]*\bhl\b[^"]*" id="ev-(\d+)"', page)}

    page = written["timeline"].read_text(encoding="utf-8")
    assert outlined(page) == {r.index for r in v.ops}
    assert 'property violated: <b class="pid">pitr-inexact</b>' in page and "(pitr-inexact)</title>" in page
    # `walrelay chaos report` re-draws from history.jsonl with the verdict.json beside it.
    assert report_main(written["history"], tmp_path / "again") == 0
    again = (tmp_path / "again" / "timeline.html").read_text(encoding="utf-8")
    assert outlined(again) == outlined(page) and "INVALID" in again


def test_a_plain_assertion_becomes_a_check_failed_record_and_a_record_round_trips() -> None:
    (v,) = from_exception(AssertionError("something odd\nmore lines"))
    assert (v.prop, v.sentence(), v.ops) == ("check-failed", "something odd", ())
    ref = OpRef(3, 1, "write", 5, "ok", 0.5, 4, 0.71, "p3")
    assert ref.describe() == "write k=5 (ok at 0.71 s on p3)"
    assert OpRef(7, 2, "write", 9, "in flight", 1.0).describe() == "write k=9 (in flight since 1 s)"
    rec = Verdict("acked-write-lost", "x", (ref,), {"5": "v5"}, {"5": None}, "check")
    assert Verdict.from_json(json.loads(json.dumps(rec.to_json()))) == rec
    assert rec.highlighted == {3, 4} and rec.title == PROPERTIES["acked-write-lost"]
