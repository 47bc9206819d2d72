"""Faults on a set of named objects: a mapping name -> bytes, in, a new mapping, out.

Pure: a fault never touches the mapping it is given, never reads a disk, and depends only on its
own fields, so one fault can be applied to a fresh copy per trial, printed (``describe()``) and
replayed. Faults are drawn through a ``Chooser``: a ``random.Random`` (seeded campaigns) or a
hypothesis ``draw`` (property tests, which then shrink them), by the same code.

Two layers:

- the core (``FaultSpace``) knows bytes and names only: ``flip`` one bit, ``truncate`` to a
  length, ``delete`` one object, ``swap`` the contents of two objects of the same shape (their
  names equal once digits are ignored), ``corrupt_record`` (any object whose bytes are a JSON
  object, rewritten in its own style with one field, at any depth, changed: still valid JSON).
  Replica log and state files get the same treatment;
- the archive layer (``ArchiveFaultSpace``) knows the archive's key shapes
  (docs/archive-format.md §2): ``overlap`` (a segment copied or renamed to a key whose seq range
  overlaps others, or a segment or snapshot into another branch's prefix), ``delete_record`` (a
  record: a branch.json or any other JSON object, such as a manifest), and ``delete`` for every
  other object. Keys it does not recognise are still flipped, truncated, swapped and deleted.

``draw_fault(rng, files)`` and ``fault_strategy(files)`` (hypothesis) draw from the core;
``draw_archive_fault`` and ``archive_fault_strategy`` from the archive layer.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

T = TypeVar("T")
Files = Mapping[str, bytes]
JsonPath = tuple[str | int, ...]


class FaultError(ValueError):
    """A fault that does not apply to these files (a key it names is missing, say)."""


# -- choosing: one interface over random.Random and hypothesis --------------------------------------


class Chooser(Protocol):
    def integer(self, lo: int, hi: int) -> int:
        """An integer in lo..hi (both included)."""
        ...

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options`` (not empty)."""
        ...


class RandomChooser:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]


class DrawChooser:
    """Choices through hypothesis's ``draw``: shrinkable (towards the first option, the low end)."""

    def __init__(self, draw: DrawFn) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        from hypothesis import strategies as st

        return self.draw(st.integers(lo, hi))

    def choice(self, options: Sequence[T]) -> T:
        from hypothesis import strategies as st

        return self.draw(st.sampled_from(options))


# -- the faults -----------------------------------------------------------------------------------


def _need(files: Files, *keys: str) -> dict[str, bytes]:
    for key in keys:
        if key not in files:
            raise FaultError(f"no object {key!r} to corrupt")
    return dict(files)


class Fault:
    """One fault. ``kind`` names it in tables; ``keys`` are the objects it reads or writes."""

    kind: ClassVar[str] = "fault"

    def describe(self) -> str:
        raise NotImplementedError

    def apply(self, files: Files) -> dict[str, bytes]:
        raise NotImplementedError

    @property
    def keys(self) -> tuple[str, ...]:
        raise NotImplementedError


