"""Conformance cases for the REPLICA role: the harness plays a scripted primary.

Each case is one short, deterministic dialogue on a fresh object (``ctx.object``) with the
replica under test, and cites the rules of docs/protocol.md it checks (``rules.py``). A case
fails with ``ctx.fail(rule, why)``, naming the rule broken; the transcript of frames is the
evidence. Cases that need a crash SIGKILL the replica process and restart it on the same data
directory and port (``ctx.restart()``). Rules about what must NOT be sent are checked with a
barrier: a PREPARE after the frame, whose PROMISE must be the next frame (a replica processes a
connection's frames in order, docs/protocol.md 6.2).

What these cases cannot see: an fsync that is missing while the write itself happened. SIGKILL
keeps the page cache, so "ACK before fsync" is caught here only when the write comes after the
ACK; a power-loss layer (a filesystem that drops unsynced writes) is what sees the rest.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass

from walrelay import entry as entry_mod
from walrelay import wire
from walrelay.certs import CertPaths
from walrelay.entry import GENESIS_CHAIN, Entry
from walrelay_chaos.conform.context import Ctx, Unknown
from walrelay_chaos.conform.peer import Closed, PeerError, ScriptedPrimary, Silent, harness_tls, rogue_certs

CaseFn = Callable[[Ctx], None]


@dataclass(frozen=True)
class Case:
    id: str
    rules: tuple[str, ...]
    title: str
    run: CaseFn


CASES: list[Case] = []


def case(case_id: str, rules: tuple[str, ...], title: str) -> Callable[[CaseFn], CaseFn]:
    def register(fn: CaseFn) -> CaseFn:
        CASES.append(Case(case_id, rules, title, fn))
        return fn

    return register


# ---- entries ---------------------------------------------------------------------------------


def make_log(epoch: int, n: int, *, salt: int = 0, start: int = 1, prev: bytes = GENESIS_CHAIN) -> list[Entry]:
    """Entries start..start+n-1 of a log, each following the one before by chain. ``salt`` makes
    another log's content (a divergent history) at the same seqs."""
    out: list[Entry] = []
    for seq in range(start, start + n):
        e = entry_mod.encode(
            epoch=epoch,
            seq=seq,
            timestamp_us=1_700_000_000_000_000 + seq,
            page_size=512,
            db_pages=1,
            db_checksum=0,
            frames={1: bytes([(seq * 7 + salt) % 256]) * 512},
            prev_chain=prev,
        )
        out.append(e)
        prev = e.chain
    return out


def append(epoch: int, entries: list[Entry], log_end: int | None = None) -> wire.Append:
    end = entries[-1].seq if log_end is None and entries else (log_end or 0)
    return wire.Append(epoch=epoch, durable_seq=0, log_end=end, entries=tuple(entries))


def frame(version: int, msg_type: int, body: bytes) -> bytes:
    return struct.pack(">IBB", len(body) + 2, version, msg_type) + body


# ---- helpers on a connection -----------------------------------------------------------------


def stored(ctx: Ctx, peer: ScriptedPrimary, epoch: int, entries: list[Entry], rule: str) -> wire.Ack:
    """APPEND ``entries`` under ``epoch``; the answer must be an ACK through the last of them."""
    peer.send(append(epoch, entries))
    ack = ctx.expect(peer, wire.Ack, rule, "an ACK of the entries just sent")
    last = entries[-1]
    if ack.stored_through != last.seq or ack.chain != last.chain:
        ctx.fail(rule, f"ACK says stored_through={ack.stored_through}, expected {last.seq} with that entry's chain")
    return ack


def ack_is(
    ctx: Ctx, peer: ScriptedPrimary, rule: str, what: str, want: tuple[int, bytes, int], expected: str
) -> wire.Ack:
    """The next frame must be an ACK of exactly ``want`` = (stored_through, chain, log_epoch);
    ``expected`` says in words what that means, for the verdict."""
    ack = ctx.expect(peer, wire.Ack, rule, what)
    if (ack.stored_through, ack.chain, ack.log_epoch) != want:
        ctx.fail(rule, f"ACK(stored_through={ack.stored_through}, log_epoch={ack.log_epoch}): expected {expected}")
    return ack


