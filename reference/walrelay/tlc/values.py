"""Read the TLA+ values TLC prints in a trace, and describe how one changed into another.

TLC prints a state as ``/\\ var = value`` with values in TLA+ syntax: numbers, strings, booleans,
model values (bare names), sets ``{..}``, tuples ``<<..>>``, records ``[f |-> v, ..]`` and
functions ``(k :> v @@ ..)``. A message set such as ``msgs`` grows by one element per step, so
reprinting it whole hides the change; ``diff`` names what was added and removed instead, and walks
into records, tuples and functions to the part that changed (``promised[r1]: 0 -> 2``).

``parse_value`` raises ``ValueError`` on anything else (a value TLC printed in a form we do not
know); callers then fall back to TLC's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_TOKEN_RE = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)'
    r"|(?P<op><<|>>|\|->|:>|@@|\.\.|[{}\[\](),]))"
)

Kind = Literal["atom", "set", "seq", "rec", "fun"]


@dataclass(frozen=True)
class Value:
    """A parsed TLA+ value. ``items`` holds set/tuple elements as (None, v) and record fields or
    function entries as (key, v); ``text`` is the atom's own text."""

    kind: Kind
    text: str = ""
    items: tuple[tuple[Value | None, Value], ...] = ()

    def __str__(self) -> str:
        return render(self)


def _tokens(text: str, lenient: bool = False) -> list[str]:
    """The value's tokens; ``lenient``: stop at the first thing that is not one (text after a value)."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            if lenient:
                break
            raise ValueError(f"not a TLA+ value at {text[pos : pos + 20]!r}")
        out.append(m.group(m.lastgroup or "op"))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.toks = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected or 'a value'}, got {tok!r}")
        self.pos += 1
        return tok

    def _list(self, close: str) -> list[Value]:
        out: list[Value] = []
        if self.peek() == close:
            self.take()
            return out
        while True:
            out.append(self.value())
            if self.take() == close:
                return out

    def value(self) -> Value:
        tok = self.take()
        if tok == "{":
            return Value("set", items=tuple((None, v) for v in self._list("}")))
        if tok == "<<":
            return Value("seq", items=tuple((None, v) for v in self._list(">>")))
        if tok == "[":
            fields: list[tuple[Value | None, Value]] = []
            while True:
                name = self.take()
                self.take("|->")
                fields.append((Value("atom", name), self.value()))
                if self.take() == "]":
                    return Value("rec", items=tuple(fields))
        if tok == "(":
            entries: list[tuple[Value | None, Value]] = []
            while True:
                key = self.value()
                self.take(":>")
                entries.append((key, self.value()))
                nxt = self.take()
                if nxt == ")":
                    return Value("fun", items=tuple(entries))
                if nxt != "@@":
                    raise ValueError(f"expected @@ or ), got {nxt!r}")
        if tok in ("}", ">>", "]", ")", ",", "|->", ":>", "@@", ".."):
            raise ValueError(f"unexpected {tok!r}")
        if self.peek() == ".." and re.fullmatch(r"-?\d+", tok):  # TLC prints an interval set as a..b
            self.take()
            last = self.take()
            if not re.fullmatch(r"-?\d+", last):
                raise ValueError(f"bad interval {tok}..{last}")
            return Value("set", items=tuple((None, Value("atom", str(i))) for i in range(int(tok), int(last) + 1)))
        return Value("atom", tok)


def parse_value(text: str) -> Value:
    """Parse one value as TLC prints it (line breaks and indentation anywhere)."""
    p = _Parser(_tokens(text))
    v = p.value()
    if p.peek() is not None:
        raise ValueError(f"text after the value: {p.peek()!r}")
    return v


def parse_prefix(text: str) -> tuple[Value, int]:
    """Parse the value at the start of ``text``; return it and the number of tokens it used."""
    p = _Parser(_tokens(text, lenient=True))
    return p.value(), p.pos


def render(v: Value) -> str:
    """The value on one line, in TLA+ syntax (TLC's spacing, minus its line breaks)."""
    if v.kind == "atom":
        return v.text
    if v.kind == "set":
        return "{" + ", ".join(render(x) for _, x in v.items) + "}"
    if v.kind == "seq":
        return "<<" + ", ".join(render(x) for _, x in v.items) + ">>"
    if v.kind == "rec":
        return "[" + ", ".join(f"{render(k)} |-> {render(x)}" for k, x in v.items if k is not None) + "]"
    return "(" + " @@ ".join(f"{render(k)} :> {render(x)}" for k, x in v.items if k is not None) + ")"


@dataclass(frozen=True)
class Change:
    """One difference: at ``path`` (``msgs``, ``promised[r1]``, ``upload[2].kind``), ``op`` is
    ``added`` or ``removed`` (a set element, a function/record key, a tuple's tail element) with
    ``value``, or ``changed`` from ``old`` to ``value``."""

    path: str
    op: Literal["added", "removed", "changed"]
    value: str
    old: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"path": self.path, "op": self.op, "value": self.value}
        if self.old is not None:
            out["old"] = self.old
        return out

    def line(self) -> str:
        if self.op == "changed":
            return f"{self.path}: {self.old} -> {self.value}"
        return f"{self.path} {'+' if self.op == 'added' else '-'} {self.value}"


def _keyed(v: Value) -> dict[str, Value]:
    if v.kind == "seq":
        return {str(i): x for i, (_, x) in enumerate(v.items, 1)}
    return {render(k): x for k, x in v.items if k is not None}


def diff(path: str, old: Value, new: Value) -> list[Change]:
    """What changed from ``old`` to ``new``, as small as we can say it."""
    if old == new:
        return []
    if old.kind == new.kind == "set":
        before = {render(x): x for _, x in old.items}
        after = {render(x): x for _, x in new.items}
        removed = [Change(path, "removed", t) for t in before if t not in after]
        added = [Change(path, "added", t) for t in after if t not in before]
        return removed + added
    if old.kind == new.kind and old.kind in ("seq", "rec", "fun"):
        before, after = _keyed(old), _keyed(new)
        out: list[Change] = []
        for key, value in before.items():
            sub = f"{path}.{key}" if old.kind == "rec" else f"{path}[{key}]"
            if key not in after:
                out.append(Change(sub, "removed", render(value)))
            else:
                out.extend(diff(sub, value, after[key]))
        for key, value in after.items():
            if key not in before:
                sub = f"{path}.{key}" if new.kind == "rec" else f"{path}[{key}]"
                out.append(Change(sub, "added", render(value)))
        return out
    return [Change(path, "changed", render(new), render(old))]
