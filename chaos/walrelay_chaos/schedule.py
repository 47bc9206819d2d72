"""A chaos run as data: the operations of a schedule (workload and faults), and their JSON form.

A schedule is a list of these; ``walrelay_chaos.sim`` runs one against the real nodes in one
process, and a replay file (``walrelay_chaos.replay``) stores one so that the same run can be made
again with ``walrelay chaos replay FILE``. Hypothesis generates and shrinks them in the tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
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
class AwaitWrites:
    """Wait until every write sent so far is answered, for ``ms`` at most (real mode: scaled by
    the machine's measured slowness). A directed schedule that needs "acknowledged, then at once
    the fault" waits on the acknowledgement itself, not on a guess of how long it takes."""

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
class SlowStore:
    """Every archive PUT takes ``ms`` longer (a slow or throttled store) until StoreUp: uploads
    queue behind it while writes go on, so the archive lags the log."""

    ms: int


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


@dataclass(frozen=True)
class PairFailover:
    """A nemesis aimed at the write quorum: ``writes`` reach exactly two replicas (``pair`` picks
    which two of the ten pairs), the primary crashes, and a new primary recovers from the other
    three, which never heard them, and writes. Two of five is not a quorum: the writes must not
    have been acknowledged, or they are lost here."""

    pair: int
    writes: int

    def expand(self) -> list[Op]:
        everyone = 0b11111
        a, b = PAIRS[self.pair % len(PAIRS)]
        pair = (1 << a) | (1 << b)
        return [
            Heal(), Cut(everyone ^ pair), Write(self.writes), Settle(20), CrashPrimary(), Heal(), Cut(pair),
            NewPrimary(), Settle(300), Write(1), Settle(300), Check(), Heal(),
        ]  # fmt: skip


PAIRS = [(a, b) for a in range(5) for b in range(a + 1, 5)]


@dataclass(frozen=True)
class SplitBrain:
    """A nemesis aimed at fencing: a new primary takes over while the old one still runs and still
    reaches the replicas and its clients (it was cut off only from whoever decided the takeover);
    clients write to both, ``stale_writes`` of them to the old one. Its writes must fail or stay
    unknown: every replica promised the new epoch."""

    stale_writes: int

    def expand(self) -> list[Op]:
        return [Heal(), NewPrimary(), Settle(300), Write(1), WriteStale(self.stale_writes), Settle(300), Check()]


# -- network faults (docs: chaos/README.md, "Nemeses and mutants"). The network carries TCP: on one
# connection bytes arrive in order or the connection breaks; nothing is lost, duplicated or
# reordered inside it. Loss is a broken connection with frames still in flight; duplication and
# reordering only happen across connections (an abandoned connection's late frames). All of them
# apply to the links between primaries and the replicas in ``mask``, and last until Heal.


@dataclass(frozen=True)
class OneWay:
    """A one-way partition: ``to_replica`` - the replicas in the mask stop hearing the primaries
    (their replies still flow); else the replicas hear everything and their replies stop. Bytes
    in the dead direction are held (TCP retransmits) until Heal; a new connection is refused (a
    handshake needs both ways)."""

    mask: int
    to_replica: bool


@dataclass(frozen=True)
class Delay:
    """Every frame, both ways, reaches the other end ``ms`` late (in order, per connection)."""

    mask: int
    ms: int


@dataclass(frozen=True)
class Reset:
    """The connections break now (a TCP reset): frames still in flight (delayed or held) are lost."""

    mask: int


@dataclass(frozen=True)
class Orphan:
    """The primaries abandon their connections now (as after a timeout) and reconnect; the replica's
    end of each old connection lives on, and the frames still in flight on it arrive ``ms`` from
    now, after the new connection's: duplicated and out of order. Replies on it are lost."""

    mask: int
    ms: int


# -- clocks, disks, restores


@dataclass(frozen=True)
class ClockJump:
    """The current primary's wall clock (its entry timestamps, its archive's retention) jumps ``ms``
    forwards, or backwards, and stays off by that (a later primary starts with the true time)."""

    ms: int
    back: bool


@dataclass(frozen=True)
class PowerFail:
    """The replicas in ``mask`` lose power at once (and the current primary, if ``primary``): each
    loses what it wrote since its last fsync, then restarts. (CrashReplica is a process crash:
    the OS keeps what was written.)"""

    mask: int
    primary: bool


@dataclass(frozen=True)
class TornRename:
    """Replica ``replica`` loses power between a rename and the fsync of its directory: at the
    next directory fsync it makes after renaming (a state or log file replaced), before the fsync
    takes effect; the rename is then undone, as a file system may undo it, and the replica
    restarts. Nothing it answered depended on the rename: answers wait for that fsync. If it
    renames nothing within 5 s, nothing happens. (Simulation only.)"""

    replica: int


@dataclass(frozen=True)
class RestoreCrash:
    """A Restore (``pick``, ``by_request``) whose restoring primary crashes half way: ``late``
    false, while its first epoch archives the old branch; true, after it took its second epoch.
    The next primary (started with the same ``restore_to``, for a restore by flag) finishes it."""

    pick: int
    by_request: bool
    late: bool


@dataclass(frozen=True)
class Bridge:
    """A split brain across a bridge replica: the running primary keeps reaching replicas
    ``bridge``, +1, +2 only, and a new primary takes over reaching ``bridge``, +3, +4 only (each
    side a majority, the bridge in both); both get writes, ``stale_writes`` of them the old one.
    Until Heal."""

    bridge: int
    stale_writes: int


@dataclass(frozen=True)
class Pause:
    """Real mode: the current primary is paused (SIGSTOP: a GC pause, a frozen VM) for ``ms``;
    with ``takeover``, a new primary takes over meanwhile, and the old one resumes believing it
    still serves (its held writes, and any sent to it after, must not count). The simulation
    cannot stop a task: it notes the op as skipped."""

    ms: int
    takeover: bool


Op = (
    Write
    | WriteStale
    | Settle
    | AwaitWrites
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
    | PairFailover
    | SplitBrain
    | OneWay
    | Delay
    | Reset
    | Orphan
    | ClockJump
    | PowerFail
    | TornRename
    | SlowStore
    | RestoreCrash
    | Pause
    | Bridge
)


OPS: dict[str, type[Op]] = {
    cls.__name__: cls
    for cls in (
        Write, WriteStale, Settle, AwaitWrites, Cut, Heal, CrashPrimary, NewPrimary, CrashReplica, LoseDisk,
        StoreDown, StoreUp, Check, Bookmark, Restore, MinorityFailover, PairFailover, SplitBrain, OneWay, Delay, Reset,
        Orphan, ClockJump, PowerFail, RestoreCrash, Pause, Bridge, TornRename, SlowStore,
    )
}  # fmt: skip


class ScheduleError(ValueError):
    """A schedule in JSON that does not say what a schedule must."""


def read_json_file(path: str | os.PathLike[str], error: type[Exception]) -> object:
    """A JSON file's value; ``error`` (naming the file and what is wrong) if it cannot be read
    or is not JSON: the harness's files are written by people too."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: not JSON ({e})") from None


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
