"""The client: a lost connection is an error the caller sees, never a silent return."""

from __future__ import annotations

import pytest
import trio

from walrelay.client import Client
from walrelay.transport import Channel, MemoryTransport
from walrelay_chaos.pace import budget


async def test_a_call_whose_connection_closes_raises_connection_error() -> None:
    net = MemoryTransport()

    async def hang_up(stream: trio.abc.Stream) -> None:
        await Channel(stream).receive()  # read the request, then close without a reply

    async with trio.open_nursery() as nursery:
        await nursery.start(net.serve, "mem:x", hang_up)
        with pytest.raises(ConnectionError, match="closed by the primary"):
            async with Client.connect(net, "mem:x") as client:
                await client.call("get", 1)
        # A call after the reader stopped fails at once instead of waiting forever.
        async with Client.connect(net, "mem:x") as client:
            with pytest.raises(ConnectionError):
                await client.call("get", 1)
            with pytest.raises(ConnectionError), trio.fail_after(budget(5)):
                await client.call("get", 2)
        nursery.cancel_scope.cancel()
