"""Turn TLC's error trace into something a person can read in a CI log.

TLC prints every variable of every state, so in a spec with two dozen variables the one that
changed is hard to spot, and a message set reprinted whole at every step hides the one message
that arrived. We print the initial state in full (TLC's text, byte for byte, so it can be pasted
back into TLA+), then for each step its action with its parameters (``actions`` finds them) and
only what changed: ``promised[r1]: 0 -> 1``, ``msgs + [type |-> "promise", ...]`` (an element
added to a set; ``-`` for one removed). A value we cannot read is shown as TLC printed it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from walrelay.tlc import messages as mc
from walrelay.tlc.values import Change, diff, parse_value

_STEP_RE = re.compile(r"^(\d+): ?(.*)$")
_NAME_RE = re.compile(r"^(?:/\\ )?(\S+) = ")


@dataclass(frozen=True)
class TraceState:
    """One step of a counterexample.

    ``variables`` maps each variable to its text as TLC printed it (``/\\ x = 1``, continuation
    lines included). It is empty for the pseudo-steps that end a liveness trace (stuttering
    forever, or looping back to an earlier state).
    """

    number: int
    action: str
    variables: tuple[tuple[str, str], ...]


def parse_state_text(text: str) -> tuple[tuple[str, str], ...]:
    """Split a state's text into (name, text) per variable; a new variable starts at a ``/\\ `` line."""
    lines = text.rstrip("\n").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    chunks: list[list[str]] = []
    for line in lines:
        if line.startswith("/\\ ") or not chunks:
            chunks.append([line])
        else:
            chunks[-1].append(line)
    out: list[tuple[str, str]] = []
    for chunk in chunks:
        m = _NAME_RE.match(chunk[0])
        out.append((m.group(1) if m else chunk[0].strip(), "\n".join(chunk)))
    return tuple(out)


def trace_from(parsed: mc.ParsedOutput) -> list[TraceState]:
    """The counterexample in TLC's output, or [] if there is none."""
    states: list[TraceState] = []
    for msg in parsed.messages:
        if msg.code in (mc.INVARIANT_VIOLATED_INITIAL, mc.PROPERTY_VIOLATED_INITIAL):
            _, _, body = msg.text.partition("\n")
            states.append(TraceState(1, "<Initial predicate>", parse_state_text(body)))
        elif msg.code in (mc.STATE, mc.STUTTERING, mc.BACK_TO_STATE):
            first, _, body = msg.text.partition("\n")
            m = _STEP_RE.match(first.strip())
            number, action = (int(m.group(1)), m.group(2)) if m else (len(states) + 1, first.strip())
            if msg.code == mc.BACK_TO_STATE:
                # TLC numbers this line with the state the loop returns to, not with a new step.
                via = action.partition(":")[2].strip()
                label = f"back to state {number}" + (f" via {via}" if via else "")
                states.append(TraceState(len(states) + 1, label, ()))
            elif msg.code == mc.STUTTERING:
                states.append(TraceState(number, "stuttering forever", ()))
            else:
                states.append(TraceState(number, action, parse_state_text(body)))
    return states


def trace_length(states: list[TraceState]) -> int:
    """Number of real states (the pseudo-steps that close a liveness trace are not counted)."""
    return sum(1 for s in states if s.variables)


@dataclass(frozen=True)
class StepLabel:
    """A step's action found by replaying the trace: ``name``, its argument values (TLA+ text) and
    the ``call`` to print; ``others`` are further calls that explain the same step as well;
    ``param_names`` are the operator's parameter names, when its definition was found."""

    name: str
    params: tuple[str, ...]
    call: str
    others: tuple[str, ...] = ()
    param_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Step:
    """One step as we show it. ``action`` is the text to print: the replayed call
    (``exact``), else the action(s) TLC's source range points at, else TLC's own label.
    ``changes`` is the diff from the previous state; ``raw`` holds the changed variables whose
    values could not be read, as TLC printed them. ``state`` is every variable's TLC text."""

    number: int
    kind: Literal["initial", "step", "stuttering", "back"]
    tlc_action: str
    action: str
    name: str | None
    params: tuple[str, ...] | None
    param_names: tuple[str, ...] | None
    others: tuple[str, ...]
    state: tuple[tuple[str, str], ...]
    changed: tuple[str, ...]
    changes: tuple[Change, ...]
    raw: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "number": self.number,
            "kind": self.kind,
            "action": self.name,
            "params": list(self.params) if self.params is not None else None,
            "param_names": list(self.param_names) if self.param_names is not None else None,
            "label": self.action,
            "tlc_action": self.tlc_action,
        }
        if self.others:
            out["also_explained_by"] = list(self.others)
        if self.kind == "initial":
            out["state"] = {name: _value_text(text) for name, text in self.state}
        elif self.state:
            out["changed"] = list(self.changed)
            out["diff"] = [c.to_json() for c in self.changes]
            if self.raw:
                out["unread"] = {name: _value_text(text) for name, text in self.raw}
        return out


