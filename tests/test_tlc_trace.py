"""``walrelay tlc --trace``: counterexamples with named actions, parameters and diffs.

Most tests read TLC output recorded from a toy spec (``Relay`` below: messages in a set, delivered
to nodes), so they need no java. One test runs TLC for real, twice (the check and the replay), on
the spec's ``quorum_2_of_5`` mutant; it asserts only what must hold however the spec evolves.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from walrelay.cli import main
from walrelay.tlc import messages as mc
from walrelay.tlc.actions import (
    candidates,
    choose_labels,
    module_sources,
    next_actions,
    parse_replay_output,
    replay_cfg,
    replay_module,
    static_label,
    static_labels,
)
from walrelay.tlc.command import run_command
from walrelay.tlc.configs import parse_config, select
from walrelay.tlc.trace import TraceState, describe, render_steps, trace_from
from walrelay.tlc.values import diff, parse_value

SPEC = Path(__file__).resolve().parents[1] / "spec"

# A toy spec; its line and column numbers are those in the recorded outputs below.
RELAY_TLA = """\
---- MODULE Relay ----
\\* Toy spec for the trace tests: messages in a set, delivered to nodes.
EXTENDS Naturals
CONSTANT Nodes
VARIABLES msgs, seen, n
vars == <<msgs, seen, n>>

Init == msgs = {} /\\ seen = [x \\in Nodes |-> 0] /\\ n = 0
Send(v) == n < 2 /\\ n' = n + 1 /\\ msgs' = msgs \\cup {[type |-> "put", v |-> v]} /\\ UNCHANGED seen
Deliver(x, m) == seen' = [seen EXCEPT ![x] = m.v] /\\ msgs' = msgs \\ {m} /\\ UNCHANGED n
Drop(m) == msgs' = msgs \\ {m} /\\ UNCHANGED <<seen, n>>
Next == \\/ \\E v \\in 1..2 : Send(v)
        \\/ \\E x \\in Nodes :
              \\E m \\in msgs : \\/ Deliver(x, m)
                              \\/ Drop(m)
Spec == Init /\\ [][Next]_vars
Inv == ~(\\E x, y \\in Nodes : seen[x] = 2 /\\ seen[y] = 1 /\\ msgs = {})
====
"""
RELAY_CFG = """\
\\* module: Relay
\\* expect: violation Inv
\\* suite: ci
CONSTANT Nodes = {a, b}
SPECIFICATION Spec
INVARIANT Inv
"""


def _state(number: int, action: str, msgs: str, seen: str, n: int) -> str:
    return (
        f"@!@!@STARTMSG 2217:4 @!@!@\n{number}: {action}\n/\\ msgs = {msgs}\n/\\ seen = {seen}\n/\\ n = {n}\n\n"
        "@!@!@ENDMSG 2217 @!@!@\n"
    )


# TLC 2.15's counterexample for relay_bug.cfg (1 worker), trimmed to the trace.
_SEND = "<Send line 9, col 12 to line 9, col 97 of module Relay>"
_NEXT = "<Next line 14, col 15 to line 15, col 40 of module Relay>"
RELAY_OUTPUT = (
    "@!@!@STARTMSG 2110:1 @!@!@\nInvariant Inv is violated.\n@!@!@ENDMSG 2110 @!@!@\n"
    + _state(1, "<Initial predicate>", "{}", "(a :> 0 @@ b :> 0)", 0)
    + _state(2, _SEND, '{[v |-> 1, type |-> "put"]}', "(a :> 0 @@ b :> 0)", 1)
    + _state(3, _SEND, '{[v |-> 1, type |-> "put"], [v |-> 2, type |-> "put"]}', "(a :> 0 @@ b :> 0)", 2)
    + _state(4, _NEXT, '{[v |-> 2, type |-> "put"]}', "(a :> 1 @@ b :> 0)", 2)
    + _state(5, _NEXT, "{}", "(a :> 1 @@ b :> 2)", 2)
)
# What the replay of that trace printed (PrintT lines are outside TLC's tagged messages).
REPLAY_OUTPUT = """\
@!@!@STARTMSG 2190:0 @!@!@
Finished computing initial states: 1 distinct state generated at 2026-12-07 14:55:09.
@!@!@ENDMSG 2190 @!@!@
<<"walrelay-trace-step", 1, <<{<<1>>}, {}, {}>>>>
<<"walrelay-trace-step", 2, <<{<<2>>}, {}, {}>>>>
<<"walrelay-trace-step", 3, <<{}, {<<a, [v |-> 1, type |-> "put"]>>}, {}>>>>
<< "walrelay-trace-step",
   4,
   <<{}, {<<b, [v |-> 2, type |-> "put"]>>}, {}>> >>
