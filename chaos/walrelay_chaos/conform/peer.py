"""A scripted primary: one TCP connection to a replica under test, frame by frame, with a transcript.

Blocking sockets, on purpose: a conformance case is a short dialogue in which every step waits for
one answer, and the transcript of that dialogue (what was sent, what came back, in order) is the
evidence the report shows. Waiting is bounded by ``timeout`` (scaled by the suite, see
``suite.Budget``); a replica that says nothing within it is judged on that silence only where the
rule forbids silence, and every "must not answer" rule is checked with a barrier (a PREPARE
after the frame: frames are processed in order, so whatever the frame caused arrives first).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import socket
import ssl
import struct
import tempfile
import time
from dataclasses import dataclass, field

from walrelay import wire
from walrelay.certs import CertPaths, throwaway
from walrelay.errors import WalrelayError
from walrelay.tls import ssl_context


class PeerError(WalrelayError):
    """The replica under test broke the dialogue: closed, said something undecodable, or went silent."""


@dataclass
class Line:
    """One transcript line: ``direction`` is ``->`` (harness to replica), ``<-`` or ``..`` (an event)."""

    direction: str
    text: str


@dataclass
class Transcript:
    lines: list[Line] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.lines.append(Line("..", text))

    def render(self) -> list[str]:
        return [f"{ln.direction} {ln.text}" for ln in self.lines]


def describe(msg: wire.Message) -> str:
    """A frame as a reader wants it in a report: its name and fields, entries as seq:chain."""
    if isinstance(msg, wire.Append | wire.Entries):
        ents = ", ".join(f"{e.seq}:{e.chain.hex()[:8]}" for e in msg.entries)
        head = (
            f"APPEND(epoch={msg.epoch}, log_end={msg.log_end}"
            if isinstance(msg, wire.Append)
            else f"ENTRIES(final={int(msg.final)}"
        )
        return f"{head}, entries=[{ents}])"
    if isinstance(msg, wire.Ack):
        return (
            f"ACK(epoch={msg.epoch}, stored_through={msg.stored_through}, chain={msg.chain.hex()[:8]}, "
            f"log_epoch={msg.log_epoch})"
        )
    if isinstance(msg, wire.Promise):
        return (
            f"PROMISE(epoch={msg.epoch}, log_epoch={msg.log_epoch}, last_seq={msg.last_seq}, "
            f"last_chain={msg.last_chain.hex()[:8]}, truncated_through={msg.truncated_through}, voter={int(msg.voter)})"
        )
    if isinstance(msg, wire.Reject):
        return f"REJECT({msg.reason.name}, promised={msg.promised_epoch}, {msg.message[:120]!r})"
    if isinstance(msg, wire.Hello):
        return (
            f"HELLO(role={msg.role.name}, node_id={msg.node_id}, object={msg.object_name!r}, epoch={msg.epoch}, "
            f"stored_through={msg.stored_through})"
        )
    if isinstance(msg, wire.Truncate):
        return f"TRUNCATE(epoch={msg.epoch}, through={msg.through}, chain={msg.chain.hex()[:8]})"
    return f"{type(msg).__name__.upper()}{tuple(getattr(msg, f) for f in msg.__dataclass_fields__)}"


class Closed(PeerError):
    """The replica closed the connection (a refusal some rules allow)."""


class Silent(PeerError):
    """Nothing arrived within the budget."""


class ScriptedPrimary:
    """The harness's side of one connection. Every frame in or out goes into ``transcript``."""

    def __init__(self, address: str, transcript: Transcript, timeout: float, tls: CertPaths | None = None) -> None:
        """``tls``: the harness's certificate (of the role it plays) for a node that runs TLS."""
        host, port = address.rsplit(":", 1)
        self.transcript = transcript
        self.timeout = timeout
        self.decoder = wire.FrameDecoder()
        self.inbox: list[wire.Message] = []
        self.closed = False
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        except OSError as e:
            raise PeerError(f"cannot connect to the replica at {address}: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                self.sock = ssl_context(tls, server=False).wrap_socket(self.sock)
            except (OSError, ssl.SSLError) as e:
                self.sock.close()
                raise PeerError(f"TLS handshake with {address} failed: {e}") from e
        transcript.note(f"connected to {address}" + (" (TLS)" if tls is not None else ""))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> ScriptedPrimary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg: wire.Message) -> None:
        self.send_raw(wire.encode(msg), describe(msg))

    def send_raw(self, data: bytes, text: str) -> None:
        self.transcript.lines.append(Line("->", text))
        try:
            self.sock.sendall(data)
        except OSError as e:
            # A replica may close on a protocol error before reading everything we send.
            self.transcript.note(f"send failed: {e}")

    def recv(self, timeout: float | None = None) -> wire.Message:
        """The next frame; Closed if the replica closed, Silent if nothing came within the budget."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.inbox:
            if self.closed:
                raise Closed("the replica closed the connection")
            left = deadline - time.monotonic()
            if left <= 0:
                self.transcript.note(f"nothing within {self.timeout if timeout is None else timeout:.0f} s")
                raise Silent("the replica sent nothing")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as e:
                self.closed = True
                self.transcript.note(f"connection lost: {e}")
                continue
            if not data:
                self.closed = True
                self.transcript.note("the replica closed the connection")
                continue
            try:
                self.inbox.extend(self.decoder.feed(data))
            except (WalrelayError, ValueError, struct.error) as e:
                self.transcript.note(f"undecodable frame from the replica: {e}")
                raise PeerError(f"the replica sent an undecodable frame: {e}") from e
        msg = self.inbox.pop(0)
        self.transcript.lines.append(Line("<-", describe(msg)))
        return msg

    def closes(self) -> bool:
        """True once the replica closed the connection (frames it sends first are read and kept)."""
        try:
            while True:
                self.recv()
        except Closed:
            return True
        except Silent:
            return False


@functools.cache
def harness_certs() -> str:
    """A throwaway CA with a certificate per role, once per harness process (removed at exit): the
    conformance harness plays primaries, replicas and admin clients to a node running TLS."""
    d = tempfile.mkdtemp(prefix="walrelay-conform-certs-")
    atexit.register(shutil.rmtree, d, True)
    throwaway(d, "conform")
    return d


@functools.cache
def rogue_certs() -> str:
    """Another CA (same cluster name): certificates a node must refuse although they are well formed."""
    d = tempfile.mkdtemp(prefix="walrelay-conform-rogue-")
    atexit.register(shutil.rmtree, d, True)
    throwaway(d, "conform")
    return d


def harness_tls(tls: bool, role: str) -> CertPaths | None:
    """The harness's certificate for ``role`` when the implementation runs TLS, else None."""
    return CertPaths.in_dir(harness_certs(), role) if tls else None


def tls_values(tls: bool, role: str) -> dict[str, str]:
    """{ca}, {cert}, {key} of a node of ``role`` for the implementation's argv templates."""
    paths = harness_tls(tls, role)
    return {"ca": paths.ca, "cert": paths.cert, "key": paths.key} if paths else {"ca": "", "cert": "", "key": ""}
