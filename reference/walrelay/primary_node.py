"""The primary as a trio program: replica links, the client door, a ticker, and the effect executor.

All protocol decisions are in PrimaryState (pure); this module only moves bytes and wakes tasks.
Each replica has its own link task with a send queue, so a slow or dead replica never delays the
others, and whatever queued up while a frame was being written goes out as one APPEND (batching).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from walrelay.app import App
from walrelay.archive.format import (
    ArchiveFormatError,
    bookmark,
    encode_snapshot,
    parse_bookmark,
    snapshot_key,
)
from walrelay.archive.reader import ArchiveError, ArchiveReader, Restored
from walrelay.archive.shipper import ArchiveShipper
from walrelay.archive.store import ObjectStoreError, TransientStoreError
from walrelay.branching import (
    BranchRecord,
    Meta,
    clear_restore_request,
    read_meta,
    write_branch_marker,
    write_restore_request,
)
from walrelay.certs import Identity
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.errors import ChainError, ObjectResetError, ProtocolError, WalrelayError
from walrelay.fsutil import replace_durably
from walrelay.object_runtime import ObjectRuntime
from walrelay.pagehash import DbChecksum
from walrelay.placement import EpochAllocator, PlacementError
from walrelay.primary import (
    FailReply,
    OpenInputGate,
    PrimaryConfig,
    PrimaryEffect,
    PrimaryState,
    ReadArchiveEntries,
    ReleaseReply,
    ResetObject,
    SendAdmit,
    SendEntries,
    SendTruncate,
)
from walrelay.recovery import ArchiveEnd, GiveUp, ReadArchive, Recovered, Recovery, RecoveryEffect, SendFetch
from walrelay.replay import Replayer
from walrelay.replica_store import check_object_name
from walrelay.tls import peer_of
from walrelay.transport import Channel, Transport
from walrelay.wire import (
    DEFAULT_MAX_FRAME,
    Ack,
    Admit,
    Append,
    Entries,
    Fetch,
    Hello,
    Message,
    Prepare,
    Promise,
    Reject,
    RejectReason,
    Reply,
    ReplyStatus,
    Request,
    Role,
    Truncate,
)

log = logging.getLogger("walrelay.primary")

STATUS_OP = "__status__"
BOOKMARK_OP = "__bookmark__"  # current_bookmark(): the point right after the last write
BOOKMARK_FOR_TIME_OP = "__bookmark_for_time__"  # bookmark_for_time(t): the last entry at or before t
OPS_OP = "__ops__"  # the operations this object offers: its app's and these
RESTORE_OP = "__restore__"  # restore(bookmark) on the object's next start; answers the undo bookmark
MAX_BRANCH = 10**8  # archive keys carry the branch in 8 decimal digits (docs/archive-format.md §2)
SNAPSHOT_OP = "__snapshot__"  # a snapshot to the archive now (on demand); answers its bookmark once stored
# Operations that change an object's history: over TLS only a certificate of the admin role may
# call them (docs/protocol.md, section 9); any other client gets ERROR Forbidden, nothing changed.
ADMIN_OPS = frozenset({"__restore__", "__snapshot__"})
TIME_ARG = "TIME: an ISO 8601 time with a zone (2026-11-26T12:00:00Z), @MICROSECONDS, or microseconds as a number"
# walrelay's own operations, as __ops__ lists them (docs/protocol.md, the client door).
SYSTEM_OPS: tuple[dict[str, Any], ...] = (
    {"name": STATUS_OP, "args": [], "doc": "the primary's state for operators (phase, epoch, seqs, archive); not held"},
    {"name": BOOKMARK_OP, "args": [], "doc": "the bookmark right after the last write"},
    {"name": BOOKMARK_FOR_TIME_OP, "args": ["TIME"], "doc": f"the bookmark of the last write at or before {TIME_ARG}"},
    {
        "name": RESTORE_OP,
        "args": ["BOOKMARK"],
        "doc": "restore to BOOKMARK on the next start (admin); answers the undo bookmark",
    },
    {"name": SNAPSHOT_OP, "args": [], "doc": "a snapshot to the archive now (admin); answers its bookmark"},
    {"name": OPS_OP, "args": [], "doc": "this list"},
)


def _time_arg(args: list[Any]) -> int | str:
    """bookmark_for_time's argument as microseconds since the epoch, or why it is not one: the
    times ``walrelay restore --to`` takes (ISO 8601 with a zone, ``@MICROSECONDS``), or a
    non-negative integer of microseconds (the original form)."""
    from walrelay.archive.command import parse_time

    usage = f"bookmark_for_time takes one argument, {TIME_ARG}"
    if len(args) != 1:
        return f"{usage}; got {len(args)} arguments"
    t = args[0]
    if isinstance(t, int) and not isinstance(t, bool) and t >= 0:
        return t
    if not isinstance(t, str):
        return f"{usage}; got {t!r:.60}"
    try:
        us = parse_time(t)
    except WalrelayError as e:
        return f"{usage}; {e}"
    return us if us >= 0 else f"{usage}; {t!r} is before 1970"


def _iso(t_us: int) -> str:
    from walrelay.archive.command import iso_time

    return iso_time(t_us)


def now_us() -> int:
    return int(trio.current_time() * 1_000_000)


@dataclass
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    failed: str | None = None


@dataclass(frozen=True)
class _RestorePlan:
    """What the second epoch of a restore installs (prepared, and its fork snapshot archived, by
    the first): the database right after ``restored.seq`` of ``record.parent``, and its last entry."""

    record: BranchRecord
    restored: Restored
    base: Entry | None  # None when restoring to seq 0 (the empty database)


# A catch-up frame must fit a replica's frame limit (the default one; headers take < 1 KiB).
MAX_CATCH_UP_BYTES = DEFAULT_MAX_FRAME - 4096


class ReplicaLink:
    """One replica's connection, through both phases of a primary's life.

    Every connection starts with HELLO and PREPARE(epoch). While the primary recovers, the
    PROMISE feeds Recovery and the link answers FETCH commands from it; once recovered, a fresh
    PROMISE (PREPARE is idempotent at the promised epoch) tells PrimaryState where this replica's
    log stands, and the link sends APPENDs and control messages and reads ACKs.
    """

    def __init__(self, node: PrimaryNode, index: int, address: str) -> None:
        self.node = node
        self.index = index
        self.address = address
        self.queue: deque[Entry] = deque()
        self.control: deque[Message] = deque()  # ADMIT + PREPARE, sent before queued entries
        self.catching_up = False  # the queue holds a range that must go out in one frame
        self._wake = trio.Event()
        self.last_error: str | None = None
        # Recovery's FETCH commands for this link (a from_seq), or None: recovery ended.
        self.fetch_send, self.fetch_recv = trio.open_memory_channel[int | None](float("inf"))
        self._connection = trio.CancelScope()

    def restart(self) -> None:
        """Drop the connection and start again with HELLO and PREPARE (the node changed epoch)."""
        self._connection.cancel()

    def enqueue(self, entries: tuple[Entry, ...], *, whole: bool) -> None:
        self.queue.extend(entries)
        self.catching_up = self.catching_up or whole
        self._wake.set()

    def send_control(self, *msgs: Message) -> None:
        self.control.extend(msgs)
        self._wake.set()

    async def run(self) -> None:
        node = self.node
        backoff = 0.05
        while not node.stopped:
            with trio.CancelScope() as self._connection:
                backoff = await self._connect_once(backoff)
            if self._connection.cancelled_caught:
                backoff = 0.05

    async def _connect_once(self, backoff: float) -> float:
        node = self.node
        try:
            stream = await node.transport.connect(self.address)
        except OSError as e:
            self.last_error = f"connect failed: {e}"
            await trio.sleep(backoff)
            return min(backoff * 2, 1.0)
        chan = Channel(stream)
        try:
            await self._hello(chan)
            self.last_error = None
            while True:  # drop FETCH commands meant for an earlier connection
                try:
                    self.fetch_recv.receive_nowait()
                except trio.WouldBlock:
                    break
            if node.state is None:
                await self._recovering(chan)
            if node.state is not None and not node.stopped:
                await self._serving(chan)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self.last_error = f"connection lost: {e or type(e).__name__}"
        except ProtocolError as e:
            self.last_error = f"protocol error: {e}"
            log.warning("replica %d (%s): %s", self.index, self.address, e)
        finally:
            if node.state is None:
                node.recovery_effects(node.recovery.on_disconnected(self.index))
            else:
                node.state.on_disconnected(self.index)
            await trio.aclose_forcefully(stream)
        await trio.sleep(backoff)
        # A replica that refused us (DIVERGED, a bad frame) would refuse again at once: back
        # off, up to 5 s. A session that ended any other way reconnects quickly.
        refused = (self.last_error or "").startswith(("rejected", "protocol error"))
        return min(backoff * 2, 5.0) if refused else 0.05

    async def _hello(self, chan: Channel) -> None:
        node = self.node
        await chan.send(Hello(Role.PRIMARY, 0, node.object_name, node.epoch, 0))
        hello = await chan.receive()
        if isinstance(hello, Reject):
            raise ProtocolError(f"replica refused the connection: {hello.message}")
        if not isinstance(hello, Hello) or hello.role is not Role.REPLICA:
            raise ProtocolError(f"expected HELLO from a replica, got {type(hello).__name__}")
        if hello.node_id != self.index or hello.object_name != node.object_name:
            raise ProtocolError(
                f"{self.address} is replica {hello.node_id} for object {hello.object_name!r}, but is "
                f"configured as replica {self.index} for {node.object_name!r}"
            )

    async def _prepare(self, chan: Channel) -> Promise | Reject:
        await chan.send(Prepare(self.node.epoch))
        msg = await chan.receive()
        if msg is None:
            raise trio.BrokenResourceError("replica closed the connection")
        if not isinstance(msg, Promise | Reject):
            raise ProtocolError(f"expected PROMISE or REJECT after PREPARE, got {type(msg).__name__}")
        return msg

    def _rejected(self, msg: Reject) -> None:
        self.last_error = f"rejected: {msg.reason.name}: {msg.message}"
        log.warning("replica %d rejected: %s (%s)", self.index, msg.reason.name, msg.message)

    async def _recovering(self, chan: Channel) -> None:
        """Recovery (spec: ReceivePrepare, Recover): PROMISE, then FETCH/ENTRIES if chosen."""
        node, i = self.node, self.index
        answer = await self._prepare(chan)
        if isinstance(answer, Reject):
            self._rejected(answer)
            node.recovery_effects(
                node.recovery.on_reject(i, answer.promised_epoch, issued=node.issued_epoch(answer.promised_epoch))
            )
            raise ProtocolError(f"PREPARE refused: {answer.message}")
        node.recovery_effects(node.recovery.on_promise(i, answer))
        while node.state is None and not node.stopped:
            from_seq = await self.fetch_recv.receive()
            if from_seq is None:
                return
            await chan.send(Fetch(node.epoch, from_seq, MAX_CATCH_UP_BYTES))
            msg = await chan.receive()
            if isinstance(msg, Entries):
                node.recovery_effects(node.recovery.on_entries(i, msg.entries, msg.final))
            elif isinstance(msg, Reject):
                self._rejected(msg)
                node.recovery_effects(
                    node.recovery.on_reject(i, msg.promised_epoch, issued=node.issued_epoch(msg.promised_epoch))
                )
                raise ProtocolError(f"FETCH refused: {msg.message}")
            elif msg is None:
                raise trio.BrokenResourceError("replica closed the connection")
            else:
                raise ProtocolError(f"expected ENTRIES after FETCH, got {type(msg).__name__}")

    async def _serving(self, chan: Channel) -> None:
        node, state = self.node, self.node.state
        assert state is not None
        answer = await self._prepare(chan)
        if isinstance(answer, Reject):
            self._rejected(answer)
            node.execute(
                state.on_reject(
                    self.index,
                    reason=answer.reason,
                    promised_epoch=answer.promised_epoch,
                    message=answer.message,
                    issued=node.issued_epoch(answer.promised_epoch),
                )
            )
            return
        self.queue.clear()
        self.control.clear()
        self.catching_up = False
        node.execute(state.on_connected(self.index, answer, now_us=now_us()))
        await self._session(chan)

    async def _session(self, chan: Channel) -> None:
        """Send and receive until the connection ends; record why it ended.

        trio wraps errors from a nursery in an ExceptionGroup, hence ``except*``.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sender, chan)
                await self._receiver(chan)
                nursery.cancel_scope.cancel()
            self.last_error = "connection closed by replica"
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as eg:
            self.last_error = f"connection lost: {eg.exceptions[0]!r}"
        except* ProtocolError as eg:
            self.last_error = f"protocol error: {eg.exceptions[0]}"
            log.warning("replica %d (%s): %s", self.index, self.address, eg.exceptions[0])

    async def _sender(self, chan: Channel) -> None:
        state = self.node.state
        assert state is not None
        max_bytes = state.config.max_batch_bytes
        while True:
            while not self.queue and not self.control:
                self._wake = trio.Event()
                await self._wake.wait()
            while self.control:
                await chan.send(self.control.popleft())
            if not self.queue:
                continue
            # A catch-up (SendEntries.whole) goes out in one frame through the log end, however
            # large (up to the frame limit): a replica holding another epoch's log adopts ours
            # only from a frame that reaches our log end (docs/failover.md).
            limit = MAX_CATCH_UP_BYTES if self.catching_up else max_bytes
            self.catching_up = False
            batch: list[Entry] = []
            size = 0
            while self.queue and (not batch or size + self.queue[0].size <= limit):
                e = self.queue.popleft()
                batch.append(e)
                size += e.size
            await chan.send(Append(state.epoch, state.durable_seq, state.last_seq, tuple(batch)))

    async def _receiver(self, chan: Channel) -> None:
        node, state = self.node, self.node.state
        assert state is not None
        while True:
            msg = await chan.receive()
            if msg is None or node.state is not state:
                return  # the node moved on to another epoch (a restore): this session is over
            if isinstance(msg, Ack):
                node.execute(
                    state.on_ack(
                        self.index,
                        epoch=msg.epoch,
                        stored_through=msg.stored_through,
                        chain=msg.chain,
                        log_epoch=msg.log_epoch,
                        now_us=now_us(),
                        issued=node.issued_epoch(msg.epoch),
                    )
                )
            elif isinstance(msg, Promise):
                node.execute(state.on_promise(self.index, msg))
            elif isinstance(msg, Reject):
                self._rejected(msg)
                node.execute(
                    state.on_reject(
                        self.index,
                        reason=msg.reason,
                        promised_epoch=msg.promised_epoch,
                        message=msg.message,
                        issued=node.issued_epoch(msg.promised_epoch),
                    )
                )
                if msg.reason is not RejectReason.STALE_EPOCH:
                    return
            else:
                raise ProtocolError(f"expected ACK, PROMISE or REJECT from a replica, got {type(msg).__name__}")


