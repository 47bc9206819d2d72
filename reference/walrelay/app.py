"""What an application is to walrelay: a schema plus named operations run inside the object.

An operation is an ordinary function ``(sql, *args) -> JSON-able``. Each call runs in its own
transaction (all its writes become one log entry, like Durable Objects' write coalescing); an
exception rolls it back and becomes an error reply.
"""

from __future__ import annotations

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

    def migrate(self, sql: SqlStorage) -> None:
        for stmt in self.schema:
            sql.exec(stmt)


def operation(fn: Operation) -> Operation:
    fn._walrelay_operation = True  # type: ignore[attr-defined]
    return fn