@dataclass(frozen=True)
class Flip(Fault):
    kind: ClassVar[str] = "flip"
    key: str
    bit: int  # from the object's first byte: byte bit // 8, bit bit % 8 of it

    def describe(self) -> str:
        return f"flip bit {self.bit % 8} of byte {self.bit // 8} of {self.key}"

    def apply(self, files: Files) -> dict[str, bytes]:
        out = _need(files, self.key)
        data = bytearray(out[self.key])
        if not 0 <= self.bit < 8 * len(data):
            raise FaultError(f"{self.key} has {len(data)} bytes: no bit {self.bit}")
        data[self.bit // 8] ^= 1 << (self.bit % 8)
        out[self.key] = bytes(data)
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True)
class Truncate(Fault):
    kind: ClassVar[str] = "truncate"
    key: str
    length: int

    def describe(self) -> str:
        return f"truncate {self.key} to {self.length} bytes"

    def apply(self, files: Files) -> dict[str, bytes]:
        out = _need(files, self.key)
        if not 0 <= self.length < len(out[self.key]):
            raise FaultError(f"{self.key} has {len(out[self.key])} bytes: cannot cut it to {self.length}")
        out[self.key] = out[self.key][: self.length]
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True)
class Delete(Fault):
    kind: ClassVar[str] = "delete"
    key: str

    def describe(self) -> str:
        return f"delete {self.key}"

    def apply(self, files: Files) -> dict[str, bytes]:
        out = _need(files, self.key)
        del out[self.key]
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True)
class Copy(Fault):
    """``src``'s bytes under ``dst`` too (replacing what is there), or instead (``move``: a rename)."""

    kind: ClassVar[str] = "copy"
    src: str
    dst: str
    move: bool

    def describe(self) -> str:
        return f"{'rename' if self.move else 'copy'} {self.src} to {self.dst}"

    def apply(self, files: Files) -> dict[str, bytes]:
        out = _need(files, self.src)
        if self.src == self.dst:
            raise FaultError(f"copy of {self.src} onto itself")
        out[self.dst] = out[self.src]
        if self.move:
            del out[self.src]
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.src, self.dst)


@dataclass(frozen=True)
class Swap(Fault):
    kind: ClassVar[str] = "swap"
    a: str
    b: str

    def describe(self) -> str:
        return f"swap the contents of {self.a} and {self.b}"

    def apply(self, files: Files) -> dict[str, bytes]:
        out = _need(files, self.a, self.b)
        out[self.a], out[self.b] = out[self.b], out[self.a]
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.a, self.b)


@dataclass(frozen=True)
class EditJson(Fault):
    """A JSON object rewritten with one field changed: the value at ``path`` (keys and list
    indexes from the top) set to ``value`` (JSON text), or removed (``value`` None); the rest,
    and the object's formatting, as they were. Still valid JSON."""

    kind: ClassVar[str] = "corrupt_record"
    key: str
    path: JsonPath
    value: str | None

    def describe(self) -> str:
        where = "".join(f"[{p!r}]" for p in self.path)
        if self.value is None:
            return f"{self.key}: remove {where}"
        return f"{self.key}: set {where} to {self.value}"

    def apply(self, files: Files) -> dict[str, bytes]:
        out = _need(files, self.key)
        body = json_object(out[self.key])
        if body is None or not self.path:
            raise FaultError(f"{self.key} is not a JSON object, or the path is empty")
        parent: Any = body
        for step in self.path[:-1]:
            parent = parent[step]
        last = self.path[-1]
        if self.value is None:
            del parent[last]
        else:
            parent[last] = json.loads(self.value)
        out[self.key] = _dump_like(out[self.key], body)
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)


# -- JSON helpers ---------------------------------------------------------------------------------


