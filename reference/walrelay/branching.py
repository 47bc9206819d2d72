"""Which branch of an object's history a database is on, and the restore it may be asked to do.

The branch lives *in the database*, in the table ``_walrelay_meta``, written by ordinary
transactions that go through the log like any write. That is why the branch needs no field on the
wire, in the replicas' state or in the entries: every primary that recovers a log replays it and
reads the branch from the result, so the branch follows the log through failovers, catch-ups and
restores by construction (docs/restore-branches.md). A database without the table is on branch 1,
the genesis branch.

Two kinds of transaction write it:

- the **restore request** (client op ``__restore__``): ``pending_restore`` = the target bookmark,
  and ``undo_bookmark`` = the point right after the request. The next primary to start performs it.
- the **branch marker**, the first entry of a new branch: ``branch`` and where it came from
  (``parent``, ``fork_seq``, ``fork_chain``, ``restored_to``, ``undo_bookmark``); it also clears
  ``pending_restore`` (an undo restores a database that may still hold the request).

``BranchRecord`` is the same information as ``OBJECT/bBBBBBBBB/branch.json`` in the archive
(docs/archive-format.md §8): deterministic JSON, so writing it again is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw

from walrelay.archive.format import bookmark, parse_bookmark
from walrelay.errors import WalrelayError

META_TABLE = "_walrelay_meta"
GENESIS_BRANCH = 1
BRANCH_RECORD_FORMAT = 1


class BranchRecordError(WalrelayError):
    """A branch record (branch.json, or the meta table) that does not say what it must."""


@dataclass(frozen=True, slots=True)
class BranchRecord:
    """Branch ``branch`` starts from ``parent``'s state right after entry ``fork_seq`` (whose chain is
    ``fork_chain``); it was made by a restore to ``restored_to`` whose undo point is
    ``undo_bookmark`` (the parent history's end when the restore ran)."""

    branch: int
    parent: int
    fork_seq: int
    fork_chain: bytes
    undo_bookmark: str

    @property
    def restored_to(self) -> str:
        return bookmark(self.parent, self.fork_seq)

    def to_json(self) -> bytes:
        body = {
            "format": BRANCH_RECORD_FORMAT,
            "branch": self.branch,
            "parent": self.parent,
            "fork_seq": self.fork_seq,
            "fork_chain": self.fork_chain.hex(),
            "restored_to": self.restored_to,
            "undo_bookmark": self.undo_bookmark,
        }
        return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")

    @classmethod
    def from_json(cls, data: bytes, *, what: str) -> BranchRecord:
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BranchRecordError(f"{what}: not JSON ({e})") from None
        if not isinstance(body, dict):
            raise BranchRecordError(f"{what}: not a JSON object")
        if body.get("format") != BRANCH_RECORD_FORMAT:
            raise BranchRecordError(f"{what}: format {body.get('format')!r}, this walrelay reads format 1")
        try:
            rec = cls(
                branch=json_uint(body, "branch"),
                parent=json_uint(body, "parent"),
                fork_seq=json_uint(body, "fork_seq"),
                fork_chain=bytes.fromhex(json_str(body, "fork_chain")),
                undo_bookmark=json_str(body, "undo_bookmark"),
            )
            parse_bookmark(rec.undo_bookmark)
        except (KeyError, TypeError, ValueError) as e:
            raise BranchRecordError(f"{what}: {e}") from None
        if len(rec.fork_chain) != 16:
            raise BranchRecordError(f"{what}: fork_chain must be 16 bytes, got {len(rec.fork_chain)}")
        if not 0 < rec.parent < rec.branch < 2**32:
            raise BranchRecordError(f"{what}: parent {rec.parent} must be a branch older than {rec.branch}")
        if rec.fork_seq >= 2**64:
            raise BranchRecordError(f"{what}: fork_seq {rec.fork_seq} is beyond any seq")
        if body.get("restored_to") != rec.restored_to:
            raise BranchRecordError(f"{what}: restored_to {body.get('restored_to')!r} is not parent/fork_seq")
        return rec


def json_uint(body: dict[str, Any], key: str) -> int:
    v = body[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise TypeError(f"{key} must be a non-negative integer, got {v!r}")
    return v


def json_str(body: dict[str, Any], key: str) -> str:
    v = body[key]
    if not isinstance(v, str):
        raise TypeError(f"{key} must be a string, got {v!r}")
    return v


@dataclass(frozen=True, slots=True)
class Meta:
    """What ``_walrelay_meta`` says: the branch (and its record, None on the genesis branch), and
    the restore the next primary must perform (None if none was asked for)."""

    branch: int
    record: BranchRecord | None
    pending_restore: str | None
    undo_bookmark: str | None  # the undo point of the pending restore, or of the one that made this branch


def read_meta(conn: apsw.Connection) -> Meta:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (META_TABLE,)).fetchall()
    if not exists:
        return Meta(GENESIS_BRANCH, None, None, None)
    rows = {str(k): v for k, v in conn.execute(f"SELECT key, value FROM {META_TABLE}")}
    record = None
    if "branch" in rows:
        try:
            record = BranchRecord(
                branch=int(rows["branch"]),
                parent=int(rows["parent"]),
                fork_seq=int(rows["fork_seq"]),
                fork_chain=bytes.fromhex(str(rows["fork_chain"])),
                undo_bookmark=str(rows["undo_bookmark"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BranchRecordError(f"table {META_TABLE} is damaged: {e}") from None
    pending = rows.get("pending_restore")
    undo = rows.get("pending_undo") if pending is not None else (record.undo_bookmark if record else None)
    return Meta(
        record.branch if record else GENESIS_BRANCH,
        record,
        None if pending is None else str(pending),
        None if undo is None else str(undo),
    )


def _ensure_table(conn: apsw.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE}(key TEXT PRIMARY KEY, value) WITHOUT ROWID")


def write_restore_request(conn: apsw.Connection, target: str, undo: str) -> None:
    """Inside a transaction: ask the next primary to restore to ``target`` (undo point ``undo``)."""
    _ensure_table(conn)
    conn.execute(
        f"INSERT OR REPLACE INTO {META_TABLE}(key, value) VALUES ('pending_restore', ?), ('pending_undo', ?)",
        (target, undo),
    )


def clear_restore_request(conn: apsw.Connection) -> None:
    """Inside a transaction: drop a pending restore (it cannot be done; the object serves on)."""
    _ensure_table(conn)
    conn.execute(f"DELETE FROM {META_TABLE} WHERE key IN ('pending_restore', 'pending_undo')")


def write_branch_marker(conn: apsw.Connection, record: BranchRecord) -> None:
    """Inside a transaction: this database is now on ``record.branch`` (the new branch's first entry)."""
    _ensure_table(conn)
    conn.execute(f"DELETE FROM {META_TABLE} WHERE key IN ('pending_restore', 'pending_undo')")
    conn.executemany(
        f"INSERT OR REPLACE INTO {META_TABLE}(key, value) VALUES (?, ?)",
        [
            ("branch", record.branch),
            ("parent", record.parent),
            ("fork_seq", record.fork_seq),
            ("fork_chain", record.fork_chain.hex()),
            ("restored_to", record.restored_to),
            ("undo_bookmark", record.undo_bookmark),
        ],
    )
