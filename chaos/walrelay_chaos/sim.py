"""Deterministic-clock simulation of a whole walrelay cluster in one process, and its checkers.

Five real ``ReplicaNode``s (real ``ReplicaStore`` files, disk I/O inline so the run depends only on
the schedule), real ``PrimaryNode``s with epochs from a real ``EpochAllocator``, one archive shared
by every primary (a directory store that ``StoreDown``/``StoreUp`` make fail, ambiguously or not),
and clients, all over the in-memory transport with partitions between primaries and replicas, on
trio's ``MockClock``. ``run_schedule`` plays a schedule (``walrelay_chaos.schedule``) and judges it:

- every write acknowledged so far is in the serving primary's database with its value, nothing
  reported as failed is, and after a restore nothing the restore rolled back is (Jepsen's set
  checker, per branch of the object's history);
- each restore serves exactly its bookmark's database; an undo holds every write acknowledged on
  the branch it ended;
- at the end, after healing and a last takeover: every replica holds exactly the final primary's
  log, the archive verifies and restores every seq to the committed log's database, and every
  bookmark taken restores page for page, by seq and by time.

A failed check raises AssertionError with what was wrong. (Moved here from the failover property
test so that the same harness runs schedules from tests, replay files and, next, chaos campaigns.)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import trio
import trio.testing

from walrelay.apps.kv import KeyValue
from walrelay.archive.dir_store import DirStore
from walrelay.archive.format import bookmark, parse_bookmark
from walrelay.archive.reader import ArchiveReader
from walrelay.archive.shipper import ArchiveShipper
from walrelay.archive.store import ObjectInfo, TransientStoreError
from walrelay.archive.verify import verify
from walrelay.client import Client
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.errors import WalrelayError
from walrelay.placement import EpochAllocator
from walrelay.primary_node import PrimaryNode
from walrelay.replay import Replayer
from walrelay.replica_node import ReplicaNode
from walrelay.transport import MemoryTransport
from walrelay.wire import ReplyStatus
from walrelay_chaos.schedule import (
    Bookmark,
    Check,
    CrashPrimary,
    CrashReplica,
    Cut,
    Heal,
    LoseDisk,
    MinorityFailover,
    NewPrimary,
    Op,
    Restore,
    Settle,
    StoreDown,
    StoreUp,
    Write,
    WriteStale,
)

N = 5
OBJECT = "obj"
MAX_DISK_LOSS = 2

# Called with a short name for each notable thing that happened (a restore, a bookmark's time that
# names it): the tests turn these into hypothesis statistics; nothing else depends on them.
EVENT_HOOK: Callable[[str], None] = lambda name: None  # noqa: E731


def _event(name: str) -> None:
    EVENT_HOOK(name)


# -- the network ----------------------------------------------------------------------------------


class CutTransport:
    """The in-memory network, plus partitions between primaries and chosen replicas.

    A cut closes the connections to that replica (data already sent still arrives, as with TCP)
    and refuses new ones until healed. Clients always reach primaries.
    """

    def __init__(self) -> None:
        self.inner = MemoryTransport()
        self.cut: set[str] = set()
        self.live: dict[str, list[trio.StapledStream[Any, Any]]] = {}

    async def connect(self, address: str) -> trio.abc.Stream:
        if address in self.cut:
            raise OSError(f"partitioned from {address}")
        stream = cast("trio.StapledStream[Any, Any]", await self.inner.connect(address))
        self.live.setdefault(address, []).append(stream)
        return stream

    async def serve(self, address: str, handler: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.inner.serve(address, handler, task_status=task_status)

    def partition(self, addresses: set[str]) -> None:
        for a in sorted(addresses):  # a set of strings iterates in hash order, which varies per process
            self.cut.add(a)
            for stream in self.live.pop(a, []):
                stream.send_stream.close()

    def heal(self) -> None:
        self.cut.clear()


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

    def describe(self) -> str:
        return self.inner.describe()

    def put(self, key: str, data: bytes) -> None:
        if self.down:
            self.failed += 1
            if self.ambiguous and self.failed % 2:
                self.inner.put(key, data)  # stored, but the answer is lost
            raise TransientStoreError(f"put {key}: timeout (store down)")
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


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


class World:
    def __init__(self, root: str, nursery: trio.Nursery, quorum: int) -> None:
        self.root = root
        self.nursery = nursery
        self.quorum = quorum
        self.net = CutTransport()
        self.placement = EpochAllocator(os.path.join(root, "placement"))
        # Every primary ships here, stale ones too; StoreDown/StoreUp make its PUTs fail.
        self.archive = FlakyStore(DirStore(os.path.join(root, "archive")))
        self.replicas: list[tuple[ReplicaNode, trio.CancelScope, trio.Event] | None] = [None] * N
        self.primaries: list[RunningPrimary] = []
        self.out = Outcomes()  # this branch's writes (a restore starts a new one)
        self.base: dict[int, str] = {}  # what the branch started with (the restored database)
        # The empty database before the first entry is a point too (a restore to seq 0).
        self.points: list[Point] = [Point(bookmark(1, 0), {}, b"")]
        self.restores = 0
        self.next_key = 1
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
        finally:
            done.set()

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

    async def new_primary(self, restore_to: str | None = None) -> None:
        n = len(self.primaries)
        node = PrimaryNode(
            object_name=OBJECT,
            app=KeyValue(),
            replica_addresses=self.addresses,
            data_dir=os.path.join(self.root, f"p{n}"),
            transport=self.net,
            placement=self.placement,
            quorum=self.quorum,
            deadline_s=10**6,  # no resets by time: the schedule decides what happens
            archive=ArchiveShipper(
                self.archive, OBJECT, segment_bytes=6000, segment_age_s=2.0, run_io=_inline, wall_us=wall_us
            ),
            restore_to=restore_to,
            wall_us=wall_us,
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
            self.nursery.start_soon(self._put, p.address, k, self.out)

    async def _put(self, address: str, k: int, out: Outcomes) -> None:
        """``out``: the outcomes of the branch the write was made on (a late reply stays there)."""
        try:
            async with Client.connect(self.net, address) as client:
                reply = await client.call("put", k, f"v{k}")
        except (ConnectionError, OSError):
            return
        if reply.status is ReplyStatus.OK:
            out.unknown.discard(k)
            out.ok.add(k)
        elif reply.status is ReplyStatus.ERROR:
            out.unknown.discard(k)
            out.failed.add(k)

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
        found = await self.read_all(p, 60)
        if found is None:
            assert not must_answer, f"{context}: reads at epoch {p.node.epoch} got no answer: {p.node.status()}"
            return
        self.judge(found, self.base, self.out, context, p.node.epoch, acked=acked)

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
        epoch: int,
        *,
        acked: set[int] | None = None,
    ) -> None:
        """The branch's database: what it started with, every write acknowledged on it (``acked``:
        as known before the reads), nothing reported as failed, and (after a restore) nothing that
        the restore rolled back (every write of the branch is in ``out.ok | out.unknown``)."""
        acked = out.ok if acked is None else acked
        lost = sorted(k for k in base.keys() | acked if found.get(k) != base.get(k, f"v{k}"))
        assert not lost, f"{context}: acknowledged writes missing at epoch {epoch}: {lost}"
        wrong = sorted(k for k, v in found.items() if v != f"v{k}")
        assert not wrong, f"{context}: wrong values for {wrong}"
        failed = sorted(set(found) & out.failed)
        assert not failed, f"{context}: writes reported as failed are present: {failed}"
        if self.restores:
            stray = sorted(set(found) - base.keys() - out.ok - out.unknown)
            assert not stray, f"{context}: writes the restore rolled back are present at epoch {epoch}: {stray}"

    async def step(self, op: Op) -> None:
        current = self.primaries[-1]
        if isinstance(op, Write):
            self.write(current, op.count)
        elif isinstance(op, WriteStale):
            stale = [p for p in self.primaries[:-1] if not p.crashed]
            if stale:
                self.write(stale[-1], op.count)
        elif isinstance(op, Settle):
            await trio.sleep(op.ms / 1000)
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
                await self.start_replica(op.replica)
        elif isinstance(op, StoreDown):
            self.archive.down, self.archive.ambiguous = True, op.ambiguous
        elif isinstance(op, StoreUp):
            self.archive.down = False
        elif isinstance(op, Check) and not current.crashed and await self.serving(current, 30):
            await self.check(current, "check")
        elif isinstance(op, MinorityFailover):
            for sub in op.expand():
                await self.step(sub)
        elif isinstance(op, Bookmark):
            await self.bookmark(current)
        elif isinstance(op, Restore) and self.points:
            await self.restore(self.points[op.pick % len(self.points)], by_request=op.by_request)

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
        with trio.move_on_after(30):
            async with Client.connect(self.net, p.address) as client:
                reply = await client.call("__bookmark__")
                if reply.status is not ReplyStatus.OK or reply.body["bookmark"] != point.bookmark:
                    return
                self.points.append(point)
                if entry is not None:
                    by_time = await client.call("__bookmark_for_time__", entry.timestamp_us)
        if entry is None or by_time is None or by_time.status is not ReplyStatus.OK:
            return
        # The primary's answer: this entry, or a later one with the very same timestamp (writes in
        # the same microsecond; timestamps never go back, NextTs).
        b2, seq2 = parse_bookmark(by_time.body["bookmark"])
        assert b2 == node.branch and seq2 >= seq, (by_time.body, point.bookmark)
        assert all(state.log[x].timestamp_us == entry.timestamp_us for x in range(seq + 1, seq2 + 1) if x in state.log)
        if seq2 == seq:
            point.time_us = entry.timestamp_us
            _event("a bookmark's time names it")

    async def restore(self, target: Point, *, by_request: bool) -> None:
        """Heal, restore, and judge the restored database against the bookmark's."""
        self.net.heal()
        self.archive.down = False
        current = self.primaries[-1]
        undo_asked = None
        if by_request:
            if current.crashed or not await self.serving(current, 60):
                return  # nobody to ask: nothing asked
            async with Client.connect(self.net, current.address) as client:
                reply = await client.call("__restore__", target.bookmark)
            assert reply.status is ReplyStatus.OK, f"restore request for {target.bookmark}: {reply.body}"
            undo_asked = reply.body["undo_bookmark"]
            await self.crash_primary()
            await self.new_primary()
        else:
            await self.crash_primary()
            await self.new_primary(restore_to=target.bookmark)
        p = self.primaries[-1]
        assert await self.serving(p, 120), f"the restore to {target.bookmark} never served: {p.node.status()}"
        done = p.node.restored
        if done is None and not by_request and p.node.meta and p.node.meta.record:
            # --restore-to a bookmark the branch was already made from: not restored again.
            assert p.node.meta.record.restored_to == target.bookmark, p.node.status()
            return
        assert done is not None and done["restored_to"] == target.bookmark, p.node.status()
        assert undo_asked in (None, done["undo_bookmark"]), f"undo bookmark {undo_asked} answered, {done} done"
        found = await self.read_all(p, 60)
        assert found is not None, f"no answer after the restore to {target.bookmark}"
        if target.data is not None:
            assert found == target.data, f"restore to {target.bookmark}: {found} is not the bookmark's {target.data}"
        else:
            assert target.era is not None
            self.judge(found, *target.era, f"undo to {target.bookmark}", p.node.epoch)
            target.data = found  # the same bookmark must restore the same database next time
        self.points.append(Point(done["undo_bookmark"], era=(self.base, self.out)))
        self.base, self.out = dict(found), Outcomes()
        self.restores += 1
        _event("restored" + (" again (a restore of a restore)" if self.restores > 1 else ""))

    async def finish(self) -> None:
        """Heal everything, crash every primary, and let a last one take over: it must serve,
        hold every acknowledged write, and bring every replica to exactly its log."""
        self.net.heal()
        self.archive.down = False
        current = self.primaries[-1]
        if not current.crashed and current.node.phase() == "serving":
            await self.repaired(current, "the serving primary, once healed")
        for p in self.primaries:
            if not p.crashed:
                await p.crash()
        await self.new_primary()
        final = self.primaries[-1]
        assert await self.serving(final, 120), f"the final primary never served: {final.node.status()}"
        for p in self.primaries:
            # Giving up is right when fenced, or when the store is down; an archive that
            # disagrees with the replicas' committed log is a broken invariant (ArchiveIsCommittedPrefix).
            why = p.node.gave_up or ""
            assert not any(s in why for s in INCONSISTENT_ARCHIVE), f"a recovery found the archive wrong: {why}"
        await self.check(final, "after the final takeover", must_answer=True)
        await self.repaired(final, "the final primary")
        await self.archive_is_exact(final)

    async def archive_is_exact(self, p: RunningPrimary) -> None:
        """Every primary shipped to one archive, across failovers and with stale primaries still
        shipping: it verifies, reaches the final primary's durable end, and restores at every seq
        to exactly the database the committed log gives there."""
        state, shipper = p.node.state, p.node.archive
        assert state is not None and shipper is not None
        with trio.move_on_after(120):
            while shipper.archiver is None or shipper.archiver.archived_through < state.durable_seq:  # noqa: ASYNC110
                await trio.sleep(0.5)
        assert shipper.archiver is not None, shipper.status()
        assert shipper.archiver.archived_through >= state.durable_seq, shipper.status()
        reader = ArchiveReader(self.archive, OBJECT)
        report = verify(reader)
        assert report.ok, report.problems
        # The log: the archive's entries (p recovered its prefix from there, or replicas truncated
        # it), then p's own; where both hold a seq they must agree.
        log = lineage(reader, p.node.branch)
        for seq, e in state.log.items():
            assert log.setdefault(seq, e).chain == e.chain, f"the archive's seq {seq} is not the primary's"
        replayer: Replayer | None = None
        for seq in range(1, state.durable_seq + 1):
            e = log[seq]
            replayer = replayer or Replayer(b"", e.page_size)
            replayer.apply(e)
            restored = reader.restore_image(seq, p.node.branch)
            assert (restored.seq, restored.chain) == (seq, e.chain)
            assert restored.image == bytes(replayer.image), f"restore at seq {seq} differs from the committed log"
        for point in self.points:  # PITR is page-exact at every bookmark taken, on every branch
            if point.image is not None:
                b, seq = parse_bookmark(point.bookmark)
                got = reader.restore_image(seq, b)
                assert got.image == point.image, f"restore to {point.bookmark} is not the primary's database then"
                if point.time_us is not None:  # ... and at its time, from the archive alone
                    b2, seq2 = reader.point_for_time(point.time_us, b)
                    assert seq2 >= seq, (point.bookmark, b2, seq2)  # later only if it shares the time
                    if seq2 == seq:
                        assert reader.restore_image(seq2, b2).image == point.image, (point.bookmark, b2, seq2)

    async def repaired(self, p: RunningPrimary, who: str) -> None:
        """Every replica (restarted, partitioned, or rebuilt after a disk loss) ends up holding
        exactly p's log and voting again, unless p was fenced meanwhile."""
        state = p.node.state
        assert state is not None

        def done() -> bool:
            return all(state.connected) and all(m == state.last_seq for m in state.match) and all(state.voter)

        await trio.sleep(1)  # links notice what happened to their connections (and reconnect)
        with trio.move_on_after(120):
            while not done() and state.reset_reason is None:  # noqa: ASYNC110 - polls the node, mock clock
                await trio.sleep(0.1)
        if state.reset_reason is not None:
            return
        assert done(), f"{who} did not bring every replica up to date: {state.replica_status()}"
        # The whole log: what the archive holds (replicas may have dropped it), then p's.
        log = dict(state.chains)
        reader = ArchiveReader(self.archive, OBJECT)
        archived_log = lineage(reader, p.node.branch)
        log.update({seq: e.chain for seq, e in archived_log.items()})
        for i, host in enumerate(self.replicas):
            assert host is not None
            obj = host[0].get_object(OBJECT)
            held = {e.seq: e.chain for e in obj.store.read_entries(1)}
            wrong = sorted(seq for seq, c in held.items() if log.get(seq) != c)
            assert not wrong and max(held, default=0) == state.last_seq, (
                f"replica {i} holds seqs {sorted(held)[-3:]}... (differing: {wrong[:3]}), not {who}'s log "
                f"through {state.last_seq}"
            )
            # Beyond what the archive holds of this history (a stale primary still shipping may
            # have confirmed more than p knows yet, and told the replicas: that is fine).
            archived = max(archived_log, default=0)
            assert obj.state.archived_through <= archived, (
                f"replica {i} dropped entries through {obj.state.archived_through}, beyond the archive ({archived})"
            )


def lineage(reader: ArchiveReader, branch: int) -> dict[int, Entry]:
    """The archived entries of a branch's whole history: its parent's through the fork, then its own."""
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


def run_schedule(root: str, schedule: list[Op], *, quorum: int = 3, seed: int | None = None) -> Outcomes:
    """Play ``schedule`` and judge it (AssertionError: a checker failed). ``seed``: make trio's
    scheduling deterministic with it (not needed under hypothesis, which seeds trio itself)."""
    if seed is not None:
        deterministic_scheduling(seed)

    async def main() -> Outcomes:
        world: World | None = None
        try:
            async with trio.open_nursery() as nursery:
                world = World(root, nursery, quorum)
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

    try:
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    except* AssertionError as eg:  # a checker's verdict, out of trio's ExceptionGroup
        raise eg.exceptions[0] from None
    except* WalrelayError as eg:  # a check that reads the archive found it unreadable: also a verdict
        raise AssertionError(f"a check could not read what it must: {eg.exceptions[0]}") from None
