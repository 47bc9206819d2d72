"""A chaos run as data: the operations of a schedule (workload and faults), and their JSON form.

A schedule is a list of these; ``walrelay_chaos.sim`` runs one against the real nodes in one
process, and a replay file (``walrelay_chaos.replay``) stores one so that the same run can be made
again with ``walrelay chaos replay FILE``. Hypothesis generates and shrinks them in the tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Write:
    count: int  # that many new keys, written concurrently to the current primary


@dataclass(frozen=True)
class WriteStale:
    count: int  # written to the newest primary that is still running but is not the current one


@dataclass(frozen=True)
class Settle:
    ms: int


@dataclass(frozen=True)
class Cut:
    mask: int  # replicas in the mask are partitioned from every primary


@dataclass(frozen=True)
class Heal:
    pass


@dataclass(frozen=True)
class CrashPrimary:
    pass


@dataclass(frozen=True)
class NewPrimary:
    pass  # the old one keeps running unless it crashed: it is then a stale primary


@dataclass(frozen=True)
class CrashReplica:
    replica: int


@dataclass(frozen=True)
class LoseDisk:
    replica: int


@dataclass(frozen=True)
class StoreDown:
    """Every PUT to the archive fails as a timeout until StoreUp; ``ambiguous``: every other one
    was stored anyway (the answer was lost), else none is."""

    ambiguous: bool = True


@dataclass(frozen=True)
class StoreUp:
    pass


@dataclass(frozen=True)
class Check:
    pass  # if the current primary serves within a while, it must hold every write acked so far


@dataclass(frozen=True)
class Bookmark:
    """The current primary's point now, with its database (the PITR oracle), kept once durable."""


@dataclass(frozen=True)
class Restore:
    """Restore to a kept bookmark (``pick`` modulo how many; undo points are kept too): by a
    ``__restore__`` request and a restart, or by a new primary started with ``restore_to``."""

    pick: int
    by_request: bool


@dataclass(frozen=True)
class MinorityFailover:
    """A nemesis aimed at recovery: ``writes`` reach replica ``holder`` only (never durable), the
    primary crashes (after a ``bookmark`` request, if asked), a new primary recovers without that
    replica and writes over those seqs; with ``again``, one more primary then recovers from the
    holder and two others, so that the holder's older, longer log competes with the newer one."""

    holder: int
    writes: int
    bookmark: bool
    again: bool

    def expand(self) -> list[Op]:
        everyone = 0b11111
        holder = 1 << (self.holder % 5)
        two_more = (1 << ((self.holder + 1) % 5)) | (1 << ((self.holder + 2) % 5))
        ops: list[Op] = [Heal(), Cut(everyone ^ holder), Write(self.writes), Settle(20)]
        if self.bookmark:
            ops.append(Bookmark())
        ops += [CrashPrimary(), Heal(), Cut(holder), NewPrimary(), Settle(300), Write(1), Settle(300)]
        if self.again:
            ops += [CrashPrimary(), Heal(), Cut(everyone ^ holder ^ two_more), NewPrimary(), Check()]
        return [*ops, Heal()]


Op = (
    Write
    | WriteStale
    | Settle
    | Cut
    | Heal
    | CrashPrimary
    | NewPrimary
    | CrashReplica
    | LoseDisk
    | StoreDown
    | StoreUp
    | Check
    | Bookmark
    | Restore
    | MinorityFailover
)


OPS: dict[str, type[Op]] = {
    cls.__name__: cls
    for cls in (
        Write, WriteStale, Settle, Cut, Heal, CrashPrimary, NewPrimary, CrashReplica, LoseDisk,
        StoreDown, StoreUp, Check, Bookmark, Restore, MinorityFailover,
    )
}  # fmt: skip


class ScheduleError(ValueError):
    """A schedule in JSON that does not say what a schedule must."""


def op_to_json(op: Op) -> dict[str, Any]:
    return {"op": type(op).__name__, **dataclasses.asdict(op)}


def op_from_json(item: object, *, where: str) -> Op:
    if not isinstance(item, dict) or not isinstance(item.get("op"), str):
        raise ScheduleError(f'{where}: expected an object with an "op" name, got {item!r}')
    cls = OPS.get(item["op"])
    if cls is None:
        raise ScheduleError(f"{where}: unknown op {item['op']!r}; known: {', '.join(sorted(OPS))}")
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    args = {k: v for k, v in item.items() if k != "op"}
    if set(args) != set(fields):
        raise ScheduleError(f"{where}: {item['op']} takes {sorted(fields) or 'no fields'}, got {sorted(args)}")
    for name, value in args.items():
        want = bool if fields[name] == "bool" else int
        if not isinstance(value, want) or (want is int and isinstance(value, bool)) or (want is int and value < 0):
            kind = "boolean" if want is bool else "non-negative integer"
            raise ScheduleError(f"{where}: {item['op']}.{name} must be a {kind}, got {value!r}")
    return cls(**args)
