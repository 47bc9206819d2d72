"""What a conformance case works with: the process under test, its fresh object, and verdicts.

A case raises ``Fail`` (a rule broken, named) or ``Unknown`` (the harness could not tell: the
process would not start, say). Anything else a case raises is a harness bug and is reported as
such, never as a verdict on the implementation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn, TypeVar

from walrelay import wire
from walrelay.certs import CertPaths
from walrelay.placement import EpochAllocator
from walrelay.procs import NodeProcess
from walrelay_chaos.conform.peer import Closed, PeerError, ScriptedPrimary, Silent, Transcript, harness_tls, tls_values
from walrelay_chaos.powermount import PowerFs, PowerFsError, power_loss_unavailable
from walrelay_chaos.real import NodeCommands

M = TypeVar("M")


class Fail(Exception):
    def __init__(self, rule: str, why: str) -> None:
        super().__init__(f"{rule}: {why}")
        self.rule = rule
        self.why = why


class Unknown(Exception):
    """No verdict: the harness could not run the case (the reason says what to fix)."""


class ReplicaUnderTest:
    """One replica process of the implementation, on one data directory and one port for its life.

    With ``power_loss`` its data directory is a mount of the power-loss filesystem, so that
    ``power_fail`` can drop what the process wrote but did not fsync (``power_loss`` is the reason
    it cannot, or None when it can)."""

    def __init__(
        self,
        commands: NodeCommands,
        root: Path,
        node_id: int = 0,
        start_timeout: float = 30.0,
        *,
        power_loss: bool = False,
    ) -> None:
        self.commands = commands
        self.root = root
        self.node_id = node_id
        self.data = root / "data"
        self.placement = root / "placement"
        self.placement.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "replica.log"
        self.start_timeout = start_timeout
        self.listen = "127.0.0.1:0"
        self.proc: NodeProcess | None = None
        self.address = ""
        self.powerfs: PowerFs | None = None
        self.power_loss: str | None = "not asked for (--no-power-loss)"
        if power_loss:
            self.power_loss = power_loss_unavailable()
            if self.power_loss is None:
                try:
                    self.powerfs = PowerFs(root / "disk", self.data, root / "powerfs.log", start_timeout)
                except PowerFsError as e:
                    self.power_loss = str(e)

    def _fs(self) -> PowerFs:
        if self.powerfs is None:
            raise Unknown(f"power loss cannot be simulated here: {self.power_loss}")
        return self.powerfs

    def power_fail(self, torn: bool = False) -> str:
        """SIGKILL the replica, drop every write it did not fsync (``torn``: after persisting half
        of what it had not synced), start it again."""
        fs = self._fs()
        try:
            said = fs.power_fail(torn)  # first: a node blocked in a held fsync can only die once it fails
            self.kill()
            fs.power_on()
        except PowerFsError as e:
            raise Unknown(str(e)) from e
        self.start()
        return said

    def hold_syncs(self) -> None:
        try:
            self._fs().hold_syncs()
        except PowerFsError as e:
            raise Unknown(str(e)) from e

    def wait_held(self) -> bool:
        """True once the replica is blocked in an fsync (it wrote and did not sync)."""
        try:
            self._fs().wait_held()
        except PowerFsError:
            return False
        return True

    def start(self) -> str:
        argv = self.commands.argv(
            "replica",
            id=self.node_id,
            listen=self.listen,
            data=self.data,
            placement=self.placement,
            **tls_values(self.commands.tls, "replica"),
        )
        env = dict(os.environ, **dict(self.commands.env)) if self.commands.env else None
        self.proc = NodeProcess("replica", argv, str(self.log_path), env=env)
        try:
            self.address = self.proc.start(self.start_timeout)
        except Exception as e:  # any failure to start is "no verdict", with its reason
            raise Unknown(f"the replica did not start: {e}") from e
        self.listen = self.address  # a restart gets the same port back
        return self.address

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def restart(self) -> str:
        self.kill()
        return self.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        if self.powerfs is not None:
            self.powerfs.stop()


class Ctx:
    """One case's view: a fresh object on the replica under test, a transcript, and the checks."""

    def __init__(self, replica: ReplicaUnderTest, object_name: str, timeout: float) -> None:
        self.replica = replica
        self.object = object_name
        self.node_id = replica.node_id
        self.timeout = timeout
        self.transcript = Transcript()
        self._peers: list[ScriptedPrimary] = []

    def close(self) -> None:
        for p in self._peers:
            p.close()

    # ---- verdicts ----
    def fail(self, rule: str, why: str) -> NoReturn:
        raise Fail(rule, why)

    def expect(self, peer: ScriptedPrimary, kind: type[M], rule: str, what: str) -> M:
        """The next frame, which must be a ``kind``; anything else fails ``rule`` saying what came."""
        try:
            msg = peer.recv()
        except Closed:
            self.fail(rule, f"expected {what}; the replica closed the connection")
        except Silent:
            self.fail(rule, f"expected {what}; nothing came within {self.timeout:.0f} s")
        except PeerError as e:
            self.fail(rule, f"expected {what}; {e}")
        if not isinstance(msg, kind):
            self.fail(rule, f"expected {what}; got {type(msg).__name__.upper()}")
        return msg

    def promise(self, peer: ScriptedPrimary, epoch: int, rule: str) -> wire.Promise:
        peer.send(wire.Prepare(epoch))
        p = self.expect(peer, wire.Promise, rule, f"PROMISE answering PREPARE({epoch})")
        if p.epoch != epoch:
            self.fail(rule, f"PROMISE(epoch={p.epoch}) answering PREPARE({epoch})")
        return p

    def stale(self, peer: ScriptedPrimary, promised: int, rule: str) -> None:
        r = self.expect(peer, wire.Reject, rule, f"REJECT(STALE_EPOCH, {promised})")
        if r.reason != wire.RejectReason.STALE_EPOCH or r.promised_epoch != promised:
            self.fail(rule, f"REJECT({r.reason.name}, promised={r.promised_epoch}), expected STALE_EPOCH, {promised}")

    def refused_and_closed(self, peer: ScriptedPrimary, rule: str) -> None:
        """A protocol error: at most a REJECT(BAD_ENTRY) (or ACKs of what was accepted before it),
        then the connection closes."""
        while True:
            try:
                msg = peer.recv()
            except Closed:
                return
            except Silent:
                self.fail(rule, f"a protocol error must close the connection; it stayed open for {self.timeout:.0f} s")
            except PeerError as e:
                self.fail(rule, str(e))
            if isinstance(msg, wire.Reject) and msg.reason == wire.RejectReason.BAD_ENTRY:
                continue
            if isinstance(msg, wire.Ack):
                continue
            self.fail(
                rule, f"a protocol error was answered by {type(msg).__name__.upper()}, not REJECT(BAD_ENTRY) and close"
            )

    # ---- connections ----
    def open_as(self, tls: CertPaths | None) -> ScriptedPrimary:
        """A connection to the replica with this certificate (None: plain TCP), for the cases that
        check who it refuses (R-5.16-2); PeerError if the TLS handshake itself fails."""
        if not self.replica.alive:
            self.replica.start()
        peer = ScriptedPrimary(self.replica.address, self.transcript, self.timeout, tls)
        self._peers.append(peer)
        return peer

    def open(self) -> ScriptedPrimary:
        if not self.replica.alive:
            self.replica.start()
        try:
            peer = ScriptedPrimary(
                self.replica.address, self.transcript, self.timeout, harness_tls(self.replica.commands.tls, "primary")
            )
        except PeerError as e:
            raise Unknown(str(e)) from e
        self._peers.append(peer)
        return peer

    def connect(self, *, obj: str | None = None, hello_epoch: int = 0, prepare: int | None = None) -> ScriptedPrimary:
        """A connection past the HELLO exchange (and a PREPARE when asked), as a primary opens one."""
        name = obj or self.object
        peer = self.open()
        peer.send(wire.Hello(wire.Role.PRIMARY, 0, name, hello_epoch, 0))
        h = self.expect(peer, wire.Hello, "R-5.3-1", "the replica's HELLO")
        if h.object_name != name or h.role != wire.Role.REPLICA:
            self.fail("R-5.3-1", f"HELLO(role={h.role.name}, object={h.object_name!r}) answering a HELLO for {name!r}")
        if prepare is not None:
            self.promise(peer, prepare, "R-5.10-1")
        return peer

    def restart(self) -> None:
        """SIGKILL the replica and start it again on the same data directory and port."""
        for p in self._peers:
            p.close()
        self._peers.clear()
        self.transcript.note("SIGKILL the replica, then start it again on the same data directory")
        self.replica.restart()

    def power_fail(self, torn: bool = False) -> None:
        """A power failure of the replica's machine: SIGKILL, unsynced writes lost (``torn``: half
        of them persisted first), restart."""
        for p in self._peers:
            p.close()
        self._peers.clear()
        said = self.replica.power_fail(torn)
        kind = "a torn power failure" if torn else "power failure"
        self.transcript.note(f"{kind}: SIGKILL the replica, drop its unsynced writes ({said}), start it again")

    def hold_syncs(self) -> None:
        self.replica.hold_syncs()
        self.transcript.note("the filesystem holds every fsync from now until the power failure")

    def wait_held(self) -> bool:
        held = self.replica.wait_held()
        self.transcript.note("an fsync is held: the replica wrote and has not synced" if held else "no fsync was held")
        return held

    def set_placement_epoch(self, epoch: int) -> None:
        """The epoch allocator's current epoch for this case's object (docs/failover.md)."""
        alloc = EpochAllocator(self.replica.placement)
        while alloc.current(self.object) < epoch:
            alloc.allocate(self.object)
        self.transcript.note(f"placement: {self.object}.epoch = {epoch}")
