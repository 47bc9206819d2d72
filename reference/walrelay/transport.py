"""Two transports behind one interface: real TCP (trio sockets) and an in-memory network.

Both hand out plain ``trio.abc.Stream`` objects, and the framing (``Channel``) sits on top, so the
exact same bytes and the exact same decoder run in simulation and over loopback or a real network.
The in-memory network is the seam where the chaos harness (issue 6) injects loss, delay and
partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio
import trio.testing

from walrelay.errors import ProtocolError
from walrelay.wire import DEFAULT_MAX_FRAME, FrameDecoder, Message, encode

Handler = Callable[[trio.abc.Stream], Awaitable[None]]
log = logging.getLogger("walrelay.transport")


class Channel:
    """Framed messages over a byte stream."""

    def __init__(self, stream: trio.abc.Stream, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(max_frame)
        self._ready: list[Message] = []
        self._send_lock = trio.Lock()

    def set_max_frame(self, max_frame: int) -> None:
        """Change the largest frame taken from now on (a node takes a small first frame, HELLO,
        from a peer it does not know yet, and full-size frames once it does)."""
        self._decoder.max_frame = max_frame

    async def send(self, msg: Message) -> None:
        await self.send_raw(encode(msg))

    async def send_raw(self, frame: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(frame)

    async def receive(self) -> Message | None:
        """The next message, or None at a clean end of stream. Raises ProtocolError on bad bytes."""
        while not self._ready:
            data = await self.stream.receive_some(1 << 20)
            if not data:
                if self._decoder.pending:
                    raise ProtocolError(f"connection closed inside a frame ({self._decoder.pending} bytes pending)")
                return None
            self._ready.extend(self._decoder.feed(data))
        return self._ready.pop(0)

    def receive_nowait_buffered(self) -> list[Message]:
        """Messages already decoded and waiting; lets a receiver batch work (group commit)."""
        out, self._ready = self._ready, []
        return out

    async def aclose(self) -> None:
        await self.stream.aclose()


class Transport(Protocol):
    async def connect(self, address: str) -> trio.abc.Stream: ...

    async def serve(
        self, address: str, handler: Handler, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; report the bound address (``host:port``) through task_status."""
        ...


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host, int(port)


class IdleTimeoutStream(trio.abc.Stream):
    """A stream that ends (BrokenResourceError, which every handler takes as a closed peer) when
    nothing arrives for ``idle_s``: an idle connection does not hold a slot for ever."""

    def __init__(self, inner: trio.abc.Stream, idle_s: float) -> None:
        self.inner = inner
        self.idle_s = idle_s

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        with trio.move_on_after(self.idle_s):
            return await self.inner.receive_some(max_bytes)
        raise trio.BrokenResourceError(f"nothing received for {self.idle_s:g} s: idle connection closed")

    async def aclose(self) -> None:
        await self.inner.aclose()


DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_IDLE_S = 600.0


class TcpTransport:
    def __init__(self, *, max_connections: int | None = None, idle_s: float | None = None) -> None:
        """Limits of a listener (issue 17): at most ``max_connections`` at once (more are closed at
        once, and logged), and each closed after ``idle_s`` without a byte received."""
        self.max_connections = max_connections
        self.idle_s = idle_s
        self.active = 0
        self.refused = 0
        self._last_refusal_log = -1e9

    async def connect(self, address: str) -> trio.abc.Stream:
        host, port = split_address(address)
        stream = await trio.open_tcp_stream(host, port)
        stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        return stream

    async def serve(
        self, address: str, handler: Handler, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        host, port = split_address(address)
        listeners = await trio.open_tcp_listeners(port, host=host)
        sock = listeners[0].socket
        bound_host, bound_port = sock.getsockname()[:2]

        async def wrapped(stream: trio.SocketStream) -> None:
            if self.max_connections is not None and self.active >= self.max_connections:
                self.refused += 1
                if trio.current_time() - self._last_refusal_log >= 10:  # one line per 10 s at most
                    self._last_refusal_log = trio.current_time()
                    log.warning(
                        "%s: %d connections open, the most this node takes (--max-connections): refusing more "
                        "(%d refused so far)",
                        address,
                        self.active,
                        self.refused,
                    )
                await trio.aclose_forcefully(stream)
                return
            self.active += 1
            try:
                stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
                await handler(stream if self.idle_s is None else IdleTimeoutStream(stream, self.idle_s))
            finally:
                self.active -= 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, wrapped, listeners)
            task_status.started(f"{bound_host}:{bound_port}")


class MemoryTransport:
    """An in-process network: addresses are names, connections are in-memory stream pairs."""

    def __init__(self) -> None:
        self._servers: dict[str, tuple[Handler, trio.Nursery]] = {}
        self._next_port = 1

    async def connect(self, address: str) -> trio.abc.Stream:
        try:
            handler, nursery = self._servers[address]
        except KeyError:
            raise OSError(f"connection refused: nothing listens on {address}") from None
        client, server = trio.testing.memory_stream_pair()
        try:
            nursery.start_soon(self._run_handler, handler, server)
        except RuntimeError:  # the server is shutting down: as good as nothing listening
            raise OSError(f"connection refused: {address} is closing") from None
        await trio.lowlevel.checkpoint()
        return client

    @staticmethod
    async def _run_handler(handler: Handler, stream: trio.abc.Stream) -> None:
        try:
            await handler(stream)
        finally:
            await trio.aclose_forcefully(stream)

    async def serve(
        self, address: str, handler: Handler, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if address.endswith(":0"):
            address = f"{address[:-2]}:{self._next_port}"
            self._next_port += 1
        if address in self._servers:
            raise OSError(f"address in use: {address}")
        try:
            async with trio.open_nursery() as nursery:
                self._servers[address] = (handler, nursery)
                task_status.started(address)
                await trio.sleep_forever()
        finally:
            self._servers.pop(address, None)