@!@!@STARTMSG 2193:0 @!@!@
Model checking completed. No error has been found.
@!@!@ENDMSG 2193 @!@!@
"""


@pytest.fixture
def relay(tmp_path: Path) -> Path:
    (tmp_path / "Relay.tla").write_text(RELAY_TLA)
    (tmp_path / "relay_bug.cfg").write_text(RELAY_CFG)
    return tmp_path


def _trace() -> list[TraceState]:
    return trace_from(mc.parse_messages(RELAY_OUTPUT))


# ------------------------------------------------------------------------------ values and diffs


def test_set_diff_names_added_and_removed_elements() -> None:
    old = parse_value('{[v |-> 1, type |-> "put"],\n  [v |-> 2, type |-> "put"]}')
    new = parse_value('{ [v |-> 2, type |-> "put"], [v |-> 3, type |-> "put"] }')
    assert [c.line() for c in diff("msgs", old, new)] == [
        'msgs - [v |-> 1, type |-> "put"]',
        'msgs + [v |-> 3, type |-> "put"]',
    ]
    assert diff("msgs", old, old) == []


def test_diff_walks_into_functions_tuples_and_records() -> None:
    old = parse_value('<< (r1 :> 0 @@ r2 :> 0), [kind |-> "none", last |-> 0], <<1>> >>')
    new = parse_value('<< (r1 :> 0 @@ r2 :> 5), [kind |-> "seg", last |-> 0], <<1, -2>> >>')
    assert [c.to_json() for c in diff("x", old, new)] == [
        {"path": "x[1][r2]", "op": "changed", "value": "5", "old": "0"},
        {"path": "x[2].kind", "op": "changed", "value": '"seg"', "old": '"none"'},
        {"path": "x[3][2]", "op": "added", "value": "-2"},
    ]
    # TLC prints an interval as a..b: it is the set of its numbers.
    assert [c.line() for c in diff("s", parse_value("1..3"), parse_value("{2, 3, 4}"))] == ["s - 1", "s + 4"]
    # A set inside a function: the elements, not the whole set.
    assert [c.line() for c in diff("f", parse_value("(a :> {1, 2})"), parse_value("(a :> {2})"))] == ["f[a] - 1"]


@pytest.mark.parametrize("text", ["{1, 2", "[a |-> ]", "1 2", "x \\in S"])
def test_values_tlc_would_not_print_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_value(text)


# ------------------------------------------------------------------------------ actions from the source


def test_next_is_split_into_its_action_calls_with_their_binders(relay: Path) -> None:
    config = parse_config(relay / "relay_bug.cfg", relay)
    actions = next_actions(config, {"Relay": RELAY_TLA})
    assert [(a.call, a.binders, a.pos) for a in actions] == [
        ("Send(v)", (("v", "1..2"),), (12, 28)),
        ("Deliver(x, m)", (("x", "Nodes"), ("m", "msgs")), (14, 34)),
        ("Drop(m)", (("x", "Nodes"), ("m", "msgs")), (15, 34)),
    ]


def test_bulleted_and_infix_disjunctions_and_a_fair_spec(tmp_path: Path) -> None:
    """Items of a bulleted \\/ list end at the next bullet in the same column; a quantifier's body
    runs to the end of its item; SPECIFICATION FairSpec is followed to its [][N]_v."""
    text = (
        "---- MODULE Big ----\nVARIABLE x\n"
        "F(p, q) == x' = x\n"
        "Next ==\n"
        "    \\/ A\n"
        "    \\/ \\E e \\in E : \\/ B(e) \\/ C(e)\n"
        "                    \\/ D(e) \\/ \\E r \\in R : F(e, r)\n"
        "                    \\/ (G(e))\n"
        "    \\/ \\E b, c \\in S, k \\in 0..b : H(b, c, k)\n"
        "    \\/ x' = x /\\ A\n"
        "Spec == x = 0 /\\ [][Next]_x\n"
        "FairSpec == Spec /\\ WF_x(Next)\n"
        "====\n"
    )
    (tmp_path / "Big.tla").write_text(text)
    (tmp_path / "big.cfg").write_text("\\* module: Big\n\\* expect: ok\n\\* suite: ci\nSPECIFICATION FairSpec\n")
    actions = next_actions(parse_config(tmp_path / "big.cfg", tmp_path), {"Big": text})
    assert [(a.call, [v for v, _ in a.binders]) for a in actions] == [
        ("A", []),
        ("B(e)", ["e"]),
        ("C(e)", ["e"]),
        ("D(e)", ["e"]),
        ("F(e, r)", ["e", "r"]),
        ("G(e)", ["e"]),
        ("H(b, c, k)", ["b", "c", "k"]),
        ("x' = x /\\ A", []),
    ]
    assert actions[6].binders == (("b", "S"), ("c", "S"), ("k", "0..b"))
    assert actions[7].name is None
    # The operator's own parameter names, where its definition is at hand.
    assert actions[4].formals == ("p", "q") and actions[1].formals is None


def test_tlc_ranges_map_to_the_actions_they_cover(relay: Path) -> None:
    config = parse_config(relay / "relay_bug.cfg", relay)
    actions = next_actions(config, {"Relay": RELAY_TLA})
    # A range inside Next covers the two calls under \E m \in msgs, not Send.
    assert candidates(_NEXT, actions, {}) == [1, 2]
    assert static_label(_NEXT, actions, {}) == "one of Deliver(x, m), Drop(m)"
    # A named action's range is its definition: matched by name.
    assert static_label(_SEND, actions, {}) == "Send(v)"
    # A config's `Send <- MutSend`: TLC names the replacement.
    assert static_label("<MutSend line 2, col 1 to line 2, col 9 of module MC>", actions, {"Send": "MutSend"}) == (
        "Send(v)"
    )
    assert static_label("<Initial predicate>", actions, {}) is None
    assert static_labels(config, relay, _trace()) == {
        1: "Send(v)",
        2: "Send(v)",
        3: "one of Deliver(x, m), Drop(m)",
        4: "one of Deliver(x, m), Drop(m)",
    }


# ------------------------------------------------------------------------------ the replay


def test_replay_module_walks_the_trace_and_tests_every_call(relay: Path) -> None:
    config = parse_config(relay / "relay_bug.cfg", relay)
    actions = next_actions(config, {"Relay": RELAY_TLA})
    states = [[(name, parse_value(text.split("=", 1)[1])) for name, text in s.variables] for s in _trace()]
    module = replay_module("Relay", states, actions, ["a", "b"])
    assert "EXTENDS Relay, TLC, Naturals" in module and "CONSTANTS a, b" in module
    assert (
        "wrtA1 == UNION { UNION { IF Deliver(x, m) THEN {<<x, m>>} ELSE {} : m \\in msgs } : x \\in Nodes }" in module
    )
    assert '[msgs |-> {[v |-> 2, type |-> "put"]}, seen |-> (a :> 1 @@ b :> 0), n |-> 2]' in module
    assert "wrtLength == 5" in module
    cfg = replay_cfg(RELAY_CFG, ["a", "b"])
    assert cfg.splitlines() == [
        "CONSTANTS Nodes = {a, b}",
        "CONSTANT a = a",
        "CONSTANT b = b",
        "INIT wrtInit",
        "NEXT wrtNext",
    ]


def test_replayed_steps_get_the_call_with_its_arguments(relay: Path) -> None:
    config = parse_config(relay / "relay_bug.cfg", relay)
    actions = next_actions(config, {"Relay": RELAY_TLA})
    found = parse_replay_output(REPLAY_OUTPUT, len(actions))
    assert sorted(found) == [1, 2, 3, 4]
    labels = choose_labels(_trace(), actions, {}, found)
    assert [labels[k].call for k in (1, 2, 3, 4)] == [
        "Send(1)",
        "Send(2)",
        'Deliver(a, [v |-> 1, type |-> "put"])',
        'Deliver(b, [v |-> 2, type |-> "put"])',
    ]
    assert labels[3].name == "Deliver" and labels[3].params == ("a", '[v |-> 1, type |-> "put"]')


def test_tlc_range_decides_between_calls_that_both_explain_a_step(relay: Path) -> None:
    """If Send(1) and Drop(m) both held at step 3, TLC's range (inside Next, not Send) picks Drop;
    at step 1 TLC named Send, so Send it is, and an equally good second Send is listed."""
    config = parse_config(relay / "relay_bug.cfg", relay)
    actions = next_actions(config, {"Relay": RELAY_TLA})
    one, two = parse_value("<<1>>"), parse_value("<<2>>")
    m = parse_value('<<[v |-> 1, type |-> "put"]>>')
    found = {1: [[one, two], [], [m]], 3: [[one], [], [m]]}
    labels = choose_labels(_trace(), actions, {}, found)
    assert labels[1].call == "Send(1)" and labels[1].others == ("Send(2)",)
    assert labels[3].call == 'Drop([v |-> 1, type |-> "put"])' and labels[3].others == ()
    assert set(labels) == {1, 3}


def test_a_lasso_step_back_is_labelled_by_the_replay_step_that_closes_it(relay: Path) -> None:
    config = parse_config(relay / "relay_bug.cfg", relay)
    actions = next_actions(config, {"Relay": RELAY_TLA})
    trace = [*_trace()[:3], TraceState(4, f"back to state 2 via {_NEXT}", ())]
    m = parse_value('<<b, [v |-> 2, type |-> "put"]>>')
    labels = choose_labels(trace, actions, {}, {1: [[parse_value("<<1>>")], [], []], 3: [[], [m], []]}, 3)
    assert labels[1].call == "Send(1)" and set(labels) == {1, 3}
    steps = describe(trace, labels, {})
    assert steps[3].kind == "back"
    assert steps[3].action == 'back to state 2 via Deliver(b, [v |-> 2, type |-> "put"])'


# ------------------------------------------------------------------------------ what is printed


def test_trace_shows_the_initial_state_then_only_the_changes(relay: Path) -> None:
    config = parse_config(relay / "relay_bug.cfg", relay)
    actions = next_actions(config, {"Relay": RELAY_TLA})
    trace = _trace()
    labels = choose_labels(trace, actions, {}, parse_replay_output(REPLAY_OUTPUT, len(actions)))
    steps = describe(trace, labels, static_labels(config, relay, trace))
    assert render_steps(steps, indent="") == [
        "State 1: initial state",
        "    /\\ msgs = {}",
        "    /\\ seen = (a :> 0 @@ b :> 0)",
        "    /\\ n = 0",
        "State 2: Send(1)",
        '    msgs + [v |-> 1, type |-> "put"]',
        "    n: 0 -> 1",
        "State 3: Send(2)",
        '    msgs + [v |-> 2, type |-> "put"]',
        "    n: 1 -> 2",
        'State 4: Deliver(a, [v |-> 1, type |-> "put"])',
        '    msgs - [v |-> 1, type |-> "put"]',
        "    seen[a]: 0 -> 1",
        'State 5: Deliver(b, [v |-> 2, type |-> "put"])',
        '    msgs - [v |-> 2, type |-> "put"]',
        "    seen[b]: 0 -> 2",
    ]
    record = [s.to_json() for s in steps]
    assert record[0]["state"] == {"msgs": "{}", "seen": "(a :> 0 @@ b :> 0)", "n": "0"}
    assert record[3] == {
        "number": 4,
        "kind": "step",
        "action": "Deliver",
        "params": ["a", '[v |-> 1, type |-> "put"]'],
        "param_names": ["x", "m"],
        "label": 'Deliver(a, [v |-> 1, type |-> "put"])',
        "tlc_action": _NEXT,
        "changed": ["msgs", "seen"],
        "diff": [
            {"path": "msgs", "op": "removed", "value": '[v |-> 1, type |-> "put"]'},
            {"path": "seen[a]", "op": "changed", "value": "1", "old": "0"},
        ],
    }
    # Without a replay: the actions TLC's range covers, no parameters.
    unreplayed = describe(trace, {}, static_labels(config, relay, trace))
    assert unreplayed[3].action == "one of Deliver(x, m), Drop(m)" and unreplayed[3].params is None


def test_a_value_that_cannot_be_read_is_shown_as_tlc_printed_it() -> None:
    trace = [TraceState(1, "<Initial predicate>", (("f", "/\\ f = 1"),)), TraceState(2, "<A>", (("f", "/\\ f = ?!"),))]
    assert render_steps(describe(trace), indent="") == [
        "State 1: initial state",
        "    /\\ f = 1",
        "State 2: <A>",
        "    /\\ f = ?!",
    ]


# ------------------------------------------------------------------------------ CLI


def test_unknown_config_is_a_usage_error_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlc", "quorum_2_of_6"]) == 2
    err = capsys.readouterr().err
    assert "walrelay tlc: error: no config named 'quorum_2_of_6'" in err
    assert "did you mean quorum_2_of_5" in err and "no_fencing" in err and "Traceback" not in err
    assert main(["tlc", "nope/missing.cfg"]) == 2


def test_list_has_a_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlc", "--list", "quorum_2_of_5"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["config", "suite", "expect", "about"]
    assert row.split()[:4] == ["quorum_2_of_5", "ci", "violation", "Fencing"]
    assert row.index("ci") == header.index("suite") and row.index("violation") == header.index("expect")


@pytest.mark.integration
def test_trace_of_an_expected_violation_names_every_action(tmp_path: Path) -> None:
    """The real spec's quorum_2_of_5 mutant: its trace is printed although the violation was
    expected, every step names an action of Next with its arguments, msgs only as a diff, and the
    JSON record holds the same steps."""
    record = tmp_path / "tlc.json"
    out = io.StringIO()
    assert run_command(["quorum_2_of_5"], workers=1, trace=True, json_path=str(record), out=out) == 0
    text = out.getvalue()
    assert "violated Fencing as expected (trace of" in text and "State 1: initial state" in text
    assert "<Next line" not in text and "actions named from TLC's source ranges only" not in text
    data = json.loads(record.read_text())["results"][0]
    assert data["trace_actions"] == "replayed"
    steps = data["trace"]
    config = select(SPEC, ["quorum_2_of_5"], "ci")[0]
    arity = {a.name: len(a.args) for a in next_actions(config, module_sources(SPEC, config.module))}
    for step in steps[1:]:
        assert step["action"] in arity, step
        assert len(step["params"]) == arity[step["action"]] == len(step["param_names"])
        assert f"State {step['number']}: {step['label']}" in text
        assert all(d["op"] != "changed" for d in step["diff"] if d["path"] == "msgs")
    # The messages that make the bug: an APPEND taken by a replica, named with its arguments.
    appends = [s for s in steps if s["action"] == "ReceiveAppend"]
    assert appends and appends[-1]["params"][1].startswith("[") and '"append"' in appends[-1]["params"][1]
    assert steps[0]["kind"] == "initial" and "msgs" in steps[0]["state"]
    assert len(steps) == data["trace_length"]
