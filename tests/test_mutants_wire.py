"""Tests written for survivors of mutation testing of ``walrelay.wire`` (scripts/mutate.py).

Each test names the bug (the mutant) it stands for; each was seen failing with that mutant
planted in a copy of the package.
"""

from __future__ import annotations

import re

import pytest

from walrelay.entry import GENESIS_CHAIN
from walrelay.errors import ProtocolError
from walrelay.wire import (
    Append,
    Fetch,
    FrameDecoder,
    Hello,
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


@pytest.mark.parametrize(
    ("fetch", "message"),
    [
        (Fetch(1, 0, 10), "FETCH field from_seq is 0, must be >= 1 (seqs start at 1)"),
        (Fetch(1, 1, 0), "FETCH field max_bytes is 0, must be > 0 (an answer could never make progress)"),
    ],
)
def test_a_fetch_out_of_range_is_refused_with_its_reason(fetch: Fetch, message: str) -> None:
    """Bugs: FETCH's range refusals garbled (mutants ``"XXFETCH field ...XX"``): the sender's
    ValueError and the receiver's ProtocolError must say which field is wrong and why."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        encode_msg(fetch)
    good = encode_msg(Fetch(1, 1, 10))[4:]
    body = bytearray(good)
    body[2:] = fetch.epoch.to_bytes(8, "big") + fetch.from_seq.to_bytes(8, "big") + fetch.max_bytes.to_bytes(4, "big")
    assert len(body) == len(good)
    with pytest.raises(ProtocolError, match=f"^{re.escape(message)}$"):
        decode_payload(bytes(body))


def test_a_hello_whose_name_length_disagrees_with_its_body_names_the_hello() -> None:
    """Bug: the HELLO length check reporting no message name (mutant ``_exact(..., None)``): the
    refusal of a malformed HELLO would read "None frame body is ...", naming no message."""
    payload = encode_msg(Hello(Role.REPLICA, 3, "obj", 1, 0))[4:]
    with pytest.raises(ProtocolError, match=r"^HELLO frame body is 47 bytes, expected 46$"):
        decode_payload(payload + b"x")


def test_short_or_overlong_bodies_are_refused_naming_their_message() -> None:
    """Bugs: the length checks of APPEND and REJECT naming no message or a garbled one (mutants
    ``_need(body, _APPEND.size, None)``, ``"XXAPPENDXX"``, ``"append"``, ``"XXREJECTXX"``):
    the refusal is the only record of which frame a peer got wrong."""
    append = encode_msg(Append(1, 0, 0, ()))[4:]
    with pytest.raises(ProtocolError, match=r"^APPEND frame body is 27 bytes, needs at least 28$"):
        decode_payload(append[:-1])
    reject = encode_msg(Reject(RejectReason.DIVERGED, 2, "ab"))[4:]
    with pytest.raises(ProtocolError, match=r"^REJECT frame body is 14 bytes, expected 13$"):
        decode_payload(reject + b"x")


def test_a_truncate_through_zero_off_the_genesis_chain_is_refused_by_the_receiver_naming_it() -> None:
    """Bug: the receiver's refusal of TRUNCATE through 0 with another chain garbled (mutants
    ``"XXTRUNCATE ...XX"``, ``"truncate ..."``): it must read as the sender's own check does."""
    payload = bytearray(encode_msg(Truncate(1, 0, GENESIS_CHAIN))[4:])
    payload[-1] = 1
    message = "TRUNCATE through 0 (the empty log) must carry the genesis chain"
    with pytest.raises(ProtocolError, match=f"^{re.escape(message)}$"):
        decode_payload(bytes(payload))


def test_a_short_request_is_refused_naming_the_request() -> None:
    """Bug: the REQUEST length check naming no message or a garbled one (mutants ``_need(body,
    _REQ.size, None)``, ``"XXREQUESTXX"``): a client's truncated request must be named in the
    refusal."""
    payload = encode_msg(Request(1, {"op": "x"}))[4:]
    with pytest.raises(ProtocolError, match=r"^REQUEST frame body is 3 bytes, needs at least 8$"):
        decode_payload(payload[:5])


