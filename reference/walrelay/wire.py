"""Wire format v1: length-prefixed binary frames over any byte stream (TCP or in-memory).

Every frame is ``u32 length | u8 version | u8 type | body`` (big-endian), where ``length`` counts
the bytes after itself (so >= 2). Bodies are documented byte by byte in docs/protocol.md. The
decoder is strict: an unknown version or type, a body shorter or longer than its fields, or a
length above the configured maximum is a ``ProtocolError`` naming the problem; the connection is
then closed, and the node keeps serving everyone else.

Log entries travel as their exact stored bytes (entry.py), so what a replica acknowledges is
byte-for-byte what the primary encoded, checksums included. APPEND and ENTRIES share one encoding
of an entry list, so a log fetched from a replica during recovery arrives exactly as it was stored.

Types ``0x30``-``0x34`` are the failover messages (docs/failover.md), ``0x35`` the archive's
TRUNCATE (docs/archive-format.md). They were added under version 1 because the wire is not frozen
before the first release (docs/protocol.md section 10): an older build refuses them as an unknown
type, a protocol error that names the type.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from walrelay.entry import GENESIS_CHAIN, Entry, decode
from walrelay.errors import EntryFormatError, ProtocolError

WIRE_VERSION = 1
LENGTH = struct.Struct(">I")
DEFAULT_MAX_FRAME = 64 * 1024 * 1024 + 1024


class MsgType(IntEnum):
    HELLO = 0x01
    APPEND = 0x10
    ACK = 0x11
    REJECT = 0x12
    REQUEST = 0x20
    REPLY = 0x21
    PREPARE = 0x30
    PROMISE = 0x31
    FETCH = 0x32
    ENTRIES = 0x33
    ADMIT = 0x34
    TRUNCATE = 0x35


class Role(IntEnum):
    PRIMARY = 1
    REPLICA = 2
    CLIENT = 3


class RejectReason(IntEnum):
    STALE_EPOCH = 1  # the replica promised a higher epoch: the sender is fenced
    DIVERGED = 2  # an entry does not follow the replica's log (chain mismatch)
    BAD_ENTRY = 3  # an entry failed to decode or verify
    WRONG_OBJECT = 4  # the replica stores a different object


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame on every connection, both directions.

    ``stored_through``, ``last_chain`` and ``epoch`` tell a primary where a replica stands: the
    highest seq it holds durably, the chain hash of that entry (which commits to the whole prefix,
    so the primary can verify the replica holds *its* log, not just as many entries), and the
    epoch it has promised. A primary sends zeros there. Clients send no HELLO.
    """

    role: Role
    node_id: int
    object_name: str
    epoch: int
    stored_through: int
    last_chain: bytes = bytes(16)


@dataclass(frozen=True, slots=True)
class Append:
    """Entries for a replica, in seq order, sent under ``epoch``; ``durable_seq`` is informational.

    ``log_end`` is the sender's last seq when it sent the frame: a replica adopts another epoch's
    log only from a frame that reaches it (docs/failover.md), the spec's "an APPEND carries the
    sender's whole log".
    """

    epoch: int
    durable_seq: int
    log_end: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """Cumulative: the replica holds entries 1..stored_through durably (fsync'd).

    ``chain`` is the chain hash of entry ``stored_through`` in the replica's log. An ACK is
    self-certifying: the primary counts it only if that chain equals its own at that seq, and
    ``log_epoch`` is its own epoch: an identical log held under an older log epoch does not count
    (spec: ``acks[e][r]`` is set only by an APPEND the replica adopted; docs/failover.md).
    """

    epoch: int
    stored_through: int
    chain: bytes
    log_epoch: int


@dataclass(frozen=True, slots=True)
class Reject:
    reason: RejectReason
    promised_epoch: int
    message: str


@dataclass(frozen=True, slots=True)
class Request:
    """A client call: ``body`` is a JSON object ``{"op": str, "args": [...]}``."""

    request_id: int
    body: dict[str, Any]


class ReplyStatus(IntEnum):
    OK = 0
    ERROR = 1  # the operation failed and had no effect
    UNKNOWN = 2  # the write may or may not have happened (durability not confirmed)


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: int
    status: ReplyStatus
    body: Any


@dataclass(frozen=True, slots=True)
class Prepare:
    """A recovering primary asks a replica to promise ``epoch`` and report its log.

    The primary cannot pick the log to recover until a quorum of voters has promised, because a
    promise is what stops a replica from accepting entries of an older, possibly still running,
    primary that the recovery would then miss (docs/failover.md, Recovery).
    """

    epoch: int


