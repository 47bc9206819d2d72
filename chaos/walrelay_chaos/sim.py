"""Deterministic-clock simulation of a whole walrelay cluster in one process, and its checkers.

Five real ``ReplicaNode``s (real ``ReplicaStore`` files, disk I/O inline so the run depends only on
the schedule), real ``PrimaryNode``s with epochs from a real ``EpochAllocator``, one archive shared
by every primary (a directory store that ``StoreDown``/``StoreUp`` make fail, ambiguously or not),
and clients, all over the in-memory transport with faults between primaries and replicas (``Link``:
partitions, one-way partitions, delays, resets, abandoned connections), primary wall clocks that
jump, and a disk model for power losses (``SimDisk``), on trio's ``MockClock``. ``run_schedule``
plays a schedule (``walrelay_chaos.schedule``) and judges it:

- every write acknowledged so far is in the serving primary's database with its value, nothing
  reported as failed is, and after a restore nothing the restore rolled back is (Jepsen's set
  checker, per branch of the object's history);
- each restore serves exactly its bookmark's database; an undo holds every write acknowledged on
  the branch it ended;
- at the end, after healing and a last takeover: every replica holds exactly the final primary's
  log, the archive verifies and restores every seq to the committed log's database, entry
  timestamps never go back along the committed history, and every bookmark taken restores page
  for page, by seq and by time.

A failed check raises ``verdicts.Violation`` (an AssertionError) with records that name the
property violated, the operations of the history involved, and what was expected and found.
(Moved here from the failover property test so that the same harness runs schedules from tests,
replay files and chaos campaigns.)
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import trio
import trio.testing

from walrelay.apps.kv import KeyValue
from walrelay.archive.dir_store import DirStore
from walrelay.archive.format import bookmark, parse_bookmark
from walrelay.archive.reader import ArchiveError, ArchiveReader, Listing
from walrelay.archive.s3_store import S3Store
from walrelay.archive.shipper import ArchiveShipper
from walrelay.archive.store import ObjectInfo, ObjectNotFoundError, ObjectStore, TransientStoreError
from walrelay.archive.verify import verify
from walrelay.client import Client
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.errors import WalrelayError
from walrelay.placement import EpochAllocator
from walrelay.primary_node import PrimaryNode
from walrelay.replay import Replayer, open_image
from walrelay.replica_node import ReplicaNode
from walrelay.transport import MemoryTransport
from walrelay.wire import ReplyStatus
from walrelay_chaos.fakes3 import FakeMinio
from walrelay_chaos.schedule import (
    AwaitWrites,
    Bookmark,
    Bridge,
    Check,
    ClockJump,
    CrashPrimary,
    CrashReplica,
    Cut,
    Delay,
    Heal,
    LoseDisk,
    MinorityFailover,
    NewPrimary,
    OneWay,
    Op,
    Orphan,
    PairFailover,
    Pause,
    PowerFail,
    Reset,
    Restore,
    RestoreCrash,
    Settle,
    SlowStore,
    SplitBrain,
    StoreDown,
    StoreUp,
    TornRename,
    Write,
    WriteStale,
)
from walrelay_chaos.simdisk import PowerCut, SimDisk
from walrelay_chaos.verdicts import (
    Judge,
    OpRef,
    Verdict,
    Violation,
    diff_text,
    plural,
    some,
    status_text,
)

N = 5
CHECKPOINT_FRAMES = 8  # the primaries' WAL checkpoint threshold here (production: 1000 frames)
# Retention on a compressed clock (issue 16): every point of the last 8 simulated seconds stays
# restorable, one more second is kept for restores running now, and each shipper retains every
# simulated second, so deletions race restores, failovers and stale primaries in most runs.
RETENTION_WINDOW_US = 8_000_000
RETENTION_GRACE_US = 1_000_000
RETAIN_EVERY_S = 0.25
OBJECT = "obj"
MAX_DISK_LOSS = 2

# Called with a short name for each notable thing that happened (a restore, a bookmark's time that
# names it): the tests turn these into hypothesis statistics; nothing else depends on them.
EVENT_HOOK: Callable[[str], None] = lambda name: None  # noqa: E731


def _event(name: str) -> None:
    EVENT_HOOK(name)


# -- the network ----------------------------------------------------------------------------------


class Link(trio.abc.Stream):
    """The dialing end of one connection (a primary's to a replica), through the network's faults.

    The network carries TCP, and this models what TCP allows: bytes of one connection arrive in
    order, late (``Delay``), held while one direction is dead (``OneWay``: TCP retransmits until
    it gets through), or not at all once the connection breaks (``Reset``, a partition): frames
    still in flight are then lost. Nothing is duplicated or reordered within a connection; that
    happens across connections only: an abandoned connection (``Orphan``) still delivers its
    in-flight frames to the replica, after the ones its successor carries.

    Frames (one ``send_all`` each: ``Channel.send``) leave at once when nothing is held or queued
    and the link has no delay (the common case costs no task); else they queue, and a pump task
    delivers them when due. Replies are read as they come and held here for the delay or the
    one-way fault."""

    def __init__(self, net: CutTransport, address: str, inner: trio.StapledStream[Any, Any]) -> None:
        self.net = net
        self.address = address
        self.inner = inner
        self.out: collections.deque[tuple[float, bytes]] = collections.deque()  # in flight: (due, frame)
        self.pumping = False
        self.broken = False  # the dialing end failed: reset, or abandoned
        self.closed = False  # the dialing end closed it (a FIN follows what is still in flight)
        self.late_until = 0.0  # abandoned: nothing in flight arrives before this
        self.recv_scope: trio.CancelScope | None = None
        self.dialer: str | None = None  # the primary that dialed (DialerView), for its own partitions

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.broken or self.closed:
            raise trio.BrokenResourceError(f"connection to {self.address} is broken")
        net = self.net
        quiet = not net.delay.get(self.address) and not net.held(self.address, to_replica=True)
        if quiet and not self.pumping:
            await self.inner.send_all(data)
            return
        await trio.lowlevel.checkpoint()
        self.out.append((trio.current_time() + net.delay.get(self.address, 0.0), bytes(data)))
        if not self.pumping:
            self.pumping = True
            net.nursery.start_soon(self._pump)

    async def _pump(self) -> None:
        try:
            while self.out:
                due = max(self.out[0][0], self.late_until)
                if trio.current_time() < due:
                    await trio.sleep_until(due)
                    continue
                if self.net.held(self.address, to_replica=True):
                    _event("a one-way fault held frames to a replica")
                    await self.net.changed.wait()
                    continue
                _, frame = self.out.popleft()
                if self.broken:
                    _event("an abandoned connection's frame arrived late")
                try:
                    await self.inner.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.out.clear()  # the replica's end is gone: the rest is lost
        finally:
            self.pumping = False
            if self.closed or self.broken:
                self.inner.send_stream.close()  # FIN, after the last frame in flight
            if self.closed:
                self.inner.receive_stream.close()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.broken:
            raise trio.BrokenResourceError(f"connection to {self.address} was reset")
        net = self.net
        with trio.CancelScope() as self.recv_scope:
            data = await self.inner.receive_some(max_bytes)
            due = trio.current_time() + net.delay.get(self.address, 0.0)
            while data and (trio.current_time() < due or net.held(self.address, to_replica=False)):
                if net.held(self.address, to_replica=False):
                    _event("a one-way fault held replies")
                with trio.move_on_at(due if trio.current_time() < due else math.inf):
                    await net.changed.wait()
        self.recv_scope = None
        if self.broken:  # whatever arrived meanwhile is lost with the connection
            raise trio.BrokenResourceError(f"connection to {self.address} was reset")
        return data

    async def aclose(self) -> None:
        """Closed by the dialing end: what is still in flight goes first (the pump closes then)."""
        self.closed = True
        if not self.pumping:
            self.inner.send_stream.close()
            self.inner.receive_stream.close()
        await trio.lowlevel.checkpoint()

    def _fail(self) -> None:
        self.broken = True
        if self.recv_scope is not None:
            self.recv_scope.cancel()

    def reset(self) -> None:
        """A TCP reset: both ends see the connection fail; nothing in flight arrives."""
        self._fail()
        self.out.clear()
        self.inner.send_stream.close()

    def abandon(self, late_s: float) -> None:
        """The dialing end gives up; what is in flight still arrives, ``late_s`` from now."""
        self._fail()
        self.late_until = trio.current_time() + late_s
        if not self.pumping:
            self.inner.send_stream.close()


class CutTransport:
    """The in-memory network, plus faults on the links between primaries and chosen replicas.

    A cut (partition) closes the connections to that replica (data already delivered is read,
    as with TCP; frames still held in flight are lost) and refuses new ones until healed; so does
    a one-way fault, for new connections. Delays, one-way faults, resets and abandoned connections
    act on each connection's ``Link``. Clients always reach primaries.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self.inner = MemoryTransport()
        self.nursery = nursery  # the pumps of frames in flight run here
        self.cut: set[str] = set()
        self.oneway: dict[str, bool] = {}  # address -> its dead direction is towards the replica
        self.delay: dict[str, float] = {}  # address -> seconds each frame takes
        self.changed = trio.Event()  # set (and replaced) whenever a fault starts or stops
        self.live: dict[str, list[Link]] = {}
        self.cut_from: dict[str, set[str]] = {}  # a primary's own partitions (a bridge): name -> addresses

    def view(self, dialer: str) -> DialerView:
        return DialerView(self, dialer)

    def partition_from(self, dialer: str, addresses: set[str]) -> None:
        """Cut ``dialer`` (one primary) off from these replicas; other primaries still reach them."""
        self.cut_from.setdefault(dialer, set()).update(addresses)
        for a in sorted(addresses):
            for link in [x for x in self.live.get(a, []) if x.dialer == dialer]:
                self.live[a].remove(link)
                link.out.clear()
                link.inner.send_stream.close()

    async def connect(self, address: str) -> trio.abc.Stream:
        if address in self.cut:
            raise OSError(f"partitioned from {address}")
        if address in self.oneway:
            raise OSError(f"connection to {address} timed out (one way is down)")
        inner = cast("trio.StapledStream[Any, Any]", await self.inner.connect(address))
        link = Link(self, address, inner)
        links = self.live.setdefault(address, [])
        links[:] = [x for x in links if not (x.closed or x.broken) or x.out]
        links.append(link)
        return link

    async def serve(self, address: str, handler: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.inner.serve(address, handler, task_status=task_status)

    def held(self, address: str, *, to_replica: bool) -> bool:
        return self.oneway.get(address) is to_replica

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def partition(self, addresses: set[str]) -> None:
        for a in sorted(addresses):  # a set of strings iterates in hash order, which varies per process
            self.cut.add(a)
            for link in self.live.pop(a, []):
                link.out.clear()
                link.inner.send_stream.close()

    def one_way(self, addresses: set[str], *, to_replica: bool) -> None:
        for a in sorted(addresses):
            self.oneway[a] = to_replica
        self._changed()

    def slow(self, addresses: set[str], seconds: float) -> None:
        for a in sorted(addresses):
            self.delay[a] = seconds
        self._changed()

    def reset(self, addresses: set[str]) -> None:
        for a in sorted(addresses):
            for link in self.live.pop(a, []):
                if link.out:
                    _event("a reset lost frames in flight")
                link.reset()

    def abandon(self, addresses: set[str], late_s: float) -> None:
        for a in sorted(addresses):
            for link in self.live.get(a, []):
                if not link.broken:
                    link.abandon(late_s)

    def faults(self) -> list[str]:
        """The network faults in force, by kind (for the history's stop events)."""
        cut = self.cut or any(self.cut_from.values())
        return [k for k, on in (("partition", cut), ("one-way", self.oneway), ("delay", self.delay)) if on]

    def heal(self) -> None:
        self.cut.clear()
        self.cut_from.clear()
        self.oneway.clear()
        self.delay.clear()
        self._changed()


class DialerView:
    """One primary's view of the network: every shared fault, plus partitions of its own, so that
    two primaries of a split brain can each reach a different majority (a bridge replica in both)."""

    def __init__(self, net: CutTransport, dialer: str) -> None:
        self.net = net
        self.dialer = dialer

    async def connect(self, address: str) -> trio.abc.Stream:
        if address in self.net.cut_from.get(self.dialer, ()):
            raise OSError(f"{self.dialer} is partitioned from {address}")
        link = cast(Link, await self.net.connect(address))
        if address in self.net.cut_from.get(self.dialer, ()):  # cut while the connection was being made
            await link.aclose()
            raise OSError(f"{self.dialer} is partitioned from {address}")
        link.dialer = self.dialer
        return link

    async def serve(self, address: str, handler: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.net.serve(address, handler, task_status=task_status)


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class FlakyStore:
    """An object store that can go down: a PUT then fails as a timeout would, half the time after
    storing the object (an ambiguous PUT), deterministically by count."""

    def __init__(self, inner: DirStore) -> None:
        self.inner = inner
        self.down = False
        self.ambiguous = True
        self.failed = 0
        self.deleted: dict[str, bytes] = {}  # what retention deleted (Unretained reads it)

    def describe(self) -> str:
        return self.inner.describe()

    def put(self, key: str, data: bytes) -> None:
        if self.down:
            self.failed += 1
            if self.ambiguous and self.failed % 2:
                self.inner.put(key, data)  # stored, but the answer is lost
                _event("ambiguous-put")
            raise TransientStoreError(f"put {key}: timeout (store down)")
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        _keep_deleted(self.deleted, self.inner, key)
        self.inner.delete(key)


class FlakyS3:
    """The archive through the real S3 store code (``S3Store``: retries, error mapping, prefixes,
    listings) over a deterministic fake of the ``minio`` client (walrelay_chaos.fakes3), with the
    same faults as ``FlakyStore``: down, and ambiguous PUTs."""

    def __init__(self, seed: int) -> None:
        self.client = FakeMinio()
        self.store = S3Store(
            "http://s3.sim.invalid/walrelay-sim/archive",
            client=self.client,
            sleep=lambda s: None,  # the backoff takes no simulated time; retries are counted
            rng=random.Random(seed),
            create_bucket=True,
            attempts=3,
        )
        self.deleted: dict[str, bytes] = {}  # what retention deleted (Unretained reads it)

    @property
    def down(self) -> bool:
        return self.client.down

    @down.setter
    def down(self, value: bool) -> None:
        self.client.down = value

    @property
    def ambiguous(self) -> bool:
        return self.client.ambiguous

    @ambiguous.setter
    def ambiguous(self, value: bool) -> None:
        self.client.ambiguous = value

    def describe(self) -> str:
        return self.store.describe()

    def put(self, key: str, data: bytes) -> None:
        before = self.client.stored_ambiguously
        try:
            self.store.put(key, data)
        finally:
            if self.client.stored_ambiguously > before:
                _event("ambiguous-put")

    def get(self, key: str) -> bytes:
        return self.store.get(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.store.list(prefix)

    def delete(self, key: str) -> None:
        _keep_deleted(self.deleted, self.store, key)
        self.store.delete(key)


def _keep_deleted(deleted: dict[str, bytes], store: ObjectStore, key: str) -> None:
    """Keep a copy of what is about to be deleted (retention is the only deleter): the checks
    judge the history the archive held, and what retention may take of it, from the copy."""
    _event("retention-deleted")
    with contextlib.suppress(ObjectNotFoundError):
        deleted.setdefault(key, store.get(key))


class Unretained:
    """The archive as it would be had retention deleted nothing: the live objects, and the copies
    of the deleted ones. The checks read the committed history from here (the expected image at
    every seq, every chain), and judge the live archive against it: below retention's horizon a
    restore there may be refused, never wrong; above it, it must be exact."""

    def __init__(self, live: FlakyStore | FlakyS3) -> None:
        self.live = live

    def describe(self) -> str:
        return f"{self.live.describe()} (with what retention deleted)"

    def put(self, key: str, data: bytes) -> None:
        raise AssertionError(f"the checks wrote {key} (they only read)")

    def get(self, key: str) -> bytes:
        try:
            return self.live.get(key)
        except ObjectNotFoundError:
            if key in self.live.deleted:
                return self.live.deleted[key]
            raise

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        live = self.live.list(prefix)
        seen = {i.key for i in live}
        gone = [ObjectInfo(k, len(d)) for k, d in self.live.deleted.items() if k.startswith(prefix) and k not in seen]
        return sorted(live + gone, key=lambda i: i.key)

    def delete(self, key: str) -> None:
        raise AssertionError(f"the checks deleted {key} (they only read)")


class ListedOnce(ArchiveReader):
    """A reader whose listing is taken once: for checks that run without yielding, while
    nothing can write to the archive."""

    def __init__(self, store: FlakyStore | FlakyS3 | Unretained, object_name: str) -> None:
        super().__init__(store, object_name)
        self._listing: Listing | None = None

    def listing(self) -> Listing:
        if self._listing is None:
            self._listing = super().listing()
        return self._listing


# -- the cluster ----------------------------------------------------------------------------------


@dataclass
class Outcomes:
    ok: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)  # includes writes still in flight
    history: str = ""  # run_schedule: a digest of what the run produced (the determinism self-test)
    simulated_s: float = 0.0  # run_schedule: how much mock-clock time the run took


@dataclass
class Point:
    """A bookmark and what its database held: exactly (``data``, ``image``, taken at the primary
    when the bookmark was), or, for an undo point, the outcomes of the branch it ended (``era``)."""

    bookmark: str
    data: dict[int, str] | None = None
    image: bytes | None = None
    era: tuple[dict[int, str], Outcomes] | None = None
    time_us: int | None = None  # the timestamp of its entry, when no other entry shares it


@dataclass
class RunningPrimary:
    node: PrimaryNode
    scope: trio.CancelScope
    address: str
    done: trio.Event  # its run() returned: no task of it runs any more
    crashed: bool = False

    async def crash(self) -> None:
        """Cancel it, wait until its tasks are gone (a cancelled task runs on to its next
        checkpoint), and only then close its files."""
        self.scope.cancel()
        self.crashed = True
        await self.done.wait()
        self.node.close()


class History:
    """What happened, as Jepsen records it: one event per invocation and per completion of each
    client operation, and one per fault (``process`` "nemesis"), in order, with the time (mock-clock
    seconds) each happened at. Format: docs/chaos-history.md; ``walrelay_chaos.report`` draws it.

    Processes are numbered like Jepsen's: an operation takes the lowest number not in use, so the
    timeline has one column per concurrent client, not one per write."""

    def __init__(self, events: list[dict[str, Any]] | None = None, *, now: Callable[[], float] | None = None) -> None:
        """``now``: seconds since the run started (default: the trio clock, mock in simulation)."""
        self.events: list[dict[str, Any]] = [] if events is None else events
        self.busy: set[int] = set()
        self.now = now or trio.current_time

    def _add(self, process: int | str, type_: str, f: str, value: Any, **extra: Any) -> None:
        event = {"index": len(self.events), "time": round(self.now(), 6), "process": process}
        event.update({"type": type_, "f": f, "value": value}, **extra)
        self.events.append(event)

    def invoke(self, f: str, value: Any, **extra: Any) -> int:
        process = next(i for i in range(len(self.busy) + 1) if i not in self.busy)
        self.busy.add(process)
        self._add(process, "invoke", f, value, **extra)
        return process

    def complete(self, process: int, type_: str, f: str, value: Any, error: str | None = None, **extra: Any) -> None:
        """``type_``: "ok", "fail" (did not happen) or "info" (may or may not have happened)."""
        self.busy.discard(process)
        self._add(process, type_, f, value, **({} if error is None else {"error": error}), **extra)

    def fault(self, f: str, value: Any = None, *, final: bool = False) -> None:
        """A fault: "start-X" opens an interval of fault X, "stop-X" closes it, any other name is
        an instant (a crash, a takeover). ``final``: the harness's own last takeover, after
        healing (not a fault the schedule asked for: coverage does not count it)."""
        self._add("nemesis", "info", f, value, **({"final": True} if final else {}))


class World(Judge):
    def __init__(
        self,
        root: str,
        nursery: trio.Nursery,
        quorum: int,
        history: History | None = None,
        disk: SimDisk | None = None,
        store: str = "dir",
        seed: int = 0,
        retention: bool = True,
    ) -> None:
        self.root = root
        self.retention = retention  # False: nothing is ever deleted (an archive to study whole)
        self.history = history or History()
        self.nursery = nursery
        self.quorum = quorum
        self.net = CutTransport(nursery)
        self.disk = disk or SimDisk()  # what a power loss keeps (run_schedule installs it)
        self.clock_us: list[int] = []  # each primary's wall clock, off the true one by this much
        # The disk model covers the replicas' data, the epoch allocator and the directory archive:
        # a power loss reverts what their last fsyncs (of files and of directories) did not cover.
        for d in [*(f"r{i}" for i in range(N)), "placement", "archive"]:
            self.disk.track(os.path.join(root, d))
        self.placement = EpochAllocator(os.path.join(root, "placement"))
        # Every primary ships here, stale ones too; StoreDown/StoreUp make its PUTs fail. Half the
        # seeds archive to a directory, half through the S3 store code over a fake minio client.
        self.archive: FlakyStore | FlakyS3 = (
            FlakyS3(seed) if store == "s3" else FlakyStore(DirStore(os.path.join(root, "archive")))
        )
        self.replicas: list[tuple[ReplicaNode, trio.CancelScope, trio.Event] | None] = [None] * N
        self.primaries: list[RunningPrimary] = []
        self.out = Outcomes()  # this branch's writes (a restore starts a new one)
        self.base: dict[int, str] = {}  # what the branch started with (the restored database)
        # The empty database before the first entry is a point too (a restore to seq 0).
        self.points: list[Point] = [Point(bookmark(1, 0), {}, b"")]
        self.restores = 0
        self.store_delay_s = 0.0  # SlowStore: how much longer each archive PUT takes
        self.next_key = 1
        self.in_flight = 0  # writes sent and not answered yet (AwaitWrites)
        self.losses = 0

    def close(self) -> None:
        for host in self.replicas:
            if host is not None:
                host[0].close()
        for p in self.primaries:
            if not p.crashed:
                p.crashed = True
                p.node.close()

    @property
    def addresses(self) -> list[str]:
        return [f"mem:r{i}" for i in range(N)]

    async def _hosted(
        self, scope: trio.CancelScope, done: trio.Event, run: Callable[..., Awaitable[None]], *, task_status: Any
    ) -> None:
        try:
            # A primary whose recovery gave up stops; the checks judge the outcome.
            with scope, contextlib.suppress(WalrelayError):
                await run(task_status=task_status)
        except* PowerCut:
            pass  # the host lost power in the middle of its own I/O (TornRename): it is down
        finally:
            done.set()

    async def _store_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The archive's I/O, inline like every disk call here; a PUT takes ``store_delay_s`` of
        simulated time first while the store is slow (SlowStore)."""
        if self.store_delay_s and getattr(fn, "__name__", "") == "put":
            _event("slow-put")
            await trio.sleep(self.store_delay_s)
        return fn(*args)

    async def start_replica(self, i: int) -> None:
        node = ReplicaNode(
            i, os.path.join(self.root, f"r{i}"), self.net, self.placement, run_io=_inline, compact_min_bytes=0
        )
        scope, done = trio.CancelScope(), trio.Event()
        await self.nursery.start(self._hosted, scope, done, functools.partial(node.serve, self.addresses[i]))
        self.replicas[i] = (node, scope, done)

    async def crash_replica(self, i: int) -> None:
        host = self.replicas[i]
        if host is not None:
            host[1].cancel()
            await host[2].wait()  # its address is free again
            host[0].close()
            self.replicas[i] = None

    def wall(self, n: int) -> int:
        """Primary ``n``'s wall clock: the true one (``wall_us``), off by what ClockJumps made it."""
        return wall_us() + self.clock_us[n]

    async def new_primary(self, restore_to: str | None = None) -> None:
        n = len(self.primaries)
        self.clock_us.append(0)
        clock = functools.partial(self.wall, n)
        node = PrimaryNode(
            object_name=OBJECT,
            app=KeyValue(),
            replica_addresses=self.addresses,
            data_dir=os.path.join(self.root, f"p{n}"),
            transport=self.net.view(f"p{n}"),
            placement=self.placement,
            quorum=self.quorum,
            deadline_s=10**6,  # no resets by time: the schedule decides what happens
            archive=ArchiveShipper(
                self.archive,
                OBJECT,
                segment_bytes=6000,
                segment_age_s=2.0,
                run_io=self._store_io,
                wall_us=clock,
                retention_window_us=RETENTION_WINDOW_US if self.retention else None,
                retention_grace_us=RETENTION_GRACE_US,
                retain_every_s=RETAIN_EVERY_S,
            ),
            restore_to=restore_to,
            wall_us=clock,
            # A WAL this small is checkpointed every few writes, so SQLite restarts it (new salts)
            # often: the capture's restart path runs in every run, not only in 1000-frame ones.
            checkpoint_frames=CHECKPOINT_FRAMES,
        )
        scope, done = trio.CancelScope(), trio.Event()
        address = await self.nursery.start(self._hosted, scope, done, functools.partial(node.run, f"mem:p{n}"))
        self.primaries.append(RunningPrimary(node, scope, address, done))

    async def crash_primary(self) -> None:
        if self.primaries and not self.primaries[-1].crashed:
            await self.primaries[-1].crash()

    def write(self, p: RunningPrimary, count: int) -> None:
        for _ in range(count):
            k = self.next_key
            self.next_key += 1
            self.out.unknown.add(k)
            self.in_flight += 1
            self.nursery.start_soon(self._put, p.address, k, self.out)

    async def _put(self, address: str, k: int, out: Outcomes) -> None:
        """``out``: the outcomes of the branch the write was made on (a late reply stays there)."""
        try:
            await self._put_once(address, k, out)
        finally:
            self.in_flight -= 1

    async def _put_once(self, address: str, k: int, out: Outcomes) -> None:
        process = self.history.invoke("write", k, node=address.removeprefix("mem:"))
        try:
            async with Client.connect(self.net, address) as client:
                reply = await client.call("put", k, f"v{k}")
        except (ConnectionError, OSError) as e:
            self.history.complete(process, "info", "write", k, f"connection: {e}")
            return
        if reply.status is ReplyStatus.OK:
            out.unknown.discard(k)
            out.ok.add(k)
            self.history.complete(process, "ok", "write", k)
        elif reply.status is ReplyStatus.ERROR:
            out.unknown.discard(k)
            out.failed.add(k)
            self.history.complete(process, "fail", "write", k, str(reply.body))
        else:
            self.history.complete(process, "info", "write", k, str(reply.body))

    async def serving(self, p: RunningPrimary, within_s: float) -> bool:
        with trio.move_on_after(within_s):
            while p.node.phase() != "serving":
                if p.node.phase() in ("reset", "gave up") or p.crashed:
                    return False
                await trio.sleep(0.05)
            return True
        return False

    async def check(self, p: RunningPrimary, context: str, *, must_answer: bool = False) -> None:
        """Every write acknowledged so far is in p's database; nothing never written or failed is.

        A read waits at the output gate until everything before it is durable, which may be never
        while partitions last (the mock clock would tick through the whole deadline): within 60
        simulated seconds, or no verdict; the final check (all healed) must answer.
        """
        acked = set(self.out.ok)  # before reading: a write acknowledged meanwhile may be read or not
        read_at = len(self.history.events)
        process = self.history.invoke("read", None, node=p.address.removeprefix("mem:"))
        found = await self.read_all(p, 60)
        self.history.complete(process, "info" if found is None else "ok", "read", None if found is None else len(found))
        who = name(p)
        final = context == "after the final takeover"
        if found is None:
            if must_answer:
                st = p.node.status()
                self.fail(
                    "reads-unanswered",
                    f"reads at {'the final primary ' if final else ''}{who} (epoch {p.node.epoch}) got no answer "
                    f"within 60 s: {status_text(st)}",
                    ops=[self.ops().at(read_at)],
                    expected="an answer",
                    found=self.quiet(st),
                    where=context,
                )
            return
        place = f"the final primary {who}'s database" if final else f"{who}'s database at a {context}"
        self.judge(found, self.base, self.out, context, place, acked=acked, read_at=read_at)

    async def read_all(self, p: RunningPrimary, within_s: float) -> dict[int, str] | None:
        """Every key's value at p (None: no answer in time, or p was fenced meanwhile)."""
        found: dict[int, str] = {}
        with trio.move_on_after(within_s):
            async with Client.connect(self.net, p.address) as client:
                for k in range(1, self.next_key):
                    reply = await client.call("get", k)
                    if reply.status is not ReplyStatus.OK:
                        return None  # p was fenced meanwhile (a newer primary exists): nothing to judge here
                    if reply.body is not None:
                        found[k] = reply.body
            return found
        return None

    def judge(
        self,
        found: dict[int, str],
        base: dict[int, str],
        out: Outcomes,
        context: str,
        place: str,
        *,
        acked: set[int] | None = None,
        read_at: int | None = None,
    ) -> None:
        """The branch's database: what it started with, every write acknowledged on it (``acked``:
        as known before the reads), nothing reported as failed, and (after a restore) nothing that
        the restore rolled back (every write of the branch is in ``out.ok | out.unknown``).
        ``place``: whose database it is, for the verdict; ``read_at``: the read's invoke event."""
        acked = out.ok if acked is None else acked
        want = {k: base.get(k, f"v{k}") for k in base.keys() | acked}
        gone = sorted(k for k in want if k not in found)
        wrong = sorted(k for k, v in found.items() if v != want.get(k, f"v{k}"))
        failed = sorted(set(found) & out.failed)
        stray = sorted(set(found) - base.keys() - out.ok - out.unknown) if self.restores else []
        if not (gone or wrong or failed or stray):
            return
        ops = self.ops()
        read = ops.at(read_at)
        restore = ops.last("restore") if self.restores else None
        if gone:
            lost = [k for k in gone if k not in base]
            keys = lost or gone
            text, refs = ops.writes_text(keys)
            verb = "is" if len(keys) == 1 else "are"
            if lost:
                what = f"acknowledged writes missing from {place}: {text}"
            else:
                what = f"{plural(len(keys), 'write')} {text}, brought back by the last restore, {verb} missing"
                what += f" from {place}"
            self.fail(
                "acked-write-lost" if lost else "restored-write-lost",
                what,
                ops=[*refs, read] if lost else [*refs, restore, read],
                expected={str(k): want[k] for k in keys},
                found={str(k): None for k in keys},
                where=context,
            )
        if wrong:
            k = wrong[0]
            w = ops.write(k)
            by = w.describe() if w is not None else f"write k={k}"
            self.fail(
                "wrong-value",
                f"{place} holds {found[k]!r} at k={k}, not the {want.get(k, f'v{k}')!r} that {by} wrote"
                + (f" ({len(wrong) - 1} more keys too)" if len(wrong) > 1 else ""),
                ops=[w, read],
                expected={str(k): want.get(k, f"v{k}") for k in wrong},
                found={str(k): found[k] for k in wrong},
                where=context,
            )
        if failed:
            text, refs = ops.writes_text(failed)
            one = len(failed) == 1
            self.fail(
                "failed-write-present",
                f"{plural(len(failed), 'write')} {text} {'was' if one else 'were'} answered ERROR, yet {place} "
                f"holds {'it' if one else 'them'}",
                ops=[*refs, read],
                expected={str(k): None for k in failed},
                found={str(k): found[k] for k in failed},
                where=context,
            )
        text, refs = ops.writes_text(stray)
        one = len(stray) == 1
        self.fail(
            "rolled-back-write-present",
            f"{plural(len(stray), 'write')} {text} {'was' if one else 'were'} rolled back by the last restore"
            + (f" ({restore.what()})" if restore is not None else "")
            + f", yet {place} holds {'it' if one else 'them'}",
            ops=[*refs, restore, read],
            expected={str(k): None for k in stray},
            found={str(k): found[k] for k in stray},
            where=context,
        )

    def quiet(self, st: dict[str, Any]) -> dict[str, Any]:
        """A primary's status for a record (no scratch paths)."""
        return cast("dict[str, Any]", json.loads(json.dumps(_quiet_status(st)).replace(self.root, "RUN")))

    async def step(self, op: Op) -> None:
        self.record_fault(op)
        current = self.primaries[-1]
        if isinstance(op, Write):
            self.write(current, op.count)
        elif isinstance(op, WriteStale):
            stale = [p for p in self.primaries[:-1] if not p.crashed]
            if stale:
                self.write(stale[-1], op.count)
        elif isinstance(op, Settle):
            await trio.sleep(op.ms / 1000)
        elif isinstance(op, AwaitWrites):
            with trio.move_on_after(op.ms / 1000):
                while self.in_flight:  # noqa: ASYNC110 - the writes are other tasks' calls
                    await trio.sleep(0.001)
        elif isinstance(op, Cut):
            self.net.partition({a for i, a in enumerate(self.addresses) if op.mask >> i & 1})
        elif isinstance(op, Heal):
            self.net.heal()
        elif isinstance(op, CrashPrimary):
            await self.crash_primary()
        elif isinstance(op, NewPrimary):
            await self.new_primary()
        elif isinstance(op, CrashReplica):
            await self.crash_replica(op.replica)
            await self.start_replica(op.replica)
        elif isinstance(op, LoseDisk):
            if self.losses < MAX_DISK_LOSS:
                self.losses += 1
                await self.crash_replica(op.replica)
                shutil.rmtree(os.path.join(self.root, f"r{op.replica}"), ignore_errors=True)
                self.disk.track(os.path.join(self.root, f"r{op.replica}"))  # a new, empty disk
                await self.start_replica(op.replica)
        elif isinstance(op, StoreDown):
            self.archive.down, self.archive.ambiguous = True, op.ambiguous
        elif isinstance(op, StoreUp):
            self.archive.down, self.store_delay_s = False, 0.0
        elif isinstance(op, SlowStore):
            self.store_delay_s = op.ms / 1000
        elif isinstance(op, Check) and not current.crashed and await self.serving(current, 30):
            await self.check(current, "check")
        elif isinstance(op, MinorityFailover | PairFailover | SplitBrain):
            for sub in op.expand():
                await self.step(sub)
        elif isinstance(op, Bookmark):
            await self.bookmark(current)
        elif isinstance(op, Restore) and self.points:
            await self.restore(self.points[op.pick % len(self.points)], by_request=op.by_request)
        elif isinstance(op, RestoreCrash) and self.points:
            target = self.points[op.pick % len(self.points)]
            await self.restore(target, by_request=op.by_request, crash="late" if op.late else "early")
        elif isinstance(op, OneWay):
            self.net.one_way(self.masked(op.mask), to_replica=op.to_replica)
        elif isinstance(op, Delay):
            self.net.slow(self.masked(op.mask), op.ms / 1000)
        elif isinstance(op, Reset):
            self.net.reset(self.masked(op.mask))
        elif isinstance(op, Orphan):
            self.net.abandon(self.masked(op.mask), op.ms / 1000)
        elif isinstance(op, ClockJump):
            self.clock_us[-1] += -op.ms * 1000 if op.back else op.ms * 1000
        elif isinstance(op, PowerFail):
            await self.power_fail(op.mask, primary=op.primary)
        elif isinstance(op, TornRename):
            await self.torn_rename(op.replica % N)
        elif isinstance(op, Bridge):
            await self.bridge(op)
        elif isinstance(op, Pause):
            self.history.fault("skipped", "Pause (real mode only: a task cannot be stopped)")

    def masked(self, mask: int) -> set[str]:
        return {a for i, a in enumerate(self.addresses) if mask >> i & 1}

    async def power_fail(self, mask: int, *, primary: bool) -> None:
        """The replicas in ``mask`` (and the current primary) lose power together: every one is
        down before any loses its unsynced writes and restarts."""
        if primary:
            await self.crash_primary()
        down = [i for i in range(N) if mask >> i & 1]
        for i in down:
            await self.crash_replica(i)
        reverted = self.disk.reverted
        if primary:  # the primary's host: the epoch allocator and the directory archive with it
            for d in ("placement", "archive"):
                self.disk.lose_unsynced(os.path.join(self.root, d))
        for i in down:
            if self.disk.lose_unsynced(os.path.join(self.root, f"r{i}")):
                _event("a power loss lost unsynced writes")
        if self.disk.reverted > reverted:
            _event("a power loss reverted a directory entry")
        for i in down:
            await self.start_replica(i)

    async def torn_rename(self, i: int) -> None:
        """Replica ``i`` loses power between a rename and its directory's fsync (TornRename)."""
        host = self.replicas[i]
        if host is None:
            return
        root = os.path.join(self.root, f"r{i}")
        self.disk.arm(root)
        with trio.move_on_after(5):
            await host[2].wait()  # its next rename's directory fsync raises PowerCut
        self.disk.arm(None)
        if self.disk.cut is None and not host[2].is_set():
            self.history.fault("torn-rename", f"r{i} renamed nothing within 5 s: no power cut")
            return
        self.history.fault("power-fail", [f"r{i}", f"between a rename and the fsync of {self.disk.cut}"])
        await self.crash_replica(i)
        reverted = self.disk.reverted
        self.disk.lose_unsynced(root)
        if self.disk.reverted > reverted:
            _event("power-loss-reverted-rename")
        await self.start_replica(i)

    def heal_all(self) -> None:
        self.record_fault(Heal())
        self.record_fault(StoreUp())
        self.net.heal()
        self.archive.down, self.store_delay_s = False, 0.0

    def names(self, mask: int) -> list[str]:
        return [a.removeprefix("mem:") for i, a in enumerate(self.addresses) if mask >> i & 1]

    def record_fault(self, op: Op) -> None:
        """The history's nemesis events for a fault operation (before it acts)."""
        h = self.history
        if isinstance(op, Cut):  # partitions add up until Heal: the value is every replica cut off now
            cut = {a.removeprefix("mem:") for a in self.net.cut} | {f"r{i}" for i in range(N) if op.mask >> i & 1}
            h.fault("start-partition", sorted(cut))
        elif isinstance(op, Heal):
            for kind in self.net.faults():
                h.fault(f"stop-{kind}")
        elif isinstance(op, OneWay):
            dead = "to the replicas" if op.to_replica else "from the replicas"
            h.fault("start-one-way", [*self.names(op.mask), dead])
        elif isinstance(op, Delay):
            h.fault("start-delay", [*self.names(op.mask), f"{op.ms} ms"])
        elif isinstance(op, Reset):
            h.fault("reset", self.names(op.mask))
        elif isinstance(op, Orphan):
            h.fault("orphan", [*self.names(op.mask), f"in-flight frames {op.ms} ms late"])
        elif isinstance(op, ClockJump) and self.primaries:
            who = self.primaries[-1].address.removeprefix("mem:")
            h.fault("clock-jump", f"{who} {'-' if op.back else '+'}{op.ms} ms")
        elif isinstance(op, PowerFail):
            crashed = self.primaries[-1].crashed if self.primaries else True
            whom = [self.primaries[-1].address.removeprefix("mem:")] if op.primary and not crashed else []
            h.fault("power-fail", whom + self.names(op.mask))
        elif isinstance(op, CrashPrimary) and self.primaries and not self.primaries[-1].crashed:
            h.fault("crash-primary", self.primaries[-1].address.removeprefix("mem:"))
        elif isinstance(op, NewPrimary):
            h.fault("new-primary", f"p{len(self.primaries)}")
        elif isinstance(op, CrashReplica):
            h.fault("crash-replica", f"r{op.replica}")
        elif isinstance(op, LoseDisk) and self.losses < MAX_DISK_LOSS:
            h.fault("lose-disk", f"r{op.replica}")
        elif isinstance(op, StoreDown) and not self.archive.down:
            h.fault("start-store-down", "ambiguous PUTs" if op.ambiguous else "PUTs fail")
        elif isinstance(op, StoreUp) and self.archive.down:
            h.fault("stop-store-down")
        elif isinstance(op, StoreUp) and self.store_delay_s:
            h.fault("stop-slow-store")
        elif isinstance(op, SlowStore):
            h.fault("start-slow-store", f"PUTs {op.ms} ms slower")

    async def bookmark(self, p: RunningPrimary) -> None:
        """Take (seq, database) at p in one step (no await between: no other event runs), then ask
        p for ``__bookmark__``: kept if it names that seq (no write came between), trusting the op
        that the point is durable (its reply waits for that), as a client must."""
        node, state, rt = p.node, p.node.state, p.node.runtime
        if p.crashed or node.phase() != "serving" or state is None or rt is None:
            return
        seq = state.last_seq
        data = {int(k): str(v) for k, v in rt.capture.conn.execute("SELECT k, v FROM kv")}
        point = Point(bookmark(node.branch, seq), data, rt.image())
        entry = state.log.get(seq)
        by_time = None
        invoked_at = len(self.history.events)
        process = self.history.invoke("bookmark", None, node=p.address.removeprefix("mem:"))
        answer: tuple[str, Any, str | None] = ("info", None, "no answer within 30 s")
        try:
            with trio.move_on_after(30):
                async with Client.connect(self.net, p.address) as client:
                    reply = await client.call("__bookmark__")
                    if reply.status is not ReplyStatus.OK or reply.body["bookmark"] != point.bookmark:
                        answer = ("info", None, f"{reply.status.name}: {reply.body}")
                        return
                    answer = ("ok", point.bookmark, None)
                    self.points.append(point)
                    if entry is not None:
                        by_time = await client.call("__bookmark_for_time__", entry.timestamp_us)
        except (ConnectionError, OSError) as e:
            answer = ("info", None, f"connection: {e}")
            return
        finally:
            # Completed here, once: a write started meanwhile may reuse a freed process number.
            self.history.complete(process, answer[0], "bookmark", answer[1], answer[2])
        if entry is None or by_time is None or by_time.status is not ReplyStatus.OK:
            return
        # The primary's answer: this entry, or a later one with the very same timestamp (writes in
        # the same microsecond; timestamps never go back, NextTs).
        b2, seq2 = parse_bookmark(by_time.body["bookmark"])
        same_time = all(
            state.log[x].timestamp_us == entry.timestamp_us for x in range(seq + 1, seq2 + 1) if x in state.log
        )
        if not (b2 == node.branch and seq2 >= seq and same_time):
            self.fail(
                "bookmark-time-wrong",
                f"__bookmark_for_time__ of bookmark {point.bookmark}'s time ({entry.timestamp_us} us) answered "
                f"{by_time.body['bookmark']}, not that bookmark or a later one of the same time",
                ops=[self.ops().at(invoked_at)],
                expected=point.bookmark,
                found=by_time.body["bookmark"],
                where="bookmark",
            )
        if seq2 == seq:
            point.time_us = entry.timestamp_us
            _event("a bookmark's time names it")

    async def restore(self, target: Point, *, by_request: bool, crash: str | None = None) -> None:
        """Heal, restore, and judge the restored database against the bookmark's. ``crash``: the
        restoring primary crashes half way ("early": its first epoch is archiving the old branch;
        "late": it took its second epoch), and the next one must finish the restore."""
        self.heal_all()
        current = self.primaries[-1]
        # A branch made by this restore is numbered by an epoch taken during it (new_branch).
        epoch_before = max(p.node.epoch for p in self.primaries)
        undo_asked = None
        node = current.address.removeprefix("mem:")
        restore_at = len(self.history.events)
        process = self.history.invoke("restore", target.bookmark, by_request=by_request, node=node)

        def involved() -> list[OpRef | None]:
            """The restore and the bookmark it restores to (for a verdict)."""
            ops = self.ops()
            return [ops.at(restore_at), ops.bookmark(target.bookmark)]

        archiver = current.node.archive.archiver if current.node.archive is not None else None
        b, seq = parse_bookmark(target.bookmark)
        if (
            archiver is not None
            and not current.crashed
            and b == current.node.branch
            and seq > archiver.archived_through
        ):
            _event("restore-inside-unuploaded-window")
        deleted_before = len(self.archive.deleted)
        if by_request:
            if current.crashed or not await self.serving(current, 60):
                self.history.complete(process, "fail", "restore", target.bookmark, "no primary serving to ask")
                return  # nobody to ask: nothing asked
            async with Client.connect(self.net, current.address) as client:
                reply = await client.call("__restore__", target.bookmark)
            if reply.status is ReplyStatus.ERROR and reply.body.get("type") == "UnknownBookmark":
                self.restore_refused(target, reply.body["message"], involved)  # retention took it: nothing changed
                self.history.complete(process, "fail", "restore", target.bookmark, reply.body["message"])
                return
            if reply.status is not ReplyStatus.OK:
                self.fail(
                    "restore-failed",
                    f"{node} refused the restore request for {target.bookmark}, a bookmark of this run: "
                    f"{reply.status.name} {_message(reply.body)}",
                    ops=involved(),
                    expected="OK",
                    found=reply.body,
                    where="restore",
                )
            undo_asked = reply.body["undo_bookmark"]
            await self.restart_primary()
        else:
            await self.restart_primary(restore_to=target.bookmark)
        if crash is not None and await self.crash_mid_restore(self.primaries[-1], late=crash == "late"):
            self.history.fault("new-primary", f"p{len(self.primaries)} (finishes the restore)")
            await self.new_primary(restore_to=None if by_request else target.bookmark)
        p = self.primaries[-1]
        serving = await self.serving(p, 120)
        if len(self.archive.deleted) > deleted_before:
            _event("retention-deleted-during-restore")
        why = p.node.restore_error or p.node.gave_up or ""
        if f"restore to {target.bookmark} failed" in why:
            # Retention took the target while the restore ran (longer than the grace): refused, and
            # the object serves as it was; asked with --restore-to, that process exits instead.
            self.restore_refused(target, why, involved)
            self.history.complete(process, "fail", "restore", target.bookmark, why)
            if not serving:
                self.history.fault("new-primary", f"p{len(self.primaries)} (the restore was refused)")
                await self.new_primary()
                p = self.primaries[-1]
                if not await self.serving(p, 120):
                    st = p.node.status()
                    self.fail(
                        "never-served",
                        f"after the restore to {target.bookmark} was refused, {name(p)} never served within 120 s: "
                        + status_text(st),
                        ops=involved(),
                        expected="serving",
                        found=self.quiet(st),
                        where="restore",
                    )
            return
        if not serving:
            st = p.node.status()
            self.fail(
                "never-served",
                f"the restore to {target.bookmark} never served: {name(p)} did not serve within 120 s; "
                + status_text(st),
                ops=involved(),
                expected="serving",
                found=self.quiet(st),
                where="restore",
            )
        done = p.node.restored
        record = p.node.meta.record if p.node.meta else None
        if done is None and crash is not None and record is not None and record.branch > epoch_before:
            # The crashed primary made the branch (its marker was durable): this one serves it.
            if record.restored_to != target.bookmark:
                self.wrong_restore(p, target.bookmark, record.restored_to, involved())
            done = {"restored_to": record.restored_to, "undo_bookmark": record.undo_bookmark}
        if done is None and not by_request and p.node.meta and p.node.meta.record:
            # --restore-to a bookmark the branch was already made from: not restored again.
            if p.node.meta.record.restored_to != target.bookmark:
                self.wrong_restore(p, target.bookmark, p.node.meta.record.restored_to, involved())
            self.history.complete(process, "ok", "restore", target.bookmark, note="already this branch")
            return
        if done is None or done["restored_to"] != target.bookmark:
            self.wrong_restore(p, target.bookmark, None if done is None else done["restored_to"], involved())
        if undo_asked not in (None, done["undo_bookmark"]):
            self.fail(
                "restore-failed",
                f"the restore request for {target.bookmark} answered undo bookmark {undo_asked}, but {name(p)} "
                f"made undo point {done['undo_bookmark']}",
                ops=involved(),
                expected=undo_asked,
                found=done["undo_bookmark"],
                where="restore",
            )
        found = await self.read_all(p, 60)
        if found is None:
            self.fail(
                "reads-unanswered",
                f"reads at {name(p)} got no answer within 60 s after the restore to {target.bookmark}",
                ops=involved(),
                expected="an answer",
                found=self.quiet(p.node.status()),
                where="restore",
            )
        if target.data is not None:
            if found != target.data:
                ops = self.ops()
                diff, refs = diff_text(found, target.data, ops)
                mark = ops.bookmark(target.bookmark)
                self.fail(
                    "pitr-inexact",
                    f"the restore to {target.bookmark}"
                    + (f" (bookmark {mark.when()})" if mark is not None else "")
                    + f" is not the bookmark's database: {name(p)}'s {diff}",
                    ops=[*involved(), *refs],
                    expected={str(k): v for k, v in sorted(target.data.items())},
                    found={str(k): v for k, v in sorted(found.items())},
                    where="restore",
                )
        else:
            assert target.era is not None
            self.judge(
                found,
                *target.era,
                f"undo to {target.bookmark}",
                f"{name(p)}'s database after the undo to {target.bookmark}",
                read_at=restore_at,
            )
            target.data = found  # the same bookmark must restore the same database next time
        self.history.complete(process, "ok", "restore", target.bookmark, undo_bookmark=done["undo_bookmark"])
        self.points.append(Point(done["undo_bookmark"], era=(self.base, self.out)))
        self.base, self.out = dict(found), Outcomes()
        self.restores += 1
        _event("restored" + (" again (a restore of a restore)" if self.restores > 1 else ""))

    def wrong_restore(self, p: RunningPrimary, want: str, got: str | None, ops: list[OpRef | None]) -> NoReturn:
        self.fail(
            "restore-failed",
            f"asked to restore to {want}, {name(p)} serves "
            + ("no restored branch" if got is None else f"a branch restored to {got}"),
            ops=ops,
            expected=want,
            found=got,
            where="restore",
        )

    def restore_refused(self, target: Point, why: str, ops: Callable[[], Sequence[OpRef | None]] = lambda: ()) -> None:
        """A restore to ``target`` was refused: right only if retention may have taken the point."""
        b, seq = parse_bookmark(target.bookmark)
        full = ListedOnce(Unretained(self.archive), OBJECT)
        why = why.replace(self.archive.describe(), "the archive")  # no scratch path: replays say the same
        self.may_be_retired(full, b, seq, self.horizon_us(), ArchiveError(why), ops=ops)
        _event("a restore outside the window was refused")

    async def bridge(self, op: Bridge) -> None:
        """A split brain over a bridge replica ``b``: the running primary keeps reaching replicas
        b, b+1, b+2 only; a new primary takes over reaching b, b+3, b+4 only. Each side has three
        replicas, the bridge in both: the new primary's promise at the bridge must fence the old
        one, which can then reach only two acks (b+1, b+2). Both get writes."""
        old = self.primaries[-1]
        if old.crashed:
            return
        b = op.bridge % N
        old_side = {self.addresses[(b + k) % N] for k in (1, 2)}
        new_side = {self.addresses[(b + k) % N] for k in (3, 4)}
        new = f"p{len(self.primaries)}"
        self.history.fault(
            "start-partition",
            [f"{old.address.removeprefix('mem:')} -/- {sorted(a.removeprefix('mem:') for a in new_side)}",
             f"{new} -/- {sorted(a.removeprefix('mem:') for a in old_side)}", f"bridge r{b}"],
        )  # fmt: skip
        self.net.partition_from(old.address.removeprefix("mem:"), new_side)
        self.net.partition_from(new, old_side)  # before it dials anything
        self.history.fault("new-primary", f"{new} (the other side of the bridge)")
        await self.new_primary()
        await trio.sleep(0.3)
        self.write(self.primaries[-1], 1)
        self.write(old, op.stale_writes)
        await trio.sleep(0.3)
        _event("a bridge split the primaries")

    async def restart_primary(self, restore_to: str | None = None) -> None:
        """Crash the current primary and start the next (the restart that performs a restore)."""
        if self.primaries and not self.primaries[-1].crashed:
            self.history.fault("crash-primary", self.primaries[-1].address.removeprefix("mem:"))
        self.history.fault(
            "new-primary", f"p{len(self.primaries)}" + (f" --restore-to {restore_to}" if restore_to else "")
        )
        await self.crash_primary()
        await self.new_primary(restore_to=restore_to)

    async def crash_mid_restore(self, p: RunningPrimary, *, late: bool) -> bool:
        """Crash p half way through its restore (see ``restore``); False if it never began one.

        Polling would miss the moment (messages take no simulated time), so p's own
        ``_begin_restore`` is wrapped, on this node only. Early: p dies at the restore's first
        checkpoint: while it waits for the old branch to be archived, or, if that is done,
        after it took the second epoch and wrote the fork snapshot, before its links restart.
        Late: just after the links restarted under the second epoch."""
        node = p.node
        begin = node._begin_restore
        hit: list[str] = []

        async def begin_then_crash(target: str) -> None:
            if not late:
                hit.append("at its first checkpoint")
                p.scope.cancel()
            await begin(target)
            if late and node.restore_plan is not None:
                hit.append("after its second epoch")
                p.scope.cancel()

        setattr(node, "_begin_restore", begin_then_crash)  # noqa: B010 - this instance only
        with trio.move_on_after(120):
            while not hit and not p.crashed and node.gave_up is None and node.phase() != "serving":  # noqa: ASYNC110
                await trio.sleep(0.01)
        if not hit:
            return False
        self.history.fault("crash-primary", f"{p.address.removeprefix('mem:')} mid-restore, {hit[0]}")
        await p.crash()
        _event(f"crashed mid-restore, {hit[0]}")
        return True

    async def finish(self) -> None:
        """Heal everything, crash every primary, and let a last one take over: it must serve,
        hold every acknowledged write, and bring every replica to exactly its log."""
        if any(p.node.runtime is not None and p.node.runtime.capture.wal_restarts for p in self.primaries):
            _event("checkpoint-restart")
        self.heal_all()
        current = self.primaries[-1]
        if not current.crashed and current.node.phase() == "serving":
            await self.repaired(current, "the serving primary", "once healed")
        for p in self.primaries:
            if not p.crashed:
                self.history.fault("crash-primary", p.address.removeprefix("mem:"), final=True)
                await p.crash()
        self.history.fault("new-primary", f"p{len(self.primaries)} (the final takeover)", final=True)
        await self.new_primary()
        final = self.primaries[-1]
        served = await self.serving(final, 120)
        for p in self.primaries:
            # Giving up is right when fenced, or when the store is down; an archive that
            # disagrees with the replicas' committed log is a broken invariant (ArchiveIsCommittedPrefix).
            why = p.node.gave_up or ""
            if any(s in why for s in INCONSISTENT_ARCHIVE):
                self.fail(
                    "archive-inconsistent",
                    f"{name(p)}'s recovery found the archive is not the committed log's prefix"
                    + (" and the final primary never served" if p is final and not served else "")
                    + f": {why}",
                    ops=[self.ops().nemesis("new-primary", contains="the final takeover" if p is final else name(p))],
                    expected="the archive is a prefix of the replicas' committed log",
                    found=why,
                    where="after the final takeover",
                )
        if not served:
            st = final.node.status()
            self.fail(
                "never-served",
                f"the final primary {name(final)} never served within 120 s of the final takeover, every fault "
                f"healed: {status_text(st)}",
                ops=[self.ops().nemesis("new-primary", contains="the final takeover")],
                expected="serving",
                found=self.quiet(st),
                where="after the final takeover",
            )
        await self.check(final, "after the final takeover", must_answer=True)
        await self.repaired(final, "the final primary", "after the final takeover")
        await self.archive_is_exact(final)
        for p in self.primaries:  # coverage: why segments were cut (walrelay_chaos.coverage)
            archiver = p.node.archive.archiver if p.node.archive is not None else None
            for reason in ("size", "age"):
                if archiver is not None and archiver.cuts[reason]:
                    _event(f"segment-cut-by-{reason}")

    async def archive_is_exact(self, p: RunningPrimary) -> None:
        """Every primary shipped to one archive, across failovers and with stale primaries still
        shipping, and retention deleted from it meanwhile: it verifies, reaches the final primary's
        durable end, and restores at every seq to exactly the database the committed log gives
        there, except that a point retention may have taken (``retired``) may be refused."""
        state, shipper = p.node.state, p.node.archive
        assert state is not None and shipper is not None
        where = "archive, at the end"
        with trio.move_on_after(120):
            while shipper.archiver is None or shipper.archiver.archived_through < state.durable_seq:  # noqa: ASYNC110
                await trio.sleep(0.5)
        reached = -1 if shipper.archiver is None else shipper.archiver.archived_through
        if reached < state.durable_seq:
            self.fail(
                "archive-behind",
                f"the archive reaches seq {reached} only, 120 s after the final primary {name(p)} made seq "
                f"{state.durable_seq} durable"
                + ("" if shipper.archiver is not None else " (its archiver never started)"),
                expected=state.durable_seq,
                found=reached,
                where=where,
            )
        # Nothing runs during these checks (no await): the archive cannot change, so its listing
        # is read once, not once per restore (which made this check quadratic in the log).
        reader = ListedOnce(self.archive, OBJECT)
        report = verify(reader)
        if not report.ok:
            more = len(report.problems) - 1
            self.fail(
                "archive-invalid",
                f"the archive does not verify: {report.problems[0]}"
                + (f" (and {more} more {plural(more, 'problem')})" if more else ""),
                expected="no problem",
                found=[str(x) for x in report.problems],
                where=where,
            )
        # The log: the archive's entries as retention found them (p recovered its prefix from
        # there, or replicas truncated it), then p's own; where both hold a seq they must agree.
        full = ListedOnce(Unretained(self.archive), OBJECT)
        log = lineage(full, p.node.branch)
        for seq, e in state.log.items():
            if log.setdefault(seq, e).chain != e.chain:
                self.fail(
                    "archive-differs",
                    f"the archive's seq {seq} is not the final primary {name(p)}'s: another entry with the same seq",
                    ops=self.writes_of(log | dict(state.log), [seq]),
                    expected=e.chain.hex(),
                    found=log[seq].chain.hex(),
                    where=where,
                )
        # Entry timestamps never go back along the committed history (the spec's NextTs, across
        # failovers and clock jumps): a point in time names one seq only if they do not.
        stamps = [(seq, log[seq].timestamp_us) for seq in sorted(log)]
        back = [(a, b) for a, b in itertools.pairwise(stamps) if b[1] < a[1]]
        if back:
            (s1, t1), (s2, t2) = back[0]
            w1, w2 = self.writes_of(log, [s1]), self.writes_of(log, [s2])
            self.fail(
                "timestamps-go-back",
                f"entry timestamps go back: seq {s2}"
                + (f" ({some(w2)})" if w2 else "")
                + f" is older than seq {s1}"
                + (f" ({some(w1)})" if w1 else "")
                + f", stamped {t2} us < {t1} us",
                ops=[*w1, *w2],
                expected=f">= {t1}",
                found=t2,
                where=where,
            )
        horizon = self.horizon_us()
        logs = {p.node.branch: log}  # lineages by branch, for judging refusals
        replayer: Replayer | None = None
        images: dict[int, bytes] = {0: b""}  # the committed database after each seq
        refused = 0
        for seq in range(1, state.durable_seq + 1):
            e = log[seq]
            replayer = replayer or Replayer(b"", e.page_size)
            replayer.apply(e)
            images[seq] = bytes(replayer.image)
            try:
                restored = reader.restore_image(seq, p.node.branch)
            except (ArchiveError, ObjectNotFoundError) as err:
                self.may_be_retired(full, p.node.branch, seq, horizon, err, logs)
                refused += 1
                continue
            if (restored.seq, restored.chain) != (seq, e.chain) or restored.image != images[seq]:
                self.fail(
                    "pitr-inexact",
                    f"the archive's restore to seq {seq} ({bookmark(p.node.branch, seq)}) is not the committed log's "
                    f"database there"
                    + ("" if restored.seq == seq else f" (it restored seq {restored.seq})")
                    + self.carrying(log, seq),
                    ops=self.writes_of(log, [seq]),
                    expected={str(k): v for k, v in sorted(_kv(images[seq]).items())},
                    found={str(k): v for k, v in sorted(_kv(restored.image).items())},
                    where=where,
                )
        if refused:
            _event("retention-refused-a-restore-outside-the-window")
        self.times_are_exact(reader, log, images, p.node.branch, horizon)
        for point in self.points:  # PITR is page-exact at every bookmark taken, on every branch
            if point.image is not None:
                b, seq = parse_bookmark(point.bookmark)
                try:
                    got = reader.restore_image(seq, b)
                except (ArchiveError, ObjectNotFoundError) as err:
                    named = functools.partial(lambda m: [self.ops().bookmark(m)], point.bookmark)
                    self.may_be_retired(full, b, seq, horizon, err, logs, ops=named)
                    continue
                if got.image != point.image:
                    ops = self.ops()
                    mark = ops.bookmark(point.bookmark)
                    diff, refs = diff_text(_kv(got.image), point.data or {}, ops)
                    self.fail(
                        "pitr-inexact",
                        f"the archive's restore to {point.bookmark} is not the primary's database when "
                        + (mark.describe() if mark is not None else "that bookmark")
                        + f" was taken: it {diff}",
                        ops=[mark, *refs],
                        expected={str(k): v for k, v in sorted((point.data or {}).items())},
                        found={str(k): v for k, v in sorted(_kv(got.image).items())},
                        where=where,
                    )
                if point.time_us is not None:  # ... and at its time, from the archive alone
                    try:
                        b2, seq2 = reader.point_for_time(point.time_us, b)
                    except (ArchiveError, ObjectNotFoundError) as err:
                        # A time older than the horizon may be refused (the window is of times).
                        if point.time_us > horizon:
                            self.fail(
                                "retention-took-window",
                                f"a restore to the time of bookmark {point.bookmark} ({point.time_us} us) was refused "
                                f"inside retention's window (horizon {horizon} us): {err}",
                                ops=[self.ops().bookmark(point.bookmark)],
                                expected=point.bookmark,
                                found=str(err),
                                where=where,
                            )
                        _event("retention-took-a-time")
                        continue
                    if seq2 < seq or (seq2 == seq and reader.restore_image(seq2, b2).image != point.image):
                        self.fail(
                            "pitr-time-inexact",
                            f"a restore to the time of bookmark {point.bookmark} ({point.time_us} us) named "
                            f"{bookmark(b2, seq2)}"
                            + (", an earlier seq" if seq2 < seq else ", whose database is not the bookmark's"),
                            ops=[self.ops().bookmark(point.bookmark)],
                            expected=point.bookmark,
                            found=bookmark(b2, seq2),
                            where=where,
                        )

    def writes_of(self, log: dict[int, Entry], seqs: Sequence[int]) -> list[OpRef]:
        """The writes whose entries are these seqs of ``log`` (keys that appear at each seq)."""
        wanted = {s for seq in seqs for s in (seq - 1, seq)}
        if not wanted or min(wanted) < 0:
            return []
        dbs = kv_at(log, wanted)
        keys = [
            k for seq in seqs if seq in dbs and seq - 1 in dbs for k in sorted(dbs[seq].keys() - dbs[seq - 1].keys())
        ]
        return self.ops().writes(keys)

    def carrying(self, log: dict[int, Entry], seq: int) -> str:
        refs = self.writes_of(log, [seq])
        return f" (seq {seq} is {some(refs)})" if refs else ""

    def times_are_exact(
        self, reader: ArchiveReader, log: dict[int, Entry], images: dict[int, bytes], branch: int, horizon: int
    ) -> None:
        """A restore by time (bookmark_for_time, then restore) gives the database the committed
        history held then: at each entry's time and just before it, the state after the last entry
        at or before that time. Retention may refuse a time older than its horizon, never answer
        one wrongly (a branch whose first own entries it deleted must not fall back to its fork)."""
        stamps = sorted((e.timestamp_us, seq) for seq, e in log.items() if seq in images)
        times = {t for ts, _ in stamps for t in (ts - 1, ts)} - {stamps[0][0] - 1} if stamps else set()
        for t in sorted(times):  # (before the first entry: before the object existed, refused)
            last = [seq for ts, seq in stamps if ts <= t]
            want = images[last[-1]] if last else b""
            want_seq = last[-1] if last else 0
            try:
                b2, seq2 = reader.point_for_time(t, branch)
                got = reader.restore_image(seq2, b2).image
            except (ArchiveError, ObjectNotFoundError) as err:
                if t > horizon:
                    self.fail(
                        "retention-took-window",
                        f"a restore to time {t} us on branch {branch} was refused inside retention's window "
                        f"(horizon {horizon} us): {err}",
                        ops=self.writes_of(log, [want_seq]) if want_seq else [],
                        expected=bookmark(branch, want_seq),
                        found=str(err),
                        where="archive, at the end",
                    )
                continue
            if got != want:
                self.fail(
                    "pitr-time-inexact",
                    f"a restore to time {t} us (named {bookmark(b2, seq2)}) is not seq {want_seq}'s database, the "
                    f"last entry at or before that time" + self.carrying(log, want_seq),
                    ops=self.writes_of(log, [want_seq, seq2]) if want_seq else [],
                    expected=bookmark(branch, want_seq),
                    found=bookmark(b2, seq2),
                    where="archive, at the end",
                )

    def horizon_us(self) -> int:
        """Retention's horizon as the furthest-ahead clock that ran it sees it now: no retention
        could have deleted what was current at or after this (window and grace before its now)."""
        now = max(self.wall(n) for n in range(len(self.primaries)))
        return now - RETENTION_WINDOW_US - RETENTION_GRACE_US

    def may_be_retired(
        self,
        full: ArchiveReader,
        branch: int,
        seq: int,
        horizon: int,
        err: Exception,
        logs: dict[int, dict[int, Entry]] | None = None,
        *,
        ops: Callable[[], Sequence[OpRef | None]] = lambda: (),
    ) -> None:
        """A restore to (branch, seq) was refused: right only if retention may have taken it, i.e.
        the database there stopped being the current one at or before ``horizon`` (RetentionKeepsWindow:
        every point of the window stays restorable). It stopped being current when the next entry
        of the branch's history was made, or, at the end of a branch, when a restore left it (the
        leaving branch's first own entry: later than the restore, so this errs towards allowing)."""
        mark = bookmark(branch, seq)
        where = "restore refused"
        if "replay failed" in str(err):
            self.fail(
                "archive-invalid",
                f"the restore to {mark} failed on a broken archive object (a missing one is refused, a broken one "
                f"must not be there): {err}",
                ops=ops(),
                expected="the database, or a refusal naming a missing object",
                found=str(err),
                where=where,
            )
        logs = {} if logs is None else logs  # lineages already read, by branch (the check asks often)
        log = logs.get(branch)
        if log is None:
            log = logs[branch] = lineage(full, branch)
        nxt = log.get(seq + 1)
        until: int | None = nxt.timestamp_us if nxt is not None else None
        if nxt is None:
            listing = full.listing()
            for c, bl in sorted(listing.branches.items()):
                rec = full.record(bl) if c > branch and bl.record_key is not None else None
                if rec is not None and parse_bookmark(rec.undo_bookmark)[0] == branch:
                    until = full.first_own_ts(bl, rec.fork_seq)
                    break
        if until is None:
            self.fail(
                "retention-took-window",
                f"the restore to {mark} was refused, though it is its branch's current state (retention cannot have "
                f"taken it): {err}",
                ops=ops(),
                expected=bookmark(branch, seq),
                found=str(err),
                where=where,
            )
        if until > horizon:
            self.fail(
                "retention-took-window",
                f"the restore to {mark} was refused inside retention's window (it was current until {until} us, "
                f"after the horizon {horizon} us): {err}",
                ops=ops(),
                expected=bookmark(branch, seq),
                found=str(err),
                where=where,
            )
        _event("retention-took-a-point")

    async def repaired(self, p: RunningPrimary, role: str, when: str) -> None:
        """Every replica (restarted, partitioned, or rebuilt after a disk loss) ends up holding
        exactly p's log and voting again, unless p was fenced meanwhile. ``role``: "the final
        primary" or "the serving primary"; ``when``: for the verdict ("once healed")."""
        state = p.node.state
        assert state is not None
        who = f"{role} {name(p)}"

        def done() -> bool:
            return all(state.connected) and all(m == state.last_seq for m in state.match) and all(state.voter)

        await trio.sleep(1)  # links notice what happened to their connections (and reconnect)
        with trio.move_on_after(120):
            while not done() and state.reset_reason is None:  # noqa: ASYNC110 - polls the node, mock clock
                await trio.sleep(0.1)
        if state.reset_reason is not None:
            return
        if not done():
            rows = state.replica_status()
            behind = [
                f"r{r['replica']} ("
                + (f"stored through {r['stored_through']}" if r["connected"] else "not connected")
                + ("" if r["voter"] else ", not voting")
                + ")"
                for r in rows
                if not (r["connected"] and r["stored_through"] == state.last_seq and r["voter"])
            ]
            self.fail(
                "replicas-not-repaired",
                f"{who} did not bring every replica up to its seq {state.last_seq} within 120 s {when}: "
                + ", ".join(behind),
                expected=state.last_seq,
                found=json.loads(json.dumps(rows, default=str)),
                where=when,
            )
        # The whole log: what the archive holds (replicas may have dropped it), then p's.
        log = dict(state.chains)
        reader = ArchiveReader(Unretained(self.archive), OBJECT)  # what retention deleted too
        archived_log = lineage(reader, p.node.branch)
        log.update({seq: e.chain for seq, e in archived_log.items()})
        entries = {**archived_log, **state.log}
        for i, host in enumerate(self.replicas):
            assert host is not None
            obj = host[0].get_object(OBJECT)
            held_entries = {e.seq: e for e in obj.store.read_entries(1)}
            held = {seq: e.chain for seq, e in held_entries.items()}
            wrong = sorted(seq for seq, c in held.items() if log.get(seq) != c)
            if wrong or max(held, default=0) != state.last_seq:
                self.disagree(p, who, when, i, held_entries, wrong, entries)
            # Beyond what the archive holds of this history (a stale primary still shipping may
            # have confirmed more than p knows yet, and told the replicas: that is fine).
            archived = max(archived_log, default=0)
            if obj.state.archived_through > archived:
                seqs = list(range(archived + 1, obj.state.archived_through + 1))
                refs = self.writes_of(entries, seqs)
                self.fail(
                    "replica-truncated-unarchived",
                    f"{when}, replica r{i} dropped entries through seq {obj.state.archived_through}, beyond the "
                    f"archive (through seq {archived})"
                    + (f": {some(refs)} {'is' if len(refs) == 1 else 'are'} in no segment" if refs else ""),
                    ops=refs,
                    expected=f"<= {archived}",
                    found=obj.state.archived_through,
                    where=when,
                )

    def disagree(
        self,
        p: RunningPrimary,
        who: str,
        when: str,
        i: int,
        held: dict[int, Entry],
        wrong: list[int],
        committed: dict[int, Entry],
    ) -> NoReturn:
        """Replica ``i`` does not hold exactly p's log. Name the writes its differing entries carry:
        an acknowledged one that p's database lacks is the bug (a lost write the replica still has)."""
        last = max(held, default=0)
        lo = min(held, default=0)
        holds = f"holds seqs {lo}..{last}" if lo < last else f"holds only seq {last}" if held else "holds no entry"
        expected = {"last_seq": p.node.state.last_seq if p.node.state else None}
        found: dict[str, Any] = {"replica": f"r{i}", "last_seq": last, "differing_seqs": wrong[:20]}
        if not wrong:
            self.fail(
                "replicas-disagree",
                f"{when}, replica r{i} {holds}, ending not at {who}'s last seq {expected['last_seq']}",
                expected=expected,
                found=found,
                where=when,
            )
        first = wrong[0]
        # What the replica's differing entries wrote: its database against the committed one.
        theirs = kv_at({**{s: e for s, e in committed.items() if s < first}, **held}, {first - 1, last})
        carried = sorted(theirs[last].keys() - theirs[first - 1].keys()) if len(theirs) == 2 else []
        ours = self.db(p)
        ops = self.ops()
        refs = ops.writes(carried)
        found["writes_carried"] = carried
        one = len(wrong) == 1
        differ = f"seq {first}" if one else f"seqs {first}..{wrong[-1]}"
        lost = [
            r for r in refs if r.outcome == "ok" and r.value in self.out.ok and ours is not None and r.value not in ours
        ]
        disagreement = Verdict(
            "replicas-disagree",
            f"{when}, replica r{i} {holds}, "
            + (f"differing from {who}'s log at {differ}" if len(held) > 1 else f"which differs from {who}'s log")
            + (f": {'its entry carries' if one else 'its entries carry'} {some(refs)}" if refs else ""),
            tuple(refs),
            expected,
            found,
            when,
        )
        if lost:
            self.fail(
                "acked-write-lost",
                f"acknowledged writes missing from {who}'s database: {some(lost).replace('write k=', 'k=')}; replica "
                f"r{i} still holds {'it' if len(lost) == 1 else 'them'} at {differ}, where {name(p)}'s log has "
                f"{'another entry' if one else 'other entries'}",
                ops=lost,
                expected={str(r.value): f"v{r.value}" for r in lost},
                found={str(r.value): None for r in lost},
                where=when,
                more=[disagreement],
            )
        raise Violation(disagreement)

    def db(self, p: RunningPrimary) -> dict[int, str] | None:
        """p's database as it is now, read in place (no await: nothing runs meanwhile)."""
        rt = p.node.runtime
        if rt is None or p.crashed:
            return None
        return {int(k): str(v) for k, v in rt.capture.conn.execute("SELECT k, v FROM kv")}


def _message(body: Any) -> str:
    """An ERROR reply's body in a few words."""
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('type', '')}: {body['message']}".lstrip(": ")
    return str(body)


def name(p: RunningPrimary) -> str:
    return p.address.removeprefix("mem:")


def _quiet_status(st: dict[str, Any]) -> dict[str, Any]:
    """A status for a record: JSON values only, and the archive's location left out."""
    out: dict[str, Any] = json.loads(json.dumps(st, default=str))
    if isinstance(out.get("archive"), dict) and "store" in out["archive"]:
        out["archive"]["store"] = "the archive"
    return out


def kv_at(entries: dict[int, Entry], seqs: set[int]) -> dict[int, dict[int, str]]:
    """The kv table after each seq in ``seqs``, replaying ``entries`` from seq 1 (for verdicts:
    which write an entry carries). A seq the entries do not reach from 1 is left out."""
    out: dict[int, dict[int, str]] = {}
    replayer: Replayer | None = None
    for seq in range(1, max(seqs, default=0) + 1):
        e = entries.get(seq)
        if e is None:
            break
        replayer = replayer or Replayer(b"", e.page_size)
        replayer.apply(e)
        if seq in seqs:
            out[seq] = _kv(bytes(replayer.image))
    if 0 in seqs:
        out[0] = {}
    return out


def _kv(image: bytes) -> dict[int, str]:
    if not image:
        return {}
    conn = open_image(image)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchall():
            return {}
        return {int(k): str(v) for k, v in conn.execute("SELECT k, v FROM kv")}
    finally:
        conn.close()


def lineage(reader: ArchiveReader, branch: int) -> dict[int, Entry]:
    """The archived entries of a branch's whole history: its parent's through the fork, then its own.
    Read from an ``Unretained`` archive: retention's floors do not hide what lies below them."""
    bl = reader.listing().branches.get(branch)
    if bl is None or not bl.snapshots:
        return {}
    rec = reader.record(bl) if branch != 1 else None
    if rec is None:
        return {e.seq: e for e in reader.entries(bl, 0, GENESIS_CHAIN)}
    log = {s: e for s, e in lineage(reader, rec.parent).items() if s <= rec.fork_seq}
    log.update({e.seq: e for e in reader.entries(bl, rec.fork_seq, rec.fork_chain)})
    return log


@functools.cache
def scratch_root() -> str:
    """A tmpfs directory when there is one: fsync is free there, and these runs fsync a lot."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


INCONSISTENT_ARCHIVE = ("archive gap", "not this object's history", "differs from every branch")


# Entry timestamps come from the mock clock, from a fixed start (2027-01-15), so that a run depends
# only on its schedule and its scheduling seed, and retention sees realistic wall times.
WALL_BASE_US = 1_800_000_000_000_000


def wall_us() -> int:
    return WALL_BASE_US + int(trio.current_time() * 1_000_000)


def deterministic_scheduling(seed: int) -> None:
    """Make trio's run queue order a function of ``seed``. Under hypothesis trio does this itself
    (its hypothesis plugin registers the same RNG); a replay outside hypothesis must do it here.
    Relies on trio internals (``trio._core._run._r``): trio is pinned in pyproject.toml and
    tests/test_chaos_replay.py checks that two runs with one seed give one history."""
    from trio._core import _run

    setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 - a Final in trio's source
    _run._r.seed(seed)


def history_digest(world: World) -> str:
    """What a run produced, in one hash: the final primary's log (its chain at each seq held), the
    outcome of every write, the archive's keys. Equal digests: the same history, byte for byte."""
    h = hashlib.sha256()
    final = world.primaries[-1].node.state
    if final is not None:
        for seq in sorted(final.chains):
            h.update(seq.to_bytes(8, "big") + final.chains[seq])
    for name in ("ok", "failed", "unknown"):
        h.update(f"{name}:{sorted(getattr(world.out, name))}".encode())
    for info in sorted(world.archive.list(f"{OBJECT}/"), key=lambda i: i.key):
        h.update(info.key.encode() + b"\n")
    return h.hexdigest()[:16]


def run_schedule(
    root: str,
    schedule: list[Op],
    *,
    quorum: int = 3,
    seed: int | None = None,
    history: list[dict[str, Any]] | None = None,
    retention: bool = True,
) -> Outcomes:
    """Play ``schedule`` and judge it (AssertionError: a checker failed). ``seed``: make trio's
    scheduling deterministic with it (not needed under hypothesis, which seeds trio itself).
    ``history``: a list to append the run's events to (``History``), kept when a checker fails.
    ``retention``: False keeps every archive object (the archive fuzz campaign studies them all)."""
    if seed is not None:
        deterministic_scheduling(seed)

    async def main() -> Outcomes:
        world: World | None = None
        try:
            async with trio.open_nursery() as nursery:
                store = "s3" if (seed or 0) % 2 else "dir"
                world = World(root, nursery, quorum, History(history), disk, store, seed or 0, retention)
                for i in range(N):
                    await world.start_replica(i)
                await world.new_primary()
                for op in schedule:
                    await world.step(op)
                await world.finish()
                world.out.history = history_digest(world)
                world.out.simulated_s = trio.current_time()
                nursery.cancel_scope.cancel()
            return world.out
        finally:
            # Once every task is gone (file descriptors: thousands of runs share one process).
            if world is not None:
                world.close()

    disk = SimDisk()
    try:
        with disk.installed():
            return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    except* AssertionError as eg:  # a checker's verdict, out of trio's ExceptionGroup
        raise eg.exceptions[0] from None
    except* WalrelayError as eg:  # a check that reads the archive found it unreadable: also a verdict
        err = str(eg.exceptions[0]).replace(root, "RUN")
        raise Violation(
            Verdict(
                "archive-unreadable",
                f"a check could not read what it must: {err}",
                expected="readable",
                found=err,
                where="at the end",
            )
        ) from None
