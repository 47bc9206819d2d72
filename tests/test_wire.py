"""Wire format v1: round trips, incremental framing at any split, and a decoder that fails only cleanly.

The decoder faces the network, so whatever bytes arrive it must either produce messages or raise
``ProtocolError`` with a message naming the problem; any other exception would take down the task
serving that connection (or, through a nursery, the whole node).

The frame vectors of docs/protocol.md section 11 are read from the document itself and compared
with the encoder's output, so the document and the code cannot drift apart.
"""

from __future__ import annotations

import random
import re
import struct
import typing
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from walrelay.entry import GENESIS_CHAIN, Entry, encode
from walrelay.errors import ProtocolError
from walrelay.transport import Channel
from walrelay.wire import (
    DEFAULT_MAX_FRAME,
    LENGTH,
    WIRE_VERSION,
    Ack,
    Admit,
    Append,
    Entries,
    Fetch,
    FrameDecoder,
    Hello,
    Message,
    MsgType,
    Prepare,
    Promise,
    Reject,
    RejectReason,
    Reply,
    ReplyStatus,
    Request,
    Role,
    Truncate,
    decode_payload,
)
from walrelay.wire import encode as encode_msg

u64 = st.integers(0, 2**64 - 1)
epochs = st.integers(1, 2**64 - 1)  # a primary's epoch: never 0
chains = st.binary(min_size=16, max_size=16)


@st.composite
def entry_lists(draw: st.DrawFn) -> tuple[Entry, ...]:
    n = draw(st.integers(0, 3))
    prev = draw(st.sampled_from([GENESIS_CHAIN, bytes(range(16))]))
    seq = draw(st.integers(1, 2**63))
    rng = random.Random(draw(st.integers(0, 2**32)))
    out = []
    for i in range(n):
        pages = draw(st.lists(st.integers(1, 2**32 - 2), max_size=3, unique=True))
        e = encode(
            epoch=draw(u64),
            seq=seq + i,
            timestamp_us=draw(u64),
            page_size=512,
            db_pages=draw(st.integers(0, 2**32 - 1)),
            db_checksum=draw(u64),
            frames={p: rng.randbytes(512) for p in pages},
            prev_chain=prev,
        )
        out.append(e)
        prev = e.chain
    return tuple(out)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
request_bodies = st.fixed_dictionaries(
    {"op": st.text(max_size=20)}, optional={"args": st.lists(json_values, max_size=4), "x": json_values}
)

hellos = st.builds(Hello, st.sampled_from(Role), u64, st.text(max_size=40), u64, u64, chains)
appends = entry_lists().flatmap(
    lambda es: st.builds(Append, u64, u64, st.integers(es[-1].seq if es else 0, 2**64 - 1), st.just(es))
)
acks = st.builds(Ack, u64, u64, chains, u64)
rejects = st.builds(Reject, st.sampled_from(RejectReason), u64, st.text(max_size=100))
requests = st.builds(Request, u64, request_bodies)
replies = st.builds(Reply, u64, st.sampled_from(ReplyStatus), json_values)
prepares = st.builds(Prepare, epochs)
promises = st.builds(Promise, epochs, u64, u64, chains, u64, st.booleans())
fetches = st.builds(Fetch, epochs, st.integers(1, 2**64 - 1), st.integers(1, 2**32 - 1))
entries_msgs = st.builds(Entries, st.booleans(), entry_lists())
admits = st.builds(Admit, epochs, u64)
messages: st.SearchStrategy[Message] = st.one_of(
    hellos, appends, acks, rejects, requests, replies, prepares, promises, fetches, entries_msgs, admits
)
MESSAGE_CLASSES = typing.get_args(Message)


def test_messages_strategy_covers_every_message_class() -> None:
    # The fuzz tests below draw from ``messages``: a new message type must be added there too.
    assert len(MESSAGE_CLASSES) == len(MsgType)


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy",
    [hellos, appends, acks, rejects, requests, replies, prepares, promises, fetches, entries_msgs, admits],
    ids=["hello", "append", "ack", "reject", "request", "reply", "prepare", "promise", "fetch", "entries", "admit"],
)
@given(data=st.data())
def test_every_message_type_round_trips(strategy: st.SearchStrategy[Message], data: st.DataObject) -> None:
    msg = data.draw(strategy)
    frame = encode_msg(msg)
    (n,) = LENGTH.unpack_from(frame)
    assert n == len(frame) - 4
    assert frame[4] == WIRE_VERSION
    assert decode_payload(frame[4:]) == msg
    dec = FrameDecoder()
    assert dec.feed(frame) == [msg]
    assert dec.pending == 0