def fetch_all(ctx: Ctx, peer: ScriptedPrimary, epoch: int, rule: str, start: int = 1) -> list[Entry]:
    """The replica's log from ``start`` (above what it truncated), by FETCH, as a recovering
    primary reads it."""
    out: list[Entry] = []
    nxt = start
    for _ in range(10_000):
        peer.send(wire.Fetch(epoch=epoch, from_seq=nxt, max_bytes=1 << 20))
        got = ctx.expect(peer, wire.Entries, rule, "ENTRIES answering the FETCH")
        out.extend(got.entries)
        if got.final:
            return out
        if not got.entries:
            ctx.fail("R-5.12-1", "ENTRIES with final=0 and no entry")
        nxt = got.entries[-1].seq + 1
    ctx.fail(rule, "FETCH never reached final=1")


def same_log(ctx: Ctx, rule: str, got: list[Entry], want: list[Entry], what: str) -> None:
    if [e.raw for e in got] != [e.raw for e in want]:
        have = ", ".join(f"{e.seq}:{e.chain.hex()[:8]}" for e in got)
        expect = ", ".join(f"{e.seq}:{e.chain.hex()[:8]}" for e in want)
        ctx.fail(rule, f"{what}: the replica holds [{have}], expected [{expect}]")


# ---- handshake and framing -------------------------------------------------------------------


@case("hello.answer", ("R-5.3-1",), "a primary's HELLO is answered by the replica's HELLO")
def _hello_answer(ctx: Ctx) -> None:
    peer = ctx.open()
    peer.send(wire.Hello(wire.Role.PRIMARY, 0, ctx.object, 1, 0))
    h = ctx.expect(peer, wire.Hello, "R-5.3-1", "the replica's HELLO")
    if h.role != wire.Role.REPLICA or h.node_id != ctx.node_id or h.object_name != ctx.object:
        ctx.fail(
            "R-5.3-1",
            f"HELLO(role={h.role.name}, node_id={h.node_id}, object={h.object_name!r}), expected "
            f"role REPLICA, node_id {ctx.node_id}, object {ctx.object!r}",
        )
    if h.stored_through != 0 or h.last_chain != GENESIS_CHAIN:
        ctx.fail("R-5.3-1", f"a new object's HELLO says stored_through={h.stored_through} (expected 0, genesis chain)")


@case("hello.no-promise", ("R-5.3-2",), "the epoch in a primary's HELLO promises nothing")
def _hello_no_promise(ctx: Ctx) -> None:
    peer = ctx.connect(hello_epoch=9)
    peer.send(wire.Prepare(2))
    ctx.expect(peer, wire.Promise, "R-5.3-2", "a PROMISE for epoch 2 (HELLO epoch 9 must not have promised 9)")


@case("hello.wrong-object", ("R-5.3-3",), "a HELLO for an object the replica cannot serve gets REJECT(WRONG_OBJECT)")
def _hello_wrong_object(ctx: Ctx) -> None:
    peer = ctx.open()
    peer.send(wire.Hello(wire.Role.PRIMARY, 0, "../not an object", 1, 0))
    r = ctx.expect(peer, wire.Reject, "R-5.3-3", "REJECT(WRONG_OBJECT)")
    if r.reason != wire.RejectReason.WRONG_OBJECT:
        ctx.fail("R-5.3-3", f"REJECT({r.reason.name}), expected WRONG_OBJECT")


@case(
    "hello.first-frame",
    ("R-5.8-1", "R-5.9-1"),
    "a connection that does not start with HELLO is closed; the next one works",
)
def _first_frame(ctx: Ctx) -> None:
    peer = ctx.open()
    peer.send(wire.Prepare(1))
    ctx.refused_and_closed(peer, "R-5.8-1")
    ctx.connect()  # the replica still serves the object on a new connection


def _refused_before_any_frame(ctx: Ctx, tls: CertPaths | None, what: str) -> None:
    """R-5.16-2: the peer ``what`` gets no frame back (a failed handshake or a close), and the
    replica still serves a real primary afterwards."""
    if not ctx.replica.commands.tls:
        raise Unknown("the implementation runs without TLS: its templates name no {cert} (protocol.md 5.16)")
    try:
        peer = ctx.open_as(tls)
    except PeerError:
        ctx.connect()
        return  # refused in the handshake itself
    peer.send(wire.Hello(wire.Role.PRIMARY, 0, ctx.object, 1, 0))
    peer.send(wire.Prepare(2**64 - 1))
    try:
        msg = peer.recv()
    except (Closed, PeerError):
        ctx.connect()
        return
    except Silent:
        ctx.fail("R-5.16-2", f"{what}: the replica kept the connection open without closing it")
    ctx.fail("R-5.16-2", f"{what}: the replica answered {type(msg).__name__.upper()}; it must close at once")