@dataclass(frozen=True, slots=True)
class Promise:
    """A replica's answer to PREPARE: it promised ``epoch``, and this is the log it holds.

    ``(log_epoch, last_seq)`` ranks logs for recovery (the entry's own epoch cannot, see
    docs/protocol.md 9.1 rule 1). ``last_chain`` lets the primary verify the fetched log ends where
    the replica said. Entries through ``truncated_through`` are only in the archive, so FETCH can
    start no lower than the next seq. A non-voter (it lost its disk) is not counted in the promise
    quorum, because its lost promise may already have been counted once.
    """

    epoch: int
    log_epoch: int
    last_seq: int
    last_chain: bytes
    truncated_through: int
    voter: bool


@dataclass(frozen=True, slots=True)
class Fetch:
    """A recovering primary asks for a replica's entries from ``from_seq``, at most ``max_bytes`` per answer.

    The primary bounds each answer, so that a long log arrives in frames it can verify and
    discard as it goes instead of one frame of arbitrary size.
    """

    epoch: int
    from_seq: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Entries:
    """A replica's answer to FETCH: consecutive entries; ``final`` when they reach its last entry.

    ``final`` is what tells the primary to stop asking: an empty batch alone cannot, since a
    replica always sends at least one entry when it has any at ``from_seq``.
    """

    final: bool
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Admit:
    """A serving primary of ``epoch`` saw this replica hold its log through ``upto``: it may vote again.

    Only a serving primary can vouch that the replica's rebuilt log covers everything committed;
    the replica ignores an ADMIT that does not match what it holds (docs/failover.md).
    """

    epoch: int
    upto: int


@dataclass(frozen=True, slots=True)
class Truncate:
    """Entries through ``through`` are confirmed in the archive: a replica whose entry there has
    ``chain`` (so its prefix is the archived one) may drop them (spec: ConfirmUpload, ReceiveTruncate).
    """

    epoch: int
    through: int
    chain: bytes


Message = Hello | Append | Ack | Reject | Request | Reply | Prepare | Promise | Fetch | Entries | Admit | Truncate

_HELLO = struct.Struct(">BQQQ16sH")
_APPEND = struct.Struct(">QQQI")
_ACK = struct.Struct(">QQ16sQ")
_REJECT = struct.Struct(">BQH")
_REQ = struct.Struct(">Q")
_REPLY = struct.Struct(">QB")
_PREPARE = struct.Struct(">Q")
_PROMISE = struct.Struct(">QQQ16sQB")
_FETCH = struct.Struct(">QQI")
_ENTRIES = struct.Struct(">BI")
_ADMIT = struct.Struct(">QQ")
_TRUNCATE = struct.Struct(">QQ16s")


def _frame(t: MsgType, body: bytes) -> bytes:
    return LENGTH.pack(len(body) + 2) + bytes((WIRE_VERSION, t)) + body


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def encode(msg: Message) -> bytes:
    """Encode one message as a complete frame (length prefix included)."""
    if isinstance(msg, Hello):
        name = msg.object_name.encode()
        return _frame(
            MsgType.HELLO,
            _HELLO.pack(msg.role, msg.node_id, msg.epoch, msg.stored_through, msg.last_chain, len(name)) + name,
        )
    if isinstance(msg, Append):
        if msg.entries and msg.log_end < msg.entries[-1].seq:
            raise ValueError(f"APPEND log_end {msg.log_end} is below its last entry's seq {msg.entries[-1].seq}")
        return _frame(
            MsgType.APPEND,
            _APPEND.pack(msg.epoch, msg.durable_seq, msg.log_end, len(msg.entries)) + _entries(msg.entries),
        )
    if isinstance(msg, Ack):
        return _frame(MsgType.ACK, _ACK.pack(msg.epoch, msg.stored_through, msg.chain, msg.log_epoch))
    if isinstance(msg, Reject):
        text = msg.message.encode()[:65535]
        return _frame(MsgType.REJECT, _REJECT.pack(msg.reason, msg.promised_epoch, len(text)) + text)
    if isinstance(msg, Request):
        return _frame(MsgType.REQUEST, _REQ.pack(msg.request_id) + _json(msg.body))
    if isinstance(msg, Reply):
        return _frame(MsgType.REPLY, _REPLY.pack(msg.request_id, msg.status) + _json(msg.body))
    if isinstance(msg, Prepare):
        _refuse(_epoch_problem("PREPARE", msg.epoch))
        return _frame(MsgType.PREPARE, _PREPARE.pack(msg.epoch))
    if isinstance(msg, Promise):
        _refuse(_epoch_problem("PROMISE", msg.epoch))
        if len(msg.last_chain) != 16:
            raise ValueError(f"PROMISE last_chain is {len(msg.last_chain)} bytes, must be 16")
        return _frame(
            MsgType.PROMISE,
            _PROMISE.pack(msg.epoch, msg.log_epoch, msg.last_seq, msg.last_chain, msg.truncated_through, msg.voter),
        )
    if isinstance(msg, Fetch):
        _refuse(_fetch_problem(msg.epoch, msg.from_seq, msg.max_bytes))
        return _frame(MsgType.FETCH, _FETCH.pack(msg.epoch, msg.from_seq, msg.max_bytes))
    if isinstance(msg, Entries):
        return _frame(MsgType.ENTRIES, _ENTRIES.pack(msg.final, len(msg.entries)) + _entries(msg.entries))
    if isinstance(msg, Admit):
        _refuse(_epoch_problem("ADMIT", msg.epoch))
        return _frame(MsgType.ADMIT, _ADMIT.pack(msg.epoch, msg.upto))
    if isinstance(msg, Truncate):
        _refuse(_epoch_problem("TRUNCATE", msg.epoch))
        if len(msg.chain) != 16:
            raise ValueError(f"TRUNCATE chain is {len(msg.chain)} bytes, must be 16")
        if msg.through == 0 and msg.chain != GENESIS_CHAIN:
            raise ValueError("TRUNCATE through 0 (the empty log) must carry the genesis chain")
        return _frame(MsgType.TRUNCATE, _TRUNCATE.pack(msg.epoch, msg.through, msg.chain))
    raise TypeError(f"not a wire message: {msg!r}")


