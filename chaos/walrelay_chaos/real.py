"""Real-mode chaos: the same schedules, played against OS processes over loopback TCP.

Five ``walrelay replica`` processes and ``walrelay primary`` processes (kv app, epochs from one
placement directory, archive in a real S3-protocol server), started by this controller, which
plays a schedule (``walrelay_chaos.schedule``) and judges the outcome from the outside, as a
conformance suite must: the only ways in are the client protocol, ``__status__``, the archive in
the object store and, after every process stopped, the replicas' files.

The faults are real:

* partitions and one-way links: every primary reaches replica ``i`` through a ``LinkProxy``
  (``walrelay_chaos.netproxy``) that this controller runs;
* crashes: SIGKILL (unsynced writes are lost with the page cache only on a power cut, which a
  process crash does not simulate; the simulation's disk does);
* disk loss: SIGKILL, delete the replica's data, restart it empty on its port;
* a stale primary: ``NewPrimary`` without crashing the old one, which keeps running until fenced;
* S3 faults: the store is reached through ``walrelay_chaos.s3proxy.FaultProxy``; ``StoreDown``
  answers PUTs with 503 SlowDown, or stores them and hangs up (an ambiguous PUT).

Checkers, after healing everything, killing every primary and letting a last one take over:

* the set checker: every acknowledged write is in the final primary's database with its value,
  nothing reported as failed is (and at every ``Check`` on the way);
* every replica holds exactly the committed log (the archive's and the final primary's);
* the archive verifies and holds the committed log through the final durable seq;
* the committed log's order respects real time: a write acknowledged before another was invoked
  has the smaller seq; every acknowledged write is in it;
* PITR at every bookmark taken: the archive's database at its seq holds every write acknowledged
  before the bookmark was asked for, and nothing invoked after it was answered, nor anything failed.

Restores are real too: by request (``__restore__`` on the client door, then a restart) or by flag
(a primary started with the implementation file's ``restore`` arguments); each restored database
must be the archive's at the bookmark, and the undo point it leaves is itself a bookmark judged at
the end. Clock jumps move the current primary's wall clock with libfaketime
(``walrelay_chaos.fakeclock``); the committed log's timestamps must never go back. An op real mode
cannot play (``Orphan``; a clock jump where libfaketime is missing; a restore by flag the
implementation file gives no arguments for) is skipped and noted in the history and the verdict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import random
import shutil
import string
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from walrelay.archive.format import bookmark, parse_bookmark
from walrelay.archive.reader import ArchiveReader
from walrelay.archive.s3_store import S3Store
from walrelay.archive.verify import verify
from walrelay.certs import CertPaths, throwaway
from walrelay.client import Client
from walrelay.errors import WalrelayError
from walrelay.placement import EpochAllocator
from walrelay.procs import NodeProcess, walrelay_argv
from walrelay.replay import Replayer, open_image
from walrelay.replica_store import ReplicaStore
from walrelay.tls import TlsTransport
from walrelay.transport import TcpTransport, Transport
from walrelay.wire import ReplyStatus
from walrelay_chaos import schedule as op
from walrelay_chaos.conform.outside import OutsideLog, read_log
from walrelay_chaos.conform.peer import PeerError
from walrelay_chaos.fakeclock import SkewedClock, clock_skew_unavailable
from walrelay_chaos.netproxy import LinkProxy
from walrelay_chaos.pace import slowdown
from walrelay_chaos.powermount import PowerFs, PowerFsError, power_loss_unavailable
from walrelay_chaos.s3proxy import FaultProxy
from walrelay_chaos.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from walrelay_chaos.schedule import Op, read_json_file
from walrelay_chaos.sim import History, lineage
from walrelay_chaos.verdicts import Judge, OpRef, Violation, diff_text, plural, status_text

N = 5
OBJECT = "obj"
MAX_DISK_LOSS = 2
CALL_S = 10.0  # a read or a bookmark not answered in this long gets no verdict (a partition)
SETTLE_S = 60.0  # how long the final primary may take to serve, repair replicas, catch up the archive
TAKEOVER_S = 10.0  # NewPrimary waits this long at most for the new primary to serve
CHECK_S = 5.0  # a Check waits this long at most for the current primary to serve
ANSWER_S = 10.0  # at the end, once healed, writes in flight get this long to be answered


REPLICA_FIELDS = ("id", "listen", "data", "placement", "python", "ca", "cert", "key")
PRIMARY_FIELDS = (
    "python",
    "object",
    "replicas",
    "listen",
    "data",
    "placement",
    "quorum",
    "s3",
    "segment_mb",
    "segment_seconds",
    "deadline",
    "epoch",
    "ca",
    "cert",
    "key",
)
# Mutual TLS (docs/protocol.md, section 9): the harness makes a throwaway CA per run and fills in
# each node's files; an implementation whose templates name no {cert} runs without TLS (and the
# harness says so).
TLS_ARGS = ["--ca", "{ca}", "--cert", "{cert}", "--key", "{key}"]
WALRELAY_REPLICA = [
    "replica", "--id", "{id}", "--listen", "{listen}", "--data", "{data}", "--placement", "{placement}", *TLS_ARGS,
]  # fmt: skip
WALRELAY_PRIMARY = [
    "primary",
    "--object",
    "{object}",
    "--app",
    "kv",
    "--replicas",
    "{replicas}",
    "--listen",
    "{listen}",
    "--data",
    "{data}",
    "--placement",
    "{placement}",
    "--quorum",
    "{quorum}",
    "--s3",
    "{s3}",
    "--segment-mb",
    "{segment_mb}",
    "--segment-seconds",
    "{segment_seconds}",
    "--deadline",
    "{deadline}",
    *TLS_ARGS,
]
WALRELAY_RESTORE = ("--restore-to", "{bookmark}")


class ImplError(ValueError):
    """An implementation file that cannot be used: the message names what is wrong."""


@dataclass(frozen=True)
class NodeCommands:
    """How to start the implementation under test: one argv template per role, ``{field}``
    placeholders filled in per process (docs/conformance.md). ``walrelay_files``: the replicas
    keep walrelay's on-disk format, so the checker can also read their logs after the run."""

    replica: tuple[str, ...]
    primary: tuple[str, ...]
    walrelay_files: bool = False
    env: tuple[tuple[str, str], ...] = ()
    # Appended to the primary's argv to start one that restores to ``{bookmark}`` (a restore by
    # flag; by request needs nothing: ``__restore__`` on the client door). Empty: not supported,
    # and a schedule's restores by flag are skipped (and said to be).
    restore: tuple[str, ...] = ()

    @staticmethod
    def walrelay(mutant: str | None = None) -> NodeCommands:
        """The reference; with ``mutant``, each process plants it first (walrelay_chaos.node)."""
        if mutant is None:
            head = walrelay_argv()
            return NodeCommands(
                tuple(head + WALRELAY_REPLICA), tuple(head + WALRELAY_PRIMARY), True, (), WALRELAY_RESTORE
            )
        head = [sys.executable, "-m", "walrelay_chaos.node"]
        env = (("WALRELAY_CHAOS_MUTANT", mutant),)
        return NodeCommands(tuple(head + WALRELAY_REPLICA), tuple(head + WALRELAY_PRIMARY), True, env, WALRELAY_RESTORE)

    @staticmethod
    def from_file(path: str | os.PathLike[str]) -> NodeCommands:
        """``{"replica": [argv...], "primary": [argv...]}``, each a list of strings. An argument that
        starts with ``./`` or ``../`` is a path relative to the file's own directory (so a file can
        sit beside the program it starts, wherever the harness runs from)."""
        cmds = NodeCommands.from_json(read_json_file(path, ImplError), where=str(path))
        here = os.path.dirname(os.path.abspath(path))

        def resolve(argv: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(os.path.normpath(os.path.join(here, a)) if a.startswith(("./", "../")) else a for a in argv)

        return dataclasses.replace(
            cmds, replica=resolve(cmds.replica), primary=resolve(cmds.primary), restore=resolve(cmds.restore)
        )

    @staticmethod
    def from_json(body: object, *, where: str) -> NodeCommands:
        """The implementation file's object (also kept in replay files as ``impl``)."""
        path = where
        if not isinstance(body, dict):
            raise ImplError(f"{path}: expected a JSON object with keys replica, primary (and restore)")
        extra = sorted(set(body) - {"replica", "primary", "restore"})
        if extra:
            raise ImplError(f"{path}: unknown key {extra[0]!r} (expected replica, primary and, optionally, restore)")
        out: dict[str, tuple[str, ...]] = {}
        for role, fields in (("replica", REPLICA_FIELDS), ("primary", PRIMARY_FIELDS)):
            argv = body.get(role)
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise ImplError(f"{path}: {role} must be a non-empty list of strings (an argv template)")
            for a in argv:
                problem = _template_problem(a, fields)
                if problem:
                    raise ImplError(f"{path}: {role} argument {a!r}: {problem}; known: {', '.join(fields)}")
            out[role] = tuple(argv)
        restore = body.get("restore", [])
        if not isinstance(restore, list) or not all(isinstance(a, str) for a in restore):
            raise ImplError(f"{path}: restore must be a list of strings (argv appended to a restoring primary's)")
        for a in restore:
            problem = _template_problem(a, (*PRIMARY_FIELDS, "bookmark"))
            if problem:
                raise ImplError(f"{path}: restore argument {a!r}: {problem}; known: bookmark and the primary's")
        if restore and not any("{bookmark}" in a for a in restore):
            raise ImplError(f"{path}: restore must name {{bookmark}} (the bookmark to restore to)")
        return NodeCommands(out["replica"], out["primary"], restore=tuple(restore))

    def to_json(self) -> dict[str, list[str]]:
        out = {"replica": list(self.replica), "primary": list(self.primary)}
        if self.restore:
            out["restore"] = list(self.restore)
        return out

    @property
    def tls(self) -> bool:
        """The templates name ``{cert}``: the nodes run mutual TLS with the run's throwaway CA."""
        return any("{cert}" in a for a in (*self.replica, *self.primary))

    @property
    def takes_epoch(self) -> bool:
        """The primary's template names ``{epoch}``: the harness allocates one per primary."""
        return any("{epoch" in a for a in self.primary)

    def argv(self, role: str, **values: Any) -> list[str]:
        """The template filled in; ``{python}`` is the harness's own interpreter (how a mixed
        cluster names walrelay's nodes: ``{python} -m walrelay replica ...``)."""
        template = {"replica": self.replica, "primary": self.primary, "restore": self.restore}[role]
        values = {"python": sys.executable, **values}
        return [a.format(**{k: str(v) for k, v in values.items()}) for a in template]


def _template_problem(arg: str, fields: tuple[str, ...]) -> str | None:
    """What is wrong with one argv template, or None: only plain ``{field}`` placeholders."""
    try:
        parts = list(string.Formatter().parse(arg))
    except ValueError as e:
        return f"bad placeholder ({e})"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in fields:
            return f"bad placeholder {{{name}}}"
        if spec or conversion:
            return f"placeholder {{{name}}} takes no format spec or conversion"
    return None


class RealCheckError(Violation):
    """A checker's verdict on a real run (a ``verdicts.Violation``, an AssertionError, as in the
    simulation)."""


def _unknown_operation(reply: Any) -> bool:
    body = reply.body if reply is not None else None
    return (
        reply is not None
        and reply.status is ReplyStatus.ERROR
        and isinstance(body, dict)
        and body.get("type") == "UnknownOperation"
    )


def _refused(op_name: str, who: str, reply: Any) -> SetupError:
    message = reply.body.get("message", "") if isinstance(reply.body, dict) else reply.body
    return SetupError(
        f"{who} refuses the operation {op_name!r} (UnknownOperation: {message}): the implementation under test "
        "does not run the kv app the chaos workload needs (walrelay: --app kv in the primary's argv template)"
    )


@dataclass
class Bookmarked:
    """A bookmark and what the history says its database must hold."""

    bookmark: str
    acked_before: set[int]  # acknowledged before __bookmark__ was asked for: must be in it
    invoked_before: set[int]  # invoked before it was answered: nothing else may be in it
    base: dict[int, str] = field(default_factory=dict)  # what the restore that began its era brought
    kind: str = "bookmark"  # or "undo point" (left by a restore), or "genesis"


@dataclass
class Era:
    """The writes since the last restore (or the start), and the database that restore brought:
    a restore rolls back to a bookmark, so what must be present is judged per era. Keys are never
    reused, so what was invoked or failed is judged over the whole run (RealOutcomes)."""

    base: dict[int, str] = field(default_factory=dict)
    ok: set[int] = field(default_factory=set)
    invoked: set[int] = field(default_factory=set)


@dataclass
class RealOutcomes:
    ok: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)
    invoked: set[int] = field(default_factory=set)
    acked_at: dict[int, float] = field(default_factory=dict)  # key -> when its ack arrived
    invoked_at: dict[int, float] = field(default_factory=dict)
    bookmarks: list[Bookmarked] = field(default_factory=list)  # taken, and undo points, in order
    restores: int = 0
    clock_jumps: int = 0
    skipped: list[str] = field(default_factory=list)
    reached: set[str] = field(default_factory=set)  # coverage targets seen from here (walrelay_chaos.coverage)
    seconds: float = 0.0