@case("tls.no-certificate", ("R-5.16-2",), "a peer without TLS gets no frame back; the replica serves on")
def _tls_plain(ctx: Ctx) -> None:
    _refused_before_any_frame(ctx, None, "a plain TCP peer (no TLS)")


@case("tls.wrong-role", ("R-5.16-2",), "a client certificate posing as a primary gets no frame back")
def _tls_wrong_role(ctx: Ctx) -> None:
    _refused_before_any_frame(ctx, harness_tls(True, "client"), "a peer with a client certificate")


@case("tls.other-ca", ("R-5.16-2",), "a primary certificate from another CA gets no frame back")
def _tls_other_ca(ctx: Ctx) -> None:
    _refused_before_any_frame(ctx, CertPaths.in_dir(rogue_certs(), "primary"), "a primary of another CA")


@case("frame.oversize", ("R-5.1-1",), "a frame longer than max_frame is refused from its length alone")
def _oversize(ctx: Ctx) -> None:
    peer = ctx.connect()
    peer.send_raw(
        struct.pack(">I", wire.DEFAULT_MAX_FRAME + 1), f"length prefix {wire.DEFAULT_MAX_FRAME + 1} (no body)"
    )
    ctx.refused_and_closed(peer, "R-5.1-1")


@case("frame.unknown-version", ("R-5.1-2",), "a frame of an unknown version is a protocol error")
def _unknown_version(ctx: Ctx) -> None:
    peer = ctx.connect()
    peer.send_raw(frame(9, 0x30, struct.pack(">Q", 1)), "PREPARE(1) with version 9")
    ctx.refused_and_closed(peer, "R-5.1-2")


@case("frame.unknown-type", ("R-5.1-2",), "a frame of an unknown type is a protocol error")
def _unknown_type(ctx: Ctx) -> None:
    peer = ctx.connect()
    peer.send_raw(frame(1, 0x7E, b"\x00" * 8), "type 0x7e")
    ctx.refused_and_closed(peer, "R-5.1-2")


@case("frame.short-body", ("R-5.1-2",), "a body shorter than its fields is a protocol error")
def _short_body(ctx: Ctx) -> None:
    peer = ctx.connect()
    peer.send_raw(frame(1, 0x30, b"\x00\x00\x00\x01"), "PREPARE with a 4-byte body")
    ctx.refused_and_closed(peer, "R-5.1-2")


@case(
    "isolation.bad-connection",
    ("R-5.9-1",),
    "a protocol error on one connection leaves another object's connection alone",
)
def _isolation(ctx: Ctx) -> None:
    other = ctx.connect(obj=ctx.object + "-b")
    other.send(wire.Prepare(1))
    ctx.expect(other, wire.Promise, "R-5.9-1", "PROMISE on the other object's connection")
    bad = ctx.connect()
    bad.send_raw(frame(1, 0x7E, b""), "type 0x7e")
    ctx.refused_and_closed(bad, "R-5.1-2")
    other.send(wire.Prepare(1))
    ctx.expect(other, wire.Promise, "R-5.9-1", "PROMISE on the other connection after the protocol error")


# ---- PREPARE / PROMISE -----------------------------------------------------------------------


@case("prepare.promise", ("R-5.10-1",), "PREPARE above the promise is answered by PROMISE with the log's state")
def _prepare(ctx: Ctx) -> None:
    peer = ctx.connect()
    p = ctx.promise(peer, 3, "R-5.10-1")
    if (p.log_epoch, p.last_seq, p.last_chain, p.truncated_through) != (0, 0, GENESIS_CHAIN, 0):
        ctx.fail("R-5.10-1", "a new object's PROMISE reports a log (expected log_epoch 0, last_seq 0, genesis)")
    log = make_log(3, 2)
    stored(ctx, peer, 3, log, "R-6.2-4")
    p = ctx.promise(peer, 4, "R-5.10-1")
    if (p.log_epoch, p.last_seq, p.last_chain) != (3, 2, log[-1].chain):
        ctx.fail(
            "R-5.10-1",
            f"PROMISE says log_epoch={p.log_epoch}, last_seq={p.last_seq}; expected 3, 2 and entry 2's chain",
        )


@case("prepare.idempotent", ("R-5.10-3",), "PREPARE at the promised epoch gets the same PROMISE")
def _prepare_again(ctx: Ctx) -> None:
    peer = ctx.connect()
    a = ctx.promise(peer, 3, "R-5.10-3")
    b = ctx.promise(peer, 3, "R-5.10-3")
    if a != b:
        ctx.fail("R-5.10-3", "the second PROMISE differs from the first")


