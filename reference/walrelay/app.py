"""What an application is to walrelay: a schema plus named operations run inside the object.

An operation is an ordinary function ``(sql, *args) -> JSON-able``. Each call runs in its own
transaction (all its writes become one log entry, like Durable Objects' write coalescing); an
exception rolls it back and becomes an error reply.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

from walrelay.errors import WalrelayError
from walrelay.sql import SqlStorage

Operation = Callable[..., Any]


class AppError(WalrelayError):
    """An operation refused the request (e.g. seat already taken). Its writes were rolled back."""


class App:
    """Subclass, set ``schema``, and mark methods with ``@operation``."""

    name = "app"
    schema: tuple[str, ...] = ()

    def operations(self) -> dict[str, Operation]:
        ops: dict[str, Operation] = {}
        for attr in dir(type(self)):
            fn = getattr(type(self), attr)
            if getattr(fn, "_walrelay_operation", False):
                ops[attr] = getattr(self, attr)
        return ops

    def describe(self) -> list[dict[str, Any]]:
        """Each operation: its name, its arguments (``NAME:TYPE``) and the first line of its
        docstring, by name (what the client door's ``__ops__`` answers)."""
        out = []
        for name, fn in sorted(self.operations().items()):
            doc = (inspect.getdoc(fn) or "").split("\n", 1)[0]
            out.append({"name": name, "args": list(getattr(fn, "_walrelay_args", ())), "doc": doc})
        return out

    def migrate(self, sql: SqlStorage) -> None:
        for stmt in self.schema:
            sql.exec(stmt)


class BadRequest(AppError):
    """The request's arguments do not fit the operation: wrong count or wrong JSON type. Checked
    before the operation runs, so nothing is coerced (``true`` is not the key 1, NaN is not the
    string "nan", null is not "None") and nothing is written."""


# What each annotation admits from a JSON request (bool is an int in Python: never admitted as one).
_KINDS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a finite number", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)),
    str: ("a string", lambda v: isinstance(v, str)),
    bool: ("true or false", lambda v: isinstance(v, bool)),
}


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, float) and not math.isfinite(v):
        return f"the non-finite number {v}"
    return {int: "an integer", float: "a number", str: "a string", list: "an array", dict: "an object"}.get(
        type(v), type(v).__name__
    )


def operation(fn: Operation) -> Operation:
    """Mark ``fn`` as an operation, with its arguments checked against its annotations (int, float,
    str, bool; anything else is passed as it is) before it runs."""
    params = list(inspect.signature(fn).parameters.values())[2:]  # after self and sql
    hints = typing.get_type_hints(fn)
    kinds = [f"{p.name}:{getattr(hints.get(p.name), '__name__', 'any')}" for p in params]
    usage = ", ".join(k.replace(":", ": ") for k in kinds)

    @functools.wraps(fn)
    def checked(self: Any, sql: SqlStorage, *args: Any) -> Any:
        if len(args) != len(params):
            raise BadRequest(f"{fn.__name__} takes {len(params)} argument(s) ({usage}), got {len(args)}")
        for p, v in zip(params, args, strict=True):
            kind = _KINDS.get(hints.get(p.name))
            if kind is not None and not kind[1](v):
                raise BadRequest(f"{fn.__name__}: {p.name} must be {kind[0]}, got {_json_kind(v)} ({v!r:.40})")
        return fn(self, sql, *args)

    checked._walrelay_operation = True  # type: ignore[attr-defined]
    checked._walrelay_args = tuple(kinds)  # type: ignore[attr-defined]
    return checked