def test_a_request_with_a_bad_body_is_refused_naming_the_request() -> None:
    """Bugs: a REQUEST's bad JSON or a body without a string "op" refused under no name or a
    garbled one (mutants ``_load_json(..., None)``, ``"XXREQUESTXX"``, ``"request"``, and the
    garbled "op" message): the client is told what it sent wrong."""
    header = encode_msg(Request(1, {"op": "x"}))[4:14]
    with pytest.raises(ProtocolError, match=r"^REQUEST frame carries invalid JSON: "):
        decode_payload(header + b"{")
    with pytest.raises(ProtocolError, match=r'^REQUEST body must be a JSON object with a string "op"$'):
        decode_payload(header + b"[1]")


def test_a_bad_reply_is_refused_naming_the_reply() -> None:
    """Bugs: a REPLY's length check, JSON check or status check naming no message or a garbled
    one (mutants ``_need(body, _REPLY.size, None)``, ``"XXREPLYXX"``, and their kin): the
    client is told which answer it could not read."""
    payload = encode_msg(Reply(1, ReplyStatus.OK, {}))[4:]
    with pytest.raises(ProtocolError, match=r"^REPLY frame body is 3 bytes, needs at least 9$"):
        decode_payload(payload[:5])
    with pytest.raises(ProtocolError, match=r"^REPLY frame carries invalid JSON: "):
        decode_payload(payload[:11] + b"{")
    with pytest.raises(ProtocolError, match=r"^REPLY has unknown status 99$"):
        decode_payload(payload[:10] + bytes([99]) + payload[11:])


def test_a_reject_message_is_cut_to_what_its_length_field_holds() -> None:
    """Bug: the REJECT text cut one byte too long (mutant ``[:65536]``): a 64 KiB message would
    no longer fit its u16 length and the refusal could not be sent at all."""
    [decoded] = FrameDecoder().feed(encode_msg(Reject(RejectReason.DIVERGED, 2, "x" * 70000)))
    assert isinstance(decoded, Reject) and decoded.message == "x" * 65535


def test_the_sender_refuses_its_own_bad_fetch_and_truncate_and_non_messages() -> None:
    """Bugs: encode's checks blinded or garbled (mutants ``_fetch_problem(None, ...)``, the
    ``"XXTRUNCATE ...XX"`` / ``"truncate ..."`` ValueError, ``TypeError(None)``): a FETCH of
    epoch 0 would go out for the peer to refuse, and the caller's errors would not say why."""
    with pytest.raises(ValueError, match=r"^FETCH field epoch is 0, must be >= 1$"):
        encode_msg(Fetch(0, 1, 10))
    message = "TRUNCATE through 0 (the empty log) must carry the genesis chain"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        encode_msg(Truncate(1, 0, bytes([1]) * 16))
    with pytest.raises(TypeError, match=r"^not a wire message: 'hello'$"):
        encode_msg("hello")  # type: ignore[arg-type]


def test_a_reject_whose_text_is_not_utf8_is_still_a_reject() -> None:
    """Bugs: the REJECT text decoded strictly, or with a misspelt error handler (mutants
    ``.decode("utf-8")``, ``"XXreplaceXX"``, ``"REPLACE"``): a replica's refusal with a garbled
    human-readable text would become a decode crash, and the primary would lose the reason and the
    promised epoch it carries (which fences it, R-7.3-1). The text is for people; the fields rule."""
    payload = encode_msg(Reject(RejectReason.STALE_EPOCH, 7, "ab"))[4:]
    decoded = decode_payload(payload[:-2] + b"\xff\xfe")
    assert decoded == Reject(RejectReason.STALE_EPOCH, 7, "\ufffd\ufffd")
