"""Turn TLC's error trace into something a person can read in a CI log.

TLC prints every variable of every state, so in a spec with a dozen variables the one that
changed is hard to spot. We print each step's action (TLC's own text, with its source location)
and only the variables that changed since the previous state. Values stay in TLC's syntax, byte
for byte, so they can be pasted back into TLA+.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from walrelay.tlc import messages as mc

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


def render_trace(states: list[TraceState], indent: str = "    ") -> list[str]:
    """Lines: ``State k: <action>`` then the variables that changed (all of them for the first)."""
    lines: list[str] = []
    previous: dict[str, str] = {}
    for state in states:
        lines.append(f"{indent}State {state.number}: {state.action}")
        if not state.variables:
            continue
        changed = [text for name, text in state.variables if previous.get(name) != text]
        if not changed:
            lines.append(f"{indent}    (no variable changed)")
        for text in changed:
            lines.extend(f"{indent}    {line}" for line in text.splitlines())
        previous = dict(state.variables)
    return lines
