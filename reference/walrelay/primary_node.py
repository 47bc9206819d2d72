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
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from walrelay.app import App
from walrelay.archive.format import bookmark
from walrelay.archive.reader import ArchiveError, ArchiveReader
from walrelay.archive.shipper import BRANCH as ARCHIVE_BRANCH
from walrelay.archive.shipper import ArchiveShipper
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.errors import ChainError, ObjectResetError, ProtocolError, WalrelayError
from walrelay.fsutil import replace_durably
from walrelay.object_runtime import ObjectRuntime
from walrelay.pagehash import DbChecksum
from walrelay.placement import EpochAllocator
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
from walrelay.recovery import GiveUp, ReadArchive, Recovered, Recovery, RecoveryEffect, SendFetch
from walrelay.replay import Replayer
from walrelay.replica_store import check_object_name
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
BOOKMARK_FOR_TIME_OP = "__bookmark_for_time__"  # bookmark_for_time(t_us): the last entry at or before t


def now_us() -> int:
    return int(trio.current_time() * 1_000_000)


@dataclass
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    failed: str | None = None


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
            try:
                stream = await node.transport.connect(self.address)
            except OSError as e:
                self.last_error = f"connect failed: {e}"
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
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
            backoff = min(backoff * 2, 5.0) if refused else 0.05

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
            node.recovery_effects(node.recovery.on_reject(i, answer.promised_epoch))
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
                node.recovery_effects(node.recovery.on_reject(i, msg.promised_epoch))
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
                    self.index, reason=answer.reason, promised_epoch=answer.promised_epoch, message=answer.message
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
            if msg is None:
                return
            if isinstance(msg, Ack):
                node.execute(
                    state.on_ack(
                        self.index,
                        epoch=msg.epoch,
                        stored_through=msg.stored_through,
                        chain=msg.chain,
                        log_epoch=msg.log_epoch,
                        now_us=now_us(),
                    )
                )
            elif isinstance(msg, Promise):
                node.execute(state.on_promise(self.index, msg))
            elif isinstance(msg, Reject):
                self._rejected(msg)
                node.execute(
                    state.on_reject(
                        self.index, reason=msg.reason, promised_epoch=msg.promised_epoch, message=msg.message
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
    ) -> None:
        """``archive``: ships the durable log to an object store (segments, snapshots) once
        recovery is done; None runs without an archive (no PITR)."""
        self.object_name = check_object_name(object_name)
        self.archive = archive
        self._nursery: trio.Nursery | None = None
        if (epoch is None) == (placement is None):
            raise WalrelayError("give a primary either an epoch or a placement directory, not both or neither")
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
            elif isinstance(eff, Recovered):
                try:
                    self._install(eff.entries, eff.base_seq, eff.base_chain)
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
                if self.archive is not None and self._nursery is not None:
                    assert self.state is not None and self.runtime is not None
                    self.state.archive_catchup = True
                    self._nursery.start_soon(self.archive.run, self.state, self.runtime, now_us, self._archived)
            elif isinstance(eff, GiveUp):
                self._give_up(eff.reason)

    async def _read_archive_end(self) -> None:
        """Recovery needs the archive (the chosen replica truncated its log): where does it end?"""
        assert self.archive is not None
        reader = ArchiveReader(self.archive.store, self.object_name)
        try:
            listing = await self.archive.run_io(reader.listing)
            branch = listing.branches.get(ARCHIVE_BRANCH)
            if branch is None:
                raise ArchiveError(f"no archive of {self.object_name!r} in {self.archive.store.describe()}")
            end, chain = await self.archive.run_io(reader.end, branch)
        except WalrelayError as e:
            self.recovery_effects(self.recovery.on_archive_failed(str(e)))
            return
        self.recovery_effects(self.recovery.on_archive(end, chain))

    async def _catch_up_from_archive(self, eff: ReadArchiveEntries) -> None:
        """A replica needs entries this primary no longer retains: read them from the archive."""
        assert self.archive is not None
        reader = ArchiveReader(self.archive.store, self.object_name)
        try:
            branch = await self.archive.run_io(reader.branch, ARCHIVE_BRANCH)
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

    def _install(self, entries: tuple[Entry, ...], base_seq: int = 0, base_chain: bytes = GENESIS_CHAIN) -> None:
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
            restored = reader.restore_image(base_seq, ARCHIVE_BRANCH)
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
            retained = (reader.entry_at(reader.branch(ARCHIVE_BRANCH), base_seq), *entries)
        elif entries:
            replayer = Replayer(b"", entries[0].page_size)
            replayer.apply_all(entries)
            image, expected = bytes(replayer.image), entries[-1].db_checksum
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
                    await self._handle_request(chan, msg, nursery)
            except ProtocolError as e:
                log.warning("client protocol error: %s; closing that connection", e)
                with trio.move_on_after(1):
                    await self._send_quietly(
                        chan, Reply(0, ReplyStatus.ERROR, {"type": "ProtocolError", "message": str(e)})
                    )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _handle_request(self, chan: Channel, msg: Request, nursery: trio.Nursery) -> None:
        op = msg.body["op"]
        args = msg.body.get("args", [])
        if op == STATUS_OP:
            await chan.send(Reply(msg.request_id, ReplyStatus.OK, self.status()))
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

    async def _bookmark_request(
        self, chan: Channel, msg: Request, op: str, args: list[Any], nursery: trio.Nursery
    ) -> None:
        """current_bookmark() and bookmark_for_time(t) (Durable Objects' PITR API). The reply is
        held like a read's: until the point it names is durable, so a bookmark a client gets can
        always be restored."""
        state = self.state
        assert state is not None
        if op == BOOKMARK_OP:
            seq = state.last_seq
        else:
            if len(args) != 1 or not isinstance(args[0], int) or isinstance(args[0], bool) or args[0] < 0:
                why = "bookmark_for_time takes one argument: microseconds since the epoch"
                await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "BadRequest", "message": why}))
                return
            try:
                seq = await self._seq_for_time(state, args[0])
            except WalrelayError as e:
                await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "ArchiveError", "message": str(e)}))
                return
        point = {"bookmark": bookmark(ARCHIVE_BRANCH, seq), "seq": seq}
        self._reply_when_durable(nursery, chan, seq, Reply(msg.request_id, ReplyStatus.OK, point))

    async def _seq_for_time(self, state: PrimaryState, t_us: int) -> int:
        """The last entry with timestamp <= t (0: before the first). Timestamps never go back along
        the log (NextTs), so the retained log answers for recent times and the archive for older."""
        retained = sorted(state.log)
        if retained and state.log[retained[0]].timestamp_us <= t_us:
            return max(s for s in retained if state.log[s].timestamp_us <= t_us)
        if retained[:1] == [1] or state.last_seq == 0:
            return 0  # before the first entry ever: the empty database
        if self.archive is None:
            raise ArchiveError(f"time {t_us} is older than this primary's log, and there is no archive to search")
        reader = ArchiveReader(self.archive.store, self.object_name)
        seq: int = await self.archive.run_io(reader.seq_for_time, t_us, ARCHIVE_BRANCH)
        oldest = retained[0] if retained else state.last_seq + 1
        if seq >= state.archived_seq and seq < oldest - 1:
            # Every archived entry is at or before t, and the entries between the archive's end
            # and what this primary retains are in neither: the answer may lie among them.
            raise ArchiveError(
                f"time {t_us} falls after seq {seq}, but entries {seq + 1}..{oldest - 1} are not archived yet; "
                "try again once the archive has caught up"
            )
        return seq

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
            return "recovering"
        if st.reset_reason is not None:
            return "reset"
        return "serving" if st.serving else "syncing"

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
