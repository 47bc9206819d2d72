"""The SQL API that code running inside an object sees, shaped like Durable Objects' ``ctx.storage.sql``.

It is synchronous on purpose: the object runs one event at a time (the input gate), and the
durability wait happens *outside* the user's code, on the reply (the output gate). So
``sql.exec(...)`` returns rows at local-SQLite speed, and correctness comes from holding replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apsw

from walrelay.errors import WalrelayError


class SqlError(WalrelayError):
    """A statement failed (syntax, constraint, a forbidden pragma, ...)."""


class Cursor:
    """The complete result of one ``exec``: rows are read eagerly, like DO's ``toArray()``."""

    def __init__(self, column_names: list[str], rows: list[tuple[Any, ...]], rows_written: int) -> None:
        self.column_names = column_names
        self._rows = rows
        self.rows_written = rows_written

    def raw(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def to_array(self) -> list[dict[str, Any]]:
        return [dict(zip(self.column_names, r, strict=True)) for r in self._rows]

    def one(self) -> dict[str, Any]:
        """Exactly one row, or SqlError saying how many there were."""
        if len(self._rows) != 1:
            raise SqlError(f"expected exactly one row, got {len(self._rows)}")
        return dict(zip(self.column_names, self._rows[0], strict=True))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.to_array())

    def __len__(self) -> int:
        return len(self._rows)


class SqlStorage:
    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    def exec(self, query: str, *args: Any) -> Cursor:
        before = self._conn.total_changes()
        cur = self._conn.cursor()
        try:
            cur.execute(query, args)
            try:
                names = [d[0] for d in cur.getdescription()]
            except apsw.ExecutionCompleteError:
                names = []  # the statement returned no rows, so there is nothing to name
            rows = list(cur)
        except apsw.AuthError:
            raise SqlError(f"not allowed inside an object: {query.strip()[:80]!r}") from None
        except apsw.Error as e:
            raise SqlError(f"{type(e).__name__}: {e}") from None
        return Cursor(names, rows, self._conn.total_changes() - before)
