"""The archive corruption campaign (walrelay_chaos.archive_fuzz) and its fault generator
(walrelay_chaos.corrupt).

The campaign's bar: no restore silently wrong, no crash, every deletion detected by verify, and
every other fault either detected by verify or harmless (every restore as on the pristine
archive). Bounded to about a minute on a 2-core machine: 350 seeded trials in process (about
80 ms each), 4 of them through the CLI too (about 2 s each), and the hypothesis profile's examples
(``ci``: 100, derandomized). A failure prints the seed and a command that replays the trial.
"""

from __future__ import annotations

import json
import os
import random
import shlex
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from walrelay_chaos import archive_fuzz, corrupt
from walrelay_chaos.archive_fuzz import CampaignResult, Pristine, TrialResult, replay_command, run_campaign, run_trial
from walrelay_chaos.corrupt import ARCHIVE_KINDS, CORE_KINDS, Fault

SEED = 0
# Under mutation testing (scripts/mutate.py sets the hypothesis profile ``mutate``) this file runs
# once per mutant of archive/verify: a shorter campaign in process only (the CLI runs in a
# subprocess, which imports the unmutated package), so the nightly group fits its hour.
MUTATING = os.environ.get("HYPOTHESIS_PROFILE") == "mutate"
TRIALS = 60 if MUTATING else 350
CLI_EVERY = 0 if MUTATING else 100  # trials 0, 100, 200, 300 also through `walrelay archive verify` and `restore`


def _seg(branch: int, first: int, last: int) -> str:
    return corrupt.segment_key("obj", branch, first, last)


def _snap(branch: int, seq: int) -> str:
    return corrupt.snapshot_key("obj", branch, seq)


# An archive's shapes, every object's bytes distinct: no fault may leave the mapping as it was.
RECORD = {"branch": 4, "fork_chain": "ab" * 16, "fork_seq": 2, "format": 1, "parent": 1}
MANIFEST = {"kind": "manifest", "objects": [{"key": _seg(1, 1, 2), "size": 40}, {"key": _snap(1, 2), "size": 9}]}
SYNTHETIC: dict[str, bytes] = {
    _snap(1, 0): b"WRSN genesis",
    _seg(1, 1, 2): b"WRSG one two" + bytes(range(40)),
    _seg(1, 3, 3): b"WRSG three",
    _seg(1, 4, 6): b"WRSG four to six" + bytes(range(100, 140)),
    _snap(1, 2): b"WRSN at two",
    _snap(4, 2): b"WRSN fork of 4",
    _seg(4, 3, 4): b"WRSG branch 4",
    "obj/b00000004/branch.json": (json.dumps(RECORD, sort_keys=True, separators=(",", ":")) + "\n").encode(),
    "obj/b00000001/manifest/00000000000000000002": json.dumps(MANIFEST, indent=2).encode(),
    "obj/README": b"not an archive object",
}
# A replica's files: nothing archive-shaped; the core kinds only.
REPLICA: dict[str, bytes] = {
    "r0/log": b"WRLE" + bytes(range(200)),
    "r0/state.json": b'{"epoch": 7, "archived_through": 12, "promised": [3, 4]}',
    "r1/log": b"WRLE" + bytes(range(1, 201)),
}


def _check_fault(files: Mapping[str, bytes], fault: Fault, *, archive: bool = True) -> None:
    before = dict(files)
    out = fault.apply(files)
    assert dict(files) == before, f"{fault.describe()} changed the mapping it was given"
    assert out != files, f"{fault.describe()} changed nothing"
    assert fault.describe() and all(k in files for k in fault.keys[:1])
    if isinstance(fault, corrupt.EditJson):
        body = json.loads(out[fault.key])
        assert isinstance(body, dict), "a corrupted record is still a JSON object"
    if isinstance(fault, corrupt.Overlap):
        src, dst = corrupt.archive_key(fault.src), corrupt.archive_key(fault.dst)
        assert src is not None and dst is not None and (src.kind, src.object_name) == (dst.kind, dst.object_name)
        siblings = [
            o
            for k in files
            if k != fault.src and (o := corrupt.archive_key(k)) and o.kind == "segment" and o.branch == src.branch
        ]
        if dst.branch == src.branch and siblings:  # shifted: overlaps another segment of the branch
            assert any(o.first <= dst.last and dst.first <= o.last for o in siblings), fault.describe()
    if isinstance(fault, corrupt.DeleteRecord):
        assert corrupt.json_object(files[fault.key]) is not None or fault.key.endswith("/branch.json")
    elif isinstance(fault, corrupt.Delete) and archive:
        assert corrupt.json_object(files[fault.key]) is None, "records are deleted by delete_record"


