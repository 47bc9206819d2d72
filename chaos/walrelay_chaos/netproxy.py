"""A fault-injecting TCP proxy for one network link (real-mode chaos: this kernel has no netem).

Every primary reaches replica ``i`` through ``LinkProxy(i)``: it listens on a loopback port and
pipes each accepted connection to the replica's real address. The faults are what a real network
can do to TCP, and nothing TCP itself would hide:

* **cut** (a partition): live connections are aborted and new ones are closed at once, so both
  sides see a broken connection, as after a retransmission timeout or a reset;
* **one-way** (``block("up")`` or ``block("down")``): bytes in one direction are held, not lost:
  IP loses the packets and TCP resends them until the link heals, so the sender's writes succeed
  and nothing arrives; the other direction keeps flowing (a primary whose APPENDs arrive but whose
  ACKs do not, or the reverse); a new connection is refused, as its handshake needs both ways;
* **reset**: live connections break now (what was held or delayed is lost); new ones may connect;
* **delay**: every chunk is forwarded ``delay_s`` after it was read, in order.

TCP delivers in order or not at all, so "loss, duplication and reordering" of messages can only
happen across connections (a reconnect after a cut resends what the other side may already have);
the protocol's idempotent APPEND and its PREPARE/PROMISE handshake are what such a reconnect
tests. ``up`` is towards the replica (primary -> replica), ``down`` is back.
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct

import trio

from walrelay.transport import split_address

DIRECTIONS = ("up", "down")


class LinkProxy:
    def __init__(self, name: str, upstream: str) -> None:
        self.name = name
        self.upstream = upstream  # the replica's real HOST:PORT
        self.address = ""  # our HOST:PORT, once listening
        self.cut = False
        self.blocked: set[str] = set()
        self.delay_s = 0.0
        self.connections = 0  # accepted so far (tests check the faults happened)
        self.aborted = 0  # connections broken by a cut
        self._changed = trio.Event()  # set (and replaced) whenever a fault starts or ends
        self._live: set[trio.CancelScope] = set()

    # -- faults -----------------------------------------------------------------------------------

    def partition(self) -> None:
        self.cut = True
        self.reset()

    def reset(self) -> None:
        """Break every live connection now (bytes still held or delayed are lost); new ones may
        connect (a TCP reset, not a partition)."""
        for scope in list(self._live):
            scope.cancel()
            self.aborted += 1
        self._kick()

    def faults(self) -> list[str]:
        """The fault kinds in force (history names: partition, one-way, delay)."""
        return [k for k, on in (("partition", self.cut), ("one-way", self.blocked), ("delay", self.delay_s)) if on]

    def block(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        self.blocked.add(direction)
        self._kick()

    def delay(self, seconds: float) -> None:
        self.delay_s = max(0.0, seconds)
        self._kick()

    def heal(self) -> None:
        self.cut = False
        self.blocked.clear()
        self.delay_s = 0.0
        self._kick()

    def _kick(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- serving ----------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        host, port = listeners[0].socket.getsockname()[:2]
        self.address = f"{host}:{port}"
        task_status.started(self.address)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, down_side: trio.SocketStream) -> None:
        """One connection: its end is never an error of the run (a node crashed, a reset)."""
        self.connections += 1
        try:
            await self._relay(down_side)
        except* _GONE:
            pass

    async def _relay(self, down_side: trio.SocketStream) -> None:
        async with down_side:
            if self.cut or self.blocked:
                return  # closed at once: the dialler sees the connection broken (a handshake needs both ways)
            host, port = split_address(self.upstream)
            try:
                up_side = await trio.open_tcp_stream(host, port)
            except OSError:
                return  # the replica is down: so is the link
            if self.cut or self.blocked:  # the fault began while we were connecting upstream
                await up_side.aclose()
                return
            scope = trio.CancelScope()
            self._live.add(scope)  # no await since the check: a partition from now on aborts it
            try:
                async with up_side:
                    with scope:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._pump, down_side, up_side, "up", nursery.cancel_scope)
                            nursery.start_soon(self._pump, up_side, down_side, "down", nursery.cancel_scope)
                    if scope.cancelled_caught:
                        # A partition: abort rather than close politely (no FIN after pending data).
                        for s in (down_side, up_side):
                            with contextlib.suppress(OSError):
                                s.socket.setsockopt(*_LINGER_ABORT)
            finally:
                self._live.discard(scope)

    async def _pump(
        self, src: trio.SocketStream, dst: trio.SocketStream, direction: str, both: trio.CancelScope
    ) -> None:
        """Read from ``src``, hold while this direction is blocked, wait out the delay, write to
        ``dst``; reading goes on meanwhile (a delayed link still accepts bytes, as the kernel's
        buffers do), through a queue that keeps the order."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](math.inf)

        async def reader() -> None:
            async with send:
                while True:
                    try:
                        data = await src.receive_some(65536)
                    except _GONE:
                        data = b""
                    if not data:
                        return
                    await send.send((trio.current_time(), data))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                async with receive:
                    async for read_at, data in receive:
                        while direction in self.blocked or trio.current_time() < read_at + self.delay_s:
                            changed = self._changed
                            if direction in self.blocked:
                                await changed.wait()
                            else:
                                with trio.move_on_after(read_at + self.delay_s - trio.current_time()):
                                    await changed.wait()
                        try:
                            await dst.send_all(data)
                        except _GONE:
                            return  # the other end went away (a crash, a reset): so does this link
                with contextlib.suppress(*_GONE):
                    await dst.send_eof()
        except* _GONE:
            pass  # (trio wraps a nursery's errors in a group: a bare except would miss them)
        finally:
            both.cancel()  # one side gone: the connection is over in both directions


_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

# SO_LINGER with a zero timeout: close() sends RST, as a connection broken by the network looks.
_LINGER_ABORT = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