def _entries(entries: tuple[Entry, ...]) -> bytes:
    """The entry list shared by APPEND and ENTRIES (after its count): ``u32 length | raw entry`` each."""
    return b"".join(LENGTH.pack(len(e.raw)) + e.raw for e in entries)


# Range rules shared by the encoder (ValueError: the caller built a bad message) and the decoder
# (ProtocolError: a peer sent one), so that nothing this node sends is refused by a peer.


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


def _protocol(problem: str | None) -> None:
    if problem is not None:
        raise ProtocolError(problem)


def _epoch_problem(what: str, epoch: int) -> str | None:
    # Epoch 0 is never issued to a primary (placement starts at 1), so it can only be a bug.
    return f"{what} field epoch is 0, must be >= 1" if epoch == 0 else None


def _fetch_problem(epoch: int, from_seq: int, max_bytes: int) -> str | None:
    if epoch == 0:
        return _epoch_problem("FETCH", epoch)
    if from_seq == 0:
        return "FETCH field from_seq is 0, must be >= 1 (seqs start at 1)"
    if max_bytes == 0:
        return "FETCH field max_bytes is 0, must be > 0 (an answer could never make progress)"
    return None


def _flag(value: int, what: str, name: str) -> bool:
    if value > 1:
        raise ProtocolError(f"{what} field {name} is {value}, must be 0 or 1")
    return value == 1


def _need(body: bytes, n: int, what: str) -> None:
    if len(body) < n:
        raise ProtocolError(f"{what} frame body is {len(body)} bytes, needs at least {n}")


def _exact(body: bytes, n: int, what: str) -> None:
    if len(body) != n:
        raise ProtocolError(f"{what} frame body is {len(body)} bytes, expected {n}")


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"{what} frame carries invalid JSON: {e}") from None
    except RecursionError:
        raise ProtocolError(f"{what} frame carries invalid JSON: nested too deeply to decode") from None


def _decode_entries(body: bytes, off: int, count: int, what: str) -> tuple[Entry, ...]:
    """Decode ``count`` length-prefixed entries from ``off`` to the exact end of ``body``.

    Each entry is fully verified (checksums included), but seq order and chain links are left to
    the receiver, which has the context (its own log) to check them against.
    """
    entries = []
    for i in range(count):
        _need(body, off + 4, what)
        (n,) = LENGTH.unpack_from(body, off)
        off += 4
        _need(body, off + n, what)
        try:
            entries.append(decode(body[off : off + n], what=f"{what} entry {i}"))
        except EntryFormatError as e:
            raise ProtocolError(str(e)) from None
        off += n
    if off != len(body):
        raise ProtocolError(f"{what} frame has {len(body) - off} trailing bytes after {count} entries")
    return tuple(entries)


