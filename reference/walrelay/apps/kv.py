"""A minimal key-value app: one row per write, the unit the benchmark counts."""

from __future__ import annotations

from typing import Any

from walrelay.app import App, operation
from walrelay.sql import SqlStorage


class KeyValue(App):
    name = "kv"
    schema = ("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",)

    @operation
    def put(self, sql: SqlStorage, k: int, v: str) -> None:
        """Set key k to v."""
        sql.exec("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", int(k), str(v))

    @operation
    def get(self, sql: SqlStorage, k: int) -> Any:
        """The value of key k (null if none)."""
        rows = sql.exec("SELECT v FROM kv WHERE k = ?", int(k)).raw()
        return rows[0][0] if rows else None
