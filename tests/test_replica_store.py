"""ReplicaStore: what a replica's disk holds after appends, truncations and state saves, read back.

Failover (issue 4) adds two things a restarted replica must get back exactly: a divergent suffix
that a newer epoch replaced stays replaced, and ``log_epoch``/``voter`` survive. The node-level test
drives a real ReplicaNode over the in-memory transport and then reads the disk with a fresh store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from test_replica_state import LOG, make_log
from walrelay.entry import GENESIS_CHAIN
from walrelay.placement import EpochAllocator
from walrelay.replica_node import ReplicaNode
from walrelay.replica_store import ReplicaStore, StoreCorruptError
from walrelay.statefile import encode_state
from walrelay.transport import Channel, MemoryTransport
from walrelay.wire import Ack, Admit, Append, Entries, Fetch, Hello, Prepare, Reject, RejectReason, Role
from walrelay.wire import Promise as PromiseMsg
from walrelay_chaos.pace import budget


def reopen(tmp_path: Path) -> ReplicaStore:
    return ReplicaStore(str(tmp_path), "obj")


def test_a_fresh_store_says_so_and_holds_nothing(tmp_path: Path) -> None:
    s = reopen(tmp_path)
    loaded = s.load()
    assert loaded.fresh and (loaded.last_seq, loaded.last_chain, loaded.log_epoch) == (0, GENESIS_CHAIN, 0)
    s.save_state(1, 0, 0, False)
    s.close()
    again = reopen(tmp_path).load()
    assert not again.fresh and (again.promised_epoch, again.voter) == (1, False)


def test_truncate_after_then_append_survives_a_reload(tmp_path: Path) -> None:
    s = reopen(tmp_path)
    s.load()
    s.append_durably(tuple(LOG[:5]))
    s.truncate_after(2)
    other = make_log(3, epoch=3, salt=4, prev=LOG[1].chain, first=3)
    s.append_durably(tuple(other))
    s.truncate_after(9)  # nothing held after 9: a no-op
    s.save_state(3, 0, 3, True)
    s.close()
    t = reopen(tmp_path)
    loaded = t.load()
    assert loaded.chains == {1: LOG[0].chain, 2: LOG[1].chain, **{e.seq: e.chain for e in other}}
    assert (loaded.last_seq, loaded.log_epoch, loaded.torn_bytes_dropped) == (5, 3, 0)
    assert [e.seq for e in t.read_entries(1)] == [1, 2, 3, 4, 5]
    t.truncate_after(0)
    t.close()
    assert reopen(tmp_path).load().last_seq == 0


def test_a_state_file_without_its_checksum_is_refused_not_obeyed(tmp_path: Path) -> None:
    """Plain JSON (as written before issue 17, or by hand) carries no checksum: a bit flip in it
    could not be told from a promise, so it is refused like any damaged state."""
    s = reopen(tmp_path)
    Path(s.state_path).write_text(json.dumps({"promised_epoch": 4, "archived_through": 0}))
    with pytest.raises(StoreCorruptError, match=r"unreadable replica state: .*state\.json: not a state file"):
        s.load()


@pytest.mark.parametrize(
    "state",
    [
        {"promised_epoch": 1, "archived_through": 0, "log_epoch": 0, "voter": "yes"},
        {"promised_epoch": 1, "archived_through": 0, "log_epoch": "x", "voter": True},
        {"promised_epoch": 2**64, "archived_through": 0, "log_epoch": 0, "voter": True},
        {"promised_epoch": True, "archived_through": 0, "log_epoch": 0, "voter": True},
        {"promised_epoch": 1},
    ],
)
def test_a_checksummed_state_with_wrong_fields_is_refused_naming_it(tmp_path: Path, state: dict[str, object]) -> None:
    s = reopen(tmp_path)
    Path(s.state_path).write_bytes(encode_state(state))
    with pytest.raises(StoreCorruptError, match=r"unreadable replica state: .*state\.json"):
        s.load()


@settings(max_examples=200)
@given(data=st.data())
def test_any_flipped_byte_in_a_state_file_is_detected(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Issue 17: one flipped character (promised_epoch 1 -> 19) used to be obeyed silently."""
    s = reopen(tmp_path_factory.mktemp("flip"))
    s.save_state(promised_epoch=data.draw(st.integers(0, 2**64 - 1)), archived_through=7, log_epoch=3, voter=True)
    raw = bytearray(Path(s.state_path).read_bytes())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    Path(s.state_path).write_bytes(bytes(raw))
    with pytest.raises(StoreCorruptError, match=r"unreadable replica state"):
        s.load()


async def test_node_replaces_a_divergent_suffix_durably_and_saves_the_log_epoch(tmp_path: Path) -> None:
    old = make_log(4, epoch=1, salt=1)
    new = make_log(3, epoch=2, salt=2, prev=old[0].chain, first=2)
    transport = MemoryTransport()
    node = ReplicaNode(0, str(tmp_path), transport)
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:0")
            for epoch, batch in ((1, old), (2, new)):
                chan = Channel(await transport.connect(address))
                await chan.send(Hello(Role.PRIMARY, 0, "obj", epoch, 0))
                assert isinstance(await chan.receive(), Hello)
                await chan.send(Append(epoch, 0, batch[-1].seq, tuple(batch)))
                with trio.fail_after(budget(10)):
                    ack = await chan.receive()
                assert ack == Ack(epoch, batch[-1].seq, batch[-1].chain, epoch)
                await chan.aclose()
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    loaded = ReplicaStore(str(tmp_path), "obj").load()
    assert loaded.chains == {1: old[0].chain, **{e.seq: e.chain for e in new}}
    assert (loaded.promised_epoch, loaded.log_epoch, loaded.voter) == (2, 2, True)


