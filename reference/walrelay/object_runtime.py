"""One object: its SQLite database, its application, and the primary's protocol state.

``run`` is the input gate: it executes one operation synchronously in one transaction, and the
commit (seen by the WAL hook) becomes the next log entry before ``run`` returns. It hands back the
seq the reply must wait for; the output gate (PrimaryState.hold) decides when the reply may leave.
Nothing in here awaits, which is what makes "one event at a time" true by construction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from walrelay.app import App, AppError
from walrelay.capture import Commit, WalCapture
from walrelay.entry import Entry
from walrelay.errors import CaptureError, ChainError, ObjectResetError, TransactionTooLargeError
from walrelay.primary import PrimaryEffect, PrimaryState
from walrelay.sql import SqlStorage


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation produced locally; ``seq`` is the last entry the reply depends on."""

    ok: bool
    value: Any
    seq: int
    wrote: bool = False


def _json_checked(value: Any) -> Any:
    """Refuse, inside the transaction, a result the reply could not carry (so it rolls back)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise AppError(f"operation result is not JSON-representable: {e}") from None
    return value


class ObjectRuntime:
    def __init__(
        self,
        db_path: str,
        app: App,
        state: PrimaryState,
        execute: Callable[[list[PrimaryEffect]], None],
        *,
        monotonic_us: Callable[[], int],
        wall_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        checkpoint_frames: int = 1000,
        on_entry: Callable[[Entry], None] | None = None,
        expect_checksum: int | None = None,
    ) -> None:
        """``expect_checksum``: the database file must have this checksum (the last recovered
        entry's ``db_checksum``) before anything runs on it; a recovered primary serves only a
        database it verified."""
        self.app = app
        self.state = state
        self.execute = execute
        self.monotonic_us = monotonic_us
        self.wall_us = wall_us
        self.on_entry = on_entry
        self.capture = WalCapture(db_path, self._on_commit, checkpoint_frames=checkpoint_frames)
        # The largest transaction that fits one entry (primary_commit: 4 bytes per page and 72 of
        # header on top of the pages); a larger one is refused by the capture before it commits.
        self.capture.limit_pages(max(1, (state.config.max_entry_bytes - 72) // (self.capture.page_size + 4)))
        if expect_checksum is not None and self.capture.checksum.value != expect_checksum:
            found = self.capture.checksum.value
            self.capture.close()
            raise ChainError(
                f"{db_path}: database checksum {found:#018x} after recovery, the log says {expect_checksum:#018x}"
            )
        self.sql = SqlStorage(self.capture.conn)
        self.operations = app.operations()
        self._in_op = False
        self._run_txn(lambda: app.migrate(self.sql))

    def _on_commit(self, commit: Commit) -> None:
        entry, effects = self.state.primary_commit(commit, now_us=self.monotonic_us(), wall_us=self.wall_us())
        if self.on_entry is not None:
            self.on_entry(entry)
        self.execute(effects)

    def _run_txn(self, body: Callable[[], Any]) -> Any:
        conn = self.capture.conn
        self.capture.take_refused()
        conn.execute("BEGIN IMMEDIATE")
        try:
            value = body()
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._too_large(e)
            raise
        try:
            conn.execute("COMMIT")
        except apsw.Error as e:
            self.capture.check()  # a capture failure is the real story; raise that
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._too_large(e)
            raise CaptureError(f"commit failed: {e}") from None
        self.capture.check()
        self.capture.maybe_checkpoint()
        return value

    def _too_large(self, e: BaseException) -> None:
        """Raise TransactionTooLargeError if the capture refused the transaction for its size (the
        statement or the COMMIT failed with SQLITE_FULL because of that, and it was rolled back)."""
        pages = self.capture.take_refused()
        if pages:
            limit = self.state.config.max_entry_bytes
            raise TransactionTooLargeError(
                f"the transaction wrote more than {pages - 1} pages of {self.capture.page_size} bytes: its log entry "
                f"would exceed the {limit}-byte entry limit; it was rolled back and nothing was written"
            ) from None

    def run(self, op: str, args: list[Any]) -> Outcome:
        """Run one operation to completion (input gate). Raises ObjectResetError once reset."""
        if self.state.reset_reason is not None:
            raise ObjectResetError(f"object was reset: {self.state.reset_reason}")
        fn = self.operations.get(op)
        if fn is None:
            return Outcome(False, {"type": "UnknownOperation", "message": f"no operation {op!r}"}, self.state.last_seq)
        if self._in_op:
            raise RuntimeError("re-entrant call into the object: the input gate admits one event at a time")
        self._in_op = True
        before = self.state.last_seq
        try:
            value = self._run_txn(lambda: _json_checked(fn(self.sql, *args)))
            return Outcome(True, value, self.state.last_seq, wrote=self.state.last_seq > before)
        except CaptureError as e:
            self.execute(self.state.reset(f"capture failed: {e}"))
            raise ObjectResetError(f"object was reset: capture failed: {e}") from None
        except TransactionTooLargeError as e:  # rolled back before it became an entry: the object lives on
            return Outcome(False, {"type": "TransactionTooLarge", "message": str(e)}, self.state.last_seq)
        except Exception as e:  # the operation's own failure: rolled back, reported, object lives on
            return Outcome(False, {"type": type(e).__name__, "message": str(e)}, self.state.last_seq)
        finally:
            self._in_op = False

    def run_system(self, body: Callable[[apsw.Connection], None]) -> int:
        """Run walrelay's own transaction (the branch marker, a restore request) through the same
        input gate and capture as a client write, so it becomes a log entry like any other.
        Returns the seq the caller must wait for."""
        if self.state.reset_reason is not None:
            raise ObjectResetError(f"object was reset: {self.state.reset_reason}")
        if self._in_op:
            raise RuntimeError("re-entrant call into the object: the input gate admits one event at a time")
        self._in_op = True
        try:
            self._run_txn(lambda: body(self.capture.conn))
        except CaptureError as e:
            self.execute(self.state.reset(f"capture failed: {e}"))
            raise ObjectResetError(f"object was reset: capture failed: {e}") from None
        finally:
            self._in_op = False
        return self.state.last_seq

    def image(self) -> bytes:
        return self.capture.image()

    def close(self) -> None:
        self.capture.close()
