"""Wire format v1: length-prefixed binary frames over any byte stream (TCP or in-memory).

Every frame is ``u32 length | u8 version | u8 type | body`` (big-endian), where ``length`` counts
the bytes after itself (so >= 2). Bodies are documented byte by byte in docs/protocol.md. The
decoder is strict: an unknown version or type, a body shorter or longer than its fields, or a
length above the configured maximum is a ``ProtocolError`` naming the problem; the connection is
then closed, and the node keeps serving everyone else.

Log entries travel as their exact stored bytes (entry.py), so what a replica acknowledges is
byte-for-byte what the primary encoded, checksums included.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from walrelay.entry import Entry, decode
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
    """Entries for a replica, in seq order, sent under ``epoch``; ``durable_seq`` is informational."""

    epoch: int
    durable_seq: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """Cumulative: the replica holds entries 1..stored_through durably (fsync'd).

    ``chain`` is the chain hash of entry ``stored_through`` in the replica's log. An ACK is
    self-certifying: the primary counts it only if that chain equals its own at that seq.
    """

    epoch: int
    stored_through: int
    chain: bytes


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


Message = Hello | Append | Ack | Reject | Request | Reply

_HELLO = struct.Struct(">BQQQ16sH")
_APPEND = struct.Struct(">QQI")
_ACK = struct.Struct(">QQ16s")
_REJECT = struct.Struct(">BQH")
_REQ = struct.Struct(">Q")
_REPLY = struct.Struct(">QB")


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
        parts = [_APPEND.pack(msg.epoch, msg.durable_seq, len(msg.entries))]
        for e in msg.entries:
            parts.append(LENGTH.pack(len(e.raw)))
            parts.append(e.raw)
        return _frame(MsgType.APPEND, b"".join(parts))
    if isinstance(msg, Ack):
        return _frame(MsgType.ACK, _ACK.pack(msg.epoch, msg.stored_through, msg.chain))
    if isinstance(msg, Reject):
        text = msg.message.encode()[:65535]
        return _frame(MsgType.REJECT, _REJECT.pack(msg.reason, msg.promised_epoch, len(text)) + text)
    if isinstance(msg, Request):
        return _frame(MsgType.REQUEST, _REQ.pack(msg.request_id) + _json(msg.body))
    if isinstance(msg, Reply):
        return _frame(MsgType.REPLY, _REPLY.pack(msg.request_id, msg.status) + _json(msg.body))
    raise TypeError(f"not a wire message: {msg!r}")


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
        epoch, durable, count = _APPEND.unpack_from(body)
        off = _APPEND.size
        entries = []
        for i in range(count):
            _need(body, off + 4, "APPEND")
            (n,) = LENGTH.unpack_from(body, off)
            off += 4
            _need(body, off + n, "APPEND")
            try:
                entries.append(decode(body[off : off + n], what=f"APPEND entry {i}"))
            except EntryFormatError as e:
                raise ProtocolError(str(e)) from None
            off += n
        if off != len(body):
            raise ProtocolError(f"APPEND frame has {len(body) - off} trailing bytes after {count} entries")
        return Append(epoch, durable, tuple(entries))
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