async def test_node_answers_prepare_fetch_and_admit_and_persists_them(tmp_path: Path) -> None:
    """The recovery exchange against a real node: PROMISE after the promise is on disk, ENTRIES
    in frames bounded by max_bytes, REJECT for a fenced primary's FETCH, and a durable ADMIT."""
    log = make_log(5, epoch=1, salt=3)
    # A replica that rejoined after losing its disk: not a voter until a serving primary admits it.
    ReplicaStore(str(tmp_path), "obj").save_state(1, 0, 0, False)
    transport = MemoryTransport()
    node = ReplicaNode(2, str(tmp_path), transport)
    got: list[object] = []
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:0")
            chan = Channel(await transport.connect(address))
            await chan.send(Hello(Role.PRIMARY, 0, "obj", 1, 0))
            assert isinstance(await chan.receive(), Hello)
            await chan.send(Append(1, 0, 5, tuple(log)))
            got.append(await chan.receive())
            await chan.aclose()
            chan = Channel(await transport.connect(address))  # a recovering primary, epoch 3
            await chan.send(Hello(Role.PRIMARY, 0, "obj", 3, 0))
            assert isinstance(await chan.receive(), Hello)
            await chan.send(Prepare(3))
            got.append(await chan.receive())
            await chan.send(Fetch(3, 2, 2 * (4 + log[0].size)))  # room for two entries as framed (4 + size each)
            got.append(await chan.receive())
            await chan.send(Fetch(3, 4, 10**6))
            got.append(await chan.receive())
            await chan.send(Fetch(2, 1, 10**6))  # below the promise: fenced
            got.append(await chan.receive())
            await chan.send(Append(3, 0, 5, (log[4],)))  # adopt epoch 3's (identical) log
            got.append(await chan.receive())
            await chan.send(Admit(3, 5))
            await chan.send(Prepare(3))  # asked again: answers with the current state
            got.append(await chan.receive())
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    assert got[0] == Ack(1, 5, log[4].chain, 1)
    assert got[1] == PromiseMsg(3, 1, 5, log[4].chain, 0, False)
    assert got[2] == Entries(False, (log[1], log[2]))
    assert got[3] == Entries(True, (log[3], log[4]))
    assert isinstance(got[4], Reject) and got[4].reason is RejectReason.STALE_EPOCH and got[4].promised_epoch == 3
    assert got[5] == Ack(3, 5, log[4].chain, 3)
    assert got[6] == PromiseMsg(3, 3, 5, log[4].chain, 0, True)
    loaded = ReplicaStore(str(tmp_path), "obj").load()
    assert (loaded.promised_epoch, loaded.log_epoch, loaded.voter) == (3, 3, True)


async def test_with_placement_a_new_object_starts_as_a_non_voter_promising_the_highest_epoch(
    tmp_path: Path,
) -> None:
    """A replica cannot tell "never heard of it" from "lost my disk" (docs/failover.md)."""
    placement = EpochAllocator(tmp_path / "placement")
    for _ in range(3):
        placement.allocate("obj")
    got: list[object] = []
    transport = MemoryTransport()
    node = ReplicaNode(1, str(tmp_path / "data"), transport, placement)
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:0")
            chan = Channel(await transport.connect(address))
            await chan.send(Hello(Role.PRIMARY, 0, "obj", 2, 0))
            got.append(await chan.receive())
            await chan.send(Append(2, 0, 1, (LOG[0],)))  # a stale primary's entry
            got.append(await chan.receive())
            await chan.send(Prepare(4))
            got.append(await chan.receive())
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    hello, reject, promise = got
    assert isinstance(hello, Hello) and (hello.epoch, hello.stored_through) == (3, 0)
    assert isinstance(reject, Reject) and reject.reason is RejectReason.STALE_EPOCH and reject.promised_epoch == 3
    assert promise == PromiseMsg(4, 0, 0, GENESIS_CHAIN, 0, False)
    loaded = ReplicaStore(str(tmp_path / "data"), "obj").load()
    assert (loaded.promised_epoch, loaded.voter, loaded.last_seq) == (4, False, 0)


@pytest.mark.parametrize("edit", [b"\r", b" \n", b"\t"])
def test_a_state_file_that_parses_to_the_same_state_but_is_not_canonical_is_refused(
    tmp_path: Path, edit: bytes
) -> None:
    """A flip of the trailing newline (or an added space) leaves JSON with the same content and a
    matching CRC: only the canonical-form check sees that the file was changed (the flipped-byte
    property test rarely draws these bytes)."""
    s = reopen(tmp_path)
    s.save_state(promised_epoch=3, archived_through=0, log_epoch=3, voter=True)
    raw = Path(s.state_path).read_bytes()
    assert raw.endswith(b"\n")
    Path(s.state_path).write_bytes(raw[:-1] + edit)
    with pytest.raises(StoreCorruptError, match=r"not in canonical form"):
        s.load()
