"""A replica whose reply cannot be sent still persists the whole batch it applied.

Found by the chaos harness (a campaign seed, kept as tests/replays/reply-lost-before-entries-persisted.json):
a primary sent PREPARE and APPEND back to back and went away; the replica read both as one batch,
applied both to its state, and the PROMISE send failed before the entries were written. Its state
then claimed an entry its disk did not hold: it promised that log to the next primary, whose
recovery fetched nothing and gave up (and an ACK on a later connection could have covered it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from test_replica_state import make_log
from walrelay.replica_node import ReplicaNode
from walrelay.transport import Channel, MemoryTransport
from walrelay.wire import Append, Message, Prepare


class HungUp(Channel):
    """The peer is gone: every send fails, as on a connection the primary closed."""

    def __init__(self) -> None:
        pass  # no stream: nothing is ever sent

    async def send(self, msg: Message) -> None:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError("the primary closed the connection")


def test_a_failed_promise_does_not_leave_the_batchs_entries_in_memory_only(tmp_path: Path) -> None:
    node = ReplicaNode(0, str(tmp_path), MemoryTransport())
    obj = node.get_object("obj")
    log = tuple(make_log(2, epoch=1))

    async def main() -> None:
        with pytest.raises(trio.BrokenResourceError):
            await node._process(obj, HungUp(), [Prepare(1), Append(1, 0, 2, log)])

    trio.run(main)
    assert obj.state.last_seq == 2  # applied: so it must be on disk
    assert [e.seq for e in obj.store.read_entries(1)] == [1, 2]
    node.close()
    again = ReplicaNode(0, str(tmp_path), MemoryTransport()).get_object("obj")
    assert (again.state.last_seq, again.state.promised_epoch) == (2, 1)
    again.store.close()
