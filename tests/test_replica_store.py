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

from test_replica_state import LOG, make_log
from walrelay.entry import GENESIS_CHAIN
from walrelay.replica_node import ReplicaNode
from walrelay.replica_store import ReplicaStore, StoreCorruptError
from walrelay.transport import Channel, MemoryTransport
from walrelay.wire import Ack, Append, Hello, Role


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


def test_state_written_before_failover_existed_loads_as_a_voter_with_log_epoch_0(tmp_path: Path) -> None:
    s = reopen(tmp_path)
    Path(s.state_path).write_text(json.dumps({"promised_epoch": 4, "archived_through": 0}))
    loaded = s.load()
    assert (loaded.promised_epoch, loaded.log_epoch, loaded.voter, loaded.fresh) == (4, 0, True, False)


@pytest.mark.parametrize(
    "state",
    [
        {"promised_epoch": 1, "archived_through": 0, "voter": "yes"},
        {"promised_epoch": 1, "archived_through": 0, "log_epoch": "x"},
        {"promised_epoch": 1},
        [1, 2],
    ],
)
def test_a_damaged_state_file_is_refused_naming_it(tmp_path: Path, state: object) -> None:
    s = reopen(tmp_path)
    Path(s.state_path).write_text(json.dumps(state))
    with pytest.raises(StoreCorruptError, match=r"state\.json: unreadable replica state"):
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
                with trio.fail_after(10):
                    ack = await chan.receive()
                assert ack == Ack(epoch, batch[-1].seq, batch[-1].chain)
                await chan.aclose()
            nursery.cancel_scope.cancel()
    finally:
        node.close()
    loaded = ReplicaStore(str(tmp_path), "obj").load()
    assert loaded.chains == {1: old[0].chain, **{e.seq: e.chain for e in new}}
    assert (loaded.promised_epoch, loaded.log_epoch, loaded.voter) == (2, 2, True)
