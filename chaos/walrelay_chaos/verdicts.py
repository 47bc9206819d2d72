"""Checker verdicts as records that name the bug.

A checker that fails raises ``Violation`` (an ``AssertionError``, so everything that treats a
checker's failure as the verdict *invalid* still does), carrying one or more ``Verdict`` records:

- ``property``: a short stable id of the property violated (``PROPERTIES``: ``acked-write-lost``,
  ``replicas-disagree``, ``pitr-inexact``, ...);
- ``ops``: the operations involved, as ``OpRef``s into the run's history (the invoke's event
  index, the completion's, process, ``f``, value, outcome, times, node), and nemesis events
  where a fault is what is involved;
- ``expected`` and ``found``: the state the property asks for and the state the checker saw
  (JSON values; their shape depends on the property: docs/chaos-history.md);
- ``sentence()``: all of it as one readable line ("acknowledged writes missing from the final
  primary p6's database: k=5 (ok at 0.71 s on p3)"); ``str(violation)`` is the first record's sentence.

``to_json()``/``Verdict.from_json()`` are the record's form in ``verdict.json`` (the run directory,
``walrelay_chaos.report``), and the form for a campaign's ``results.json``. The first record is the headline;
the others say more about the same failure (the replica that still holds the lost write).

``HistoryIndex`` finds the operations of a history by what they did (the write of key 5, the last
read at p6), so that checkers can name them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

# The properties a checker can find violated: id -> what the property says (the timeline's header
# names it). Ids are stable: results.json and verdict.json carry them, tools may match on them.
PROPERTIES: dict[str, str] = {
    "acked-write-lost": "every acknowledged write survives, with its value",
    "wrong-value": "every key holds the value its write wrote",
    "failed-write-present": "a write answered ERROR never happened",
    "unwritten-key-present": "no key appears that no write wrote",
    "rolled-back-write-present": "a restore rolls back every write after its bookmark",
    "restored-write-lost": "what a restore brought back stays until the next restore",
    "reads-unanswered": "once healed, the serving primary answers reads",
    "never-served": "once healed, a primary takes over and serves",
    "replicas-not-repaired": "once healed, the primary brings every replica up to date",
    "replicas-disagree": "every replica ends with exactly the committed log",
    "replica-truncated-unarchived": "a replica drops only entries the archive holds",
    "archive-inconsistent": "the archive is a prefix of the committed log (a recovery may trust it)",
    "archive-invalid": "the archive verifies",
    "archive-behind": "the archive catches up with the final durable point",
    "archive-differs": "the archive holds the committed log",
    "archive-unreadable": "what the checks must read of the archive can be read",
    "timestamps-go-back": "entry timestamps never go back along the committed history",
    "real-time-order": "a write acknowledged before another was invoked commits first",
    "pitr-inexact": "a restore gives exactly the database at its point",
    "pitr-time-inexact": "a restore by time gives the database of that time",
    "bookmark-time-wrong": "__bookmark_for_time__ names the last entry at or before the time",
    "retention-took-window": "retention keeps every point of its window restorable",
    "restore-failed": "a restore to a bookmark of this run is done as asked",
    "check-failed": "a checker's assertion (no record: its message only)",
}


def fmt_time(t: float | None) -> str:
    """Seconds for a sentence: to the hundredth (the record keeps the exact time)."""
    if t is None:
        return "?"
    return f"{t:.2f}".rstrip("0").rstrip(".") if abs(t) < 100 else f"{t:.0f}"


@dataclass(frozen=True)
class OpRef:
    """One operation of the history (an invoke and its completion), or one nemesis event."""

    index: int  # the invoke's event index (a nemesis event's own)
    process: int | str
    f: str
    value: Any
    outcome: str  # "ok", "fail", "info", "in flight" (never answered), or "nemesis"
    time: float  # the invoke's
    completion: int | None = None  # the completion's event index
    completion_time: float | None = None
    node: str | None = None  # where it was sent (p3)
    answer: Any = None  # the completion's value when it differs from the invoke's

    @property
    def events(self) -> list[int]:
        return [self.index] if self.completion is None else [self.index, self.completion]

    def what(self) -> str:
        """``write k=5``, ``read``, ``bookmark 00000001-...``, ``crash-primary p2``."""
        if self.f == "write":
            return f"write k={self.value}"
        if self.f == "bookmark" and self.answer is not None:
            return f"bookmark {self.answer}"
        return self.f if self.value is None else f"{self.f} {_short(self.value)}"

    def when(self) -> str:
        """``ok at 0.71 s on p3``, ``in flight since 2 s on p1``, ``at 3.1 s`` (a nemesis event)."""
        if self.outcome == "nemesis":
            return f"at {fmt_time(self.time)} s"
        on = f" on {self.node}" if self.node else ""
        if self.completion is None:
            return f"in flight since {fmt_time(self.time)} s{on}"
        return f"{self.outcome} at {fmt_time(self.completion_time)} s{on}"

    def describe(self) -> str:
        """``write k=5 (ok at 0.71 s on p3)``; a nemesis event: ``crash-primary p2 (at 3.1 s)``."""
        return f"{self.what()} ({self.when()})"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "completion": self.completion,
            "process": self.process,
            "f": self.f,
            "value": self.value,
            "outcome": self.outcome,
            "time": self.time,
            "completion_time": self.completion_time,
            "node": self.node,
            "answer": self.answer,
        }

    @staticmethod
    def from_json(body: dict[str, Any]) -> OpRef:
        return OpRef(
            index=int(body["index"]),
            process=body["process"],
            f=str(body["f"]),
            value=body.get("value"),
            outcome=str(body["outcome"]),
            time=float(body["time"]),
            completion=body.get("completion"),
            completion_time=body.get("completion_time"),
            node=body.get("node"),
            answer=body.get("answer"),
        )


def _short(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_short(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Verdict:
    """One property violated: what, by which operations, expected vs found (module doc)."""

    prop: str  # the property's id (PROPERTIES); "property" in JSON
    text: str  # the readable sentence
    ops: tuple[OpRef, ...] = ()
    expected: Any = None
    found: Any = None
    where: str = ""  # when the checker looked: "check", "after the final takeover", "at the end", ...

    def sentence(self) -> str:
        return self.text

    @property
    def title(self) -> str:
        """What the property says (``PROPERTIES``)."""
        return PROPERTIES.get(self.prop, self.prop)

    def of(self, events: Sequence[dict[str, Any]]) -> bool:
        """Every operation named is in ``events`` as named (the record is about this history)."""
        for ref in self.ops:
            at = [ref.index] if ref.completion is None else [ref.index, ref.completion]
            if any(not 0 <= i < len(events) for i in at):
                return False
            e = events[ref.index]
            if (e.get("f"), e.get("process"), e.get("value")) != (ref.f, ref.process, ref.value):
                return False
        return True

    @property
    def highlighted(self) -> set[int]:
        """The event indexes of the operations involved (invokes and completions)."""
        return {i for ref in self.ops for i in ref.events}

    def to_json(self) -> dict[str, Any]:
        return {
            "property": self.prop,
            "title": self.title,
            "sentence": self.text,
            "where": self.where,
            "ops": [ref.to_json() for ref in self.ops],
            "expected": self.expected,
            "found": self.found,
        }

    @staticmethod
    def from_json(body: dict[str, Any]) -> Verdict:
        return Verdict(
            prop=str(body["property"]),
            text=str(body["sentence"]),
            ops=tuple(OpRef.from_json(o) for o in body.get("ops", [])),
            expected=body.get("expected"),
            found=body.get("found"),
            where=str(body.get("where", "")),
        )


# The last few violations raised in this process: a caller that only kept the message (a
# campaign's results, a replay) finds the records again by it (``for_message``).
# Only the records are kept (an exception would keep its traceback's frames, a whole run, alive).
_RECENT: collections.deque[tuple[Verdict, ...]] = collections.deque(maxlen=16)


class Violation(AssertionError):
    """A checker's verdict with its records; ``str()`` is the first record's sentence."""

    def __init__(self, *verdicts: Verdict) -> None:
        if not verdicts:
            raise ValueError("a violation needs at least one verdict")
        super().__init__(verdicts[0].sentence())
        self.verdicts: tuple[Verdict, ...] = verdicts
        _RECENT.append(verdicts)

    def sentence(self) -> str:
        return self.verdicts[0].sentence()

    def to_json(self) -> list[dict[str, Any]]:
        return [v.to_json() for v in self.verdicts]


def from_exception(e: BaseException) -> list[Verdict]:
    """The records of a checker's failure: a ``Violation``'s own; a plain AssertionError (an
    ``assert`` no checker turned into a record) becomes one ``check-failed`` record of its message."""
    if isinstance(e, Violation):
        return list(e.verdicts)
    lines = str(e).splitlines()
    return [Verdict("check-failed", lines[0] if lines else f"{type(e).__name__} (no message)")]


def for_message(message: str, events: Sequence[dict[str, Any]] | None = None) -> list[Verdict] | None:
    """The records of a violation raised in this process whose sentence starts with ``message``
    (which a caller may have cut short), newest first, and whose operations are those of
    ``events`` (if given: another run may have said the same); None if none matches."""
    first = message.splitlines()[0] if message else ""
    if not first:
        return None
    for verdicts in reversed(_RECENT):
        if verdicts[0].sentence().startswith(first) and (events is None or all(v.of(events) for v in verdicts)):
            return list(verdicts)
    return None


class HistoryIndex:
    """The operations of a history (``sim.History`` events), to name them in a verdict."""

    def __init__(self, events: Sequence[dict[str, Any]]) -> None:
        from walrelay_chaos.report import operations

        self.events = events
        self.refs: list[OpRef] = []
        for op in operations(events):
            answer = None if op.completion is None else op.completion.get("value")
            self.refs.append(
                OpRef(
                    index=op.invoke_at,
                    process=op.process,
                    f=op.f,
                    value=op.invoke.get("value"),
                    outcome="in flight" if op.completion is None else op.outcome,
                    time=op.start,
                    completion=op.completion_at,
                    completion_time=op.end,
                    node=op.node,
                    answer=None if answer == op.invoke.get("value") else answer,
                )
            )
        self._writes = {ref.value: ref for ref in self.refs if ref.f == "write"}

    def write(self, k: int) -> OpRef | None:
        """The write of key ``k`` (keys are never reused)."""
        return self._writes.get(k)

    def writes(self, keys: Iterable[int]) -> list[OpRef]:
        return [ref for ref in (self.write(k) for k in keys) if ref is not None]

    def writes_text(self, keys: Sequence[int]) -> tuple[str, list[OpRef]]:
        """``k=5 (ok at 0.71 s on p3) and k=7 (...)`` for these keys, and their writes (a key no
        write of the history names: ``k=5, 7``)."""
        refs = self.writes(keys)
        if len(refs) != len(keys):
            return keys_text(keys), refs
        return some(refs).replace("write k=", "k="), refs

    def at(self, index: int | None) -> OpRef | None:
        """The operation invoked at event ``index``."""
        return next((ref for ref in self.refs if ref.index == index), None)

    def last(self, f: str, *, value: Any = None, answer: Any = None) -> OpRef | None:
        """The last operation ``f`` (with that invoke value / completion value, if given)."""
        for ref in reversed(self.refs):
            if ref.f == f and (value is None or ref.value == value) and (answer is None or ref.answer == answer):
                return ref
        return None

    def bookmark(self, mark: str) -> OpRef | None:
        """The operation that answered bookmark ``mark``, or the restore whose ok named it as its undo."""
        for ref in self.refs:
            if ref.f == "bookmark" and ref.answer == mark:
                return ref
        for i, e in enumerate(self.events):
            if e.get("f") == "restore" and e.get("undo_bookmark") == mark:
                return next((r for r in self.refs if r.completion == i), None)
        return None

    def nemesis(self, f: str, *, contains: str = "") -> OpRef | None:
        """The last nemesis event ``f`` whose value mentions ``contains``."""
        for i in range(len(self.events) - 1, -1, -1):
            e = self.events[i]
            if e.get("process") == "nemesis" and e.get("f") == f and contains in _short(e.get("value")):
                return OpRef(i, "nemesis", f, e.get("value"), "nemesis", float(e["time"]))
        return None


def some(refs: Sequence[OpRef], *, limit: int = 2) -> str:
    """Several operations in a sentence: ``a``, ``a and b``, ``a, b and 3 more (k=7, 8, 9)``."""
    texts = [r.describe() for r in refs[:limit]]
    rest = refs[limit:]
    if rest:
        keys = ", ".join(str(r.value) for r in rest[:6]) + (", ..." if len(rest) > 6 else "")
        more = f"{len(rest)} more" + (f" (k={keys})" if all(r.f == "write" for r in rest) else "")
        return ", ".join(texts) + f" and {more}"
    return " and ".join(texts)


def keys_text(keys: Sequence[int], *, limit: int = 8) -> str:
    """``k=5``, ``k=5, 7`` or ``k=5, 7, ... (12 keys)``: keys no operation of the history names."""
    shown = ", ".join(str(k) for k in keys[:limit])
    return f"k={shown}" + (f", ... ({len(keys)} keys)" if len(keys) > limit else "")


def plural(n: int, one: str, many: str | None = None) -> str:
    return one if n == 1 else (many or one + "s")


def status_text(st: dict[str, Any] | None) -> str:
    """A primary's ``__status__`` in a few words: its phase and why it is not serving."""
    if st is None:
        return "its __status__ got no answer"
    parts = [f"it is {st.get('phase', '?')}"]
    for key, label in (("gave_up", "gave up"), ("reset", "reset"), ("restore_error", "restore error")):
        if st.get(key):
            parts.append(f"{label}: {st[key]}")
    rows = st.get("replicas")
    if st.get("phase") != "serving" and isinstance(rows, list) and rows and "connected" in rows[0]:
        up = [f"r{r.get('replica')}" for r in rows if r.get("connected")]
        parts.append(f"connected to {', '.join(up) or 'no replica'}")
    return "; ".join(parts)