def json_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object ``data`` holds, or None (not UTF-8 JSON, or not an object)."""
    if not re.match(rb"\s*\{", data):
        return None
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return body if isinstance(body, dict) else None


_STYLES: list[dict[str, Any]] = [
    {"sort_keys": s, "indent": i, "separators": sep}
    for s in (True, False)
    for i, sep in ((None, (",", ":")), (None, (", ", ": ")), (2, None), (4, None), (1, None))
]


def _dump_like(original: bytes, body: object) -> bytes:
    """``body`` as JSON in the style ``original`` was written in (key order, separators, indent,
    a final newline), when one of the usual styles reproduces it; else compact, sorted, newline."""
    before = json.loads(original.decode("utf-8"))
    for style in _STYLES:
        text = json.dumps(before, **style)
        for end in ("\n", ""):
            if (text + end).encode("utf-8") == original:
                return (json.dumps(body, **style) + end).encode("utf-8")
    return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def _nodes(value: Any, path: JsonPath = ()) -> list[tuple[JsonPath, Any]]:
    """Every value inside ``value`` (not itself) with its path, parents before children."""
    out: list[tuple[JsonPath, Any]] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = [(k, value[k]) for k in sorted(value)]
    elif isinstance(value, list):
        items = list(enumerate(value))
    for step, child in items:
        out.append(((*path, step), child))
        out += _nodes(child, (*path, step))
    return out


_CLASSES = ("0123456789", "0123456789abcdef", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _other_char(c: str, pick: int) -> str:
    """Another character of ``c``'s class (a hex digit stays a hex digit: a chain, a digest or a
    bookmark keeps its shape, with another value)."""
    for cls in _CLASSES:
        if c in cls:
            others = [x for x in cls if x != c]
            return others[pick % len(others)]
    return "x" if c != "x" else "y"


def _variants(value: Any) -> list[Callable[[Chooser], Any]]:
    """Ways to change one JSON value (each may draw), most plausible first."""
    if isinstance(value, bool):
        return [lambda c: not value, lambda c: int(value), lambda c: None]
    if isinstance(value, int):
        return [
            lambda c: value + 1,
            lambda c: value - 1,
            lambda c: 0 if value else 1,
            lambda c: value + c.integer(2, 1000),
            lambda c: float(value),
            lambda c: str(value),
            lambda c: value == 0,
            lambda c: None,
        ]
    if isinstance(value, float):
        return [lambda c: value + 1, lambda c: int(value), lambda c: str(value), lambda c: None]
    if isinstance(value, str):

        def one_char(c: Chooser) -> str:
            if not value:
                return "0"
            i = c.integer(0, len(value) - 1)
            return value[:i] + _other_char(value[i], c.integer(0, 30)) + value[i + 1 :]

        return [one_char, lambda c: value[:-1], lambda c: value + (value[-1:] or "0"), lambda c: "", lambda c: None]
    if isinstance(value, list):
        return [lambda c: value[:-1], lambda c: [*value, *value[-1:]] if value else [0], lambda c: None]
    if isinstance(value, dict):
        return [lambda c: {}, lambda c: None]
    return [lambda c: 0, lambda c: "", lambda c: False]  # null


def draw_json_edit(chooser: Chooser, key: str, data: bytes) -> EditJson:
    """One field of the JSON object in ``data`` changed: a node at any depth, set to another value
    (same type first, then another type) or removed."""
    body = json_object(data)
    if body is None or not body:
        raise FaultError(f"{key} is not a non-empty JSON object")
    path, value = chooser.choice(_nodes(body))
    changes = _variants(value)
    pick = chooser.integer(0, len(changes))  # the last one: remove it
    if pick == len(changes):
        return EditJson(key, path, None)
    new = changes[pick](chooser)
    if json.dumps(new) == json.dumps(value):  # never a no-op: fall back to a change of type
        new = None if value is not None else 0
    return EditJson(key, path, json.dumps(new, sort_keys=True, separators=(",", ":")))


# -- the core space: kinds that know bytes and names only -------------------------------------------


def shape(key: str) -> str:
    """A key with its digits ignored: objects of one shape are of one kind (for ``swap``)."""
    return re.sub(r"[0-9]+", "#", key)


def pick(c: Chooser, keys: Sequence[str]) -> str:
    """A key of ``keys``: first a shape, then a key of that shape, so that a kind of object with
    few members (a branch record among many manifests, snapshots among segments) is hit as often
    as any other kind."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(shape(k), []).append(k)
    return c.choice(groups[c.choice(sorted(groups))])