class PrimaryNode:
    """A primary for one object: recovers (view change), then serves.

    The epoch comes from ``placement`` (``EpochAllocator.allocate``: never issued twice) or, for
    a fixed single-primary setup, from ``epoch``. The local database is never trusted: it is
    rebuilt from the recovered log by verified replay before anything is served.
    """

    def __init__(
        self,
        *,
        object_name: str,
        app: App,
        replica_addresses: list[str],
        data_dir: str,
        transport: Transport,
        epoch: int | None = None,
        placement: EpochAllocator | None = None,
        quorum: int = 3,
        deadline_s: float = 30.0,
        tick_s: float = 0.05,
        checkpoint_frames: int = 1000,
        archive: ArchiveShipper | None = None,
        restore_to: str | None = None,
        wall_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        """``archive``: ships the durable log to an object store (segments, snapshots) once
        recovery is done; None runs without an archive (no PITR). ``restore_to``: a bookmark to
        restore the object to before serving (as if a client had asked with ``__restore__``).
        ``wall_us``: the wall clock entries are stamped with (a simulation passes its own)."""
        self.object_name = check_object_name(object_name)
        self.archive = archive
        self._nursery: trio.Nursery | None = None
        if (epoch is None) == (placement is None):
            raise WalrelayError("give a primary either an epoch or a placement directory, not both or neither")
        if restore_to is not None:
            parse_bookmark(restore_to)
            if placement is None or archive is None:
                raise WalrelayError("a restore needs --placement (it takes a second epoch) and an archive")
        self.placement = placement
        self.restore_to = restore_to
        self.wall_us = wall_us
        self.started_us = wall_us()  # before any write of this primary: a new archive's creation time
        self.branch = 1  # the branch the database is on (branching.read_meta)
        self.meta: Meta | None = None
        self.restoring: str | None = None  # the target of the restore in progress
        self.restore_plan: _RestorePlan | None = None
        self.restored: dict[str, Any] | None = None  # the restore this process performed (status reads meta)
        self._gate_held = False  # the input gate would open, but a restore runs first
        self.restore_error: str | None = None  # why the last requested restore was dropped
        self._shipping = trio.CancelScope()
        self._ship_done = trio.Event()
        self._ship_done.set()  # nothing is shipping yet
        self.epoch = placement.allocate(self.object_name) if placement is not None else int(epoch or 0)
        self.transport = transport
        self.tick_s = tick_s
        self.app = app
        self.checkpoint_frames = checkpoint_frames
        self.config = PrimaryConfig(
            epoch=self.epoch, replicas=len(replica_addresses), quorum=quorum, deadline_us=int(deadline_s * 1e6)
        )
        self.recovery = Recovery(epoch=self.epoch, replicas=self.config.replicas, fence_quorum=self.config.fence_quorum)
        self.state: PrimaryState | None = None  # set once recovery ends
        self.runtime: ObjectRuntime | None = None
        self.links = [ReplicaLink(self, i, a) for i, a in enumerate(replica_addresses)]
        self.waiters: dict[int, _Waiter] = {}
        self._tokens = itertools.count(1)
        self.gate_event = trio.Event()  # set when the input gate opens, or when it never will
        self.gave_up: str | None = None
        self.stopped = False
        os.makedirs(data_dir, exist_ok=True)
        self.db_path = os.path.join(data_dir, f"{self.object_name}.db")

    # -- recovery ------------------------------------------------------------------------------

    def issued_epoch(self, promised: int) -> int | None:
        """The highest epoch placement has issued, asked only when a replica names a promise above
        ours (R-7.3-3): above every issued epoch, it is corrupt, not a newer primary. None (believe
        it, and stop) when there is no allocator to ask or it cannot be read: stopping is safe."""
        if promised <= self.epoch or self.placement is None:
            return None
        try:
            issued = self.placement.current(self.object_name)
        except PlacementError as e:
            log.warning("object %s: cannot read placement to judge promise %d: %s", self.object_name, promised, e)
            return None
        if promised > issued:
            log.error(
                "object %s epoch %d: a replica promised epoch %d, but the highest epoch issued is %d: its state is "
                "corrupt; counted as down (repair it as after a lost disk)",
                self.object_name,
                self.epoch,
                promised,
                issued,
            )
        return issued

    def recovery_effects(self, effects: list[RecoveryEffect]) -> None:
        for eff in effects:
            if isinstance(eff, SendFetch):
                self.links[eff.replica].fetch_send.send_nowait(eff.from_seq)
            elif isinstance(eff, ReadArchive):
                if self.archive is None or self._nursery is None:
                    self.recovery_effects(
                        self.recovery.on_archive_failed("this primary has no archive configured (--archive or --s3)")
                    )
                else:
                    self._nursery.start_soon(self._read_archive_end)
            elif isinstance(eff, Recovered) and self.restore_plan is not None:
                try:
                    self._install_restored(self.restore_plan)
                except (ChainError, WalrelayError) as e:
                    self._give_up(f"the restored database does not open: {e}")
                    return
                except OSError as e:
                    self._give_up(f"could not write the restored database {self.db_path}: {e}")
                    return
                for link in self.links:
                    link.fetch_send.send_nowait(None)
            elif isinstance(eff, Recovered):
                try:
                    self._install(eff.entries, eff.base_seq, eff.base_chain, eff.base_branch, eff.base_entry)
                except (ChainError, WalrelayError) as e:
                    self._give_up(f"the recovered log does not replay: {e}")
                    return
                except OSError as e:
                    self._give_up(f"could not write the rebuilt database {self.db_path}: {e}")
                    return
                log.info(
                    "object %s epoch %d: recovered %d entries%s; re-replicating",
                    self.object_name,
                    self.epoch,
                    len(eff.entries),
                    "" if eff.source is None else f" from replica {eff.source}",
                )
                for link in self.links:
                    link.fetch_send.send_nowait(None)
                self._start_shipping()
                self.restoring = self._restore_target()  # if any, the gate stays shut: _begin_restore runs
            elif isinstance(eff, GiveUp):
                self._give_up(eff.reason)

    async def _read_archive_end(self) -> None:
        """Recovery needs the archive (the chosen replica truncated its log): where does each
        branch end? (Recovery picks the one whose chain the replica's log has.)"""
        assert self.archive is not None
        reader = ArchiveReader(self.archive.store, self.object_name)
        recovery = self.recovery
        try:
            ends = await self.archive.run_io(reader.ends)
            if not ends:
                raise ArchiveError(f"no archive of {self.object_name!r} in {self.archive.store.describe()}")
        except WalrelayError as e:
            self.recovery_effects(recovery.on_archive_failed(str(e)))
            return
        self.recovery_effects(recovery.on_archive([ArchiveEnd(b, end, chain) for b, end, chain in ends]))

    def _start_shipping(self) -> None:
        """Ship the log of the database's branch (read from it: branching.py) to the archive."""
        assert self.state is not None and self.runtime is not None
        self.meta = read_meta(self.runtime.capture.conn)
        self.branch = self.meta.branch
        if self.archive is None or self._nursery is None:
            return
        self.state.archive_catchup = True
        self.archive.branch, self.archive.record = self.meta.branch, self.meta.record
        self.archive.writer = self.epoch  # names its manifests: an epoch is issued once
        self.archive.created_us = self.started_us
        self._shipping = trio.CancelScope()
        self._ship_done = trio.Event()
        self._ship_done.set()  # nothing is shipping yet
        self._ship_done = trio.Event()
        self._nursery.start_soon(self._ship, self._shipping, self._ship_done, self.state, self.runtime)

    async def _ship(
        self, scope: trio.CancelScope, done: trio.Event, state: PrimaryState, runtime: ObjectRuntime
    ) -> None:
        assert self.archive is not None
        try:
            with scope:
                await self.archive.run(state, runtime, now_us, self._archived)
        finally:
            done.set()

    async def _catch_up_from_archive(self, eff: ReadArchiveEntries) -> None:
        """A replica needs entries this primary no longer retains: read them from the archive."""
        assert self.archive is not None
        reader = ArchiveReader(self.archive.store, self.object_name)
        try:
            branch, _ = await self.archive.run_io(reader.resolve, self.branch, eff.first)
            entries = await self.archive.run_io(reader.entries_between, branch, eff.first, eff.last)
        except WalrelayError as e:
            log.warning("replica %d catch-up from the archive failed: %s", eff.replica, e)
            if self.state is not None:
                self.state.notes[eff.replica] = f"catch-up from the archive failed: {e}"
                self.state.pins.pop(eff.replica, None)
            return
        if self.state is not None:
            self.execute(self.state.on_archive_entries(eff.replica, eff.connection, entries))

    def _archived(self, seq: int) -> None:
        if self.state is not None:
            self.execute(self.state.on_archived(seq))

    def _give_up(self, reason: str) -> None:
        log.error("object %s epoch %d: recovery gave up: %s", self.object_name, self.epoch, reason)
        self.gave_up = reason
        self.stopped = True
        self.gate_event.set()

    def _install(
        self,
        entries: tuple[Entry, ...],
        base_seq: int = 0,
        base_chain: bytes = GENESIS_CHAIN,
        base_branch: int = 1,
        base_entry: Entry | None = None,
    ) -> None:
        """Rebuild the database from the recovered log alone (the archive through ``base_seq``, then
        ``entries``), verifying every entry's checksum, and only then start the write path on it.
        Whatever the local disk held is dropped: it may contain commits that never became durable
        (docs/failover.md)."""
        image = b""
        expected: int | None = None
        retained = entries
        if base_seq > 0:
            assert self.archive is not None
            reader = ArchiveReader(self.archive.store, self.object_name)
            restored = reader.restore_image(base_seq, base_branch)
            if restored.chain != base_chain:
                raise ArchiveError(f"the archive's seq {base_seq} is not the one recovery chose")
            image = restored.image
            expected = DbChecksum.of_image(image, restored.page_size).value if image else None
            if entries:
                replayer = Replayer(image, restored.page_size, last_seq=base_seq, last_chain=base_chain)
                replayer.apply_all(entries)
                image, expected = bytes(replayer.image), entries[-1].db_checksum
            # The entry at the base is retained too: a replica whose log ends exactly there adopts
            # this epoch from a frame holding it (PrimaryState._resend_point).
            if base_entry is None:
                base_entry = reader.entry_at(reader.branch(base_branch), base_seq)
            retained = (base_entry, *entries)
        elif entries:
            replayer = Replayer(b"", entries[0].page_size)
            replayer.apply_all(entries)
            image, expected = bytes(replayer.image), entries[-1].db_checksum
        self._open_database(image, retained, expected)

    def _open_database(self, image: bytes, retained: tuple[Entry, ...], expected: int | None) -> None:
        """Replace whatever the local disk held by ``image`` (verified: ``expected`` checksum) and
        start the write path on it, continuing the log ``retained`` ends."""
        dropped = [p for p in (self.db_path, self.db_path + "-wal", self.db_path + "-shm") if os.path.exists(p)]
        if dropped:
            log.warning("object %s: discarding local %s; the recovered log decides", self.object_name, dropped)
        for path in dropped:
            os.remove(path)
        if image:
            replace_durably(self.db_path, image)
        self.state = PrimaryState(self.config, recovered=retained)
        self.runtime = ObjectRuntime(
            self.db_path,
            self.app,
            self.state,
            self.execute,
            monotonic_us=now_us,
            wall_us=self.wall_us,
            checkpoint_frames=self.checkpoint_frames,
            expect_checksum=expected,
        )

    # -- effects -------------------------------------------------------------------------------

    def execute(self, effects: list[PrimaryEffect]) -> None:
        for eff in effects:
            if isinstance(eff, SendEntries):
                self.links[eff.replica].enqueue(eff.entries, whole=eff.whole)
            elif isinstance(eff, ReleaseReply):
                w = self.waiters.pop(eff.token)
                w.event.set()
            elif isinstance(eff, FailReply):
                w = self.waiters.pop(eff.token)
                w.failed = eff.reason
                w.event.set()
            elif isinstance(eff, ResetObject):
                log.error("object %s reset: %s", self.object_name, eff.reason)
                self.stopped = True  # the links stop: a reset primary never sends again
                self.gate_event.set()
            elif isinstance(eff, SendAdmit):
                # PREPARE after ADMIT: the PROMISE that answers it says whether the vote stuck.
                self.links[eff.replica].send_control(Admit(self.epoch, eff.upto), Prepare(self.epoch))
            elif isinstance(eff, ReadArchiveEntries):
                if self._nursery is not None:
                    self._nursery.start_soon(self._catch_up_from_archive, eff)
            elif isinstance(eff, SendTruncate):
                self.links[eff.replica].send_control(Truncate(self.epoch, eff.through, eff.chain))
            elif isinstance(eff, OpenInputGate):
                if self.restoring is not None or self.restore_plan is not None:
                    self._gate_held = True
                    if self.restoring is not None and self._nursery is not None:
                        self._nursery.start_soon(self._begin_restore, self.restoring)
                        self.restoring = None
                    continue
                log.info("object %s epoch %d: serving", self.object_name, self.epoch)
                self.gate_event.set()

    # -- restore (docs/restore-branches.md; spec: BeginRestore, Recover for a restore) -----------

    async def _archive_io(self, fn: Any, *args: Any) -> Any:
        """One archive call, retried while the store does not answer (a restore waits it out)."""
        assert self.archive is not None
        delay = 0.1
        while True:
            try:
                return await self.archive.run_io(fn, *args)
            except TransientStoreError as e:
                log.warning("object %s: archive not reachable during the restore (will retry): %s", self.object_name, e)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _begin_restore(self, target: str) -> None:
        """BeginRestore, run by the first epoch once its recovered log is durable.

        The old branch is archived through its end first, so the undo point is restorable; then
        the database at the target is rebuilt from the archive and stored as the new branch's fork
        snapshot; then a second epoch from placement fences every older primary (a full recovery
        round) and installs it. The new branch is numbered by that epoch: epochs are never issued
        twice, so two restores can never write the same branch's keys."""
        state, archive, placement = self.state, self.archive, self.placement
        assert state is not None and archive is not None and placement is not None
        try:
            b, k = parse_bookmark(target)
            end, end_chain = state.last_seq, state.last_chain
            if b == self.branch and k > end:
                raise ArchiveError(f"bookmark {target} is beyond the end of branch {b} (seq {end})")
            if b > self.branch:
                raise ArchiveError(f"bookmark {target} names branch {b}, newer than this object's branch {self.branch}")
            log.info(
                "object %s epoch %d: restoring to %s; archiving branch %d through seq %d first",
                self.object_name,
                self.epoch,
                target,
                self.branch,
                end,
            )
            await archive.wait_archived(end)
            reader = ArchiveReader(archive.store, self.object_name)
            restored: Restored = await self._archive_io(reader.restore_image, k, b)
            base: Entry | None = None
            if k > 0:
                base = state.log.get(k) if b == self.branch else None
                if base is None:
                    base = await self._archive_io(self._entry_for, reader, b, k)
                if base.chain != restored.chain:
                    raise ArchiveError(f"the archive's entry at {target} does not match its restored database")
            new_epoch = placement.allocate(self.object_name)  # a small fsynced file, as in __init__
            branch = self.new_branch(new_epoch, b)
            if branch >= MAX_BRANCH:
                raise ArchiveError(f"epoch {new_epoch} is too large to number a branch (archive keys hold < 10^8)")
            record = BranchRecord(branch, b, k, restored.chain, bookmark(self.branch, end))
            checksum = DbChecksum.of_image(restored.image, restored.page_size).value
            fork = encode_snapshot(
                branch, k, restored.timestamp_us, restored.chain, restored.page_size, restored.image, checksum
            )
            await self._archive_io(archive.store.put, snapshot_key(self.object_name, branch, k), fork)
        except (WalrelayError, ObjectStoreError, ArchiveFormatError, ChainError, OSError) as e:
            self._restore_failed(target, f"restore to {target} failed: {e}")
            return
        log.info(
            "object %s: restore to %s: branch %d forks at seq %d; undo bookmark %s; taking epoch %d",
            self.object_name,
            target,
            branch,
            k,
            record.undo_bookmark,
            new_epoch,
        )
        # Epoch one is done: stop its shipping and its links, and recover again under the new
        # epoch, accepting only the log just archived (Recovery.expect).
        # The shipping task ends first: it reads the database it ships from (a cancelled task may
        # still run up to its next checkpoint), and the new branch reuses the ArchiveShipper.
        self._shipping.cancel()
        await self._ship_done.wait()
        if self.runtime is not None:
            self.runtime.close()
        self.restore_plan = _RestorePlan(record, restored, base)
        old_epoch, self.epoch = self.epoch, new_epoch
        self.config = replace(self.config, epoch=new_epoch)
        self.recovery = Recovery(
            epoch=new_epoch,
            replicas=self.config.replicas,
            fence_quorum=self.config.fence_quorum,
            expect=(old_epoch, end, end_chain),
        )
        self.state, self.runtime = None, None
        self._gate_held = False
        for link in self.links:
            link.restart()

    def _restore_target(self) -> str | None:
        """The restore this start must perform: a request in the log (it wins over the flag), or
        ``--restore-to``, unless the database's branch was already made by a restore to it (the
        flag left on a restarted command line must not restore again and again)."""
        meta = self.meta
        assert meta is not None
        if meta.pending_restore is not None:
            if self.restore_to is not None and self.restore_to != meta.pending_restore:
                log.warning(
                    "object %s: a restore to %s is pending in the log; --restore-to %s is ignored",
                    self.object_name,
                    meta.pending_restore,
                    self.restore_to,
                )
            return meta.pending_restore
        if self.restore_to is not None and meta.record is not None and meta.record.restored_to == self.restore_to:
            log.warning(
                "object %s: branch %d was made by a restore to %s already; --restore-to is ignored",
                self.object_name,
                meta.record.branch,
                self.restore_to,
            )
            return None
        return self.restore_to

    def _restore_failed(self, target: str, why: str) -> None:
        """A restore that cannot be done. Asked with --restore-to: the process exits with the error.
        Asked by a client (a request in the log): the request is dropped by a transaction, and the
        object serves as it was, with the reason in its status; else every start would fail again."""
        meta, runtime = self.meta, self.runtime
        if meta is None or meta.pending_restore != target or runtime is None:
            self._give_up(why)
            return
        log.error("object %s: %s; the request is dropped, the object serves as it was", self.object_name, why)
        try:
            runtime.run_system(clear_restore_request)
        except ObjectResetError as e:
            self._give_up(f"{why}; dropping the request failed too: {e}")
            return
        self.meta = read_meta(runtime.capture.conn)
        self.restore_error = why
        if self._gate_held:
            log.info("object %s epoch %d: serving", self.object_name, self.epoch)
            self.gate_event.set()

    @staticmethod
    def new_branch(new_epoch: int, target_branch: int) -> int:
        """Spec: a restore's branch is numbered by the epoch that makes it (never issued twice, and
        higher than every earlier branch's, so bookmarks keep sorting in history order). Numbering
        from the target (its branch + 1) would give two restores to one branch the same keys."""
        return new_epoch

    @staticmethod
    def _entry_for(reader: ArchiveReader, branch: int, seq: int) -> Entry:
        """The archived entry at ``seq`` of ``branch``'s history (at a fork point: the parent's)."""
        bl, _ = reader.resolve(branch, seq)
        try:
            return reader.entry_at(bl, seq)
        except ArchiveError:
            rec = reader.record(bl) if bl.record_key is not None else None
            if rec is None or rec.fork_seq != seq:
                raise
            return PrimaryNode._entry_for(reader, rec.parent, seq)

    def _install_restored(self, plan: _RestorePlan) -> None:
        """Recover for a restore: the restored database, its last entry as the retained log (the
        archive holds everything before: replicas that cannot join it start their log there), then
        the branch marker as the new branch's first entry."""
        image = plan.restored.image
        expected = DbChecksum.of_image(image, plan.restored.page_size).value if image else None
        self._open_database(image, (plan.base,) if plan.base is not None else (), expected)
        assert self.state is not None and self.runtime is not None
        self.state.archived_seq = plan.restored.seq  # the fork snapshot: TRUNCATE offers the base
        self.state.offer_base = True
        marker = self.runtime.run_system(lambda conn: write_branch_marker(conn, plan.record))
        self.meta = read_meta(self.runtime.capture.conn)
        self.branch = self.meta.branch
        if self._nursery is not None:
            self._nursery.start_soon(self._complete_restore, plan, marker)

    async def _complete_restore(self, plan: _RestorePlan, marker: int) -> None:
        """Once the marker is durable the new branch exists: record it in the archive, ship it,
        and open the input gate."""
        assert self.state is not None and self.archive is not None
        token = next(self._tokens)
        waiter = _Waiter()
        self.waiters[token] = waiter
        self.execute(self.state.hold(token, marker))
        await waiter.event.wait()
        if waiter.failed is not None:
            self._give_up(f"the restored branch never became durable: {waiter.failed}")
            return
        rec = plan.record
        self.archive.writer, self.archive.branch, self.archive.record = self.epoch, rec.branch, rec
        try:
            await self._archive_io(self.archive.record_branch)
        except WalrelayError as e:
            log.error("object %s: could not write the branch record (the next primary will): %s", self.object_name, e)
        self.restored = {
            "restored_to": rec.restored_to,
            "branch": rec.branch,
            "undo_bookmark": rec.undo_bookmark,
        }
        log.info(
            "object %s epoch %d: restored to %s, now on branch %d; undo bookmark %s",
            self.object_name,
            self.epoch,
            rec.restored_to,
            rec.branch,
            rec.undo_bookmark,
        )
        self.restore_plan = None
        self._start_shipping()
        if self._gate_held:
            log.info("object %s epoch %d: serving", self.object_name, self.epoch)
            self.gate_event.set()

    # -- serving -------------------------------------------------------------------------------

    async def run(self, listen: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen at once (requests wait for the input gate), recover, serve until cancelled.
        Raises WalrelayError if recovery gives up (say, a newer primary exists)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            address = await nursery.start(self.transport.serve, listen, self.handle_client)
            task_status.started(address)
            self.recovery_effects(self.recovery.start())
            for link in self.links:
                nursery.start_soon(link.run)
            nursery.start_soon(self._ticker)
            await self.gate_event.wait()
            if self.gave_up is not None:
                await trio.sleep(0.2)  # let waiting clients get their error replies
                nursery.cancel_scope.cancel()
        if self.gave_up is not None:
            raise WalrelayError(f"object {self.object_name} epoch {self.epoch}: recovery gave up: {self.gave_up}")

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.tick_s)
            if self.state is not None:
                self.execute(self.state.on_tick(now_us()))

    async def handle_client(self, stream: trio.abc.Stream) -> None:
        chan = Channel(stream)
        peer = peer_of(stream)  # None on an --insecure link (and in the simulation)
        async with trio.open_nursery() as nursery:
            # Replies already promised keep their tasks in this nursery: a protocol error later
            # on the same connection closes it only after they have been sent or failed.
            try:
                while True:
                    msg = await chan.receive()
                    if msg is None:
                        break
                    if not isinstance(msg, Request):
                        raise ProtocolError(f"expected REQUEST from a client, got {type(msg).__name__}")
                    await self._handle_request(chan, msg, nursery, peer)
            except ProtocolError as e:
                log.warning("client protocol error: %s; closing that connection", e)
                with trio.move_on_after(1):
                    await self._send_quietly(
                        chan, Reply(0, ReplyStatus.ERROR, {"type": "ProtocolError", "message": str(e)})
                    )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _handle_request(
        self, chan: Channel, msg: Request, nursery: trio.Nursery, peer: Identity | None = None
    ) -> None:
        op = msg.body["op"]
        args = msg.body.get("args", [])
        if op in ADMIN_OPS and peer is not None and peer.role != "admin":
            # Changing the object's history needs an admin certificate; nothing is changed.
            why = f"{op} changes the object's history: it needs an admin certificate, and this client is {peer}"
            await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "Forbidden", "message": why}))
            log.warning("object %s: refused %s from %s (not an admin)", self.object_name, op, peer)
            return
        if op == STATUS_OP:
            await chan.send(Reply(msg.request_id, ReplyStatus.OK, self.status()))
            return
        if op == OPS_OP:  # static: answered at once, like __status__
            ops = {"app": self.app.name, "operations": self.app.describe(), "system": list(SYSTEM_OPS)}
            await chan.send(Reply(msg.request_id, ReplyStatus.OK, ops))
            return
        if not isinstance(args, list):
            await chan.send(
                Reply(
                    msg.request_id,
                    ReplyStatus.ERROR,
                    {"type": "BadRequest", "message": "args must be a list"},
                )
            )
            return
        await self.gate_event.wait()  # the input gate: closed while recovering and syncing
        if self.runtime is None or self.state is None or not self.state.serving:
            why = self.gave_up or (self.state.reset_reason if self.state is not None else None) or "not serving"
            await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "ObjectReset", "message": why}))
            return
        if op in (BOOKMARK_OP, BOOKMARK_FOR_TIME_OP):
            await self._bookmark_request(chan, msg, op, args, nursery)
            return
        if op == RESTORE_OP:
            await self._restore_request(chan, msg, args, nursery)
            return
        if op == SNAPSHOT_OP:
            nursery.start_soon(self._snapshot_request, chan, msg)
            return
        if self.meta is not None and self.meta.pending_restore is not None:
            why = (
                f"a restore to {self.meta.pending_restore} is pending (undo bookmark {self.meta.undo_bookmark}); "
                "restart the object to apply it"
            )
            await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "RestorePending", "message": why}))
            return
        try:
            outcome = self.runtime.run(op, args)
        except ObjectResetError as e:
            await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "ObjectReset", "message": str(e)}))
            return
        status = ReplyStatus.OK if outcome.ok else ReplyStatus.ERROR
        self._reply_when_durable(
            nursery, chan, outcome.seq, Reply(msg.request_id, status, outcome.value), wrote=outcome.wrote
        )

    def _reply_when_durable(
        self, nursery: trio.Nursery, chan: Channel, seq: int, reply: Reply, *, wrote: bool = False
    ) -> None:
        """The output gate for one reply: hold it until entries through ``seq`` are durable. If the
        object resets first, a reply that depended on a write of its own is UNKNOWN (the write may
        survive), any other an ObjectReset error."""
        assert self.state is not None
        token = next(self._tokens)
        waiter = _Waiter()
        self.waiters[token] = waiter
        self.execute(self.state.hold(token, seq))

        async def reply_when_released() -> None:
            await waiter.event.wait()
            out = reply
            if waiter.failed is not None:
                status, kind = (ReplyStatus.UNKNOWN, "NotDurable") if wrote else (ReplyStatus.ERROR, "ObjectReset")
                out = Reply(reply.request_id, status, {"type": kind, "message": waiter.failed})
            await self._send_quietly(chan, out)

        nursery.start_soon(reply_when_released)

    async def _snapshot_request(self, chan: Channel, msg: Request) -> None:
        """A snapshot on demand: of the database as it is now (at least), answered once the store
        has it, with its bookmark; an error if there is no archive or it stopped."""
        state = self.state
        assert state is not None
        if self.archive is None:
            why = "this primary has no archive (--archive or --s3)"
            await self._send_quietly(
                chan, Reply(msg.request_id, ReplyStatus.ERROR, {"type": "NoArchive", "message": why})
            )
            return
        try:
            seq = await self.archive.snapshot_now(state.last_seq)
        except WalrelayError as e:
            body = {"type": "ArchiveError", "message": str(e)}
            await self._send_quietly(chan, Reply(msg.request_id, ReplyStatus.ERROR, body))
            return
        ok: dict[str, Any] = {"bookmark": bookmark(self.branch, seq), "seq": seq}
        await self._send_quietly(chan, Reply(msg.request_id, ReplyStatus.OK, ok))

    async def _restore_request(self, chan: Channel, msg: Request, args: list[Any], nursery: trio.Nursery) -> None:
        """restore(bookmark) (Durable Objects' onNextSessionRestoreBookmark): recorded in the log now,
        performed by the object's next start. The answer, held until the request is durable, is
        the undo bookmark: the point right after the request. Writes are refused from then on, so
        that point is exactly the state the restore replaces."""
        state, runtime = self.state, self.runtime
        assert state is not None and runtime is not None

        async def error(kind: str, why: str) -> None:
            await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": kind, "message": why}))

        if len(args) != 1 or not isinstance(args[0], str):
            return await error("BadRequest", "restore takes one argument: a bookmark")
        if self.archive is None or self.placement is None:
            return await error("RestoreUnavailable", "this primary has no archive, or no placement to take epochs from")
        try:
            b, k = parse_bookmark(args[0])
        except (ValueError, WalrelayError) as e:
            return await error("BadRequest", str(e))
        target = bookmark(b, k)
        if b > self.branch or (b == self.branch and k > state.last_seq):
            return await error("UnknownBookmark", f"bookmark {target} is beyond this object's history")
        # A point of this branch the archive does not hold yet is fine: the restore archives the
        # branch through its end first. Any other must be in the archive (retention, branches).
        if b != self.branch or k < state.archived_seq:
            reader = ArchiveReader(self.archive.store, self.object_name)
            try:
                await self.archive.run_io(reader.restore_point_check, b, k)
            except WalrelayError as e:
                return await error("UnknownBookmark", f"cannot restore to {target}: {e}")
        if self.meta is not None and self.meta.pending_restore is not None:
            return await error("RestorePending", f"a restore to {self.meta.pending_restore} is already pending")
        undo = bookmark(self.branch, state.last_seq + 1)  # the request's own entry
        try:
            seq = runtime.run_system(lambda conn: write_restore_request(conn, target, undo))
        except ObjectResetError as e:
            return await error("ObjectReset", str(e))
        self.meta = read_meta(runtime.capture.conn)
        answer = {"undo_bookmark": bookmark(self.branch, seq), "restore_to": target, "applies": "on the next start"}
        self._reply_when_durable(nursery, chan, seq, Reply(msg.request_id, ReplyStatus.OK, answer), wrote=True)

    async def _bookmark_request(
        self, chan: Channel, msg: Request, op: str, args: list[Any], nursery: trio.Nursery
    ) -> None:
        """current_bookmark() and bookmark_for_time(t) (Durable Objects' PITR API). The reply is
        held like a read's: until the point it names is durable, so a bookmark a client gets can
        always be restored."""
        state = self.state
        assert state is not None
        branch = self.branch
        if op == BOOKMARK_OP:
            seq = state.last_seq
        else:
            t_us = _time_arg(args)
            if isinstance(t_us, str):
                await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "BadRequest", "message": t_us}))
                return
            try:
                branch, seq = await self._seq_for_time(state, t_us)
            except WalrelayError as e:
                await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "ArchiveError", "message": str(e)}))
                return
        point = {"bookmark": bookmark(branch, seq), "seq": seq}
        # A point of an older branch is archived already; one of ours waits until it is durable.
        held = seq if branch == self.branch else 0
        self._reply_when_durable(nursery, chan, held, Reply(msg.request_id, ReplyStatus.OK, point))

    async def _seq_for_time(self, state: PrimaryState, t_us: int) -> tuple[int, int]:
        """(branch, seq) of the last entry with timestamp <= t (0: before the first). Timestamps
        never go back along the log (NextTs), so the retained log answers for recent times and the
        archive for older ones (across the branch's parents: reader.point_for_time)."""
        retained = sorted(state.log)
        if retained and state.log[retained[0]].timestamp_us <= t_us:
            return self.branch, max(s for s in retained if state.log[s].timestamp_us <= t_us)
        if self.branch == 1 and (retained[:1] == [1] or state.last_seq == 0):
            return self.branch, 0  # before the first entry ever: the empty database
        if self.archive is None:
            raise ArchiveError(f"time {_iso(t_us)} is older than this primary's log, and there is no archive to search")
        reader = ArchiveReader(self.archive.store, self.object_name)
        branch, seq = await self.archive.run_io(reader.point_for_time, t_us, self.branch)
        oldest = retained[0] if retained else state.last_seq + 1
        if branch == self.branch and seq >= state.archived_seq and seq < oldest - 1:
            # Every archived entry is at or before t, and the entries between the archive's end
            # and what this primary retains are in neither: the answer may lie among them.
            raise ArchiveError(
                f"time {_iso(t_us)} falls after seq {seq}, but entries {seq + 1}..{oldest - 1} are not archived yet; "
                "try again once the archive has caught up"
            )
        return branch, seq

    @staticmethod
    async def _send_quietly(chan: Channel, reply: Reply) -> None:
        # If the client went away, its outcome stays what it was; nothing to tell anyone.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await chan.send(reply)

    def phase(self) -> str:
        """The spec's pstate: recovering, syncing, serving, fenced (reset), or gave up."""
        st = self.state
        if self.gave_up is not None:
            return "gave up"
        if st is None:
            return "restoring" if self.restore_plan is not None else "recovering"
        if self.restore_plan is not None or (self._gate_held and not self.gate_event.is_set()):
            return "restoring"
        if st.reset_reason is not None:
            return "reset"
        return "serving" if st.serving else "syncing"

    def _restored_status(self) -> dict[str, Any] | None:
        """The restore that made this branch (from the database: it survives failovers)."""
        rec = self.meta.record if self.meta is not None else None
        if rec is None:
            return None
        return {"restored_to": rec.restored_to, "branch": rec.branch, "undo_bookmark": rec.undo_bookmark}

    def status(self) -> dict[str, Any]:
        st = self.state
        out: dict[str, Any] = {
            "object": self.object_name,
            "epoch": self.epoch,
            "phase": self.phase(),
            "quorum": self.config.quorum,
            "fence_quorum": self.config.fence_quorum,
            "gave_up": self.gave_up,
            "archive": self.archive.status() if self.archive is not None else None,
            "branch": self.branch,
            "pending_restore": self.meta.pending_restore if self.meta is not None else None,
            "restored": self._restored_status(),
            "restore_error": self.restore_error,
        }
        if st is None:
            promises = self.recovery.promises
            out["promises"] = {str(r): {"voter": p.voter, "last_seq": p.last_seq} for r, p in promises.items()}
            out["replicas"] = [
                {"replica": i, "address": lk.address, "error": lk.last_error} for i, lk in enumerate(self.links)
            ]
            return out
        replicas = st.replica_status()
        for row, link in zip(replicas, self.links, strict=True):
            row["address"] = link.address
            row["error"] = link.last_error
        out.update(
            last_seq=st.last_seq,
            durable_seq=st.durable_seq,
            recovered_end=st.recovered_end,
            held_replies=len(st.held),
            reset=st.reset_reason,
            replicas=replicas,
        )
        return out

    async def drain(self, timeout_s: float = 10.0) -> None:
        """A clean stop (SIGTERM): upload what the archive still lacks of the durable log."""
        if self.archive is not None and self.state is not None and self.state.reset_reason is None:
            n = await self.archive.drain(self.state, timeout_s)
            if n:
                log.info("object %s: archived %d more objects before stopping", self.object_name, n)

    def close(self) -> None:
        self.stopped = True
        if self.runtime is not None:
            self.runtime.close()