def decode_payload(payload: bytes) -> Message:
    """Decode what follows the length prefix: ``u8 version | u8 type | body``."""
    if len(payload) < 2:
        raise ProtocolError(f"frame of {len(payload)} bytes is too short for version and type")
    version, mtype = payload[0], payload[1]
    if version != WIRE_VERSION:
        raise ProtocolError(f"unsupported wire version {version} (this node speaks {WIRE_VERSION})")
    body = payload[2:]
    try:
        t = MsgType(mtype)
    except ValueError:
        raise ProtocolError(f"unknown message type {mtype:#04x}") from None
    if t is MsgType.HELLO:
        _need(body, _HELLO.size, "HELLO")
        role, node_id, epoch, stored, chain, nlen = _HELLO.unpack_from(body)
        _exact(body, _HELLO.size + nlen, "HELLO")
        try:
            r = Role(role)
            name = body[_HELLO.size :].decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(f"HELLO has invalid role {role} or object name") from None
        return Hello(r, node_id, name, epoch, stored, chain)
    if t is MsgType.APPEND:
        _need(body, _APPEND.size, "APPEND")
        epoch, durable, log_end, count = _APPEND.unpack_from(body)
        entries = _decode_entries(body, _APPEND.size, count, "APPEND")
        if entries and log_end < entries[-1].seq:
            raise ProtocolError(f"APPEND log_end {log_end} is below its last entry's seq {entries[-1].seq}")
        return Append(epoch, durable, log_end, entries)
    if t is MsgType.ACK:
        _exact(body, _ACK.size, "ACK")
        return Ack(*_ACK.unpack(body))
    if t is MsgType.REJECT:
        _need(body, _REJECT.size, "REJECT")
        reason, promised, mlen = _REJECT.unpack_from(body)
        _exact(body, _REJECT.size + mlen, "REJECT")
        try:
            rr = RejectReason(reason)
        except ValueError:
            raise ProtocolError(f"REJECT has unknown reason {reason}") from None
        return Reject(rr, promised, body[_REJECT.size :].decode("utf-8", "replace"))
    if t is MsgType.PREPARE:
        _exact(body, _PREPARE.size, "PREPARE")
        (epoch,) = _PREPARE.unpack(body)
        _protocol(_epoch_problem("PREPARE", epoch))
        return Prepare(epoch)
    if t is MsgType.PROMISE:
        _exact(body, _PROMISE.size, "PROMISE")
        epoch, log_epoch, last_seq, last_chain, truncated, voter = _PROMISE.unpack(body)
        _protocol(_epoch_problem("PROMISE", epoch))
        return Promise(epoch, log_epoch, last_seq, last_chain, truncated, _flag(voter, "PROMISE", "voter"))
    if t is MsgType.FETCH:
        _exact(body, _FETCH.size, "FETCH")
        epoch, from_seq, max_bytes = _FETCH.unpack(body)
        _protocol(_fetch_problem(epoch, from_seq, max_bytes))
        return Fetch(epoch, from_seq, max_bytes)
    if t is MsgType.ENTRIES:
        _need(body, _ENTRIES.size, "ENTRIES")
        final, count = _ENTRIES.unpack_from(body)
        return Entries(_flag(final, "ENTRIES", "final"), _decode_entries(body, _ENTRIES.size, count, "ENTRIES"))
    if t is MsgType.ADMIT:
        _exact(body, _ADMIT.size, "ADMIT")
        epoch, upto = _ADMIT.unpack(body)
        _protocol(_epoch_problem("ADMIT", epoch))
        return Admit(epoch, upto)
    if t is MsgType.TRUNCATE:
        _exact(body, _TRUNCATE.size, "TRUNCATE")
        epoch, through, chain = _TRUNCATE.unpack(body)
        _protocol(_epoch_problem("TRUNCATE", epoch))
        if through == 0 and chain != GENESIS_CHAIN:
            raise ProtocolError("TRUNCATE through 0 (the empty log) must carry the genesis chain")
        return Truncate(epoch, through, chain)
    if t is MsgType.REQUEST:
        _need(body, _REQ.size, "REQUEST")
        (rid,) = _REQ.unpack_from(body)
        obj = _load_json(body[_REQ.size :], "REQUEST")
        if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
            raise ProtocolError('REQUEST body must be a JSON object with a string "op"')
        return Request(rid, obj)
    # REPLY
    _need(body, _REPLY.size, "REPLY")
    rid, status = _REPLY.unpack_from(body)
    try:
        st = ReplyStatus(status)
    except ValueError:
        raise ProtocolError(f"REPLY has unknown status {status}") from None
    return Reply(rid, st, _load_json(body[_REPLY.size :], "REPLY"))


class FrameDecoder:
    """Incremental decoder: feed bytes, take complete messages. Pure, so it can be fuzzed directly."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while True:
            if len(self._buf) < 4:
                return out
            (n,) = LENGTH.unpack_from(self._buf)
            if n > self.max_frame:
                raise ProtocolError(f"frame length {n} exceeds the maximum {self.max_frame}")
            if len(self._buf) < 4 + n:
                return out
            payload = bytes(self._buf[4 : 4 + n])
            del self._buf[: 4 + n]
            out.append(decode_payload(payload))

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame; non-zero at EOF means the peer sent a truncated frame."""
        return len(self._buf)