class FaultSpace:
    """The faults a set of files admits, by kind, and how to draw one. Subclasses add kinds that
    know key shapes (``ArchiveFaultSpace``) or narrow the candidates of a kind."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.keys = sorted(files)
        self.nonempty = [k for k in self.keys if files[k]]
        self.json_keys = [k for k in self.keys if json_object(files[k])]  # non-empty JSON objects
        groups: dict[str, list[str]] = {}
        for k in self.keys:
            groups.setdefault(shape(k), []).append(k)
        self.swappable = [g for _, g in sorted(groups.items()) if len(g) >= 2]

    def makers(self) -> dict[str, Callable[[Chooser], Fault]]:
        """Each kind these files admit, with its draw (a kind with no candidate is left out)."""
        out: dict[str, Callable[[Chooser], Fault]] = {}
        if self.nonempty:
            out["flip"] = self.flip
            out["truncate"] = self.truncate
        if self.deletable():
            out["delete"] = lambda c: Delete(pick(c, self.deletable()))
        if self.swappable:
            out["swap"] = self.swap
        if self.json_keys:
            out["corrupt_record"] = self.corrupt_record
        return out

    def kinds(self) -> list[str]:
        return list(self.makers())

    def deletable(self) -> list[str]:
        return self.keys

    def flip(self, c: Chooser) -> Fault:
        key = pick(c, self.nonempty)
        size = len(self.files[key])
        # Half the time in the first 128 bytes, where headers (magics, lengths, seqs) usually are.
        limit = size if c.integer(0, 1) else min(size, 128)
        return Flip(key, c.integer(0, 8 * limit - 1))

    def truncate(self, c: Chooser) -> Fault:
        key = pick(c, self.nonempty)
        size = len(self.files[key])
        how = c.integer(0, 3)  # anywhere; to nothing; the last byte gone; the trailer's 16 gone
        if how == 0:
            return Truncate(key, c.integer(0, size - 1))
        return Truncate(key, {1: 0, 2: size - 1, 3: max(0, size - 16)}[how])

    def corrupt_record(self, c: Chooser) -> Fault:
        key = pick(c, self.json_keys)
        return draw_json_edit(c, key, self.files[key])

    def swap(self, c: Chooser) -> Fault:
        group = c.choice(self.swappable)
        a = c.choice(group)
        b = c.choice([k for k in group if k != a])
        return Swap(a, b)

    def draw(self, chooser: Chooser, kinds: Sequence[str] | None = None) -> Fault:
        makers = self.makers()
        allowed = [k for k in makers if kinds is None or k in kinds]
        if not allowed:
            raise FaultError(f"none of the kinds {list(kinds or [])} applies here (these do: {list(makers)})")
        return makers[chooser.choice(allowed)](chooser)


# -- the archive layer: kinds that know the archive's key shapes ------------------------------------

_ARCHIVE_KEY = re.compile(
    r"(?P<object>[A-Za-z0-9_-]+)/b(?P<branch>[0-9]{8})/"
    r"(?:seg/(?P<first>[0-9]{20})-(?P<last>[0-9]{20})|snap/(?P<seq>[0-9]{20})|(?P<record>branch\.json))"
)


@dataclass(frozen=True)
class ArchiveKey:
    object_name: str
    branch: int
    kind: str  # "segment" | "snapshot" | "record"
    first: int = 0
    last: int = 0


def archive_key(key: str) -> ArchiveKey | None:
    """What an archive key names (docs/archive-format.md §2), or None for any other key."""
    m = _ARCHIVE_KEY.fullmatch(key)
    if m is None:
        return None
    obj, branch = m["object"], int(m["branch"])
    if m["first"] is not None:
        return ArchiveKey(obj, branch, "segment", int(m["first"]), int(m["last"]))
    if m["seq"] is not None:
        return ArchiveKey(obj, branch, "snapshot", int(m["seq"]), int(m["seq"]))
    return ArchiveKey(obj, branch, "record")


def segment_key(object_name: str, branch: int, first: int, last: int) -> str:
    return f"{object_name}/b{branch:08d}/seg/{first:020d}-{last:020d}"


def snapshot_key(object_name: str, branch: int, seq: int) -> str:
    return f"{object_name}/b{branch:08d}/snap/{seq:020d}"


@dataclass(frozen=True)
class Overlap(Copy):
    """A segment copied or renamed to a key whose seq range overlaps other segments of its
    branch, or a segment or snapshot into another branch's prefix."""

    kind: ClassVar[str] = "overlap"


@dataclass(frozen=True)
class DeleteRecord(Delete):
    """A record deleted: a branch.json, or any other JSON object of the archive."""

    kind: ClassVar[str] = "delete_record"