def diff_text(got: dict[int, str], want: dict[int, str], ops: HistoryIndex) -> tuple[str, list[OpRef]]:
    """How a database differs from the one expected, naming the writes: ``holds write k=4 (...)
    and lacks write k=3 (...)``; and those writes."""
    extra = sorted(got.keys() - want.keys())
    missing = sorted(want.keys() - got.keys())
    other = sorted(k for k in got.keys() & want.keys() if got[k] != want[k])
    parts: list[str] = []
    refs: list[OpRef] = []
    for verb, keys in (("holds", extra), ("lacks", missing)):
        if keys:
            found = ops.writes(keys)
            refs += found
            parts.append(f"{verb} " + (some(found) if len(found) == len(keys) else keys_text(keys)))
    if other:
        parts.append(f"has other values at {keys_text(other)}")
    return (" and ".join(parts) or "is the same"), refs


class Judge:
    """What a checker (``sim.World``, ``real.RealWorld``) needs to name a bug: its history, to
    find the operations a verdict involves, and its scratch root, which no sentence may quote (a
    replay elsewhere must say the same). One place, so both modes word and record verdicts alike."""

    root: str
    history: Any  # sim.History (its ``events``); not imported here: sim imports this module
    violation: type[Violation] = Violation  # what ``fail`` raises (real mode: RealCheckError)

    def ops(self) -> HistoryIndex:
        """The history so far, to name the operations a verdict involves."""
        return HistoryIndex(self.history.events)

    def fail(
        self,
        prop: str,
        text: str,
        *,
        ops: Sequence[OpRef | None] = (),
        expected: Any = None,
        found: Any = None,
        where: str = "",
        more: Sequence[Verdict] = (),
    ) -> NoReturn:
        """A checker's verdict: property ``prop`` violated (``PROPERTIES``), said in ``text``."""
        refs = tuple(dict.fromkeys(r for r in ops if r is not None))
        text = text.replace(self.root, "RUN")  # no scratch path: a replay says the same
        raise self.violation(Verdict(prop, text, refs, expected, found, where), *more)
