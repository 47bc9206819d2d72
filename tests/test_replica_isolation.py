"""One damaged object fails that object only (issue 17, points 3 and 6).

A byte flip in the middle of one object's log, or a damaged ``state.json``, used to make the whole
replica process exit with a traceback when a primary first connected for that object, taking its
other objects down with it. Now the damaged object is rebuilt as after a lost disk (its files kept
in ``<data>/quarantine/``, it promises the highest epoch issued and is a non-voter until a primary
catches it up), or, without a placement allocator, refused with an error naming the file; every
other object is served as before.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from test_replica_state import make_log
from walrelay.entry import Entry
from walrelay.placement import EpochAllocator
from walrelay.replica_node import ReplicaNode
from walrelay.replica_store import ReplicaStore
from walrelay.transport import Channel, MemoryTransport
from walrelay.wire import Append, Fetch, Hello, Reject, RejectReason, Role


def _store(data: Path, name: str, log: list[Entry], promised: int) -> ReplicaStore:
    s = ReplicaStore(str(data), name)
    s.load()
    s.append_durably(tuple(log))
    s.save_state(promised, 0, log_epoch=1, voter=True)
    s.close()
    return s


def _flip(path: str, at: int, mask: int = 0x40) -> None:
    raw = bytearray(Path(path).read_bytes())
    raw[at] ^= mask
    Path(path).write_bytes(bytes(raw))


def _damage(store: ReplicaStore, what: str) -> None:
    if what == "log":  # a byte in the middle: not a torn tail, acknowledged entries follow it
        _flip(store.log_path, Path(store.log_path).stat().st_size // 2)
    else:  # the attack: promised_epoch 1 becomes 9, and the file still parses
        raw = Path(store.state_path).read_bytes()
        _flip(store.state_path, raw.index(b'"promised_epoch":1') + len(b'"promised_epoch":1') - 1, 0x08)
        assert b'"promised_epoch":9' in Path(store.state_path).read_bytes()


async def _hello(node: ReplicaNode, transport: MemoryTransport, address: str, name: str) -> object:
    chan = Channel(await transport.connect(address))
    await chan.send(Hello(Role.PRIMARY, 0, name, 2, 0))
    return await chan.receive()


@pytest.mark.parametrize("damage", ["log", "state"])
async def test_a_damaged_object_is_rebuilt_as_a_lost_disk_and_the_others_keep_serving(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    log_a, log_b = make_log(5, salt=1), make_log(3, salt=2)
    bad = _store(data, "a", log_a, promised=1)
    _store(data, "b", log_b, promised=1)
    _damage(bad, damage)
    placement = EpochAllocator(tmp_path / "placement")
    for _ in range(2):
        placement.allocate("a")
    transport = MemoryTransport()
    node = ReplicaNode(0, str(data), transport, placement)
    got: list[object] = []
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:r0")
            with caplog.at_level(logging.ERROR, logger="walrelay.replica"):
                got.append(await _hello(node, transport, address, "a"))
            got.append(await _hello(node, transport, address, "b"))
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    hello_a, hello_b = got
    # The damaged object: empty, promising the highest epoch issued, a non-voter (it answered).
    assert isinstance(hello_a, Hello) and (hello_a.epoch, hello_a.stored_through) == (2, 0), hello_a
    assert not ReplicaStore(str(data), "a").load().voter
    # Its files are kept for a person to look at, and the log line names what was wrong.
    kept = list((data / "quarantine").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("a.") and (kept[0] / "entries.log").exists()
    what = "corrupt record at byte" if damage == "log" else "checksum mismatch"
    assert any(what in r.getMessage() and "rebuilt as after a lost disk" in r.getMessage() for r in caplog.records)
    # The other object is untouched.
    assert isinstance(hello_b, Hello) and (hello_b.stored_through, hello_b.last_chain) == (3, log_b[-1].chain)


async def test_without_placement_a_damaged_object_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Rebuilding needs the allocator (an empty replica without it would be a voter that promised
    nothing): the object is refused with the reason, the process and the other objects go on."""
    data = tmp_path / "data"
    bad = _store(data, "a", make_log(5, salt=1), promised=1)
    log_b = make_log(3, salt=2)
    _store(data, "b", log_b, promised=1)
    _damage(bad, "log")
    transport = MemoryTransport()
    node = ReplicaNode(0, str(data), transport)
    got: list[object] = []
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:r0")
            got.append(await _hello(node, transport, address, "a"))
            got.append(await _hello(node, transport, address, "b"))
            chan = Channel(await transport.connect(address))  # and b still takes writes
            await chan.send(Hello(Role.PRIMARY, 0, "b", 1, 0))
            await chan.receive()
            await chan.send(Append(1, 3, 4, tuple(make_log(1, salt=2, prev=log_b[-1].chain, first=4))))
            got.append(await chan.receive())
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    refused, hello_b, ack = got
    assert isinstance(refused, Reject) and refused.reason is RejectReason.WRONG_OBJECT, refused
    assert "entries.log: corrupt record at byte" in refused.message and "move" in refused.message
    assert isinstance(hello_b, Hello) and hello_b.stored_through == 3
    assert not isinstance(ack, Reject), ack
    assert (data / "objects" / "a" / "entries.log").exists()  # nothing moved or deleted


async def test_an_object_whose_log_is_damaged_while_it_serves_is_dropped_and_reloaded(tmp_path: Path) -> None:
    """The damage happens after the object was loaded (a FETCH reads the file again): that
    connection is closed with the reason logged, and the next HELLO reloads the object from its
    files, verified, which rebuilds it as a lost disk; the process and other objects go on."""
    data = tmp_path / "data"
    bad = _store(data, "a", make_log(5, salt=1), promised=1)
    log_b = make_log(3, salt=2)
    _store(data, "b", log_b, promised=1)
    placement = EpochAllocator(tmp_path / "placement")
    placement.allocate("a")
    transport = MemoryTransport()
    node = ReplicaNode(0, str(data), transport, placement)
    got: list[object] = []
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.serve, "mem:r0")
            chan = Channel(await transport.connect(address))
            await chan.send(Hello(Role.PRIMARY, 0, "a", 1, 0))
            got.append(await chan.receive())  # loaded fine: 5 entries
            _damage(bad, "log")
            await chan.send(Fetch(1, 1, 10**6))
            got.append(await chan.receive())  # the connection closes (None), no traceback
            got.append(await _hello(node, transport, address, "a"))
            got.append(await _hello(node, transport, address, "b"))
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    first, closed, again, hello_b = got
    assert isinstance(first, Hello) and first.stored_through == 5
    assert closed is None or isinstance(closed, Reject), closed
    assert isinstance(again, Hello) and again.stored_through == 0 and again.epoch == 1  # rebuilt
    assert isinstance(hello_b, Hello) and hello_b.stored_through == 3
