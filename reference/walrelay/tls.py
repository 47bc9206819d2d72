"""Mutual TLS on every link, and the role check that follows it (docs/protocol.md, section 9).

``TlsTransport`` wraps another transport (TCP, or the in-memory network): every connection it
makes or accepts runs TLS 1.3 (trio's ``SSLStream`` over the standard library's ``ssl``), both
sides present a certificate from the cluster's CA (``walrelay.certs``), and before a single frame
is read the peer's identity is checked: its cluster must be ours, and its role one this end takes
(a replica accepts only primaries; a primary's client door only clients and admins; a primary
dialing a replica accepts only a replica; a client dialing a primary only a primary). A peer that
fails is refused with one log line naming why, and its connection closed; an accepted stream
carries the peer's ``Identity`` (``PeerStream.peer``), so a handler can authorize operations.
"""

from __future__ import annotations

import logging
import ssl

import trio

from walrelay.certs import CertError, CertPaths, Identity, identity_of, identity_of_der
from walrelay.errors import WalrelayError
from walrelay.transport import Handler, Transport

log = logging.getLogger("walrelay.tls")

DEFAULT_HANDSHAKE_S = 10.0

# Whom each role accepts on its listener, and whom it expects when it dials.
ACCEPTS: dict[str, frozenset[str]] = {
    "replica": frozenset({"primary"}),
    "primary": frozenset({"client", "admin"}),
    "client": frozenset(),
    "admin": frozenset(),
}
DIALS: dict[str, frozenset[str]] = {
    "replica": frozenset(),
    "primary": frozenset({"replica"}),
    "client": frozenset({"primary"}),
    "admin": frozenset({"primary"}),
}


class TlsError(WalrelayError):
    """A TLS connection that failed its handshake or its peer check, with the reason."""


class PeerStream(trio.abc.Stream):
    """A TLS stream whose peer passed the checks, and who that peer is."""

    def __init__(self, inner: trio.SSLStream[trio.abc.Stream], peer: Identity) -> None:
        self.inner = inner
        self.peer = peer

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def ssl_context(paths: CertPaths, *, server: bool) -> ssl.SSLContext:
    """TLS 1.3 only, the peer's certificate required and verified against the cluster's CA."""
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    try:
        ctx = ssl.create_default_context(purpose, cafile=paths.ca)
        ctx.load_cert_chain(paths.cert, paths.key)
    except (OSError, ssl.SSLError) as e:
        raise CertError(f"TLS files {paths.cert} / {paths.key} / {paths.ca}: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Peers are named by their certificate's walrelay identity, checked below, not by host name:
    # nodes dial addresses (often IPs) that the certificate need not list.
    ctx.check_hostname = False
    return ctx


def own_identity(paths: CertPaths) -> Identity:
    """The identity in this node's own certificate (its role decides whom it takes)."""
    from cryptography import x509

    try:
        with open(paths.cert, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CertError(f"{paths.cert}: {e.strerror or e}") from None
    try:
        return identity_of(x509.load_pem_x509_certificate(data))
    except ValueError as e:
        raise CertError(f"{paths.cert}: not a PEM certificate: {e}") from None
    except CertError as e:
        raise CertError(f"{paths.cert}: {e}") from None


class TlsTransport:
    """``inner`` with mutual TLS and role checks, for a node or client holding ``paths``."""

    def __init__(
        self,
        inner: Transport,
        paths: CertPaths,
        *,
        accept: frozenset[str] | None = None,
        expect: frozenset[str] | None = None,
        handshake_s: float = DEFAULT_HANDSHAKE_S,
    ) -> None:
        """``accept``/``expect``: the roles taken on the listener and when dialing (default:
        what this certificate's role takes, ``ACCEPTS``/``DIALS``)."""
        self.inner = inner
        self.paths = paths
        self.me = own_identity(paths)
        self.accept = ACCEPTS.get(self.me.role, frozenset()) if accept is None else accept
        self.expect = DIALS.get(self.me.role, frozenset()) if expect is None else expect
        self.handshake_s = handshake_s
        self._server = ssl_context(paths, server=True)
        self._client = ssl_context(paths, server=False)

    def check(self, peer: Identity, roles: frozenset[str], where: str) -> None:
        if peer.cluster != self.me.cluster:
            raise TlsError(f"{where}: peer is {peer}, not of this cluster ({self.me.cluster!r})")
        if peer.role not in roles:
            taken = ", ".join(sorted(roles)) or "nobody"
            raise TlsError(f"{where}: peer is {peer}; a {self.me.role} takes {taken} here")

    async def _handshake(
        self, stream: trio.abc.Stream, *, server: bool, roles: frozenset[str], where: str
    ) -> PeerStream:
        ssl_stream = trio.SSLStream(stream, self._server if server else self._client, server_side=server)
        try:
            with trio.fail_after(self.handshake_s):
                await ssl_stream.do_handshake()
        except trio.TooSlowError:
            await trio.aclose_forcefully(ssl_stream)
            raise TlsError(f"{where}: no TLS handshake within {self.handshake_s:g} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as e:
            await trio.aclose_forcefully(ssl_stream)
            cause = e.__cause__ or e
            raise TlsError(f"{where}: TLS handshake failed: {cause}") from None
        der = ssl_stream.getpeercert(binary_form=True)
        try:
            if not der:
                raise TlsError(f"{where}: the peer presented no certificate")
            peer = identity_of_der(der)
            self.check(peer, roles, where)
        except (TlsError, CertError) as e:
            await trio.aclose_forcefully(ssl_stream)
            raise TlsError(str(e) if isinstance(e, TlsError) else f"{where}: {e}") from None
        return PeerStream(ssl_stream, peer)

    async def connect(self, address: str) -> trio.abc.Stream:
        stream = await self.inner.connect(address)
        try:
            return await self._handshake(stream, server=False, roles=self.expect, where=f"dialing {address}")
        except TlsError as e:
            raise ConnectionRefusedError(str(e)) from None

    async def serve(
        self, address: str, handler: Handler, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async def authenticated(stream: trio.abc.Stream) -> None:
            where = f"refused a connection from {_peer_address(stream)}"
            try:
                peer = await self._handshake(stream, server=True, roles=self.accept, where=where)
            except TlsError as e:
                log.warning("%s %s", self.me.role, e)
                return
            try:
                await handler(peer)
            finally:
                await trio.aclose_forcefully(peer)

        await self.inner.serve(address, authenticated, task_status=task_status)


def _peer_address(stream: trio.abc.Stream) -> str:
    """HOST:PORT of the other end of a TCP stream (through wrappers), for log lines; "?" if none."""
    layer: object = stream
    for _ in range(4):
        sock = getattr(layer, "socket", None)
        if sock is not None:
            try:
                host, port = sock.getpeername()[:2]
            except OSError:
                return "?"
            return f"{host}:{port}"
        layer = getattr(layer, "inner", None)  # IdleTimeoutStream
        if layer is None:
            break
    return "?"


def peer_of(stream: trio.abc.Stream) -> Identity | None:
    """The authenticated peer of an accepted stream (None on an ``--insecure`` link)."""
    return stream.peer if isinstance(stream, PeerStream) else None