def _value_text(text: str) -> str:
    """``/\\ x = <value>`` -> ``<value>`` (TLC's text, line breaks kept)."""
    body = text.removeprefix("/\\ ")
    return body.split("=", 1)[1].strip() if "=" in body else body


def _changes(name: str, old: str, new: str) -> list[Change] | None:
    try:
        return diff(name, parse_value(_value_text(old)), parse_value(_value_text(new)))
    except ValueError:
        return None


def describe(
    states: Sequence[TraceState], labels: Mapping[int, StepLabel] | None = None, static: Mapping[int, str] | None = None
) -> list[Step]:
    """The steps to show; ``labels`` and ``static`` are keyed by index into ``states``."""
    labels = labels or {}
    static = static or {}
    steps: list[Step] = []
    previous: dict[str, str] = {}
    for k, state in enumerate(states):
        found = labels.get(k)
        if state.action == "stuttering forever":
            kind: Literal["initial", "step", "stuttering", "back"] = "stuttering"
            tlc_action = ""
        elif not state.variables:
            kind, tlc_action = "back", state.action.partition(" via ")[2]
        else:
            kind = "initial" if k == 0 else "step"
            tlc_action = state.action
        if kind == "initial":
            action = "initial state" if state.action == "<Initial predicate>" else state.action
        elif kind == "stuttering":
            action = state.action
        else:
            action = found.call if found is not None else static.get(k, tlc_action)
            if kind == "back":
                target = state.action.partition(" via ")[0]
                action = f"{target} via {action}" if action else target
        changed: list[str] = []
        changes: list[Change] = []
        raw: list[tuple[str, str]] = []
        if kind == "step":
            for name, text in state.variables:
                if previous.get(name) == text:
                    continue
                changed.append(name)
                got = _changes(name, previous[name], text) if name in previous else None
                if got is None:
                    raw.append((name, text))
                else:
                    changes.extend(got)
        if state.variables:
            previous = dict(state.variables)
        steps.append(
            Step(
                number=state.number,
                kind=kind,
                tlc_action=tlc_action,
                action=action,
                name=found.name if found is not None else None,
                params=found.params if found is not None else None,
                param_names=found.param_names if found is not None else None,
                others=found.others if found is not None else (),
                state=state.variables,
                changed=tuple(changed),
                changes=tuple(changes),
                raw=tuple(raw),
            )
        )
    return steps


def render_steps(steps: Sequence[Step], indent: str = "    ") -> list[str]:
    """``State k: <action>`` and under it the initial state in full, or what the step changed."""
    lines: list[str] = []
    for step in steps:
        lines.append(f"{indent}State {step.number}: {step.action}")
        if step.others:
            lines.append(f"{indent}    (as well explained by {'; '.join(step.others)})")
        if step.kind == "initial":
            for _, text in step.state:
                lines.extend(f"{indent}    {line}" for line in text.splitlines())
        elif step.kind == "step":
            if not step.changed:
                lines.append(f"{indent}    (no variable changed)")
            lines.extend(f"{indent}    {c.line()}" for c in step.changes)
            for _, text in step.raw:
                lines.extend(f"{indent}    {line}" for line in text.splitlines())
    return lines


def render_trace(states: list[TraceState], indent: str = "    ") -> list[str]:
    """The trace with TLC's own action labels (no source or replay at hand)."""
    return render_steps(describe(states), indent)
