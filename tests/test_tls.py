"""Mutual TLS and the role check (issue 17, point 1), over the in-memory network.

Each refusal is one the issue's attacker needed: no certificate, a certificate from another CA,
a certificate of the wrong role (a client posing as a primary at a replica), a peer that never
finishes its handshake. Each is refused before a single frame is read, with one log line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from walrelay.certs import CertError, CertPaths, Identity, create_ca, issue, throwaway
from walrelay.tls import TlsTransport, peer_of
from walrelay.transport import Channel, MemoryTransport
from walrelay.wire import Hello, Role
from walrelay_chaos.pace import budget


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return throwaway(tmp_path_factory.mktemp("certs"), "alpha")


def _paths(d: Path, name: str) -> CertPaths:
    return CertPaths.in_dir(d, name)


async def _serve_replica(net: MemoryTransport, certs: Path, seen: list[object], nursery: trio.Nursery) -> str:
    replica = TlsTransport(net, _paths(certs, "replica"))

    async def handler(stream: trio.abc.Stream) -> None:
        seen.append(peer_of(stream))
        chan = Channel(stream)
        msg = await chan.receive()
        seen.append(msg)
        await chan.send(Hello(Role.REPLICA, 0, "obj", 0, 0))

    return str(await nursery.start(replica.serve, "mem:r0", handler))


async def test_a_primary_certificate_reaches_a_replica_and_the_replica_knows_who_it_is(certs: Path) -> None:
    net, seen = MemoryTransport(), []
    async with trio.open_nursery() as nursery:
        address = await _serve_replica(net, certs, seen, nursery)
        primary = TlsTransport(net, _paths(certs, "primary"))
        chan = Channel(await primary.connect(address))
        await chan.send(Hello(Role.PRIMARY, 0, "obj", 1, 0))
        reply = await chan.receive()
        assert peer_of(chan.stream) == Identity("alpha", "replica", "replica")  # the dialer checked too
        nursery.cancel_scope.cancel()
    assert seen[0] == Identity("alpha", "primary", "primary")
    assert isinstance(seen[1], Hello) and isinstance(reply, Hello)


@pytest.mark.parametrize("who", ["client", "admin", "replica"])
async def test_a_certificate_of_another_role_is_refused_by_a_replica_before_any_frame(
    certs: Path, who: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client (or admin, or another replica) posing as a primary: its HELLO never reaches the
    replica's handler, and the replica logs one line naming the role."""
    net, seen = MemoryTransport(), []
    with caplog.at_level(logging.WARNING, logger="walrelay.tls"):
        async with trio.open_nursery() as nursery:
            address = await _serve_replica(net, certs, seen, nursery)
            forger = TlsTransport(net, _paths(certs, who), expect=frozenset({"replica"}))
            chan = Channel(await forger.connect(address))
            with pytest.raises(trio.BrokenResourceError):  # the replica hung up; nothing came back
                await chan.send(Hello(Role.PRIMARY, 0, "obj", 2**64 - 1, 0))
                assert await chan.receive() is None
                raise trio.BrokenResourceError
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert seen == []  # the handler never ran
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"peer is {who} {who!r} of cluster 'alpha'; a replica takes primary here" in m for m in lines), lines


async def test_a_certificate_from_another_ca_is_refused(certs: Path, tmp_path: Path) -> None:
    other = throwaway(tmp_path / "other", "alpha")  # same cluster name, another CA: not trusted
    net, seen = MemoryTransport(), []
    async with trio.open_nursery() as nursery:
        address = await _serve_replica(net, certs, seen, nursery)
        with pytest.raises(ConnectionRefusedError, match="TLS handshake failed"):
            await TlsTransport(net, _paths(other, "primary")).connect(address)
        nursery.cancel_scope.cancel()
    assert seen == []


async def test_plain_bytes_without_tls_are_refused(certs: Path, caplog: pytest.LogCaptureFixture) -> None:
    net, seen = MemoryTransport(), []
    with caplog.at_level(logging.WARNING, logger="walrelay.tls"):
        async with trio.open_nursery() as nursery:
            address = await _serve_replica(net, certs, seen, nursery)
            chan = Channel(await net.connect(address))  # no TLS: a forged APPEND in the clear
            await chan.send(Hello(Role.PRIMARY, 0, "obj", 2, 0))
            with trio.fail_after(budget(10)):
                while await chan.stream.receive_some(1024):
                    pass  # whatever the TLS layer says, then the close
            await trio.testing.wait_all_tasks_blocked()  # (the replica logs after it closed)
            nursery.cancel_scope.cancel()
    assert seen == []
    assert any("TLS handshake failed" in r.getMessage() for r in caplog.records)


async def test_a_peer_that_never_finishes_its_handshake_is_dropped(
    certs: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    net, seen = MemoryTransport(), []
    with caplog.at_level(logging.WARNING, logger="walrelay.tls"):
        async with trio.open_nursery() as nursery:
            address = await _serve_replica(net, certs, seen, nursery)
            silent = await net.connect(address)
            with trio.fail_after(60):  # the mock clock's seconds (autojump_clock): not wall time
                assert await silent.receive_some(1024) == b""  # closed by the replica, not by us
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert any("no TLS handshake within 10 s" in r.getMessage() for r in caplog.records)


def test_the_ca_is_not_replaced_and_roles_and_names_are_checked(tmp_path: Path) -> None:
    create_ca(tmp_path, "beta")
    with pytest.raises(CertError, match="already holds a CA"):
        create_ca(tmp_path, "beta")
    with pytest.raises(CertError, match="role 'root' is not one of primary, replica, client, admin"):
        issue(tmp_path, "root", "x")
    with pytest.raises(CertError, match="name 'a b' must be"):
        issue(tmp_path, "client", "a b")
    with pytest.raises(CertError, match=r"ca\.crt: missing; run walrelay certs init"):
        issue(tmp_path / "nowhere", "client", "x")