@case("prepare.stale", ("R-5.10-2",), "PREPARE below the promise is refused and changes nothing")
def _prepare_stale(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 5, "R-5.10-1")
    peer.send(wire.Prepare(4))
    ctx.stale(peer, 5, "R-5.10-2")
    ctx.promise(peer, 5, "R-5.10-2")


# ---- APPEND ----------------------------------------------------------------------------------


@case("append.stale-epoch", ("R-6.2-1",), "APPEND below the promise: REJECT(STALE_EPOCH), nothing stored")
def _append_stale(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 5, "R-5.10-1")
    peer.send(append(4, make_log(4, 2)))
    ctx.stale(peer, 5, "R-6.2-1")
    p = ctx.promise(peer, 5, "R-6.2-1")
    if p.last_seq != 0:
        ctx.fail("R-6.2-1", f"after a stale APPEND the replica holds last_seq={p.last_seq} (expected nothing)")


@case("append.ack-exact", ("R-6.2-4", "R-5.12-1"), "an ACK covers exactly what is stored, not log_end")
def _ack_exact(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    stored(ctx, peer, 1, log[:1], "R-6.2-4")  # log epoch 1 adopted; what follows is not an adoption
    peer.send(append(1, log[1:2], log_end=3))
    ack = ctx.expect(peer, wire.Ack, "R-6.2-4", "an ACK")
    if ack.stored_through != 2 or ack.chain != log[1].chain:
        ctx.fail("R-6.2-4", f"ACK stored_through={ack.stored_through} after entries 1..2 (log_end 3): expected 2")
    same_log(ctx, "R-6.2-4", fetch_all(ctx, peer, 1, "R-5.12-1"), log[:2], "after ACK 2")


@case("append.chain-break", ("R-6.2-5",), "an entry that does not chain onto the previous one is DIVERGED, not stored")
def _chain_break(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    good = make_log(1, 1)
    stray = make_log(1, 1, salt=99, start=2, prev=bytes(range(16)))  # seq 2, chained onto a chain nobody has
    peer.send(append(1, [*good, *stray]))
    ack = ctx.expect(peer, wire.Ack, "R-6.2-5", "an ACK of the good prefix (entry 1)")
    if ack.stored_through != 1:
        ctx.fail("R-6.2-5", f"ACK stored_through={ack.stored_through}: entry 2 does not follow entry 1")
    r = ctx.expect(peer, wire.Reject, "R-6.2-5", "REJECT(DIVERGED)")
    if r.reason != wire.RejectReason.DIVERGED:
        ctx.fail("R-6.2-5", f"REJECT({r.reason.name}), expected DIVERGED")
    same_log(ctx, "R-6.2-5", fetch_all(ctx, ctx.connect(prepare=1), 1, "R-5.12-1"), good, "after the broken chain")


@case("append.gap", ("R-6.2-6",), "entries after a gap are not stored; the ACK says where the log ends")
def _gap(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 4)
    stored(ctx, peer, 1, log[:1], "R-6.2-4")
    peer.send(append(1, log[2:]))
    ack = ctx.expect(peer, wire.Ack, "R-6.2-6", "an ACK")
    if ack.stored_through != 1:
        ctx.fail("R-6.2-6", f"ACK stored_through={ack.stored_through} after entries 3..4 with only 1 held: expected 1")
    same_log(ctx, "R-6.2-6", fetch_all(ctx, peer, 1, "R-5.12-1"), log[:1], "after the gap")


@case("append.duplicate", ("R-6.2-7",), "a retransmission is acknowledged again")
def _duplicate(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 2)
    stored(ctx, peer, 1, log, "R-6.2-4")
    stored(ctx, peer, 1, log, "R-6.2-7")


@case("append.no-overwrite", ("R-6.2-8",), "within one log epoch a held entry is never replaced")
def _no_overwrite(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 2)
    stored(ctx, peer, 1, log, "R-6.2-4")
    other = make_log(1, 1, salt=50, start=2, prev=log[0].chain)
    peer.send(append(1, other))
    ack = ctx.expect(peer, wire.Ack, "R-6.2-8", "an ACK of what is held")
    if ack.stored_through != 2 or ack.chain != log[1].chain:
        ctx.fail(
            "R-6.2-8",
            f"ACK(stored_through={ack.stored_through}, chain={ack.chain.hex()[:8]}): the held entry 2 "
            "was replaced or dropped",
        )
    r = ctx.expect(peer, wire.Reject, "R-6.2-8", "REJECT(DIVERGED)")
    if r.reason != wire.RejectReason.DIVERGED:
        ctx.fail("R-6.2-8", f"REJECT({r.reason.name}), expected DIVERGED")
    same_log(ctx, "R-6.2-8", fetch_all(ctx, ctx.connect(prepare=1), 1, "R-5.12-1"), log, "after the differing entry")


@case("append.adopt", ("R-6.2-9",), "another epoch's frame through log_end replaces the differing suffix")
def _adopt(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    old = make_log(1, 3)
    stored(ctx, peer, 1, old, "R-6.2-4")
    new2 = make_log(2, 1, salt=40, start=2, prev=old[0].chain)
    peer.send(append(2, new2, log_end=2))
    ack_is(
        ctx, peer, "R-6.2-9", "an ACK of the adopted log", (2, new2[0].chain, 2),
        "2 with the new entry 2's chain and log_epoch 2",
    )  # fmt: skip
    same_log(ctx, "R-6.2-9", fetch_all(ctx, peer, 2, "R-5.12-1"), [old[0], *new2], "after adoption")


@case(
    "append.adopt-only-through-log-end",
    ("R-6.2-10",),
    "another epoch's frame that stops short of log_end is not adopted",
)
def _adopt_short(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    old = make_log(1, 2)
    stored(ctx, peer, 1, old, "R-6.2-4")
    new = make_log(2, 2, salt=40)
    peer.send(append(2, new, log_end=5))
    ack_is(
        ctx, peer, "R-6.2-10", "an ACK of what is held", (2, old[1].chain, 1),
        "what it held (2 under log epoch 1): the replica took entries from a frame that does not reach log_end",
    )  # fmt: skip
    same_log(ctx, "R-6.2-10", fetch_all(ctx, peer, 2, "R-5.12-1"), old, "after the short frame")


@case("append.not-consecutive", ("R-5.4-1",), "entries after a hole inside one APPEND are not stored")
def _not_consecutive(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    peer.send(append(1, [log[0], log[2]]))
    try:
        answer = peer.recv()
    except Closed:
        answer = None  # a protocol error: allowed
    if isinstance(answer, wire.Ack) and answer.stored_through > 1:
        ctx.fail("R-5.4-1", f"ACK stored_through={answer.stored_through} from a frame holding entries 1 and 3")
    if answer is not None and not isinstance(answer, wire.Ack | wire.Reject):
        ctx.fail("R-5.4-1", f"unexpected answer {type(answer).__name__} to a frame with a hole")
    p = ctx.promise(ctx.connect(), 1, "R-5.4-1")
    if p.last_seq > 1:
        ctx.fail("R-5.4-1", f"the replica stored through {p.last_seq} from a frame with a hole")


@case("append.corrupt-entry", ("R-5.4-2",), "an entry with a bad CRC makes the whole frame a protocol error")
def _corrupt(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 2)
    raw = bytearray(log[1].raw)
    raw[-1] ^= 0xFF
    bad = dataclasses.replace(log[1], raw=bytes(raw))
    peer.send(append(1, [log[0], bad]))
    ctx.refused_and_closed(peer, "R-5.4-2")
    p = ctx.promise(ctx.connect(), 1, "R-5.4-2")
    if p.last_seq != 0:
        ctx.fail("R-5.4-2", f"the replica stored through {p.last_seq} from a frame holding a corrupt entry")


# ---- FETCH -----------------------------------------------------------------------------------


@case("fetch.bounds", ("R-5.12-1",), "FETCH answers at least one entry within max_bytes, final on the last")
def _fetch_bounds(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    stored(ctx, peer, 1, log, "R-6.2-4")
    peer.send(wire.Fetch(epoch=1, from_seq=1, max_bytes=1))
    got = ctx.expect(peer, wire.Entries, "R-5.12-1", "ENTRIES")
    if [e.raw for e in got.entries] != [log[0].raw] or got.final:
        ctx.fail(
            "R-5.12-1",
            f"FETCH(from 1, max_bytes 1) got {len(got.entries)} entries, final={int(got.final)}: "
            "expected exactly entry 1 (at least one, within the bound) and final=0",
        )
    peer.send(wire.Fetch(epoch=1, from_seq=3, max_bytes=1 << 20))
    got = ctx.expect(peer, wire.Entries, "R-5.12-1", "ENTRIES")
    if [e.raw for e in got.entries] != [log[2].raw] or not got.final:
        ctx.fail(
            "R-5.12-1",
            f"FETCH(from 3) got {len(got.entries)} entries, final={int(got.final)}: expected entry 3, final=1",
        )


@case("fetch.framed-bound", ("R-5.12-1",), "max_bytes bounds the entries as framed (4 + entry_len each)")
def _fetch_framed(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    stored(ctx, peer, 1, log, "R-6.2-4")
    size = len(log[0].raw)  # every entry of make_log has the same size
    for max_bytes, want in ((2 * size + 4, 1), (2 * size + 8, 2)):
        peer.send(wire.Fetch(epoch=1, from_seq=1, max_bytes=max_bytes))
        got = ctx.expect(peer, wire.Entries, "R-5.12-1", "ENTRIES")
        if len(got.entries) != want:
            ctx.fail(
                "R-5.12-1",
                f"FETCH(max_bytes={max_bytes}) with entries of {size} bytes got {len(got.entries)} "
                f"entries, expected {want}: each entry counts 4 + entry_len bytes",
            )


@case("fetch.stale", ("R-5.12-2",), "FETCH below the promise is refused; a FETCH makes no promise")
def _fetch_stale(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 5, "R-5.10-1")
    peer.send(wire.Fetch(epoch=4, from_seq=1, max_bytes=1 << 20))
    ctx.stale(peer, 5, "R-5.12-2")
    peer.send(wire.Fetch(epoch=6, from_seq=1, max_bytes=1 << 20))
    ctx.expect(peer, wire.Entries, "R-5.12-2", "ENTRIES (a FETCH above the promise is answered)")
    ctx.promise(peer, 5, "R-5.12-2")  # FETCH(6) promised nothing: PREPARE(5) still works


# ---- voters and ADMIT ------------------------------------------------------------------------


@case("voter.new-object", ("R-6.1-2",), "a new object starts as a non-voter that promised the allocator's epoch")
def _new_object(ctx: Ctx) -> None:
    ctx.set_placement_epoch(4)
    peer = ctx.connect()
    peer.send(wire.Prepare(3))
    ctx.stale(peer, 4, "R-6.1-2")
    p = ctx.promise(peer, 5, "R-6.1-2")
    if p.voter:
        ctx.fail("R-6.1-2", "a new object's PROMISE says voter=1: it cannot tell new from a lost disk")


@case("admit.stale-ignored", ("R-5.14-1",), "an ADMIT below the promise is ignored silently")
def _admit_stale(ctx: Ctx) -> None:
    ctx.set_placement_epoch(4)
    peer = ctx.connect()
    ctx.promise(peer, 5, "R-5.10-1")
    peer.send(wire.Admit(epoch=4, upto=0))
    p = ctx.promise(peer, 5, "R-5.14-1")  # the barrier: nothing may come before this PROMISE
    if p.voter:
        ctx.fail("R-5.14-1", "a stale ADMIT(4) after PREPARE(5) made the replica a voter")


# ---- TRUNCATE --------------------------------------------------------------------------------


@case("truncate.stale", ("R-5.15-1",), "a TRUNCATE below the promise truncates nothing")
def _truncate_stale(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    stored(ctx, peer, 1, log, "R-6.2-4")
    ctx.promise(peer, 2, "R-5.10-1")
    peer.send(wire.Truncate(epoch=1, through=2, chain=log[1].chain))
    p = ctx.promise(peer, 2, "R-5.15-1")
    if p.truncated_through != 0:
        ctx.fail("R-5.15-1", f"a TRUNCATE of epoch 1 after PREPARE(2) truncated through {p.truncated_through}")
    same_log(ctx, "R-5.15-1", fetch_all(ctx, peer, 2, "R-5.12-1"), log, "after the stale TRUNCATE")


@case("truncate.wrong-chain", ("R-5.15-3",), "a TRUNCATE naming another chain truncates nothing")
def _truncate_wrong_chain(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    stored(ctx, peer, 1, log, "R-6.2-4")
    peer.send(wire.Truncate(epoch=1, through=2, chain=bytes(range(16))))
    p = ctx.promise(peer, 1, "R-5.15-3")
    if p.truncated_through != 0:
        ctx.fail(
            "R-5.15-3", f"a TRUNCATE with a chain the replica does not hold truncated through {p.truncated_through}"
        )


def _truncated_log(ctx: Ctx) -> tuple[ScriptedPrimary, list[Entry]]:
    """A replica holding epoch 1's log 1..4, truncated through 3 (it may have dropped 1 and 2)."""
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 4)
    stored(ctx, peer, 1, log, "R-6.2-4")
    peer.send(wire.Truncate(epoch=1, through=3, chain=log[2].chain))
    ctx.promise(peer, 1, "R-5.15-2")  # the barrier: a TRUNCATE is never answered
    return peer, log


@case("truncate.base", ("R-5.15-4",), "a base offer lets a replica that cannot join a new log start it at the offer")
def _truncate_base(ctx: Ctx) -> None:
    peer, _ = _truncated_log(ctx)
    other = make_log(2, 5, salt=99)  # another history (a restored branch): differs from seq 1
    ctx.promise(peer, 2, "R-5.10-1")
    peer.send(wire.Truncate(epoch=2, through=4, chain=other[3].chain))
    peer.send(append(2, other[3:], log_end=5))
    ctx.transcript.note("TRUNCATE(2, through 4 of another history), then APPEND(2, seqs 4-5 of it, log_end 5)")
    ack_is(
        ctx, peer, "R-5.15-4", "an ACK of the frame that starts at the offered base", (5, other[4].chain, 2),
        "the new log through 5 under log epoch 2 (the replica must replace its log by the offered entry)",
    )  # fmt: skip
    same_log(ctx, "R-5.15-4", fetch_all(ctx, peer, 2, "R-5.12-1", start=4), other[3:], "after taking the base")


@case("truncate.empty-base", ("R-5.15-4",), "TRUNCATE through 0 offers the empty log: a restore to the empty database")
def _truncate_empty_base(ctx: Ctx) -> None:
    peer, _ = _truncated_log(ctx)
    other = make_log(2, 1, salt=99)  # the first entry of a branch restored to seq 0
    ctx.promise(peer, 2, "R-5.10-1")
    peer.send(wire.Truncate(epoch=2, through=0, chain=GENESIS_CHAIN))
    peer.send(append(2, other, log_end=1))
    ctx.transcript.note("TRUNCATE(2, through 0, genesis), then APPEND(2, seq 1 of another history, log_end 1)")
    ack_is(
        ctx, peer, "R-5.15-4", "an ACK of the frame from seq 1 after the empty base offer", (1, other[0].chain, 2),
        "the new log through 1 under log epoch 2 (the log must start empty, then take seq 1)",
    )  # fmt: skip
    same_log(ctx, "R-5.15-4", fetch_all(ctx, peer, 2, "R-5.12-1"), other, "after taking the empty base")


# ---- durability: each rule checked across a crash (SIGKILL: the page cache survives) and across a
# power failure (the power-loss filesystem drops what was not fsync'd: the only way to see a
# missing fsync whose write happened) --------------------------------------------------------------

Fault = Callable[[Ctx], None]
FAULTS: dict[str, tuple[Fault, str]] = {
    "crash": (Ctx.restart, "a SIGKILL and restart"),
    "power": (Ctx.power_fail, "a power failure"),
}


def _promise_survives(ctx: Ctx, fault: Fault, what: str) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 7, "R-5.10-1")
    fault(ctx)
    peer = ctx.connect()
    peer.send(wire.Prepare(6))
    ctx.stale(peer, 7, "R-6.1-1")


def _implicit_promise_survives(ctx: Ctx, fault: Fault, what: str) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 2, "R-5.10-1")
    ack = stored(ctx, peer, 3, make_log(3, 2), "R-6.2-4")
    if ack.epoch != 3 or ack.log_epoch != 3:
        ctx.fail("R-6.2-4", f"ACK(epoch={ack.epoch}, log_epoch={ack.log_epoch}), expected 3 and 3")
    fault(ctx)
    peer = ctx.connect()
    peer.send(wire.Prepare(2))
    ctx.stale(peer, 3, "R-6.2-2")


def _acked_entries_survive(ctx: Ctx, fault: Fault, what: str) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    stored(ctx, peer, 1, log, "R-6.2-4")  # the adopting frame
    more = make_log(1, 2, start=4, prev=log[-1].chain)
    stored(ctx, peer, 1, more, "R-6.2-4")  # and one within the log epoch
    fault(ctx)  # at once: nothing written after the ACK may be needed for it
    peer = ctx.connect()
    p = ctx.promise(peer, 1, "R-6.2-3")
    if (p.last_seq, p.last_chain, p.log_epoch) != (5, more[-1].chain, 1):
        ctx.fail(
            "R-6.2-3",
            f"after {what} the replica reports last_seq={p.last_seq}, log_epoch={p.log_epoch}; it ACKed 5 entries "
            "of epoch 1 before it: an ACK went out before its entries were on stable storage",
        )
    same_log(ctx, "R-6.2-3", fetch_all(ctx, peer, 1, "R-5.12-1"), [*log, *more], f"after {what}")


def _voter_survives(ctx: Ctx, fault: Fault, what: str) -> None:
    ctx.set_placement_epoch(4)
    peer = ctx.connect()
    ctx.promise(peer, 5, "R-5.10-1")
    peer.send(wire.Admit(epoch=5, upto=0))
    if not ctx.promise(peer, 5, "R-5.14-2").voter:
        ctx.fail("R-5.14-2", "ADMIT(5, 0) to an empty non-voter that promised 5 did not make it a voter")
    fault(ctx)
    if not ctx.promise(ctx.connect(), 5, "R-5.14-2").voter:
        ctx.fail("R-5.14-2", f"the voter flag did not survive {what}")


def _truncation_survives(ctx: Ctx, fault: Fault, what: str) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 3)
    stored(ctx, peer, 1, log, "R-6.2-4")
    peer.send(wire.Truncate(epoch=1, through=2, chain=log[1].chain))
    p = ctx.promise(peer, 1, "R-5.15-2")  # also the barrier: a TRUNCATE is never answered
    if p.truncated_through != 2 or p.last_seq != 3:
        ctx.fail(
            "R-5.15-2",
            f"after TRUNCATE(through 2) the PROMISE says truncated_through={p.truncated_through}, "
            f"last_seq={p.last_seq}: expected 2 and 3",
        )
    fault(ctx)
    peer = ctx.connect()
    p = ctx.promise(peer, 1, "R-5.15-2")
    if p.truncated_through != 2 or p.last_seq != 3:
        ctx.fail(
            "R-5.15-2",
            f"after {what}: truncated_through={p.truncated_through}, last_seq={p.last_seq} (before it: 2 and 3)",
        )
    got = fetch_all(ctx, peer, 1, "R-5.12-1", start=p.truncated_through + 1)
    same_log(ctx, "R-5.15-2", got, log[p.truncated_through :], f"after {what}")


@case("power.torn-tail", ("R-8-1", "R-6.2-3"), "a record torn by a power failure before its fsync is cut on restart")
def _torn_tail(ctx: Ctx) -> None:
    peer = ctx.connect()
    ctx.promise(peer, 1, "R-5.10-1")
    log = make_log(1, 4)
    stored(ctx, peer, 1, log[:3], "R-6.2-4")
    ctx.hold_syncs()
    peer.send(append(1, log[3:]))
    if not ctx.wait_held():
        raise Unknown("the replica never fsynced the fourth entry, so no torn write could be made")
    ctx.power_fail(torn=True)  # half of entry 4's record reaches the disk, and no ACK went out
    peer = ctx.connect()
    p = ctx.promise(peer, 1, "R-8-1")
    if p.last_seq != 3 or p.last_chain != log[2].chain:
        ctx.fail(
            "R-8-1",
            f"after a torn write of entry 4 the replica reports last_seq={p.last_seq}: expected 3 "
            "(entry 4 was never acknowledged; entries 1..3 were)",
        )
    same_log(ctx, "R-8-1", fetch_all(ctx, peer, 1, "R-5.12-1"), log[:3], "after the torn write")
    stored(ctx, peer, 1, log[3:], "R-8-1")  # and the log goes on from there


_DURABLE: list[tuple[str, str, tuple[str, ...], str, Callable[[Ctx, Fault, str], None]]] = [
    ("prepare.durable", "power.promise", ("R-6.1-1",), "a promise survives", _promise_survives),
    ("append.implicit-promise", "power.implicit-promise", ("R-6.2-2", "R-6.2-4"),
     "a promise made by an APPEND survives", _implicit_promise_survives),
    ("append.durable-ack", "power.durable-ack", ("R-6.2-3",), "entries an ACK covers survive, right after the ACK",
     _acked_entries_survive),
    ("admit.takes", "power.voter", ("R-5.14-2",), "the voter flag a matching ADMIT set survives", _voter_survives),
    ("truncate.applies", "power.truncate", ("R-5.15-2",), "a recorded truncation point (and the log) survives",
     _truncation_survives),
]  # fmt: skip


def _register_durability() -> None:
    for crash_id, power_id, rules, title, body in _DURABLE:
        for case_id, kind in ((crash_id, "crash"), (power_id, "power")):
            fault, what = FAULTS[kind]
            case(case_id, rules, f"{title} {what}")(
                lambda ctx, body=body, fault=fault, what=what: body(ctx, fault, what)  # type: ignore[misc]
            )


_register_durability()
