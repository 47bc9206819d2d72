"""A client for an object's primary: pipelined requests over one connection, replies matched by id."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from walrelay.errors import ProtocolError
from walrelay.transport import Channel, Transport
from walrelay.wire import Reply, Request


class Client:
    def __init__(self, chan: Channel) -> None:
        self._chan = chan
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[trio.Event, list[Reply]]] = {}
        self.closed_reason: str | None = None

    @classmethod
    @asynccontextmanager
    async def connect(cls, transport: Transport, address: str) -> AsyncIterator[Client]:
        stream = await transport.connect(address)
        client = cls(Channel(stream))
        error: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._reader)
                try:
                    yield client
                except Exception as e:
                    # Carried past the nursery: raised inside it, it would come out wrapped in an
                    # ExceptionGroup, or be lost to the Cancelled of an await in a finally block.
                    error = e
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)
        if error is not None:
            raise error

    async def _reader(self) -> None:
        try:
            while True:
                msg = await self._chan.receive()
                if msg is None:
                    self.closed_reason = "connection closed by the primary"
                    break
                if not isinstance(msg, Reply):
                    raise ProtocolError(f"expected REPLY, got {type(msg).__name__}")
                slot = self._pending.pop(msg.request_id, None)
                if slot is not None:
                    slot[1].append(msg)
                    slot[0].set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as e:
            self.closed_reason = f"connection lost: {e}"
        for event, _ in self._pending.values():
            event.set()

    async def call(self, op: str, *args: Any) -> Reply:
        """Send one request and wait for its reply (however long the output gate holds it)."""
        if self.closed_reason is not None:
            # The reader has stopped: nothing would ever wake this call.
            raise ConnectionError(self.closed_reason)
        rid = next(self._ids)
        event = trio.Event()
        box: list[Reply] = []
        self._pending[rid] = (event, box)
        try:
            await self._chan.send(Request(rid, {"op": op, "args": list(args)}))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            self._pending.pop(rid, None)
            raise ConnectionError(f"connection lost: {e}") from None
        await event.wait()
        if not box:
            raise ConnectionError(self.closed_reason or "connection lost")
        return box[0]
