"""Conformance cases for the PRIMARY role: five scripted replicas, the primary's client door.

Each case starts the primary under test (its implementation file's ``primary`` template) against
five scripted replicas (scripted_replicas.py) and a real S3-protocol server, waits until its
``__status__`` says serving, then writes through the client door while the scripts hold or give
ACKs, and judges what the door answers. A reply that must NOT come yet is checked by waiting a
moment (``quiet``): a correct primary passes whatever the wait, and a wrong one answers in
milliseconds, so the wait decides only how surely a bug is seen, never whether a correct primary
passes.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walrelay import wire
from walrelay.archive.s3_store import S3Store
from walrelay.placement import EpochAllocator
from walrelay.procs import NodeProcess
from walrelay_chaos.conform.context import Fail, Unknown
from walrelay_chaos.conform.peer import Closed, PeerError, ScriptedPrimary, Silent, Transcript, harness_tls, tls_values
from walrelay_chaos.conform.scripted_replicas import ReplicaLog, ScriptedReplicas
from walrelay_chaos.real import NodeCommands
from walrelay_chaos.s3server import ACCESS_KEY, SECRET_KEY, S3Server

OBJECT = "conform"


class PrimaryCtx:
    """One case: a primary process, its scripted replicas, a client connection, a transcript."""

    def __init__(self, commands: NodeCommands, root: Path, s3: S3Server, timeout: float, name: str) -> None:
        self.commands, self.root, self.s3, self.timeout, self.name = commands, root, s3, timeout, name
        self.transcript = Transcript()
        self.replicas = ScriptedReplicas(OBJECT, tls=harness_tls(commands.tls, "replica"))
        self.proc: NodeProcess | None = None
        self.client: ScriptedPrimary | None = None
        self.ids = itertools.count(1)
        self.epoch = 0

    def fail(self, rule: str, why: str) -> None:
        raise Fail(rule, why)

    def start(self, *, deadline: float = 600, epochs_before: int = 0) -> None:
        """Start the primary and wait (up to a generous budget) until it serves. ``deadline``:
        the template's ``{deadline}`` (s); ``epochs_before``: epochs the allocator issued before
        (to older primaries), so this one's epoch is that + 1 and it must recover."""
        placement, data = self.root / "placement", self.root / "data"
        placement.mkdir(parents=True, exist_ok=True)
        for _ in range(epochs_before):
            EpochAllocator(placement).allocate(OBJECT)
        bucket = f"conform-{self.name}-{os.getpid()}".lower().replace("_", "-").replace(".", "-")[:60]
        S3Store(f"{self.s3.endpoint}/{bucket}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, create_bucket=True)
        self.epoch = EpochAllocator(placement).allocate(OBJECT) if self.commands.takes_epoch else epochs_before + 1
        argv = self.commands.argv(
            "primary", object=OBJECT, replicas=self.replicas.addresses, listen="127.0.0.1:0", data=data,
            placement=placement, quorum=3, s3=f"{self.s3.endpoint}/{bucket}", segment_mb=16, segment_seconds=10,
            deadline=deadline, epoch=self.epoch, **tls_values(self.commands.tls, "primary"),
        )  # fmt: skip
        env = dict(
            os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, **dict(self.commands.env)
        )
        self.proc = NodeProcess("primary", argv, str(self.root / "primary.log"), env=env)
        try:
            address = self.proc.start(max(30.0, 3 * self.timeout))
        except Exception as e:  # any failure to start is "no verdict", with its reason
            raise Unknown(f"the primary did not start: {e}") from e
        self.transcript.note(f"primary started at {address} with five scripted replicas")
        self.client = ScriptedPrimary(address, self.transcript, self.timeout, harness_tls(self.commands.tls, "admin"))
        budget = time.monotonic() + max(30.0, 3 * self.timeout)
        while time.monotonic() < budget:
            st = self.call("__status__")
            if isinstance(st, dict) and st.get("phase") == "serving":
                return
            time.sleep(0.1)
        raise Unknown(f"the primary did not serve within {max(30.0, 3 * self.timeout):.0f} s (its log: {self.root})")

    def issue_epochs(self, through: int) -> None:
        """Placement issues epochs up to ``through``, as it does for newer primaries: only then is a
        promise of ``through`` a newer primary's (R-7.3-3), not an impossible one."""
        alloc = EpochAllocator(self.root / "placement")
        while alloc.current(OBJECT) < through:
            alloc.allocate(OBJECT)
        self.transcript.note(f"placement issued epochs through {through} (newer primaries exist)")

    def send(self, op: str, *args: Any) -> int:
        assert self.client is not None
        rid = next(self.ids)
        self.client.send(wire.Request(rid, {"op": op, "args": list(args)}))
        return rid

    def reply(self, rule: str, what: str, timeout: float | None = None) -> wire.Reply:
        assert self.client is not None
        try:
            msg = self.client.recv(timeout)
        except Closed:
            self.fail(rule, f"expected {what}; the primary closed the client connection")
        except Silent:
            self.fail(rule, f"expected {what}; nothing came within {timeout or self.timeout:.0f} s")
        except PeerError as e:
            self.fail(rule, f"expected {what}; {e}")
        if not isinstance(msg, wire.Reply):
            self.fail(rule, f"expected {what}; got {type(msg).__name__.upper()}")
        return msg  # type: ignore[return-value]

    def quiet(self, rule: str, what: str, seconds: float = 1.5) -> None:
        """No reply may come now (``what`` says why it must not)."""
        assert self.client is not None
        try:
            msg = self.client.recv(seconds)
        except (Silent, Closed):
            return
        self.fail(rule, f"{what}, but the primary answered: {msg}")

    def call(self, op: str, *args: Any) -> Any:
        self.send(op, *args)
        r = self.reply("R-7.2-1", f"the reply to {op}")
        return r.body

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc is not None:
            self.proc.kill()
        self.replicas.close()


PrimaryCaseFn = Callable[[PrimaryCtx], None]


@dataclass(frozen=True)
class PrimaryCase:
    id: str
    rules: tuple[str, ...]
    title: str
    run: PrimaryCaseFn


PRIMARY_CASES: list[PrimaryCase] = []


def pcase(case_id: str, rules: tuple[str, ...], title: str) -> Callable[[PrimaryCaseFn], PrimaryCaseFn]:
    def register(fn: PrimaryCaseFn) -> PrimaryCaseFn:
        PRIMARY_CASES.append(PrimaryCase(case_id, rules, title, fn))
        return fn

    return register


@pcase("primary.gate", ("R-7.2-1",), "a write's reply is held until 3 of 5 replicas acknowledged it")
def _gate(ctx: PrimaryCtx) -> None:
    ctx.start()
    for i in (2, 3, 4):
        ctx.replicas[i].script.hold = True
    ctx.transcript.note("replicas 2, 3, 4 hold their ACKs; 0 and 1 acknowledge")
    ctx.send("put", 1, "a")
    ctx.quiet("R-7.2-1", "only 2 of 5 replicas acknowledged the write")
    ctx.replicas[2].release()
    ctx.transcript.note("replica 2 sends its ACK: 3 of 5")
    r = ctx.reply("R-7.2-1", "the write's reply once 3 of 5 acknowledged it")
    if r.status != wire.ReplyStatus.OK:
        ctx.fail("R-7.2-1", f"the write's reply is {r.status.name} {r.body}, expected OK")


@pcase(
    "primary.distinct-replicas", ("R-5.8-2", "R-7.2-1"), "a replica that answers under another's id never counts twice"
)
def _distinct(ctx: PrimaryCtx) -> None:
    ctx.replicas[1].script.claim_id = 0  # a second address that reaches "replica 0"
    ctx.start()
    for i in (3, 4):
        ctx.replicas[i].script.hold = True
    ctx.transcript.note("replica 1 answers HELLO as replica 0; replicas 3, 4 hold their ACKs")
    ctx.send("put", 1, "a")
    ctx.quiet("R-5.8-2", "only replicas 0 and 2 are distinct replicas that acknowledged (1 claims to be 0)")
    ctx.replicas[3].release()
    r = ctx.reply("R-7.2-1", "the write's reply once 3 distinct replicas acknowledged it")
    if r.status != wire.ReplyStatus.OK:
        ctx.fail("R-7.2-1", f"the write's reply is {r.status.name} {r.body}, expected OK")


@pcase("primary.fenced", ("R-7.3-1",), "a REJECT(STALE_EPOCH) from a newer epoch fences the primary: no OK after it")
def _fenced(ctx: PrimaryCtx) -> None:
    ctx.start()
    ctx.send("put", 1, "a")
    first = ctx.reply("R-7.2-1", "the first write's reply (every replica acknowledges)")
    if first.status != wire.ReplyStatus.OK:
        ctx.fail("R-7.2-1", f"a write every replica acknowledged got {first.status.name} {first.body}")
    ctx.issue_epochs(ctx.epoch + 5)
    for i in (0, 1, 2):
        ctx.replicas[i].script.fence_at = ctx.epoch + 5
    for i in (3, 4):
        ctx.replicas[i].script.hold = True
    ctx.transcript.note(
        f"replicas 0, 1, 2 now refuse APPENDs as promised to epoch {ctx.epoch + 5}; 3, 4 hold their ACKs"
    )
    ctx.send("put", 2, "b")
    got = ctx.reply("R-7.3-1", "the write's reply after the replicas fenced the primary")
    if got.status == wire.ReplyStatus.OK:
        ctx.fail("R-7.3-1", "a write was acknowledged after a majority refused it as fenced by a newer epoch")
    ctx.send("put", 3, "c")
    later = ctx.reply("R-7.3-1", "a later write's reply")
    if later.status == wire.ReplyStatus.OK:
        ctx.fail("R-7.3-1", "a fenced primary acknowledged a later write")


@pcase(
    "primary.impossible-promise",
    ("R-7.3-3",),
    "a REJECT naming a promise no allocator issued counts that replica as down; it fences nothing",
)
def _impossible_promise(ctx: PrimaryCtx) -> None:
    ctx.start()
    if ctx.commands.takes_epoch:  # a fixed --epoch: no allocator to ask, and believing it is right
        ctx.transcript.note("not applicable: this implementation takes a fixed epoch, with no allocator to ask")
        return
    ctx.send("put", 1, "a")
    first = ctx.reply("R-7.2-1", "the first write's reply (every replica acknowledges)")
    if first.status != wire.ReplyStatus.OK:
        ctx.fail("R-7.2-1", f"a write every replica acknowledged got {first.status.name} {first.body}")
    ctx.replicas[0].script.fence_at = 2**64 - 1
    ctx.transcript.note(f"replica 0 now refuses APPENDs as promised to epoch {2**64 - 1}, which no allocator issued")
    for k, v in ((2, "b"), (3, "c")):
        ctx.send("put", k, v)
        got = ctx.reply("R-7.3-3", f"write {k}'s reply, with four replicas acknowledging and one corrupt")
        if got.status != wire.ReplyStatus.OK:
            ctx.fail(
                "R-7.3-3",
                f"one replica naming an epoch no allocator issued stopped the primary: write {k} got "
                f"{got.status.name} {got.body}",
            )


def _ack_not_counted(ctx: PrimaryCtx, bad: str, what: str) -> None:
    """Replica 2's ACKs are wrong in one way (the script, set by the caller); 3 and 4 hold theirs:
    only 0 and 1 count, so no reply may come until 3 releases its ACK."""
    for i in (3, 4):
        ctx.replicas[i].script.hold = True
    ctx.transcript.note(f"replica 2 ACKs {bad}; 3, 4 hold their ACKs")
    ctx.send("put", 1, "a")
    ctx.quiet("R-7.2-2", f"only replicas 0 and 1 acknowledged {what}")
    ctx.replicas[3].release()
    r = ctx.reply("R-7.2-1", f"the write's reply once 3 replicas acknowledged it {what}")
    if r.status != wire.ReplyStatus.OK:
        ctx.fail("R-7.2-1", f"the write's reply is {r.status.name} {r.body}, expected OK")


@pcase(
    "primary.ack-chain",
    ("R-7.2-2", "R-7.2-1"),
    "an ACK whose chain is not the primary's at that seq is not counted",
)
def _ack_chain(ctx: PrimaryCtx) -> None:
    ctx.start()
    ctx.replicas[2].script.ack_chain = bytes([0xAA]) * 16
    _ack_not_counted(ctx, "with a chain that is not the entry's (a diverged log)", "with the entry's chain")


@pcase(
    "primary.ack-log-epoch",
    ("R-7.2-2", "R-7.2-1"),
    "an ACK under another log epoch is not counted, even with the right chain",
)
def _ack_log_epoch(ctx: PrimaryCtx) -> None:
    ctx.start()
    ctx.replicas[2].script.ack_log_epoch = ctx.epoch + 1
    _ack_not_counted(
        ctx,
        f"the right chain under log epoch {ctx.epoch + 1}, not the primary's {ctx.epoch} (the same entries held "
        "as another primary's log)",
        "under the primary's log epoch",
    )


@pcase(
    "primary.deadline",
    ("R-7.3-2",),
    "a write not durable within the deadline resets the primary: UNKNOWN, then ObjectReset, never OK",
)
def _deadline(ctx: PrimaryCtx) -> None:
    deadline = 2.0
    ctx.start(deadline=deadline)
    for i in (2, 3, 4):
        ctx.replicas[i].script.hold = True
    ctx.transcript.note(f"deadline {deadline:g} s; replicas 2, 3, 4 hold their ACKs: the write cannot become durable")
    ctx.send("put", 1, "a")
    r = ctx.reply("R-7.3-2", "the held write's reply once the deadline passed", deadline + 3 * ctx.timeout)
    if r.status != wire.ReplyStatus.UNKNOWN:
        ctx.fail("R-7.3-2", f"a write that missed the deadline got {r.status.name} {r.body}, expected UNKNOWN")
    for i in (2, 3, 4):
        ctx.replicas[i].release()
    ctx.transcript.note("replicas 2, 3, 4 send their ACKs now (too late)")
    ctx.send("put", 2, "b")
    later = ctx.reply("R-7.3-2", "a later write's reply")
    if later.status == wire.ReplyStatus.OK:
        ctx.fail("R-7.3-2", "a primary that reset on its deadline acknowledged a later write")


@pcase(
    "primary.recovery-choice",
    ("R-7.5-1",),
    "recovery takes the log best by (log_epoch, last_seq): a newer epoch's shorter log beats an older, longer one",
)
def _recovery_choice(ctx: PrimaryCtx) -> None:
    from walrelay_chaos.conform.kvlog import kv_log

    newer = kv_log(3, [(10, "x")])  # epoch 3 wrote key 10 to replica 0 only
    older = kv_log(2, [(1, "y1"), (2, "y2"), (3, "y3")])  # epoch 2 wrote keys 1-3 to replicas 1, 2 only
    ctx.replicas[0].log = ReplicaLog(promised=3, log_epoch=3, entries={e.seq: e for e in newer})
    for i in (1, 2):
        ctx.replicas[i].log = ReplicaLog(promised=3, log_epoch=2, entries={e.seq: e for e in older})
    for i in (3, 4):
        ctx.replicas[i].script.mute = True  # only 0, 1, 2 promise: the choice is among them
    ctx.transcript.note(
        f"replica 0 holds log epoch 3 through seq {len(newer)}; replicas 1, 2 hold log epoch 2 through seq "
        f"{len(older)} (longer, older); replicas 3, 4 never answer PREPARE"
    )
    ctx.start(epochs_before=3)
    got = {k: ctx.call("get", k) for k in (10, 1, 2, 3)}
    ctx.transcript.note(f"after recovery the primary reads {got}")
    if got[10] != "x" or any(got[k] is not None for k in (1, 2, 3)):
        ctx.fail(
            "R-7.5-1",
            f"the primary recovered {got}: not the log of epoch 3 (key 10 only); "
            "it must rank logs by (log_epoch, last_seq), not by length",
        )
