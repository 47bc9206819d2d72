"""Five scripted replicas for testing a PRIMARY: the harness plays the replica side of the wire.

Each one listens on loopback, answers HELLO and PREPARE as a healthy voter would, stores what the
primary APPENDs, and ACKs it, unless its script says otherwise: hold its ACKs (``hold``), claim
another replica's id in its HELLO (``claim_id``), refuse APPENDs as fenced by a newer epoch
(``fence_at``), ACK with a wrong chain or log epoch (``ack_chain``, ``ack_log_epoch``), or never
answer a PREPARE (``mute``). A case may give a replica a log before the primary starts (its
``log``: promise, log epoch, entries), which it reports in its PROMISE and serves to FETCH, and
replaces from the first differing entry when a frame of another epoch reaches ``log_end`` (6.2).
The cases (primary_cases.py) change the scripts and watch what the primary's
client door answers. Blocking sockets, one thread per replica: a primary under test is a real
process, and the script must answer it while a case waits on the client.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from dataclasses import dataclass, field

from walrelay import wire
from walrelay.certs import CertPaths
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay.errors import WalrelayError
from walrelay.tls import ssl_context


@dataclass
class Script:
    hold: bool = False  # keep the ACKs (only the latest is kept) until released
    claim_id: int | None = None  # the node_id its HELLO claims (None: its own)
    fence_at: int = 0  # > 0: REJECT(STALE_EPOCH, fence_at) every APPEND, as a replica promised to a newer epoch
    ack_chain: bytes | None = None  # ACK with this chain instead of the held one (a replica that diverged)
    ack_log_epoch: int | None = None  # ACK with this log epoch (entries held under another primary's log)
    mute: bool = False  # never answer a PREPARE (a replica the primary cannot hear from)


@dataclass
class ReplicaLog:
    promised: int = 0
    log_epoch: int = 0
    entries: dict[int, Entry] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return max(self.entries, default=0)

    @property
    def last_chain(self) -> bytes:
        return self.entries[self.last_seq].chain if self.entries else GENESIS_CHAIN


class ScriptedReplica:
    def __init__(self, node_id: int, object_name: str, tls: CertPaths | None = None) -> None:
        self.node_id = node_id
        self.tls = ssl_context(tls, server=True) if tls is not None else None
        self.object = object_name
        self.script = Script()
        self.log = ReplicaLog()
        self.lock = threading.Lock()
        self.held: tuple[socket.socket, bytes] | None = None
        self.acks_sent = 0
        self.events: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"scripted-replica-{node_id}").start()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.server.close()

    def release(self) -> None:
        """Stop holding ACKs and send the latest one held."""
        with self.lock:
            self.script.hold = False
            held, self.held = self.held, None
        if held is not None:
            self._send(held[0], held[1])

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(data)

    def _serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn.settimeout(30)
                conn = self.tls.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            except (OSError, ssl.SSLError) as e:
                self.events.append(f"TLS handshake failed: {e}")
                conn.close()
                return
        decoder = wire.FrameDecoder()
        with conn:
            while not self.closed:
                try:
                    data = conn.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    return
                try:
                    msgs = decoder.feed(data)
                except (WalrelayError, ValueError):
                    return
                for msg in msgs:
                    out = self._answer(conn, msg)
                    if out is not None:
                        self._send(conn, wire.encode(out))

    def _answer(self, conn: socket.socket, msg: wire.Message) -> wire.Message | None:
        with self.lock:
            log, script = self.log, self.script
            if isinstance(msg, wire.Hello):
                node_id = self.node_id if script.claim_id is None else script.claim_id
                return wire.Hello(
                    wire.Role.REPLICA, node_id, msg.object_name, log.promised, log.last_seq, log.last_chain
                )
            if isinstance(msg, wire.Prepare):
                if script.mute:
                    self.events.append(f"PREPARE of epoch {msg.epoch} not answered")
                    return None
                if msg.epoch < log.promised:
                    return wire.Reject(wire.RejectReason.STALE_EPOCH, log.promised, "stale")
                log.promised = msg.epoch
                return wire.Promise(msg.epoch, log.log_epoch, log.last_seq, log.last_chain, 0, True)
            if isinstance(msg, wire.Append):
                if script.fence_at:
                    self.events.append(f"fenced APPEND of epoch {msg.epoch}")
                    return wire.Reject(wire.RejectReason.STALE_EPOCH, script.fence_at, "promised a newer epoch")
                if msg.epoch < log.promised:
                    return wire.Reject(wire.RejectReason.STALE_EPOCH, log.promised, "stale")
                log.promised = msg.epoch
                adopting = msg.epoch != log.log_epoch
                if adopting and (not msg.entries or msg.entries[-1].seq != msg.log_end):
                    return wire.Ack(log.promised, log.last_seq, log.last_chain, log.log_epoch)
                for e in msg.entries:
                    if e.seq in log.entries and log.entries[e.seq].chain != e.chain:
                        for seq in [s for s in log.entries if s >= e.seq]:
                            del log.entries[seq]  # adoption: the differing suffix goes
                    log.entries[e.seq] = e
                if adopting and msg.entries:
                    for seq in [s for s in log.entries if s > msg.entries[-1].seq]:
                        del log.entries[seq]  # an older epoch's entries beyond the frame
                log.log_epoch = msg.epoch
                chain = log.last_chain if script.ack_chain is None else script.ack_chain
                log_epoch = log.log_epoch if script.ack_log_epoch is None else script.ack_log_epoch
                ack = wire.Ack(log.promised, log.last_seq, chain, log_epoch)
                if script.hold:
                    self.held = (conn, wire.encode(ack))
                    return None
                self.acks_sent += 1
                return ack
            if isinstance(msg, wire.Fetch):
                if msg.epoch < log.promised:
                    return wire.Reject(wire.RejectReason.STALE_EPOCH, log.promised, "stale")
                out: list[Entry] = []
                size = 0
                for seq in range(msg.from_seq, log.last_seq + 1):
                    e = log.entries[seq]
                    if out and size + 4 + len(e.raw) > msg.max_bytes:
                        break
                    out.append(e)
                    size += 4 + len(e.raw)
                final = not out or out[-1].seq == log.last_seq
                self.events.append(f"FETCH from {msg.from_seq}: {len(out)} entries")
                return wire.Entries(final, tuple(out))
            return None  # ADMIT, TRUNCATE: never answered


class ScriptedReplicas:
    def __init__(self, object_name: str, n: int = 5, *, tls: CertPaths | None = None) -> None:
        self.replicas = [ScriptedReplica(i, object_name, tls) for i in range(n)]

    @property
    def addresses(self) -> str:
        return ",".join(r.address for r in self.replicas)

    def close(self) -> None:
        for r in self.replicas:
            r.close()

    def __getitem__(self, i: int) -> ScriptedReplica:
        return self.replicas[i]