def test_seeded_faults_change_the_bytes_and_every_kind_is_drawn() -> None:
    rng = random.Random(1)
    seen: dict[str, int] = {}
    for _ in range(700):
        fault = corrupt.draw_archive_fault(rng, SYNTHETIC)
        _check_fault(SYNTHETIC, fault)
        seen[fault.kind] = seen.get(fault.kind, 0) + 1
    assert set(seen) == set(ARCHIVE_KINDS), seen
    assert min(seen.values()) > 50, f"kinds are drawn evenly: {seen}"
    core: set[str] = set()
    for _ in range(200):
        fault = corrupt.draw_fault(rng, REPLICA)
        _check_fault(REPLICA, fault, archive=False)
        core.add(fault.kind)
    assert core == set(CORE_KINDS), core
    for kind in ARCHIVE_KINDS:  # a kind can be asked for
        assert corrupt.draw_archive_fault(rng, SYNTHETIC, [kind]).kind == kind


@given(corrupt.archive_fault_strategy(SYNTHETIC))
def test_drawn_faults_change_the_bytes(fault: Fault) -> None:
    _check_fault(SYNTHETIC, fault)


@given(corrupt.fault_strategy(REPLICA))
def test_the_core_needs_no_archive(fault: Fault) -> None:
    assert fault.kind in CORE_KINDS
    _check_fault(REPLICA, fault, archive=False)


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_hypothesis_draws_each_kind(kind: str) -> None:
    found = find(
        corrupt.archive_fault_strategy(SYNTHETIC),
        lambda f: f.kind == kind,
        settings=settings(max_examples=500, derandomize=True, database=None),
    )
    assert found.kind == kind


def test_a_record_keeps_its_style_and_changes_one_field() -> None:
    key = "obj/b00000004/branch.json"
    out = corrupt.EditJson(key, ("fork_seq",), "3").apply(SYNTHETIC)
    assert out[key] == SYNTHETIC[key].replace(b'"fork_seq":2', b'"fork_seq":3')
    nested = corrupt.EditJson("obj/b00000001/manifest/00000000000000000002", ("objects", 0, "size"), None)
    body = json.loads(nested.apply(SYNTHETIC)[nested.key])
    assert body["objects"][0] == {"key": _seg(1, 1, 2)} and body["objects"][1] == MANIFEST["objects"][1]


# -- the campaign ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine() -> Pristine:
    return archive_fuzz.pristine()


def test_the_pristine_archive_has_what_the_campaign_needs(pristine: Pristine) -> None:
    """Several branches (a restore, its undo, a restore of a restore), many objects, restore
    points that answer, and some that are refused even when pristine."""
    assert len(pristine.branches) >= 4, pristine.summary()
    assert sum(1 for k in pristine.files if "/seg/" in k) >= 20 and sum(1 for k in pristine.files if "/snap/" in k) >= 8
    answers = list(pristine.answers.values())
    assert sum(a.ok for a in answers) >= 40 and any(not a.ok for a in answers), pristine.summary()
    assert {p.time_us is None for p in pristine.points} == {True, False}


def _why(r: TrialResult) -> list[str]:
    """What fails this test's bar (the campaign's, and: undetected faults must be harmless)."""
    out = r.problems()
    if r.missed and not any("verify found nothing" in p for p in out):
        out.append(f"verify found nothing, yet restores changed: {[*r.refused, *r.wrong][:2]}")
    return out


def _report(result: CampaignResult, bad: list[TrialResult]) -> str:
    lines = [f"archive fuzz, seed {result.seed}: {len(bad)} trials fail", result.table()]
    for r in bad[:12]:
        lines.append(f"trial {r.index}: {r.fault}; verify: {r.verify_says}")
        lines += [f"    {p.splitlines()[0]}" for p in _why(r)[:3]]
        lines.append(f"    replay: {replay_command(result.seed, r.index)}")
    return "\n".join(lines)


def test_the_seeded_campaign(pristine: Pristine) -> None:
    result = run_campaign(TRIALS, SEED, cli_every=CLI_EVERY)
    print(result.table())
    assert len(result.trials) == TRIALS
    assert sum(bool(r.cli) for r in result.trials) == (len(range(0, TRIALS, CLI_EVERY)) if CLI_EVERY else 0)
    assert {r.kind for r in result.trials} == set(ARCHIVE_KINDS)
    bad = [r for r in result.trials if _why(r)]
    assert not bad, _report(result, bad)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_drawn_fault(data: st.DataObject) -> None:
    pristine = archive_fuzz.pristine()  # built once per process (not a fixture: hypothesis would print it)
    fault = data.draw(corrupt.archive_fault_strategy(pristine.files), label="fault")
    r = run_trial(pristine, fault)
    problems = _why(r)
    code = (
        "from walrelay_chaos.archive_fuzz import *; from walrelay_chaos.corrupt import *; "
        f"print(run_trial(pristine(), {fault!r}))"
    )
    replay = f"python -c {shlex.quote(code)}"
    assert not problems, f"{fault.describe()}; verify: {r.verify_says}\n" + "\n".join(
        [*(p.splitlines()[0] for p in problems[:4]), f"replay: {replay}"]
    )
