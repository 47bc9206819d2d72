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
from walrelay.entry import Entry
from walrelay.errors import ObjectResetError, ProtocolError, WalrelayError
from walrelay.object_runtime import ObjectRuntime
from walrelay.primary import (
    FailReply,
    PrimaryConfig,
    PrimaryEffect,
    PrimaryState,
    ReleaseReply,
    ResetObject,
    SendEntries,
)
from walrelay.replica_store import check_object_name
from walrelay.transport import Channel, Transport
from walrelay.wire import (
    DEFAULT_MAX_FRAME,
    Ack,
    Append,
    Hello,
    Reject,
    RejectReason,
    Reply,
    ReplyStatus,
    Request,
    Role,
)

log = logging.getLogger("walrelay.primary")

STATUS_OP = "__status__"


def now_us() -> int:
    return int(trio.current_time() * 1_000_000)


@dataclass
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    failed: str | None = None


# A catch-up frame must fit a replica's frame limit (the default one; headers take < 1 KiB).
MAX_CATCH_UP_BYTES = DEFAULT_MAX_FRAME - 4096


class ReplicaLink:
    def __init__(self, node: PrimaryNode, index: int, address: str) -> None:
        self.node = node
        self.index = index
        self.address = address
        self.queue: deque[Entry] = deque()
        self.catching_up = False  # the queue holds a range that must go out in one frame
        self._wake = trio.Event()
        self.last_error: str | None = None

    def enqueue(self, entries: tuple[Entry, ...], *, whole: bool) -> None:
        self.queue.extend(entries)
        self.catching_up = self.catching_up or whole
        self._wake.set()

    async def run(self) -> None:
        node, state = self.node, self.node.state
        backoff = 0.05
        while state.reset_reason is None:
            try:
                stream = await node.transport.connect(self.address)
            except OSError as e:
                self.last_error = f"connect failed: {e}"
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            chan = Channel(stream)
            try:
                await chan.send(Hello(Role.PRIMARY, 0, node.object_name, state.epoch, 0))
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
                backoff = 0.05
                self.last_error = None
                self.queue.clear()
                self.catching_up = False
                node.execute(
                    state.on_connected(
                        self.index,
                        promised_epoch=hello.epoch,
                        stored_through=hello.stored_through,
                        chain=hello.last_chain,
                        now_us=now_us(),
                    )
                )
                await self._session(chan)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self.last_error = f"connection lost: {e or type(e).__name__}"
            except ProtocolError as e:
                self.last_error = f"protocol error: {e}"
                log.warning("replica %d (%s): %s", self.index, self.address, e)
            finally:
                state.on_disconnected(self.index)
                await trio.aclose_forcefully(stream)
            await trio.sleep(backoff)

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
        max_bytes = self.node.state.config.max_batch_bytes
        while True:
            while not self.queue:
                self._wake = trio.Event()
                await self._wake.wait()
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
            st = self.node.state
            log_end = st.last_seq
            await chan.send(Append(st.epoch, st.durable_seq, log_end, tuple(batch)))

    async def _receiver(self, chan: Channel) -> None:
        node, state = self.node, self.node.state
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
            elif isinstance(msg, Reject):
                log.warning("replica %d rejected: %s (%s)", self.index, msg.reason.name, msg.message)
                self.last_error = f"rejected: {msg.reason.name}: {msg.message}"
                node.execute(
                    state.on_reject(
                        self.index, reason=msg.reason, promised_epoch=msg.promised_epoch, message=msg.message
                    )
                )
                if msg.reason is not RejectReason.STALE_EPOCH:
                    return
            else:
                raise ProtocolError(f"expected ACK or REJECT from a replica, got {type(msg).__name__}")


class PrimaryNode:
    def __init__(
        self,
        *,
        object_name: str,
        app: App,
        replica_addresses: list[str],
        data_dir: str,
        transport: Transport,
        epoch: int = 1,
        quorum: int = 3,
        deadline_s: float = 30.0,
        tick_s: float = 0.05,
        checkpoint_frames: int = 1000,
    ) -> None:
        self.object_name = check_object_name(object_name)
        self.transport = transport
        self.tick_s = tick_s
        self.config = PrimaryConfig(
            epoch=epoch, replicas=len(replica_addresses), quorum=quorum, deadline_us=int(deadline_s * 1e6)
        )
        self.state = PrimaryState(self.config)
        self.links = [ReplicaLink(self, i, a) for i, a in enumerate(replica_addresses)]
        self.waiters: dict[int, _Waiter] = {}
        self._tokens = itertools.count(1)
        self.reset_event = trio.Event()
        os.makedirs(data_dir, exist_ok=True)
        db_path = os.path.join(data_dir, f"{self.object_name}.db")
        if os.path.exists(db_path) and os.path.getsize(db_path) > 0:
            raise WalrelayError(
                f"{db_path} already exists. A primary must not trust local state it cannot prove; recovery "
                "from the replicas (failover) is required to reuse it. Start with an empty data directory."
            )
        self.runtime = ObjectRuntime(
            db_path, app, self.state, self.execute, monotonic_us=now_us, checkpoint_frames=checkpoint_frames
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
                self.reset_event.set()

    # -- serving -------------------------------------------------------------------------------

    async def run(self, listen: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for link in self.links:
                nursery.start_soon(link.run)
            nursery.start_soon(self._ticker)
            address = await nursery.start(self.transport.serve, listen, self.handle_client)
            task_status.started(address)

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.tick_s)
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
        try:
            outcome = self.runtime.run(op, args)
        except ObjectResetError as e:
            await chan.send(Reply(msg.request_id, ReplyStatus.ERROR, {"type": "ObjectReset", "message": str(e)}))
            return
        token = next(self._tokens)
        waiter = _Waiter()
        self.waiters[token] = waiter
        self.execute(self.state.hold(token, outcome.seq))

        async def reply_when_released() -> None:
            await waiter.event.wait()
            if waiter.failed is None:
                status = ReplyStatus.OK if outcome.ok else ReplyStatus.ERROR
                reply = Reply(msg.request_id, status, outcome.value)
            elif outcome.wrote:
                reply = Reply(msg.request_id, ReplyStatus.UNKNOWN, {"type": "NotDurable", "message": waiter.failed})
            else:
                reply = Reply(msg.request_id, ReplyStatus.ERROR, {"type": "ObjectReset", "message": waiter.failed})
            await self._send_quietly(chan, reply)

        nursery.start_soon(reply_when_released)

    @staticmethod
    async def _send_quietly(chan: Channel, reply: Reply) -> None:
        # If the client went away, its outcome stays what it was; nothing to tell anyone.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await chan.send(reply)

    def status(self) -> dict[str, Any]:
        st = self.state
        replicas = st.replica_status()
        for row, link in zip(replicas, self.links, strict=True):
            row["address"] = link.address
            row["error"] = link.last_error
        return {
            "object": self.object_name,
            "epoch": st.epoch,
            "quorum": st.config.quorum,
            "last_seq": st.last_seq,
            "durable_seq": st.durable_seq,
            "held_replies": len(st.held),
            "reset": st.reset_reason,
            "replicas": replicas,
        }

    def close(self) -> None:
        self.runtime.close()
