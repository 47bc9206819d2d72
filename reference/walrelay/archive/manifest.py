"""Manifests, retention floors and retirement marks: what an archive *should* contain.

Segments and snapshots say what they hold, but nothing in them says what else must exist: a
deleted segment at the end of a branch, a deleted first snapshot, or a deleted snapshot in the
middle leave an archive that decodes and replays without a gap. So every confirmed upload is
followed by a **manifest** that vouches for it (its key, size and BLAKE2b digest), written by one
primary (the *writer*, named by its epoch) and chained to the manifest before it, and the archiver
counts an upload as archived only once its manifest is confirmed. Then every object a restore can
need is named by a later object, and its absence is detected (docs/archive-format.md §10):

- a segment or snapshot is named by the manifest that vouches for it;
- a manifest is named by the next manifest of its chain (``prev``); the newest one is not, and
  deleting it is indistinguishable from a crash between an upload and its manifest, but it loses
  nothing: the objects it vouched for are still there, and the segments among them lie beyond the
  recorded end, which verify reports as *unrecorded*;
- the branch's first snapshot is implied by the branch (seq 0 on the genesis branch, the fork
  point in ``branch.json``), or by the newest **floor** retention wrote before deleting below it;
- a superseded branch's end is named by the undo bookmark of the branch that superseded it;
- ``branch.json`` is implied by any manifest of its branch (the first manifest is written before
  it), and a branch that retention emptied keeps a **retired** mark.

Every object here is JSON with sorted keys and no spaces, then a newline: deterministic, so a
retried or ambiguous PUT writes the same bytes. Keys are unique per writer: epochs are issued once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from walrelay.archive.format import ArchiveFormatError, branch_prefix
from walrelay.branching import json_uint

MANIFEST_FORMAT = 1
_DIGITS = 20


def manifest_key(object_name: str, branch: int, writer: int, n: int) -> str:
    return f"{branch_prefix(object_name, branch)}manifest/{writer:0{_DIGITS}d}-{n:0{_DIGITS}d}"


def floor_key(object_name: str, branch: int, seq: int) -> str:
    return f"{branch_prefix(object_name, branch)}floor/{seq:0{_DIGITS}d}"


def retired_key(object_name: str, branch: int) -> str:
    return f"{branch_prefix(object_name, branch)}retired.json"


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Vouched:
    """An object a manifest or floor says exists, with these exact bytes."""

    key: str
    size: int
    blake2b: str

    @classmethod
    def of(cls, key: str, data: bytes) -> Vouched:
        return cls(key, len(data), digest(data))

    def to_json(self) -> dict[str, Any]:
        return {"blake2b": self.blake2b, "key": self.key, "size": self.size}


@dataclass(frozen=True, slots=True)
class Manifest:
    """Manifest ``n`` of writer ``writer`` on ``branch``: the objects it vouches for (the uploads it
    confirmed since its previous manifest), the manifest it follows (``prev``, with that one's
    ``through``), and ``through``: the branch's archive is complete from its first snapshot to
    entry ``through`` (chain ``through_chain``). ``created_us``: in a manifest that follows none,
    when its writer created the branch's archive (the object's creation time on the genesis
    branch), else None."""

    branch: int
    writer: int
    n: int
    prev: str | None
    prev_through: int | None
    objects: tuple[Vouched, ...]
    through: int
    through_chain: bytes
    created_us: int | None = None

    def key(self, object_name: str) -> str:
        return manifest_key(object_name, self.branch, self.writer, self.n)

    def to_json(self) -> bytes:
        body = {
            "kind": "manifest",
            "format": MANIFEST_FORMAT,
            "branch": self.branch,
            "writer": self.writer,
            "n": self.n,
            "prev": self.prev,
            "prev_through": self.prev_through,
            "objects": [o.to_json() for o in self.objects],
            "through": self.through,
            "through_chain": self.through_chain.hex(),
            "created_us": self.created_us,
        }
        return _dump(body)

    @classmethod
    def from_json(cls, data: bytes, *, what: str) -> Manifest:
        body = _load(data, "manifest", what)
        try:
            prev = body["prev"]
            if prev is not None and not isinstance(prev, str):
                raise TypeError(f"prev must be a key or null, got {prev!r}")
            objects = body["objects"]
            if not isinstance(objects, list):
                raise TypeError("objects must be a list")
            m = cls(
                branch=json_uint(body, "branch"),
                writer=json_uint(body, "writer"),
                n=json_uint(body, "n"),
                prev=prev,
                prev_through=_opt_uint(body, "prev_through"),
                objects=tuple(_vouched(o) for o in objects),
                through=json_uint(body, "through"),
                through_chain=_chain(body, "through_chain"),
                created_us=_opt_uint(body, "created_us"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArchiveFormatError(f"{what}: {e}") from None
        if (m.prev is None) != (m.prev_through is None):
            raise ArchiveFormatError(f"{what}: prev and prev_through must both be set or both be null")
        if m.n < 1:
            raise ArchiveFormatError(f"{what}: n must be at least 1")
        if m.to_json() != data:
            raise ArchiveFormatError(f"{what}: not in the canonical form (sorted keys, no spaces, one newline)")
        return m


@dataclass(frozen=True, slots=True)
class Floor:
    """Retention's mark, written before it deletes anything below it: from now on the branch
    starts at its snapshot at ``seq`` (vouched for here); what lies before may be gone."""

    branch: int
    seq: int
    chain: bytes
    timestamp_us: int
    snapshot: Vouched

    def key(self, object_name: str) -> str:
        return floor_key(object_name, self.branch, self.seq)

    def to_json(self) -> bytes:
        body = {
            "kind": "floor",
            "format": MANIFEST_FORMAT,
            "branch": self.branch,
            "seq": self.seq,
            "chain": self.chain.hex(),
            "timestamp_us": self.timestamp_us,
            "snapshot": self.snapshot.to_json(),
        }
        return _dump(body)

    @classmethod
    def from_json(cls, data: bytes, *, what: str) -> Floor:
        body = _load(data, "floor", what)
        try:
            f = cls(
                branch=json_uint(body, "branch"),
                seq=json_uint(body, "seq"),
                chain=_chain(body, "chain"),
                timestamp_us=json_uint(body, "timestamp_us"),
                snapshot=_vouched(body["snapshot"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArchiveFormatError(f"{what}: {e}") from None
        if f.to_json() != data:
            raise ArchiveFormatError(f"{what}: not in the canonical form (sorted keys, no spaces, one newline)")
        return f


def retired_json(branch: int) -> bytes:
    """Written before retention deletes a superseded branch's objects: the branch is empty by
    intent, not by accident."""
    return _dump({"kind": "retired", "format": MANIFEST_FORMAT, "branch": branch})


def check_retired(data: bytes, branch: int, *, what: str) -> None:
    body = _load(data, "retired", what)
    if body.get("branch") != branch or retired_json(branch) != data:
        raise ArchiveFormatError(f"{what}: not the retirement mark of branch {branch}")


def _dump(body: dict[str, Any]) -> bytes:
    return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


def _load(data: bytes, kind: str, what: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArchiveFormatError(f"{what}: not JSON ({e})") from None
    if not isinstance(body, dict):
        raise ArchiveFormatError(f"{what}: not a JSON object")
    if body.get("kind") != kind:
        raise ArchiveFormatError(f"{what}: kind {body.get('kind')!r}, expected {kind!r}")
    if body.get("format") != MANIFEST_FORMAT:
        raise ArchiveFormatError(f"{what}: format {body.get('format')!r}, this walrelay reads format 1")
    return body


def _opt_uint(body: dict[str, Any], key: str) -> int | None:
    return None if body[key] is None else json_uint(body, key)


def _chain(body: dict[str, Any], key: str) -> bytes:
    v = body[key]
    if not isinstance(v, str) or len(v) != 32:
        raise TypeError(f"{key} must be 32 hex digits, got {v!r}")
    return bytes.fromhex(v)


def _vouched(o: object) -> Vouched:
    if not isinstance(o, dict):
        raise TypeError(f"a vouched object must be a JSON object, got {o!r}")
    key, size, b2 = o["key"], o["size"], o["blake2b"]
    if not isinstance(key, str) or not isinstance(b2, str) or len(b2) != 32:
        raise TypeError(f"bad vouched object {o!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TypeError(f"bad size in vouched object {o!r}")
    return Vouched(key, size, b2)
