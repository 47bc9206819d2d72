"""Resource limits (issue 17, point 5): no peer may exhaust a node's memory, descriptors or disk.

Before: each connection could make a node buffer a 64 MiB frame before any handshake, there was no
cap on connections and no idle or handshake timeout (3,000 idle connections and 200 slowloris were
accepted), and 1,000 HELLOs with new object names made 1,000 directories on a replica.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import trio

from walrelay.client import Client
from walrelay.placement import EpochAllocator
from walrelay.procs import Cluster, client_transport
from walrelay.replica_node import ReplicaNode
from walrelay.transport import Channel, MemoryTransport, TcpTransport, split_address
from walrelay.wire import Hello, Reject, RejectReason, ReplyStatus, Role
from walrelay_chaos.pace import budget


async def _echo(stream: trio.abc.Stream) -> None:
    while data := await stream.receive_some(1024):
        await stream.send_all(data)


async def test_a_listener_takes_at_most_its_connections_and_closes_the_rest_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tcp = TcpTransport(max_connections=2)
    with caplog.at_level(logging.WARNING, logger="walrelay.transport"):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(tcp.serve, "127.0.0.1:0", _echo)
            a, b = await tcp.connect(address), await tcp.connect(address)
            for s in (a, b):  # served: an echo proves the handler runs for them
                await s.send_all(b"hi")
                assert await s.receive_some(10) == b"hi"
            c = await tcp.connect(address)
            with trio.fail_after(budget(10)):
                assert await c.receive_some(10) == b""  # closed by the node, without a byte
            await a.send_all(b"still")
            assert await a.receive_some(10) == b"still"
            for s in (a, b, c):
                await s.aclose()
            nursery.cancel_scope.cancel()
    assert tcp.refused == 1
    assert any("the most this node takes (--max-connections)" in r.getMessage() for r in caplog.records)


async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() -> None:
    tcp = TcpTransport(idle_s=0.2)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(tcp.serve, "127.0.0.1:0", _echo)
        s = await tcp.connect(address)
        with trio.fail_after(budget(10)):  # an event (the close), not a fixed wait
            assert await s.receive_some(10) == b""
        assert tcp.active == 0
        nursery.cancel_scope.cancel()


async def test_a_replica_creates_at_most_its_objects_and_keeps_serving_those_it_has(tmp_path: Path) -> None:
    net = MemoryTransport()
    node = ReplicaNode(0, str(tmp_path / "data"), net, EpochAllocator(tmp_path / "placement"), max_objects=2)
    got: list[object] = []
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:r0")
            for name in ("a", "b", "c", "a"):
                chan = Channel(await net.connect(address))
                await chan.send(Hello(Role.PRIMARY, 0, name, 1, 0))
                got.append(await chan.receive())
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    a, b, c, a_again = got
    assert isinstance(a, Hello) and isinstance(b, Hello) and isinstance(a_again, Hello)
    assert isinstance(c, Reject) and c.reason is RejectReason.WRONG_OBJECT and "--max-objects 2" in c.message
    assert sorted(p.name for p in (tmp_path / "data" / "objects").iterdir()) == ["a", "b"]


async def test_before_its_hello_a_peer_may_send_a_small_frame_only(tmp_path: Path) -> None:
    """Over --insecure (no TLS to stop it first): a frame header announcing 60 MiB before any HELLO
    is refused as soon as its length is read, so the replica never buffers it."""
    net = MemoryTransport()
    node = ReplicaNode(0, str(tmp_path / "data"), net)
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:r0")
            stream = await net.connect(address)
            await stream.send_all((60 << 20).to_bytes(4, "big") + b"\x01\x10")
            answer = b""
            with trio.fail_after(budget(10)):
                while data := await stream.receive_some(1 << 16):
                    answer += data
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    assert b"exceeds the maximum" in answer  # a REJECT naming the frame limit, then the close


def _silent_sockets(address: str, n: int) -> list[socket.socket]:
    host, port = split_address(address)
    return [socket.create_connection((host, port)) for _ in range(n)]


@pytest.mark.integration
async def test_silent_connections_cannot_lock_a_cluster_out(cluster: Cluster) -> None:
    """Thirty connections that never start TLS, at each replica, beyond its connection limit: the
    serving primary keeps acknowledging writes, and once the handshake timeout has closed them a
    new primary takes over and finds every write."""
    limits = ("--max-connections", "12", "--handshake-timeout", "1")
    addrs = await trio.to_thread.run_sync(cluster.start_replicas, 5)
    for r in cluster.replicas:  # restart each with the limits (same port, same data)
        r.argv.extend(limits)
    for i in range(5):
        await trio.to_thread.run_sync(cluster.restart_replica, i)
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))
    socks = [s for a in addrs for s in await trio.to_thread.run_sync(_silent_sockets, a, 30)]
    try:
        async with Client.connect(client_transport(paddr), paddr) as client:
            for k in range(1, 11):
                assert (await client.call("put", k, f"v{k}")).status is ReplyStatus.OK
    finally:
        for s in socks:
            s.close()
    p2 = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", name="p2", extra=("--app", "kv")))
    async with Client.connect(client_transport(p2), p2) as client:
        for k in range(1, 11):
            assert (await client.call("get", k)).body == f"v{k}"
    log = await trio.to_thread.run_sync(Path(cluster.replicas[0].log_path).read_text)
    assert "--max-connections" in log or "no TLS handshake within 1 s" in log, log