class RealWorld(Judge):
    violation = RealCheckError

    def __init__(
        self,
        root: str,
        nursery: trio.Nursery,
        s3: S3Server,
        history: History,
        quorum: int,
        impl: NodeCommands,
        power_loss: bool = False,
        clock_skew: bool = False,
        pace: float = 1.0,
    ) -> None:
        self.root = root
        # The waits that guard a verdict (how long the final primary may take to serve...) are
        # quiet-machine numbers scaled by how slow this machine is (walrelay_chaos.pace): a loaded
        # runner must not turn a slow takeover into an "invalid".
        self.pace = pace
        self.call_s, self.settle_s, self.takeover_s = CALL_S * pace, SETTLE_S * pace, TAKEOVER_S * pace
        self.check_s, self.answer_s = CHECK_S * pace, ANSWER_S * pace
        # A ClockJump in the schedule starts every primary under libfaketime (fakeclock); where it
        # is missing, the jumps are skipped and the verdict says so.
        why = clock_skew_unavailable() if clock_skew else "not asked for"
        self.clock_skew = clock_skew and why is None
        self.clock_note = why or "libfaketime"
        self.clocks: dict[str, SkewedClock] = {}
        # A PowerFail in the schedule mounts the power-loss filesystem under every replica's data
        # directory (FUSE; walrelay_chaos.powerfs), so that it loses what was not fsync'd. Where
        # that cannot run, a PowerFail is a SIGKILL (the page cache survives) and says so.
        self.power_loss = power_loss
        self.powerfs: list[PowerFs] = []
        self.power_note = "not asked for"
        self.impl = impl
        self.replica_listen = ["127.0.0.1:0"] * N
        self.outside_logs: list[OutsideLog] = []  # each replica's log read over the wire at the end
        self.nursery = nursery
        self.history = history
        self.quorum = quorum
        self.placement = os.path.join(root, "placement")
        self.bucket = f"chaos-{uuid.uuid4().hex[:12]}"
        self.s3 = s3
        self.store_down = False
        self.store_ambiguous = True
        self.store_slow = False
        self.s3proxy = FaultProxy(s3.endpoint, self._decide_s3)
        # Each primary reaches the replicas through proxies of its own (a bridge cuts one primary
        # off from some replicas only); a shared fault applies to every primary's, and to those
        # of primaries started while it lasts (``shared``: replica index -> fault).
        self.links: dict[str, list[LinkProxy]] = {}
        self.shared_cut: set[int] = set()
        self.shared_block: dict[int, str] = {}
        self.shared_delay: dict[int, float] = {}
        self.replicas: list[NodeProcess] = []
        self.primaries: list[NodeProcess] = []
        self.out = RealOutcomes()
        self.era = Era()
        self.genesis = Bookmarked(bookmark(1, 0), set(), set(), {}, "genesis")
        self.restored_branches: set[int] = set()  # branches a restore of this run made
        self.next_key = 1
        self.losses = 0
        # Mutual TLS with a throwaway CA (the harness is an admin client: restores need that role).
        self.certs = str(throwaway(os.path.join(root, "certs"), "chaos")) if impl.tls else None
        self.transport: Transport = (
            TlsTransport(TcpTransport(), CertPaths.in_dir(self.certs, "admin")) if self.certs else TcpTransport()
        )
        self.pending = 0  # writes sent and not answered yet

    @property
    def s3_url(self) -> str:
        return f"{self.s3proxy.endpoint}/{self.bucket}"

    def _decide_s3(self, method: str, path: str, n: int) -> str:
        if self.store_down and method == "PUT":
            return "ambiguous" if self.store_ambiguous and n % 2 else "503"
        if self.store_slow and method == "PUT":
            return "slow"
        return "pass"

    def store(self) -> S3Store:
        """The archive, read directly (not through the fault proxy)."""
        return S3Store(f"{self.s3.endpoint}/{self.bucket}", access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    # -- processes --------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """What every node gets (this process's environment is left alone): the S3 server's
        credentials, and a mutant's name when one is planted."""
        env = {k: v for k, v in os.environ.items() if k != "WALRELAY_CHAOS_MUTANT"}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        env.update(dict(self.impl.env))
        return env

    def tls_paths(self, role: str) -> CertPaths | None:
        return CertPaths.in_dir(self.certs, role) if self.certs is not None else None

    def tls_values(self, role: str) -> dict[str, str]:
        """{ca}, {cert}, {key} for a node of ``role`` (empty strings without TLS)."""
        if self.certs is None:
            return {"ca": "", "cert": "", "key": ""}
        paths = CertPaths.in_dir(self.certs, role)
        return {"ca": paths.ca, "cert": paths.cert, "key": paths.key}

    def replica_data(self, i: int) -> str:
        return os.path.join(self.root, f"replica-{i}")

    def _replica(self, i: int) -> NodeProcess:
        argv = self.impl.argv(
            "replica",
            id=i,
            listen=self.replica_listen[i],
            data=self.replica_data(i),
            placement=self.placement,
            **self.tls_values("replica"),
        )
        return NodeProcess(f"replica {i}", argv, f"{self.replica_data(i)}.log", env=self.env, die_with_spawner=True)

    async def start(self) -> None:
        if self.power_loss:
            why = power_loss_unavailable()
            try:
                if why is None:
                    for i in range(N):
                        # On this (the main) thread: the filesystem dies with it (PowerFs); a second
                        # each at most, once per run.
                        base = self.replica_data(i)
                        self.powerfs.append(
                            PowerFs(Path(f"{base}.disk"), Path(base), Path(f"{base}.powerfs.log"), 30.0)
                        )
            except PowerFsError as e:
                why = str(e)
            self.power_note = why or "mounted"
        S3Store(f"{self.s3.endpoint}/{self.bucket}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, create_bucket=True)
        self.replicas = [self._replica(i) for i in range(N)]
        async with trio.open_nursery() as starting:
            for node in self.replicas:
                starting.start_soon(_start, node)
        for i, node in enumerate(self.replicas):
            assert node.address is not None
            self.replica_listen[i] = node.address  # a restart keeps its port
        await self.new_primary()
        # Faults start once the cluster is up (every replica admitted as a voter): a schedule
        # that opens with a power failure would otherwise only test a cluster that never formed.
        st: dict[str, Any] | None = None
        with trio.move_on_after(self.settle_s):
            while (st := await self.status(self.current())) is None or not _formed(st):  # noqa: ASYNC110 - another process
                await trio.sleep(0.05)
        first = self.current()
        if not first.alive:
            raise SetupError(f"the first primary {first.name} exited at once, before any fault{_log_tail(first)}")
        if st is None or st.get("phase") != "serving":
            raise SetupError(
                f"the first primary {first.name} never served within {self.settle_s:g} s of starting, before any "
                f"fault: {status_text(st)}{_log_tail(first)}"
            )

    async def restart_replica(self, i: int, *, lose_disk: bool = False) -> None:
        await trio.to_thread.run_sync(self.replicas[i].kill)
        if lose_disk:
            shutil.rmtree(self.replica_data(i), ignore_errors=True)
        node = self.replicas[i] = self._replica(i)  # registered before it runs: close() kills it
        await _start(node)

    async def _links_for(self, name: str, cut: set[int]) -> list[LinkProxy]:
        """Proxies to each replica for primary ``name``, with the shared faults in force and its
        own partitions ``cut``."""
        links = [LinkProxy(f"{name}->r{i}", self.replica_listen[i]) for i in range(N)]
        for i, link in enumerate(links):
            await self.nursery.start(link.serve)
            if i in self.shared_cut or i in cut:
                link.partition()
            if i in self.shared_block:
                link.block(self.shared_block[i])
            if i in self.shared_delay:
                link.delay(self.shared_delay[i])
        self.links[name] = links
        return links

    def all_links(self, i: int) -> list[LinkProxy]:
        return [links[i] for links in self.links.values()]

    async def new_primary(self, *, cut: frozenset[int] = frozenset(), restore_to: str | None = None) -> None:
        """Start the next primary; ``cut``: replicas it alone cannot reach (until Heal);
        ``restore_to``: it restores to that bookmark (the implementation file's restore args)."""
        n = len(self.primaries)
        epoch = EpochAllocator(self.placement).allocate(OBJECT) if self.impl.takes_epoch else 0
        links = await self._links_for(f"p{n}", set(cut))
        argv = self.impl.argv(
            "primary",
            object=OBJECT,
            replicas=",".join(link.address for link in links),
            listen="127.0.0.1:0",
            data=os.path.join(self.root, f"p{n}"),
            placement=self.placement,
            quorum=self.quorum,
            s3=self.s3_url,
            segment_mb=0.02,  # segments of about 20 kB, cut at least every second: many cuts per run
            segment_seconds=1,
            deadline=600,  # no resets by time: the schedule decides what happens
            epoch=epoch,
            **self.tls_values("primary"),
        )
        if restore_to is not None:
            argv += self.impl.argv("restore", bookmark=restore_to)
        env = self.env
        if self.clock_skew:  # each primary starts with the true time; a ClockJump moves the current one's
            clock = self.clocks[f"p{n}"] = SkewedClock(Path(self.root) / f"p{n}.clock")
            env.update(clock.env())
        node = NodeProcess(f"p{n}", argv, os.path.join(self.root, f"p{n}.log"), env=env, die_with_spawner=True)
        self.primaries.append(node)  # registered before it runs: close() kills it
        await _start(node)

    def current(self) -> NodeProcess:
        return self.primaries[-1]

    def close(self) -> None:
        for node in [*self.primaries, *self.replicas]:
            node.kill()
        for fs in self.powerfs:
            fs.stop()
        self.s3proxy.close()

    # -- client operations ------------------------------------------------------------------------

    def write(self, p: NodeProcess, count: int) -> None:
        if not p.alive or p.address is None:
            return
        for _ in range(count):
            k = self.next_key
            self.next_key += 1
            self.out.unknown.add(k)
            self.out.invoked.add(k)
            self.era.invoked.add(k)
            self.out.invoked_at[k] = self.history.now()
            self.pending += 1  # counted now, not when its task starts: AwaitWrites must see it
            self.nursery.start_soon(self._put, p.address, p.name, k, self.era)

    async def _put(self, address: str, name: str, k: int, era: Era) -> None:
        process = self.history.invoke("write", k, node=name)
        try:
            async with Client.connect(self.transport, address) as client:
                reply = await client.call("put", k, f"v{k}")
        except (ConnectionError, OSError, trio.BrokenResourceError) as e:
            self.history.complete(process, "info", "write", k, f"connection: {e}")
            return
        finally:
            self.pending -= 1
        if reply.status is ReplyStatus.OK:
            self.out.unknown.discard(k)
            self.out.ok.add(k)
            era.ok.add(k)  # the era it was written in, even if the answer comes after a restore
            self.out.acked_at[k] = self.history.now()
            self.history.complete(process, "ok", "write", k)
        elif reply.status is ReplyStatus.ERROR:
            self.out.unknown.discard(k)
            self.out.failed.add(k)
            self.history.complete(process, "fail", "write", k, str(reply.body))
            if _unknown_operation(reply):
                raise _refused("put", name, reply)
        else:
            self.history.complete(process, "info", "write", k, str(reply.body))

    async def call(self, p: NodeProcess, name: str, *args: Any, within_s: float | None = None) -> Any:
        """One call's reply, or None: no answer in time or the connection broke."""
        if not p.alive or p.address is None:
            return None
        with trio.move_on_after(self.call_s if within_s is None else within_s):
            try:
                async with Client.connect(self.transport, p.address) as client:
                    return await client.call(name, *args)
            except (ConnectionError, OSError, trio.BrokenResourceError):
                return None
        return None

    async def status(self, p: NodeProcess) -> dict[str, Any] | None:
        """``__status__``, on a fresh connection: its TLS handshake too is CPU work for a busy node.
        Each try gets the scaled call budget: at a fixed 2 s, every try during a restore on a loaded
        CI machine ended mid-handshake (the primary served, the harness never saw it, and judged
        "never served": the machine's load measured as none when the run started)."""
        reply = await self.call(p, "__status__", within_s=self.call_s)
        if _unknown_operation(reply):
            raise _refused("__status__", p.name, reply)
        return reply.body if reply is not None and reply.status is ReplyStatus.OK else None

    async def read_all(self, p: NodeProcess, within_s: float) -> dict[int, str] | None:
        if not p.alive or p.address is None:
            return None
        found: dict[int, str] = {}
        with trio.move_on_after(within_s):
            try:
                async with Client.connect(self.transport, p.address) as client:
                    for k in range(1, self.next_key):
                        reply = await client.call("get", k)
                        if _unknown_operation(reply):
                            raise _refused("get", p.name, reply)
                        if reply.status is not ReplyStatus.OK:
                            return None  # fenced meanwhile: nothing to judge here
                        if reply.body is not None:
                            found[k] = reply.body
            except (ConnectionError, OSError, trio.BrokenResourceError):
                return None
            return found
        return None

    async def check(self, p: NodeProcess, context: str, *, must_answer: bool = False) -> dict[int, str] | None:
        era = self.era
        acked = set(era.ok)
        read_at = len(self.history.events)
        process = self.history.invoke("read", None, node=p.name)
        found = await self.read_all(p, self.settle_s if must_answer else self.call_s)
        self.history.complete(process, "info" if found is None else "ok", "read", None if found is None else len(found))
        final = context == "after the final takeover"
        if found is None:
            if must_answer:
                st = await self.status(p)
                self.fail(
                    "reads-unanswered",
                    f"reads at {'the final primary ' if final else ''}{p.name} got no answer within "
                    f"{self.settle_s:g} s: {status_text(st)}",
                    ops=[self.ops().at(read_at)],
                    expected="an answer",
                    found=st,
                    where=context,
                )
            return None
        place = f"the final primary {p.name}'s database" if final else f"{p.name}'s database at a {context}"
        ops = self.ops()
        read = ops.at(read_at)
        for prop, keys, say in (
            ("acked-write-lost", [k for k in acked if found.get(k) is None], "acknowledged"),
            ("restored-write-lost", [k for k in era.base if found.get(k) is None], "restored"),
        ):
            if keys:
                keys = sorted(keys)
                text, refs = ops.writes_text(keys)
                verb = "is" if len(keys) == 1 else "are"
                self.fail(
                    prop,
                    f"acknowledged writes missing from {place}: {text}"
                    if say == "acknowledged"
                    else f"{plural(len(keys), 'write')} {text}, brought back by the last restore, {verb} missing "
                    f"from {place}",
                    ops=[*refs, read],
                    expected={str(k): era.base.get(k, f"v{k}") for k in keys},
                    found={str(k): None for k in keys},
                    where=context,
                )
        wrong = sorted(k for k, v in found.items() if v != era.base.get(k, f"v{k}"))
        if wrong:
            k = wrong[0]
            w = ops.write(k)
            by = w.describe() if w is not None else f"write k={k}"
            self.fail(
                "wrong-value",
                f"{place} holds {found[k]!r} at k={k}, not the {era.base.get(k, f'v{k}')!r} that {by} wrote"
                + (f" ({len(wrong) - 1} more keys too)" if len(wrong) > 1 else ""),
                ops=[w, read],
                expected={str(k): era.base.get(k, f"v{k}") for k in wrong},
                found={str(k): found[k] for k in wrong},
                where=context,
            )
        restore = ops.last("restore")
        for prop, keys, how in (
            ("failed-write-present", sorted(set(found) & self.out.failed), "answered ERROR"),
            ("unwritten-key-present", sorted(set(found) - self.out.invoked), "never written"),
            ("rolled-back-write-present", sorted(set(found) - era.base.keys() - era.invoked), "rolled back"),
        ):
            if keys:
                text, refs = ops.writes_text(keys)
                one = len(keys) == 1
                lead = (
                    f"{plural(len(keys), 'key')} {text}"
                    if how == "never written"
                    else f"{plural(len(keys), 'write')} {text}"
                )
                how_said = (
                    f"rolled back by the last restore ({restore.what()})" if how == "rolled back" and restore else how
                )
                self.fail(
                    prop,
                    f"{lead} {'was' if one else 'were'} {how_said}, yet {place} holds {'it' if one else 'them'}",
                    ops=[*refs, read, restore if how == "rolled back" else None],
                    expected={str(k): None for k in keys},
                    found={str(k): found[k] for k in keys},
                    where=context,
                )
        return found

    async def bookmark(self, p: NodeProcess) -> None:
        acked = set(self.era.ok)
        process = self.history.invoke("bookmark", None, node=p.name)
        reply = await self.call(p, "__bookmark__", within_s=self.check_s)
        if reply is None or reply.status is not ReplyStatus.OK:
            self.history.complete(process, "info", "bookmark", None, "no answer" if reply is None else str(reply.body))
            return
        mark = str(reply.body["bookmark"])
        self.history.complete(process, "ok", "bookmark", mark)
        self.out.bookmarks.append(Bookmarked(mark, acked & self.era.ok, set(self.era.invoked), self.era.base))

    # -- the schedule -----------------------------------------------------------------------------

    async def step(self, o: Op) -> None:
        h = self.history
        current = self.current()
        if isinstance(o, op.Write):
            self.write(current, o.count)
        elif isinstance(o, op.WriteStale):
            stale = [p for p in self.primaries[:-1] if p.alive]
            if stale:
                self.write(stale[-1], o.count)
        elif isinstance(o, op.Settle):
            await trio.sleep(o.ms / 1000)
        elif isinstance(o, op.AwaitWrites):
            with trio.move_on_after(o.ms / 1000 * self.pace):
                while self.pending:  # noqa: ASYNC110 - the writes are other tasks' calls
                    await trio.sleep(0.005)
        elif isinstance(o, op.Cut):
            h.fault("start-partition", [f"r{i}" for i in range(N) if o.mask >> i & 1])
            for i in _indexes(o.mask):
                self.shared_cut.add(i)
                for link in self.all_links(i):
                    link.partition()
        elif isinstance(o, op.Heal):
            self.heal()
        elif isinstance(o, op.CrashPrimary):
            if current.alive:
                h.fault("crash-primary", current.name)
                await trio.to_thread.run_sync(current.kill)
        elif isinstance(o, op.NewPrimary):
            h.fault("new-primary", f"p{len(self.primaries)}")
            await self.new_primary()
            # An operator waits for a takeover before sending writes (a process takes ~0.5 s to
            # start); a takeover that cannot finish (partitions) is given up on after a while.
            await self.serving(self.current(), self.takeover_s)
        elif isinstance(o, op.CrashReplica):
            h.fault("crash-replica", f"r{o.replica}")
            await self.restart_replica(o.replica)
        elif isinstance(o, op.LoseDisk):
            if self.losses < MAX_DISK_LOSS:
                self.losses += 1
                h.fault("lose-disk", f"r{o.replica}")
                await self.restart_replica(o.replica, lose_disk=True)
        elif isinstance(o, op.StoreDown):
            if not self.store_down:
                h.fault("start-store-down", "ambiguous PUTs" if o.ambiguous else "PUTs fail (503)")
            self.store_down, self.store_ambiguous = True, o.ambiguous
        elif isinstance(o, op.StoreUp):
            self.store_up()
        elif isinstance(o, op.SlowStore):
            h.fault("start-slow-store", f"PUTs {o.ms} ms slower")
            self.s3proxy.slow_s, self.store_slow = o.ms / 1000, True
        elif isinstance(o, op.Check):
            if current.alive and await self.serving(current, self.check_s):
                await self.check(current, "check")
        elif isinstance(o, op.Bookmark):
            if current.alive:
                await self.bookmark(current)
        elif isinstance(o, op.MinorityFailover | op.PairFailover | op.SplitBrain):
            for sub in o.expand():
                await self.step(sub)
        elif isinstance(o, op.OneWay):
            dead = "to the replicas" if o.to_replica else "from the replicas"
            h.fault("start-one-way", [*_names(o.mask), dead])
            for i in _indexes(o.mask):
                self.shared_block[i] = "up" if o.to_replica else "down"
                for link in self.all_links(i):
                    link.block(self.shared_block[i])
        elif isinstance(o, op.Delay):
            h.fault("start-delay", [*_names(o.mask), f"{o.ms} ms"])
            for i in _indexes(o.mask):
                self.shared_delay[i] = o.ms / 1000
                for link in self.all_links(i):
                    link.delay(o.ms / 1000)
        elif isinstance(o, op.Reset):
            h.fault("reset", _names(o.mask))
            for i in _indexes(o.mask):
                for link in self.all_links(i):
                    link.reset()
        elif isinstance(o, op.Pause):
            await self.pause(current, o.ms / 1000, takeover=o.takeover)
        elif isinstance(o, op.Bridge):
            await self.bridge(current, o)
        elif isinstance(o, op.PowerFail):
            # The replicas lose what they did not fsync (the power-loss filesystem); the primary's
            # disk holds nothing it trusts (recovery rebuilds from replicas), so it is a SIGKILL.
            whom = [current.name] if o.primary and current.alive else []
            how = (
                "unsynced writes dropped"
                if self.powerfs
                else f"as SIGKILL: the page cache survives ({self.power_note})"
            )
            h.fault("power-fail", [*whom, *_names(o.mask), how])
            if whom:
                await trio.to_thread.run_sync(current.kill)
            for i in _indexes(o.mask):
                if self.powerfs:  # the power first: nothing the replica still does reaches its disk
                    await trio.to_thread.run_sync(self.powerfs[i].power_fail)
                await trio.to_thread.run_sync(self.replicas[i].kill)
                if self.powerfs:
                    await trio.to_thread.run_sync(self.powerfs[i].power_on)
                await self.restart_replica(i)
        elif isinstance(o, op.Restore | op.RestoreCrash):
            points = [self.genesis, *self.out.bookmarks]
            target = points[o.pick % len(points)]
            crash = None if isinstance(o, op.Restore) else "late" if o.late else "early"
            if not o.by_request and not self.impl.restore:
                self.skip(type(o).__name__, "a restore by flag: the implementation file has no restore arguments")
            else:
                await self.restore(target, by_request=o.by_request, crash=crash)
        elif isinstance(o, op.ClockJump):
            if not self.clock_skew:
                self.skip("ClockJump", self.clock_note)
            elif current.alive:
                self.clocks[current.name].jump(-o.ms if o.back else o.ms)
                self.out.clock_jumps += 1
                h.fault("clock-jump", f"{current.name} {'-' if o.back else '+'}{o.ms} ms")
        else:
            self.skip(type(o).__name__, "not in real mode")

    def skip(self, name: str, why: str) -> None:
        self.out.skipped.append(name)
        self.history.fault("skipped", f"{name} ({why})")

    async def restore(self, target: Bookmarked, *, by_request: bool, crash: str | None) -> None:
        """Heal, restore to ``target`` (by a ``__restore__`` request and a restart, or by a primary
        started with the restore arguments), and judge the restored database: it must be the
        archive's at the bookmark, and hold what the history says the bookmark holds. ``crash``:
        the restoring primary is SIGKILLed half way ("early": as soon as it listens; "late": a
        second later) and the next one must finish the restore."""
        self.heal()
        self.store_up()
        old = self.current()
        restore_at = len(self.history.events)
        process = self.history.invoke("restore", target.bookmark, by_request=by_request, node=old.name)

        def involved() -> list[OpRef | None]:
            ops = self.ops()
            return [ops.at(restore_at), ops.bookmark(target.bookmark)]

        undo_asked: str | None = None
        acked = set(self.era.ok)  # acknowledged before the restore was asked for: in the undo point
        if by_request:
            if not old.alive or not await self.serving(old, self.takeover_s):
                self.history.complete(process, "fail", "restore", target.bookmark, "no primary serving to ask")
                return  # nobody to ask: nothing asked
            reply = await self.call(old, "__restore__", target.bookmark, within_s=self.settle_s)
            if reply is not None and reply.status is not ReplyStatus.OK:
                self.fail(
                    "restore-failed",
                    f"{old.name} refused the restore request for {target.bookmark} (a {target.kind} of this run): "
                    f"{reply.status.name} {_body_text(reply.body)}",
                    ops=involved(),
                    expected="OK",
                    found=reply.body,
                    where="restore",
                )
            if reply is not None:
                undo_asked = str(reply.body["undo_bookmark"])
        if old.alive:
            self.history.fault("crash-primary", old.name)
            await trio.to_thread.run_sync(old.kill)
        # Nothing of the old branch can be committed any more: this is the undo point's upper bound.
        invoked = set(self.era.invoked)
        flag = None if by_request else target.bookmark
        self.history.fault("new-primary", f"p{len(self.primaries)}" + (f" --restore-to {flag}" if flag else ""))
        await self.new_primary(restore_to=flag)
        if crash is not None:
            await trio.sleep(0 if crash == "early" else 1.0)
            p = self.current()
            self.history.fault("crash-primary", f"{p.name} mid-restore ({crash})")
            await trio.to_thread.run_sync(p.kill)
            self.history.fault("new-primary", f"p{len(self.primaries)} (finishes the restore)")
            await self.new_primary(restore_to=flag)
        p = self.current()
        served = await self.serving(p, self.settle_s)
        st = await self.status(p)
        if not served or st is None:
            self.fail(
                "never-served",
                f"the restore to {target.bookmark} never served: {p.name} did not serve within {self.settle_s:g} s; "
                + status_text(st),
                ops=involved(),
                expected="serving",
                found=st,
                where="restore",
            )
        done = st.get("restored")
        fresh = (
            isinstance(done, dict)
            and done.get("restored_to") == target.bookmark
            and int(st["branch"]) not in self.restored_branches
        )
        if by_request and undo_asked is None and not fresh:
            # The request got no answer and no new branch came of it (``restored`` may still name
            # an earlier restore): it was never taken. Nothing was restored.
            self.history.complete(process, "info", "restore", target.bookmark, "the request was not answered")
            return
        if (
            not by_request
            and isinstance(done, dict)
            and done.get("restored_to") == target.bookmark
            and int(st["branch"]) in self.restored_branches
        ):
            # Restoring by flag to the bookmark this branch was already made from restores nothing.
            self.history.complete(process, "ok", "restore", target.bookmark, note="already this branch")
            return
        if not isinstance(done, dict) or done.get("restored_to") != target.bookmark:
            self.fail(
                "restore-failed",
                f"asked to restore to {target.bookmark}, {p.name}'s __status__ says "
                + (f"restored to {done.get('restored_to')}" if isinstance(done, dict) else "nothing was restored"),
                ops=involved(),
                expected=target.bookmark,
                found=done,
                where="restore",
            )
        undo = str(done["undo_bookmark"])
        if undo_asked not in (None, undo):
            self.fail(
                "restore-failed",
                f"__restore__ to {target.bookmark} answered undo bookmark {undo_asked}, but {p.name} says {undo}",
                ops=involved(),
                expected=undo_asked,
                found=undo,
                where="restore",
            )
        found = await self.read_all(p, self.settle_s)
        if found is None:
            st = await self.status(p)
            self.fail(
                "reads-unanswered",
                f"reads at {p.name} got no answer after the restore to {target.bookmark}: {status_text(st)}",
                ops=involved(),
                expected="an answer",
                found=st,
                where="restore",
            )
        expected = await trio.to_thread.run_sync(self.archived_data, target.bookmark, f"the {target.kind}")
        if found != expected:
            diff, refs = diff_text(found, expected, self.ops())
            self.fail(
                "pitr-inexact",
                f"after the restore to {target.bookmark}, {p.name}'s database {diff}, compared with the archive's "
                "database at that bookmark",
                ops=[*involved(), *refs],
                expected={str(k): v for k, v in sorted(expected.items())},
                found={str(k): v for k, v in sorted(found.items())},
                where="restore",
            )
        self.judge_point(target, found, where="restore")
        self.history.complete(process, "ok", "restore", target.bookmark, undo_bookmark=undo)
        self.out.bookmarks.append(Bookmarked(undo, acked, invoked, self.era.base, "undo point"))
        self.restored_branches.add(int(st["branch"]))
        self.era = Era(base=dict(found))
        self.out.restores += 1
        self.out.reached.add("restored" if self.out.restores == 1 else "restored again")

    def archived_data(self, mark: str, what: str) -> dict[int, str]:
        """The kv table of the archive's database at bookmark ``mark`` (read directly, not through
        the fault proxy); a bookmark the archive cannot restore is a verdict naming it."""
        b, seq = parse_bookmark(mark)
        if seq == 0:
            return {}
        try:
            image = ArchiveReader(self.store(), OBJECT).restore_image(seq, b)
        except WalrelayError as e:
            self.fail(
                "pitr-inexact",
                f"the archive cannot restore {what} {mark}: {e}",
                ops=[self.ops().bookmark(mark)],
                expected=f"the database at {mark}",
                found=str(e),
                where="archive",
            )
        return _kv(image.image)

    def judge_point(self, point: Bookmarked, data: dict[int, str], *, where: str = "at the end") -> None:
        """A bookmark's database against the history: every write acknowledged before it was
        asked for and whatever the restore that began its era brought, nothing invoked after it
        was answered, nothing that failed."""
        what = f"{point.kind} {point.bookmark}"
        ops = self.ops()
        mark = ops.bookmark(point.bookmark)
        taken = f" ({mark.when()})" if mark is not None else ""
        for prop, keys, why in (
            ("restored-write-lost", sorted(k for k, v in point.base.items() if data.get(k) != v), "lacks"),
            ("pitr-inexact", sorted(point.acked_before - data.keys()), "lacks"),
            ("pitr-inexact", sorted(data.keys() - point.invoked_before - point.base.keys()), "holds"),
            ("failed-write-present", sorted(data.keys() & self.out.failed), "holds"),
        ):
            if not keys:
                continue
            text, refs = ops.writes_text(keys)
            noun = plural(len(keys), "write")
            if prop == "restored-write-lost":
                reason = "brought back by the restore before it"
            elif why == "lacks":
                reason = f"acknowledged before the {point.kind} was asked for"
            elif prop == "pitr-inexact":
                reason = f"invoked after the {point.kind} was answered (or undone before it)"
            else:
                reason = "answered ERROR"
            self.fail(
                prop,
                f"the archive's database at {what}{taken} {why} {noun} {text}, {reason}",
                ops=[mark, *refs],
                expected={str(k): (None if why == "holds" else point.base.get(k, f"v{k}")) for k in keys},
                found={str(k): data.get(k) for k in keys},
                where=where,
            )

    async def pause(self, p: NodeProcess, seconds: float, *, takeover: bool) -> None:
        """SIGSTOP ``p`` for ``seconds`` (a new primary takes over meanwhile if ``takeover``),
        then SIGCONT: it wakes believing it still serves, until a replica tells it otherwise."""
        if not p.alive:
            return
        self.history.fault("start-pause", p.name)
        p.pause()
        try:
            started = trio.current_time()
            if takeover:
                self.history.fault("new-primary", f"p{len(self.primaries)} (while {p.name} is paused)")
                await self.new_primary()
                await self.serving(self.current(), self.takeover_s)
            await trio.sleep(max(0.0, started + seconds - trio.current_time()))
        finally:
            p.resume()
            self.history.fault("stop-pause", p.name)

    async def bridge(self, old: NodeProcess, o: op.Bridge) -> None:
        """A split brain across bridge replica ``b`` (schedule.Bridge): ``old`` keeps reaching b,
        b+1, b+2 only; a new primary takes over reaching b, b+3, b+4 only; both get writes."""
        if not old.alive:
            return
        b = o.bridge % N
        old_side, new_side = {(b + 1) % N, (b + 2) % N}, {(b + 3) % N, (b + 4) % N}
        new = f"p{len(self.primaries)}"
        self.history.fault(
            "start-partition",
            [f"{old.name} -/- {_names_of(new_side)}", f"{new} -/- {_names_of(old_side)}", f"bridge r{b}"],
        )
        for i in new_side:
            self.links[old.name][i].partition()
        self.history.fault("new-primary", f"{new} (the other side of the bridge)")
        await self.new_primary(cut=frozenset(old_side))
        await self.serving(self.current(), self.takeover_s)
        self.write(self.current(), 1)
        self.write(old, o.stale_writes)
        await trio.sleep(0.5)

    def heal(self) -> None:
        every = [link for links in self.links.values() for link in links]
        for kind in sorted({k for link in every for k in link.faults()}):
            self.history.fault(f"stop-{kind}")
        self.shared_cut.clear()
        self.shared_block.clear()
        self.shared_delay.clear()
        for link in every:
            link.heal()

    def store_up(self) -> None:
        if self.store_down:
            self.history.fault("stop-store-down")
        if self.store_slow:
            self.history.fault("stop-slow-store")
        self.store_down = self.store_slow = False

    async def serving(self, p: NodeProcess, within_s: float) -> bool:
        with trio.move_on_after(within_s):
            while p.alive:
                st = await self.status(p)
                if st is not None and st.get("phase") == "serving":
                    return True
                if st is not None and st.get("phase") in ("reset", "gave up"):
                    return False
                await trio.sleep(0.1)
        return False

    # -- the end ----------------------------------------------------------------------------------

    async def finish(self) -> None:
        """Heal, let the writes still in flight be answered (a while at most: a write held by a
        primary that cannot serve stays unknown), kill every primary, let a last one take over,
        and judge everything."""
        self.heal()
        self.store_up()
        with trio.move_on_after(self.answer_s):
            while self.pending:  # noqa: ASYNC110 - the writes are other tasks' calls
                await trio.sleep(0.05)
        for p in self.primaries:
            if p.alive:
                self.history.fault("crash-primary", p.name, final=True)
                await trio.to_thread.run_sync(p.kill)
        self.history.fault("new-primary", f"p{len(self.primaries)} (the final takeover)", final=True)
        await self.new_primary()
        final = self.current()
        if not await self.serving(final, self.settle_s):
            st = await self.status(final)
            self.fail(
                "never-served",
                f"the final primary {final.name} never served within {self.settle_s:g} s of the final takeover, "
                f"every fault healed: {status_text(st)}",
                ops=[self.ops().nemesis("new-primary", contains="the final takeover")],
                expected="serving",
                found=st,
                where="after the final takeover",
            )
        found = await self.check(final, "after the final takeover", must_answer=True)
        assert found is not None
        st = await self.settled(final)
        await trio.to_thread.run_sync(final.stop)  # SIGTERM: a clean stop
        # Replicas agree, from the outside: each replica is stopped cleanly (SIGTERM), started again
        # on its data directory, and its log read over the wire (FETCH at the epoch it already
        # promised, which changes nothing), for any implementation: what a clean stop loses shows.
        for r in self.replicas:
            await trio.to_thread.run_sync(r.stop)
        for i in range(N):
            await self.restart_replica(i)
            try:
                self.outside_logs.append(
                    await trio.to_thread.run_sync(
                        functools.partial(read_log, self.replica_listen[i], OBJECT, tls=self.tls_paths("primary"))
                    )
                )
            except PeerError as e:
                self.fail(
                    "replicas-disagree",
                    f"replica r{i}'s log cannot be read over the wire after a clean restart: {e}",
                    expected="its log",
                    found=str(e),
                    where="at the end",
                )
            await trio.to_thread.run_sync(self.replicas[i].stop)
        await trio.to_thread.run_sync(self.judge_offline, found, st)

    async def settled(self, p: NodeProcess) -> dict[str, Any]:
        """Wait until every replica holds p's log and votes, and the archive holds it all."""
        st: dict[str, Any] | None = None
        with trio.move_on_after(self.settle_s):
            while True:
                st = await self.status(p)
                if st is not None and _settled(st):
                    return st
                await trio.sleep(0.2)
        rows = (st or {}).get("replicas") or []
        last = (st or {}).get("last_seq")
        behind = [
            f"r{r.get('replica')} ("
            + (f"stored through {r.get('stored_through')}" if r.get("connected") else "not connected")
            + ("" if r.get("voter") else ", not voting")
            + ")"
            for r in rows
            if not (r.get("connected") and r.get("voter") and r.get("stored_through") == last)
        ]
        arch = (st or {}).get("archive") or {}
        if st is not None and st.get("phase") == "serving" and not behind:
            self.fail(
                "archive-behind",
                f"the archive reaches seq {arch.get('archived_through')} only, {self.settle_s:g} s after the final "
                f"primary {p.name} made seq {st.get('durable_seq')} durable",
                expected=st.get("durable_seq"),
                found=arch.get("archived_through"),
                where="after the final takeover",
            )
        self.fail(
            "replicas-not-repaired",
            f"the final primary {p.name} did not bring every replica up to seq {last} within {self.settle_s:g} s"
            + (f": {', '.join(behind)}" if behind else f": {status_text(st)}"),
            expected=last,
            found=st,
            where="after the final takeover",
        )

    def judge_offline(self, found: dict[int, str], st: dict[str, Any]) -> None:
        """With every process stopped: the archive, the replicas' files and the bookmarks."""
        durable, branch = int(st["durable_seq"]), int(st["branch"])
        end = "at the end"
        reader = ArchiveReader(self.store(), OBJECT)
        report = verify(reader)
        if not report.ok:
            more = len(report.problems) - 1
            self.fail(
                "archive-invalid",
                f"the archive does not verify: {report.problems[0]}"
                + (f" (and {more} more {plural(more, 'problem')})" if more else ""),
                expected="no problem",
                found=[str(x) for x in report.problems],
                where=end,
            )
        log = lineage(reader, branch)
        absent = [s for s in range(1, durable + 1) if s not in log]
        if absent:
            self.fail(
                "archive-behind",
                f"the archive lacks seqs {absent[0]}..{absent[-1]} of the final primary's durable 1..{durable}"
                if len(absent) > 1
                else f"the archive lacks seq {absent[0]} of the final primary's durable 1..{durable}",
                expected=f"1..{durable}",
                found=absent[:50],
                where=end,
            )
        # Replay the committed log: when each key first appears, and each bookmark's database.
        first_seq: dict[int, int] = {}
        at_seq: dict[int, dict[int, str]] = {}
        wanted = {_seq_of(b.bookmark) for b in self.out.bookmarks if _branch_of(b.bookmark) == branch}
        replayer: Replayer | None = None
        for seq in range(1, durable + 1):
            e = log[seq]
            replayer = replayer or Replayer(b"", e.page_size)
            replayer.apply(e)
            data = _kv(bytes(replayer.image))  # small databases: reading each is cheap
            for k in data:
                first_seq.setdefault(k, seq)
            if seq in wanted:
                at_seq[seq] = data
            if seq == durable and data != found:
                diff, refs = diff_text(data, found, self.ops())
                self.fail(
                    "archive-differs",
                    f"the archive's database at seq {durable} is not the final primary's: it {diff}",
                    ops=refs,
                    expected={str(k): v for k, v in sorted(found.items())},
                    found={str(k): v for k, v in sorted(data.items())},
                    where=end,
                )
        ops = self.ops()
        missing = sorted(self.era.ok - first_seq.keys())
        if missing:
            text, refs = ops.writes_text(missing)
            self.fail(
                "acked-write-lost",
                f"acknowledged writes missing from the committed log (the archive through seq {durable}): {text}",
                ops=refs,
                expected={str(k): f"v{k}" for k in missing},
                found={str(k): None for k in missing},
                where=end,
            )
        # Entry timestamps never go back along the committed history (protocol.md: timestamp =
        # max(clock, previous), across failovers and clock jumps): else a time names the wrong seq.
        stamps = [(seq, log[seq].timestamp_us) for seq in sorted(log) if seq <= durable]
        back = [(a, b) for a, b in itertools.pairwise(stamps) if b[1] < a[1]]
        if back:
            (s1, t1), (s2, t2) = back[0]
            keys_at = {seq: sorted(k for k, s in first_seq.items() if s == seq) for seq in (s1, s2)}
            w1, w2 = ops.writes(keys_at[s1]), ops.writes(keys_at[s2])
            self.fail(
                "timestamps-go-back",
                f"entry timestamps go back: seq {s2}"
                + (f" ({w2[0].describe()})" if w2 else "")
                + f" is stamped {t2} us, before seq {s1}"
                + (f" ({w1[0].describe()})" if w1 else "")
                + f"'s {t1} us",
                ops=[*w1, *w2],
                expected=f">= {t1}",
                found=t2,
                where=end,
            )
        # Real-time order: acknowledged before another write was invoked -> committed before it.
        for ka, acked in self.out.acked_at.items():
            for kb, invoked in self.out.invoked_at.items():
                if ka in first_seq and kb in first_seq and acked < invoked and first_seq[ka] >= first_seq[kb]:
                    wa, wb = ops.write(ka), ops.write(kb)
                    self.fail(
                        "real-time-order",
                        f"{wa.describe() if wa else f'write k={ka}'} was acknowledged before "
                        f"{wb.what() if wb else f'write k={kb}'} was invoked, but is at seq {first_seq[ka]}, "
                        f"after its seq {first_seq[kb]}",
                        ops=[wa, wb],
                        expected=f"seq of k={ka} < seq of k={kb}",
                        found={str(ka): first_seq[ka], str(kb): first_seq[kb]},
                        where=end,
                    )
        for b in self.out.bookmarks:  # PITR at every bookmark taken and every undo point, any branch
            if _branch_of(b.bookmark) == branch and _seq_of(b.bookmark) in at_seq:
                data = at_seq[_seq_of(b.bookmark)]
            else:
                data = self.archived_data(b.bookmark, f"the {b.kind}")
            self.judge_point(b, data)
        last = int(st["last_seq"])
        for i, got in enumerate(self.outside_logs):
            wrong = sorted(s for s, e in got.entries.items() if s in log and log[s].chain != e.chain)
            self.replica_agrees(i, wrong, got.promise.last_seq, last, first_seq, "its log, read over the wire,")
        if not self.impl.walrelay_files:
            return  # another implementation's files: its logs were read over the wire (above)
        for i in range(N):
            store = ReplicaStore(self.replica_data(i), OBJECT)
            try:
                store.load()
                held = {e.seq: e for e in store.read_entries(1)}
            finally:
                store.close()
            wrong = sorted(s for s, e in held.items() if s in log and log[s].chain != e.chain)
            self.replica_agrees(i, wrong, max(held, default=0), last, first_seq, "its files")

    def replica_agrees(
        self, i: int, wrong: list[int], ends: int, last: int, first_seq: dict[int, int], how: str
    ) -> None:
        """Replica ``i`` holds the committed log (``wrong``: the seqs where it differs; ``ends``:
        its last seq) through the final primary's ``last`` seq; the verdict names the committed
        writes at the seqs where it differs."""
        if wrong:
            keys = sorted(k for k, s in first_seq.items() if s in set(wrong))
            refs = self.ops().writes(keys)
            self.fail(
                "replicas-disagree",
                f"replica r{i} ({how.strip(',')}) differs from the committed log at "
                + (f"seq {wrong[0]}" if len(wrong) == 1 else f"seqs {', '.join(map(str, wrong[:5]))}")
                + (f", where the committed log has {refs[0].describe()}" if refs else ""),
                ops=refs,
                expected="the committed log's entries",
                found={"differing_seqs": wrong[:50]},
                where="at the end",
            )
        if ends != last:
            self.fail(
                "replicas-disagree",
                f"replica r{i} ({how.strip(',')}) ends at seq {ends}, not at the final primary's last seq {last}",
                expected=last,
                found=ends,
                where="at the end",
            )


def _indexes(mask: int) -> list[int]:
    return [i for i in range(N) if mask >> i & 1]


def _names(mask: int) -> list[str]:
    return [f"r{i}" for i in _indexes(mask)]


def _names_of(indexes: set[int]) -> list[str]:
    return [f"r{i}" for i in sorted(indexes)]


async def _start(node: NodeProcess) -> None:
    """Spawn on this (the main) thread, so the node dies with the controller even by SIGKILL
    (``NodeProcess.die_with_spawner``); wait for its address on a worker thread."""
    node.spawn()
    await trio.to_thread.run_sync(node.wait_listening)


def _body_text(body: Any) -> str:
    """A reply's body in a few words (an ERROR's type and message), not a dict's repr."""
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('type', '')}: {body['message']}".lstrip(": ")
    return str(body)


def _log_tail(node: NodeProcess, lines: int = 8) -> str:
    """The end of a node's log, for a setup message ("" if it has none)."""
    try:
        tail = Path(node.log_path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return ("; its log ends with:\n" + "\n".join(tail)) if tail else ""


def _formed(st: dict[str, Any]) -> bool:
    return st.get("phase") == "serving" and all(r["voter"] for r in st.get("replicas", [{"voter": False}]))


def _settled(st: dict[str, Any]) -> bool:
    if st.get("phase") != "serving" or "replicas" not in st:
        return False
    last, arch = st["last_seq"], st.get("archive") or {}
    replicas_done = all(r["connected"] and r["voter"] and r["stored_through"] == last for r in st["replicas"])
    return bool(replicas_done and arch.get("archived_through", -1) >= st["durable_seq"])


def _seq_of(mark: str) -> int:
    return parse_bookmark(mark)[1]


def _branch_of(mark: str) -> int:
    return parse_bookmark(mark)[0]


def _kv(image: bytes) -> dict[int, str]:
    if not image:
        return {}
    conn = open_image(image)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "kv" not in names:
            return {}
        return {int(k): str(v) for k, v in conn.execute("SELECT k, v FROM kv")}
    finally:
        conn.close()


# -- one run --------------------------------------------------------------------------------------


def run_real(
    root: str,
    schedule: list[Op],
    s3: S3Server,
    *,
    quorum: int = 3,
    history: list[dict[str, Any]] | None = None,
    limit_s: float = 300.0,  # on the quiet reference machine; scaled by walrelay_chaos.pace
    impl: NodeCommands | None = None,
) -> RealOutcomes:
    """Play ``schedule`` against real processes and judge it (AssertionError: a checker failed).
    Every process it started is killed before it returns, whatever happened."""
    os.makedirs(root, exist_ok=True)
    pace = slowdown()
    limit_s *= pace
    started = time.monotonic()
    hist = History(history, now=lambda: time.monotonic() - started)
    stage = ["start"]  # "run" once the cluster formed: a failure before that is a setup error

    async def main() -> RealOutcomes:
        world: RealWorld | None = None
        try:
            with trio.fail_after(limit_s):
                async with trio.open_nursery() as nursery:
                    power = any(isinstance(o, op.PowerFail) for o in schedule)
                    skew = any(isinstance(o, op.ClockJump) for o in schedule)
                    world = RealWorld(root, nursery, s3, hist, quorum, impl or NodeCommands.walrelay(), power, skew)
                    await world.start()
                    stage[0] = "run"
                    for o in schedule:
                        await world.step(o)
                    await world.finish()
                    nursery.cancel_scope.cancel()
        except trio.TooSlowError:
            raise WalrelayError(f"the run did not finish within {limit_s:g} s") from None
        finally:
            if world is not None:
                world.close()
        assert world is not None
        world.out.seconds = time.monotonic() - started
        if world.s3proxy.count("ambiguous", "PUT"):
            world.out.reached.add("ambiguous-put")
        if world.s3proxy.count("slow", "PUT"):
            world.out.reached.add("slow-put")
        return world.out

    try:
        return trio.run(main)
    except BaseExceptionGroup as eg:
        leaves = _leaves(eg)
        setup = [e for e in leaves if isinstance(e, SetupError)]
        if setup:  # nothing was tested: no verdict, whatever else failed meanwhile
            raise setup[0] from None
        verdicts = [e for e in leaves if isinstance(e, AssertionError)]
        if verdicts:
            raise verdicts[0] from None
        if stage[0] == "start":
            raise SetupError(
                "the cluster did not start: " + "; ".join(f"{type(e).__name__}: {e}" for e in leaves),
                "".join(traceback.format_exception(eg)),
            ) from None
        raise HarnessError(
            "; ".join(f"{type(e).__name__}: {e}" for e in leaves), "".join(traceback.format_exception(eg))
        ) from None


class HarnessError(WalrelayError):
    """The harness failed, not the system under test: no verdict. ``detail``: the full traceback
    (the campaign writes it to the run's ``error.txt``)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class SetupError(HarnessError):
    """The implementation under test cannot be judged: it refuses the workload's operations
    (``UnknownOperation 'put'``: started without the kv app), a node never listens or exits at
    once, or the first primary never serves before any fault. The verdict is *unknown*, never
    invalid: nothing was tested. ``detail``: what the harness saw (the campaign's ``error.txt``)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(f"setup error: {message}", detail or f"setup error: {message}")


def _leaves(eg: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


# -- random schedules for real mode ---------------------------------------------------------------

MAX_REAL_OPS = 14


SIM_ONLY = (op.Orphan, op.TornRename)


def random_real_op(rng: random.Random) -> Op:
    """The simulation's mix minus what a process cannot be made to do from outside (orphaned
    connections; skipped if a schedule has them), plus pauses (SIGSTOP), with settles long enough
    for processes (ms)."""
    from walrelay_chaos.campaign import op_mix

    choices = [draw for kind, draw in op_mix(rng, settles=(50, 300, 1200)) if kind not in SIM_ONLY]
    choices.append(lambda: op.Pause(rng.choice([200, 1000, 3000]), rng.random() < 0.5))
    return rng.choice(choices)()


def random_real_schedule(rng: random.Random) -> list[Op]:
    """Random faults with a steady workload between them (5 to 12 writes after each op, 15 more at
    the end), so that a run acknowledges some 50 writes, not a handful: the checkers judge what
    was acknowledged, and a run with 3 acknowledged writes can hide almost any bug."""
    ops: list[Op] = []
    for _ in range(rng.randint(3, MAX_REAL_OPS)):
        ops += [random_real_op(rng), op.Write(rng.randint(5, 12))]
    return [*ops, op.Settle(300), op.Write(15), op.Settle(300)]


def scratch_dir(seed: int) -> str:
    return tempfile.mkdtemp(prefix=f"walrelay-real-{seed}-")


def dump_logs(root: str, dest: Path) -> None:
    """Keep the processes' logs of a failing run (the data directories are not kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            if name.endswith(".log"):
                shutil.copy(os.path.join(root, name), dest / name)
