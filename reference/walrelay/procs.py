"""Start and stop walrelay node processes (for the demo, integration tests and the chaos harness).

A node prints ``LISTENING HOST:PORT`` as its first stdout line; that is how a parent learns a port
it asked the kernel to choose. Every process started here is killed when its ``Cluster`` closes,
so a failing run leaves nothing behind.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from walrelay.certs import CertPaths, throwaway
from walrelay.errors import WalrelayError
from walrelay.tls import TlsTransport
from walrelay.transport import TcpTransport, Transport


@dataclass
class NodeProcess:
    name: str
    argv: list[str]
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    address: str | None = None
    # Linux: the node gets SIGKILL when the thread that spawned it exits (PR_SET_PDEATHSIG), so a
    # parent killed by SIGKILL (a CI timeout) leaves no node running. Only for a parent that
    # spawns from a thread living as long as the node (its main thread): a pooled worker thread
    # that exits when idle would take the node with it.
    die_with_spawner: bool = False
    env: dict[str, str] | None = None  # the child's environment (None: this process's)

    def start(self, timeout: float = 30.0) -> str:
        self.spawn()
        return self.wait_listening(timeout)

    def spawn(self) -> None:
        """Start the process (``wait_listening`` then learns its address; any thread may call it)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
                preexec_fn=parent_death_hook() if self.die_with_spawner else None,
            )
        finally:
            log.close()

    def wait_listening(self, timeout: float = 30.0) -> str:
        """The address from the node's first line, ``LISTENING HOST:PORT``; blocks until then."""
        assert self.proc is not None
        line: list[bytes] = []
        assert self.proc.stdout is not None
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        text = line[0].decode().strip() if line else ""
        if not text.startswith("LISTENING "):
            self.kill()
            tail = _tail(self.log_path)
            raise WalrelayError(f"{self.name} did not start (said {text!r}); its log ends with:\n{tail}")
        self.address = text.split(" ", 1)[1]
        return self.address

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash. No goodbye, no flush, nothing that was not fsync'd survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing (a GC pause, a frozen VM)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up here (in the parent), never in a child between fork and exec,
    where loading a library could deadlock on a lock another thread of the parent held."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        return cast("Callable[..., int]", ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In the child, before exec: ask the kernel for ``sig`` (SIGKILL by default) when the spawning
    thread exits; if the parent (``parent``: its pid, taken before the fork) is already gone, exit now."""
    if _PRCTL is not None:
        _PRCTL(1, sig)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)


def parent_death_hook(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that ties the child's life to this thread's (Linux), else None. ``sig``:
    what the child gets (SIGTERM lets a child that must clean up, such as a mounted filesystem,
    do so)."""
    return functools.partial(die_with_parent, os.getpid(), sig) if _PRCTL is not None else None


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def walrelay_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "walrelay", *args]


# The client transport for each primary a Cluster started (by its address): tests and the demo
# dial a primary with the certificates of the cluster that started it (``client_transport``).
_CLIENT_TRANSPORTS: dict[str, Transport] = {}


def client_transport(address: str) -> Transport:
    """How to reach the primary at ``address`` as a client: over TLS with an admin certificate of
    the Cluster that started it, or plain TCP for one started ``insecure`` (or elsewhere)."""
    return _CLIENT_TRANSPORTS.get(address) or TcpTransport()


@dataclass
class Cluster:
    """One primary and N replicas as OS processes on loopback, over mutual TLS with a throwaway CA
    (``<root>/certs``, made on first use), or plain TCP with ``insecure``."""

    root: str
    replicas: list[NodeProcess] = field(default_factory=list)
    primary: NodeProcess | None = None  # the one started last
    primaries: list[NodeProcess] = field(default_factory=list)
    insecure: bool = False

    @property
    def certs(self) -> str:
        d = os.path.join(self.root, "certs")
        if not os.path.exists(os.path.join(d, "ca.crt")):
            throwaway(d, "test")
        return d

    def tls_args(self, role: str) -> list[str]:
        """The TLS flags of a node or client of this cluster with the certificate of ``role``."""
        if self.insecure:
            return ["--insecure"]
        paths = CertPaths.in_dir(self.certs, role)
        return ["--ca", paths.ca, "--cert", paths.cert, "--key", paths.key]

    def client_transport(self, role: str = "admin") -> Transport:
        if self.insecure:
            return TcpTransport()
        return TlsTransport(TcpTransport(), CertPaths.in_dir(self.certs, role))

    @property
    def placement(self) -> str:
        """The epoch allocator directory every node of this cluster shares (docs/failover.md)."""
        return os.path.join(self.root, "placement")

    def start_replicas(self, n: int) -> list[str]:
        for i in range(n):
            data = os.path.join(self.root, f"replica-{i}")
            argv = ["replica", "--id", str(i), "--listen", "127.0.0.1:0", "--data", data, "--placement", self.placement]
            argv += self.tls_args("replica")
            node = NodeProcess(f"replica {i}", walrelay_argv(*argv), os.path.join(self.root, f"replica-{i}.log"))
            node.start()
            self.replicas.append(node)
        return [r.address for r in self.replicas if r.address]

    def restart_replica(self, i: int) -> str:
        """Restart replica i on its old port with its old data (what a rebooted host does)."""
        old = self.replicas[i]
        old.kill()
        assert old.address is not None
        argv = list(old.argv)
        argv[argv.index("--listen") + 1] = old.address
        node = NodeProcess(old.name, argv, old.log_path)
        node.start()
        self.replicas[i] = node
        return node.address or ""

    def lose_disk(self, i: int) -> str:
        """Replica i's disk is gone for good: kill it, delete its data, start it empty on its port."""
        self.replicas[i].kill()
        argv = self.replicas[i].argv
        shutil.rmtree(argv[argv.index("--data") + 1], ignore_errors=True)
        return self.restart_replica(i)

    def start_primary(self, object_name: str, *, name: str = "primary", extra: tuple[str, ...] = ()) -> str:
        """Start a primary for the object; it takes the next epoch from the cluster's placement,
        so a second one takes over from (and fences) the first. ``name`` names its data
        directory and log: reuse a name to restart a primary on the same host's disk."""
        addrs = ",".join(r.address or "" for r in self.replicas)
        argv = ["primary", "--object", object_name, "--replicas", addrs, "--data", os.path.join(self.root, name)]
        node = NodeProcess(
            name,
            walrelay_argv(*argv, "--placement", self.placement, *self.tls_args("primary"), *extra),
            os.path.join(self.root, f"{name}.log"),
        )
        self.primary = node
        self.primaries.append(node)
        address = node.start()
        _CLIENT_TRANSPORTS[address] = self.client_transport()
        return address

    def close(self) -> None:
        nodes = [*self.replicas, *self.primaries]
        for node in nodes:
            node.stop(timeout=3)
