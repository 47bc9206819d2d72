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
from walrelay_chaos.conform.peer import Closed, PeerError, ScriptedPrimary, Silent, Transcript
from walrelay_chaos.conform.scripted_replicas import ScriptedReplicas
from walrelay_chaos.real import NodeCommands
from walrelay_chaos.s3server import ACCESS_KEY, SECRET_KEY, S3Server

OBJECT = "conform"


class PrimaryCtx:
    """One case: a primary process, its scripted replicas, a client connection, a transcript."""

    def __init__(self, commands: NodeCommands, root: Path, s3: S3Server, timeout: float, name: str) -> None:
        self.commands, self.root, self.s3, self.timeout, self.name = commands, root, s3, timeout, name
        self.transcript = Transcript()
        self.replicas = ScriptedReplicas(OBJECT)
        self.proc: NodeProcess | None = None
        self.client: ScriptedPrimary | None = None
        self.ids = itertools.count(1)
        self.epoch = 0

    def fail(self, rule: str, why: str) -> None:
        raise Fail(rule, why)

    def start(self) -> None:
        """Start the primary and wait (up to a generous budget) until it serves."""
        placement, data = self.root / "placement", self.root / "data"
        placement.mkdir(parents=True, exist_ok=True)
        bucket = f"conform-{self.name}-{os.getpid()}".lower().replace("_", "-").replace(".", "-")[:60]
        S3Store(f"{self.s3.endpoint}/{bucket}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, create_bucket=True)
        self.epoch = EpochAllocator(placement).allocate(OBJECT) if self.commands.takes_epoch else 1
        argv = self.commands.argv(
            "primary", object=OBJECT, replicas=self.replicas.addresses, listen="127.0.0.1:0", data=data,
            placement=placement, quorum=3, s3=f"{self.s3.endpoint}/{bucket}", segment_mb=16, segment_seconds=10,
            deadline=600, epoch=self.epoch,
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
        self.client = ScriptedPrimary(address, self.transcript, self.timeout)
        budget = time.monotonic() + max(30.0, 3 * self.timeout)
        while time.monotonic() < budget:
            st = self.call("__status__")
            if isinstance(st, dict) and st.get("phase") == "serving":
                return
            time.sleep(0.1)
        raise Unknown(f"the primary did not serve within {max(30.0, 3 * self.timeout):.0f} s (its log: {self.root})")

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