class ArchiveFaultSpace(FaultSpace):
    def __init__(self, files: Files) -> None:
        super().__init__(files)
        self.parsed = {k: a for k in self.keys if (a := archive_key(k)) is not None}
        self.segments = [k for k, a in self.parsed.items() if a.kind == "segment"]
        self.snapshots = [k for k, a in self.parsed.items() if a.kind == "snapshot"]
        # Records: every JSON object (branch.json, and whatever record kinds the format grows).
        self.records = sorted({*self.json_keys, *(k for k, a in self.parsed.items() if a.kind == "record")})
        self.branches = sorted({a.branch for a in self.parsed.values()})

    def deletable(self) -> list[str]:
        return [k for k in self.keys if k not in self.records]

    def makers(self) -> dict[str, Callable[[Chooser], Fault]]:
        out = super().makers()
        if self.records:
            out["delete_record"] = lambda c: DeleteRecord(pick(c, self.records))
        if self.segments:
            out["overlap"] = self.overlap
        return out

    def _overlapping(self, src: str, first: int, last: int) -> bool:
        a = self.parsed[src]
        return any(
            o.kind == "segment" and o.branch == a.branch and k != src and o.first <= last and first <= o.last
            for k, o in self.parsed.items()
        )

    def overlap(self, c: Chooser) -> Fault:
        move = c.choice([False, True])
        if self.snapshots and len(self.branches) > 1 and c.integer(0, 3) == 0:
            key = c.choice(self.snapshots)  # a snapshot into another branch's prefix, same seq
            a = self.parsed[key]
            other = c.choice([b for b in self.branches if b != a.branch])
            return Overlap(key, snapshot_key(a.object_name, other, a.first), move)
        key = c.choice(self.segments)
        a = self.parsed[key]
        ranges = [
            (a.first + d1, a.last + d2)
            for d1 in (-1, 0, 1)
            for d2 in (-1, 0, 1)
            if (d1, d2) != (0, 0) and a.first + d1 >= 1 and a.last + d2 >= a.first + d1
        ]
        shifted = [r for r in ranges if self._overlapping(key, *r)] or ranges  # never empty: (f, l+1)
        targets = [b for b in self.branches if b != a.branch]
        if targets and c.integer(0, 1):
            return Overlap(key, segment_key(a.object_name, c.choice(targets), a.first, a.last), move)
        first, last = c.choice(shifted)
        return Overlap(key, segment_key(a.object_name, a.branch, first, last), move)


# -- drawing --------------------------------------------------------------------------------------


def draw_fault(rng: random.Random, files: Files, kinds: Sequence[str] | None = None) -> Fault:
    """A core fault (names and bytes only) on ``files``, of one of ``kinds`` (default: any)."""
    return FaultSpace(files).draw(RandomChooser(rng), kinds)


def draw_archive_fault(rng: random.Random, files: Files, kinds: Sequence[str] | None = None) -> Fault:
    """A fault on an archive's objects (every core kind, and the archive layer's)."""
    return ArchiveFaultSpace(files).draw(RandomChooser(rng), kinds)


def fault_strategy(
    files: Files, kinds: Sequence[str] | None = None, *, space: Callable[[Files], FaultSpace] = FaultSpace
) -> SearchStrategy[Fault]:
    """The same faults as a hypothesis strategy, composed from the mapping's keys (shrinks towards
    the first kind, the first key, the low offsets)."""
    from hypothesis import strategies as st

    made = space(files)

    @st.composite
    def faults(draw: DrawFn) -> Fault:
        return made.draw(DrawChooser(draw), kinds)

    return faults()


def archive_fault_strategy(files: Files, kinds: Sequence[str] | None = None) -> SearchStrategy[Fault]:
    return fault_strategy(files, kinds, space=ArchiveFaultSpace)


CORE_KINDS = ("flip", "truncate", "delete", "swap", "corrupt_record")
ARCHIVE_KINDS = ("flip", "truncate", "delete", "overlap", "swap", "corrupt_record", "delete_record")