@given(st.lists(messages, max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_decodes_like_feeding_everything_at_once(msgs: list[Message], cuts: list[int]) -> None:
    stream = b"".join(encode_msg(m) for m in msgs)
    whole = FrameDecoder()
    assert whole.feed(stream) == msgs
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    split = FrameDecoder()
    got: list[Message] = []
    for piece in pieces:
        got.extend(split.feed(piece))
    assert got == msgs
    assert split.pending == 0


@given(st.lists(messages, min_size=1, max_size=3))
def test_byte_by_byte_equals_all_at_once(msgs: list[Message]) -> None:
    stream = b"".join(encode_msg(m) for m in msgs)
    dec = FrameDecoder()
    got: list[Message] = []
    boundaries = []
    for i in range(len(stream)):
        out = dec.feed(stream[i : i + 1])
        if out:
            boundaries.append(i + 1)
        got.extend(out)
        assert dec.pending == (i + 1) - (boundaries[-1] if boundaries else 0)
    assert got == msgs
    # Each message pops out exactly when its last byte arrives.
    ends = []
    total = 0
    for m in msgs:
        total += len(encode_msg(m))
        ends.append(total)
    assert boundaries == ends


# -- fuzz: only ProtocolError, ever ---------------------------------------------------------------


def feed_checked(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> list[Message] | ProtocolError:
    """Feed ``data``; return the messages, or the ProtocolError. Any other exception propagates."""
    dec = FrameDecoder(max_frame)
    try:
        return dec.feed(data)
    except ProtocolError as e:
        assert str(e), "a ProtocolError must say what is wrong"
        return e


@given(st.binary(max_size=600), st.sampled_from([DEFAULT_MAX_FRAME, 4096, 64, 2]))
def test_arbitrary_bytes_yield_messages_or_protocol_error(data: bytes, max_frame: int) -> None:
    out = feed_checked(data, max_frame)
    if isinstance(out, list):
        assert all(isinstance(m, MESSAGE_CLASSES) for m in out)


@given(
    st.one_of(st.just(WIRE_VERSION), st.integers(0, 255)),
    st.one_of(st.sampled_from([int(t) for t in MsgType]), st.integers(0, 255)),
    st.binary(max_size=300),
)
def test_framed_arbitrary_payloads_yield_a_message_or_protocol_error(version: int, mtype: int, body: bytes) -> None:
    payload = bytes((version, mtype)) + body
    out = feed_checked(LENGTH.pack(len(payload)) + payload)
    if isinstance(out, list):
        assert len(out) == 1
        assert version == WIRE_VERSION
    elif version != WIRE_VERSION:
        assert "unsupported wire version" in str(out)


@given(
    messages,
    st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_flipped_bytes_in_a_valid_frame_yield_a_message_or_protocol_error(
    msg: Message, flips: list[tuple[int, int]]
) -> None:
    frame = bytearray(encode_msg(msg))
    for pos, mask in flips:
        frame[pos % len(frame)] ^= mask
    feed_checked(bytes(frame))
    feed_checked(bytes(frame), max_frame=len(frame))


@given(messages, st.integers(0, 2**20))
def test_truncated_frame_waits_for_more_and_never_yields_a_message(msg: Message, cut: int) -> None:
    frame = encode_msg(msg)
    k = cut % len(frame)  # strictly shorter than the frame
    dec = FrameDecoder()
    assert dec.feed(frame[:k]) == []
    assert dec.pending == k
    # The rest completes it.
    assert dec.feed(frame[k:]) == [msg]


@given(messages, st.binary(min_size=1, max_size=40))
def test_body_with_extra_or_missing_bytes_is_refused_or_reparsed_cleanly(msg: Message, junk: bytes) -> None:
    frame = encode_msg(msg)
    body = frame[6:]
    for new_body in (body + junk, body[: max(0, len(body) - len(junk))]):
        payload = frame[4:6] + new_body
        out = feed_checked(LENGTH.pack(len(payload)) + payload)
        if not isinstance(msg, (Request, Reply)):
            # Fixed or self-delimiting layouts: a wrong length is always an error.
            assert isinstance(out, ProtocolError), f"{type(msg).__name__} with a wrong body length decoded"


FIXED_SIZE = {MsgType.PREPARE: 8, MsgType.PROMISE: 49, MsgType.FETCH: 20, MsgType.ADMIT: 16, MsgType.TRUNCATE: 32}


@given(st.sampled_from(sorted(FIXED_SIZE)), st.data())
def test_fixed_size_bodies_of_the_right_length_decode_or_name_the_field(mtype: MsgType, data: st.DataObject) -> None:
    # Random bodies of the exact size pass the length check, so they reach the range checks.
    body = data.draw(st.binary(min_size=FIXED_SIZE[mtype], max_size=FIXED_SIZE[mtype]))
    out = feed_checked(raw_frame(WIRE_VERSION, mtype, body))
    if isinstance(out, ProtocolError):
        assert f"{mtype.name} field " in str(out)
    else:
        assert len(out) == 1 and encode_msg(out[0]) == raw_frame(WIRE_VERSION, mtype, body)


# -- errors name the problem ----------------------------------------------------------------------


def raw_frame(version: int, mtype: int, body: bytes) -> bytes:
    payload = bytes((version, mtype)) + body
    return LENGTH.pack(len(payload)) + payload


def error_of(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> str:
    with pytest.raises(ProtocolError) as info:
        FrameDecoder(max_frame).feed(data)
    return str(info.value)


def good_ack() -> bytes:
    return encode_msg(Ack(1, 2, bytes(16), 1))


def good_entry() -> Entry:
    return encode(
        epoch=1,
        seq=1,
        timestamp_us=0,
        page_size=512,
        db_pages=1,
        db_checksum=0,
        frames={1: bytes(512)},
        prev_chain=GENESIS_CHAIN,
    )


def good_append() -> bytes:
    return encode_msg(Append(1, 0, 1, (good_entry(),)))


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version_is_named(version: int) -> None:
    frame = bytearray(good_ack())
    frame[4] = version
    assert f"unsupported wire version {version}" in error_of(bytes(frame))


@pytest.mark.parametrize("mtype", [0x00, 0x02, 0x13, 0x2F, 0x36, 0x7F, 0xFF])
def test_unknown_type_is_named(mtype: int) -> None:
    assert f"unknown message type {mtype:#04x}" in error_of(raw_frame(WIRE_VERSION, mtype, b""))


@pytest.mark.parametrize("max_frame", [2, 100, DEFAULT_MAX_FRAME])
def test_length_over_max_frame_is_refused_before_the_body_arrives(max_frame: int) -> None:
    # Only the 4-byte prefix has arrived: the decoder must not wait for (or buffer) a huge frame.
    msg = error_of(LENGTH.pack(max_frame + 1), max_frame)
    assert "exceeds the maximum" in msg
    assert str(max_frame + 1) in msg and str(max_frame) in msg
    # At the limit it is fine (just incomplete).
    assert FrameDecoder(max_frame).feed(LENGTH.pack(max_frame)) == []


@pytest.mark.parametrize("n", [0, 1])
def test_frame_too_short_for_version_and_type(n: int) -> None:
    assert "too short" in error_of(LENGTH.pack(n) + bytes([WIRE_VERSION])[:n])


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (good_ack()[:-1], None),  # incomplete: no error yet, see below
        (raw_frame(WIRE_VERSION, MsgType.ACK, bytes(39)), "ACK frame body is 39 bytes, expected 40"),
        (raw_frame(WIRE_VERSION, MsgType.ACK, bytes(41)), "ACK frame body is 41 bytes, expected 40"),
        (raw_frame(WIRE_VERSION, MsgType.HELLO, bytes(10)), "HELLO frame body is 10 bytes"),
        (raw_frame(WIRE_VERSION, MsgType.HELLO, bytes(43)), "invalid role 0"),
        (raw_frame(WIRE_VERSION, MsgType.HELLO, b"\x01" + bytes(40) + b"\x00\x01\xff"), "object name"),
        (raw_frame(WIRE_VERSION, MsgType.REJECT, b"\x09" + bytes(10)), "unknown reason 9"),
        (raw_frame(WIRE_VERSION, MsgType.REPLY, bytes(8) + b"\x07null"), "unknown status 7"),
        (raw_frame(WIRE_VERSION, MsgType.REQUEST, bytes(8) + b"{not json"), "invalid JSON"),
        (raw_frame(WIRE_VERSION, MsgType.REQUEST, bytes(8) + b"\xff\xfe"), "invalid JSON"),
        (raw_frame(WIRE_VERSION, MsgType.REQUEST, bytes(8) + b"[1,2]"), 'string "op"'),
        (raw_frame(WIRE_VERSION, MsgType.REQUEST, bytes(8) + b'{"op":1}'), 'string "op"'),
        (raw_frame(WIRE_VERSION, MsgType.APPEND, struct.pack(">QQQI", 1, 0, 1, 1)), "APPEND frame body"),
        (raw_frame(WIRE_VERSION, MsgType.APPEND, struct.pack(">QQQI", 1, 0, 0, 0) + b"x"), "1 trailing bytes"),
    ],
)
def test_malformed_bodies_are_named(data: bytes, needle: str | None) -> None:
    if needle is None:
        assert FrameDecoder().feed(data) == []
    else:
        assert needle in error_of(data)


def promise_body(voter: int = 1) -> bytes:
    return struct.pack(">QQQ16sQB", 2, 1, 1, bytes(16), 0, voter)


@pytest.mark.parametrize(
    ("mtype", "body", "needle"),
    [
        (MsgType.PREPARE, bytes(7), "PREPARE frame body is 7 bytes, expected 8"),
        (MsgType.PREPARE, struct.pack(">Q", 1) + b"x", "PREPARE frame body is 9 bytes, expected 8"),
        (MsgType.PREPARE, struct.pack(">Q", 0), "PREPARE field epoch is 0"),
        (MsgType.PROMISE, promise_body()[:-1], "PROMISE frame body is 48 bytes, expected 49"),
        (MsgType.PROMISE, promise_body() + b"x", "PROMISE frame body is 50 bytes, expected 49"),
        (MsgType.PROMISE, promise_body(voter=2), "PROMISE field voter is 2, must be 0 or 1"),
        (MsgType.PROMISE, promise_body(voter=255), "PROMISE field voter is 255"),
        (MsgType.PROMISE, bytes(8) + promise_body()[8:], "PROMISE field epoch is 0"),
        (MsgType.FETCH, struct.pack(">QQI", 2, 1, 1)[:-1], "FETCH frame body is 19 bytes, expected 20"),
        (MsgType.FETCH, struct.pack(">QQI", 2, 1, 1) + b"x", "FETCH frame body is 21 bytes, expected 20"),
        (MsgType.FETCH, struct.pack(">QQI", 2, 0, 1), "FETCH field from_seq is 0, must be >= 1"),
        (MsgType.FETCH, struct.pack(">QQI", 2, 1, 0), "FETCH field max_bytes is 0, must be > 0"),
        (MsgType.FETCH, struct.pack(">QQI", 0, 1, 1), "FETCH field epoch is 0"),
        (MsgType.ENTRIES, b"\x01\x00\x00\x00", "ENTRIES frame body is 4 bytes, needs at least 5"),
        (MsgType.ENTRIES, b"", "ENTRIES frame body is 0 bytes, needs at least 5"),
        (MsgType.ENTRIES, struct.pack(">BI", 1, 0) + b"x", "ENTRIES frame has 1 trailing bytes after 0 entries"),
        (MsgType.ENTRIES, struct.pack(">BI", 1, 1), "ENTRIES frame body is 5 bytes, needs at least 9"),
        (MsgType.ENTRIES, struct.pack(">BI", 2, 0), "ENTRIES field final is 2, must be 0 or 1"),
        (MsgType.ADMIT, bytes(15), "ADMIT frame body is 15 bytes, expected 16"),
        (MsgType.ADMIT, struct.pack(">QQ", 2, 1) + b"x", "ADMIT frame body is 17 bytes, expected 16"),
        (MsgType.ADMIT, struct.pack(">QQ", 0, 1), "ADMIT field epoch is 0"),
        (MsgType.TRUNCATE, bytes(31), "TRUNCATE frame body is 31 bytes, expected 32"),
        (MsgType.TRUNCATE, struct.pack(">QQ16s", 0, 1, bytes(16)), "TRUNCATE field epoch is 0"),
        (MsgType.TRUNCATE, struct.pack(">QQ16s", 1, 0, b"x" * 16), "must carry the genesis chain"),
    ],
)
def test_malformed_failover_bodies_name_the_message_and_field(mtype: MsgType, body: bytes, needle: str) -> None:
    assert needle in error_of(raw_frame(WIRE_VERSION, mtype, body))


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        (Prepare(0), "PREPARE field epoch is 0"),
        (Promise(0, 0, 0, bytes(16), 0, True), "PROMISE field epoch is 0"),
        (Promise(1, 0, 0, bytes(15), 0, True), "PROMISE last_chain is 15 bytes"),
        (Fetch(1, 0, 1), "FETCH field from_seq is 0"),
        (Fetch(1, 1, 0), "FETCH field max_bytes is 0"),
        (Admit(0, 0), "ADMIT field epoch is 0"),
        (Truncate(0, 1, bytes(16)), "TRUNCATE field epoch is 0"),
        (Truncate(1, 0, b"x" * 16), "must carry the genesis chain"),
        (Truncate(1, 1, bytes(15)), "TRUNCATE chain is 15 bytes"),
    ],
)
def test_encoder_refuses_what_the_decoder_would_refuse(msg: Message, needle: str) -> None:
    # Refused at the sender, where the bug is, instead of as a protocol error at the peer.
    with pytest.raises(ValueError, match=needle):
        encode_msg(msg)


def test_corrupt_entry_inside_entries_is_a_protocol_error_naming_the_entry() -> None:
    frame = bytearray(encode_msg(Entries(True, (good_entry(),))))
    frame[-10] ^= 0x01
    msg = error_of(bytes(frame))
    assert "ENTRIES entry 0" in msg and "crc32" in msg


def test_corrupt_entry_inside_append_is_a_protocol_error_naming_the_entry() -> None:
    frame = bytearray(good_append())
    frame[-10] ^= 0x01  # inside the entry's frames: the entry's crc32 no longer matches
    msg = error_of(bytes(frame))
    assert "APPEND entry 0" in msg and "crc32" in msg


def test_entry_of_an_unknown_format_version_inside_append_is_a_protocol_error() -> None:
    frame = bytearray(good_append())
    entry_at = 4 + 2 + 28 + 4  # length prefix, version+type, APPEND header, entry length
    frame[entry_at + 5] = 9  # entry format version 9
    msg = error_of(bytes(frame))
    assert "unsupported entry format version 9" in msg


@pytest.mark.parametrize("mtype", [MsgType.REQUEST, MsgType.REPLY], ids=["request", "reply"])
def test_deeply_nested_json_is_a_protocol_error(mtype: MsgType) -> None:
    # A few hundred kilobytes of "[" fit easily in one frame. json.loads raises RecursionError
    # (not a ValueError) on it, which must still surface as ProtocolError, not crash the node.
    head = bytes(8) if mtype is MsgType.REQUEST else bytes(8) + bytes([ReplyStatus.OK])
    data = raw_frame(WIRE_VERSION, mtype, head + b"[" * 200_000)
    assert "invalid JSON" in error_of(data)


def test_one_bad_frame_after_good_ones_still_raises() -> None:
    good = encode_msg(Ack(3, 4, bytes(16), 2))
    dec = FrameDecoder()
    assert dec.feed(good) == [Ack(3, 4, bytes(16), 2)]
    with pytest.raises(ProtocolError, match="unknown message type"):
        dec.feed(good + raw_frame(WIRE_VERSION, 0x55, b""))


# -- test vectors: docs/protocol.md section 11 ----------------------------------------------------

PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

# E1 of docs/protocol.md 3.7, and the frames section 11 lists, keyed by the row's label.
E1 = encode(
    epoch=1,
    seq=1,
    timestamp_us=1_700_000_000_000_000,
    page_size=512,
    db_pages=1,
    db_checksum=0x57C56609C447AAC7,
    frames={1: b"\x01" * 512},
    prev_chain=GENESIS_CHAIN,
)
FLIGHTS = "flights"
VECTORS: dict[str, Message] = {
    "HELLO primary, node 0, object `flights`, epoch 1, stored 0 (56 bytes total)": Hello(
        Role.PRIMARY, 0, FLIGHTS, 1, 0, GENESIS_CHAIN
    ),
    "HELLO replica, node 2, `flights`, promised 1, stored 0, genesis chain": Hello(
        Role.REPLICA, 2, FLIGHTS, 1, 0, GENESIS_CHAIN
    ),
    "HELLO replica, node 2, `flights`, promised 1, stored 1, chain of E1": Hello(
        Role.REPLICA, 2, FLIGHTS, 1, 1, E1.chain
    ),
    "APPEND epoch 1, durable 0, log_end 1, [E1] (626 bytes total)": Append(1, 0, 1, (E1,)),
    "ACK promised 1, stored_through 1, chain of E1, log_epoch 1 (46 bytes total)": Ack(1, 1, E1.chain, 1),
    'REJECT STALE_EPOCH, promised 2, "fenced"': Reject(RejectReason.STALE_EPOCH, 2, "fenced"),
    'REQUEST id 1, `{"args":[],"op":"__status__"}`': Request(1, {"args": [], "op": "__status__"}),
    'REPLY id 7, UNKNOWN, `{"message":"m","type":"NotDurable"}`': Reply(
        7, ReplyStatus.UNKNOWN, {"message": "m", "type": "NotDurable"}
    ),
    "PREPARE epoch 2": Prepare(2),
    "PROMISE epoch 2, log_epoch 1, last_seq 1, chain of E1, truncated 0, voter (55 bytes total)": Promise(
        2, 1, 1, E1.chain, 0, True
    ),
    "FETCH epoch 2, from_seq 1, max_bytes 1 MiB": Fetch(2, 1, 1 << 20),
    "ENTRIES final, no entries": Entries(True, ()),
    "ENTRIES final, [E1] (603 bytes total)": Entries(True, (E1,)),
    "ADMIT epoch 2, upto 1": Admit(2, 1),
    "TRUNCATE epoch 2, through 1, chain of E1": Truncate(2, 1, E1.chain),
}
NAMED_ENTRIES = {"E1": E1}


def documented_frames() -> dict[str, bytes]:
    """The **Frames** table of section 11: label -> bytes, with ``57524c45…(E1, 588 bytes)`` expanded."""

    def expand(m: re.Match[str]) -> str:
        raw = NAMED_ENTRIES[m[2]].raw
        assert raw.hex().startswith(m[1]) and len(raw) == int(m[3]), f"elided entry {m[0]} is not {m[2]}"
        return raw.hex()

    text = PROTOCOL_MD.read_text(encoding="utf-8")
    table = text.split("**Frames**", 1)[1].split("\n\n", 2)[1]
    rows: dict[str, bytes] = {}
    for line in table.splitlines()[2:]:  # skip the header and the |---| line
        label, hexed = (cell.strip() for cell in line.strip("|").rsplit("|", 1))
        hexed = re.sub(r"([0-9a-f]*)…\((\w+), (\d+) bytes\)", expand, hexed.strip("`"))
        rows[label] = bytes.fromhex(hexed.replace(" ", ""))
    return rows


def test_every_documented_frame_vector_is_checked_here() -> None:
    assert sorted(documented_frames()) == sorted(VECTORS)


@pytest.mark.parametrize("label", list(VECTORS))
def test_documented_frame_vectors_match_the_encoder_and_decoder(label: str) -> None:
    frame = documented_frames()[label]
    msg = VECTORS[label]
    assert encode_msg(msg) == frame
    assert FrameDecoder().feed(frame) == [msg]
    sizes = re.search(r"\((\d+) bytes total\)", label)
    if sizes:
        assert len(frame) == int(sizes[1])


# -- Channel over an in-memory stream -------------------------------------------------------------


async def test_channel_truncated_frame_then_eof_is_a_protocol_error() -> None:
    left, right = trio.testing.memory_stream_pair()
    frame = encode_msg(Ack(1, 2, bytes(16), 1))
    await left.send_all(frame + frame[:-3])
    await left.aclose()
    chan = Channel(right)
    assert await chan.receive() == Ack(1, 2, bytes(16), 1)
    with pytest.raises(ProtocolError, match="connection closed inside a frame") as info:
        await chan.receive()
    assert f"{len(frame) - 3} bytes pending" in str(info.value)


async def test_channel_clean_eof_returns_none_and_messages_survive_chunking() -> None:
    left, right = trio.testing.memory_stream_pair()
    msgs: list[Message] = [
        Hello(Role.REPLICA, 2, "obj", 7, 9, bytes(range(16))),
        Ack(7, 9, bytes(range(16)), 5),
        Request(5, {"op": "get", "args": [1, "two", None]}),
        Reply(5, ReplyStatus.UNKNOWN, {"type": "NotDurable"}),
    ]
    stream = b"".join(encode_msg(m) for m in msgs)
    for i in range(0, len(stream), 7):  # deliver in 7-byte pieces
        await left.send_all(stream[i : i + 7])
    await left.aclose()
    chan = Channel(right)
    got = [await chan.receive() for _ in msgs]
    assert got == msgs
    assert await chan.receive() is None


async def test_channel_send_then_receive_round_trips() -> None:
    left, right = trio.testing.memory_stream_pair()
    a, b = Channel(left), Channel(right)
    msg = Reject(RejectReason.STALE_EPOCH, 9, "promised 9")
    await a.send(msg)
    assert await b.receive() == msg


def test_append_log_end_below_its_last_entry_is_refused_both_ways() -> None:
    e = good_entry()
    with pytest.raises(ValueError, match="log_end 0 is below"):
        encode_msg(Append(1, 0, 0, (e,)))
    frame = bytearray(encode_msg(Append(1, 0, e.seq, (e,))))
    frame[6 + 16 : 6 + 24] = (0).to_bytes(8, "big")  # log_end sits after epoch and durable_seq
    with pytest.raises(ProtocolError, match="log_end 0 is below"):
        decode_payload(bytes(frame[4:]))


def test_request_bodies_are_canonical_json_and_refuse_what_json_cannot_carry() -> None:
    """REQUEST and REPLY bodies are JSON with sorted keys and no whitespace (the same message is
    the same bytes), and NaN or infinity, which JSON has no words for, is refused when encoding."""
    frame = encode_msg(Request(7, {"op": "put", "args": [1, "v"]}))
    assert frame[4 + 2 + 8 :].endswith(b'{"args":[1,"v"],"op":"put"}')
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_msg(Request(8, {"op": "put", "args": [1, float("nan")]}))
    assert decode_payload(frame[4:]) == Request(7, {"args": [1, "v"], "op": "put"})


def test_an_entry_length_that_runs_past_the_body_is_named_and_a_short_reject_too() -> None:
    e = encode(
        epoch=1, seq=1, timestamp_us=1, page_size=512, db_pages=1, db_checksum=0,
        frames={1: bytes(512)}, prev_chain=GENESIS_CHAIN,
    )  # fmt: skip
    payload = bytearray(encode_msg(Append(1, 0, 1, (e,)))[4:])
    # The entry's length prefix says 8 bytes more than the body holds.
    at = len(payload) - len(e.raw) - 4
    struct.pack_into(">I", payload, at, len(e.raw) + 8)
    with pytest.raises(ProtocolError, match=rf"APPEND frame body is {len(payload) - 2} bytes, needs at least"):
        decode_payload(bytes(payload))
    reject = encode_msg(Reject(RejectReason.STALE_EPOCH, 3, "why"))[4:]
    with pytest.raises(ProtocolError, match="REJECT frame body is 3 bytes, needs at least"):
        decode_payload(reject[:5])
    with pytest.raises(ProtocolError, match="REJECT"):
        decode_payload(reject + b"x")  # a message longer than its length says
