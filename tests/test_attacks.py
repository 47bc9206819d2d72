"""Issue 17's attacks, each against real processes on loopback: none may do harm any more.

Each test is one attack that worked before (the issue lists them) and asserts what must hold now:
the attacker is refused with a clear error, and the legitimate cluster keeps serving its writes.
"""

from __future__ import annotations

import os

import pytest
import trio

from walrelay.client import Client
from walrelay.procs import Cluster
from walrelay.transport import TcpTransport
from walrelay.wire import DEFAULT_MAX_FRAME, ReplyStatus
from walrelay_chaos.pace import budget

pytestmark = pytest.mark.integration


async def test_a_put_whose_entry_would_exceed_the_entry_limit_is_refused_and_the_object_keeps_serving(
    cluster: Cluster,
) -> None:
    """A 63.9 MiB value fits the 64 MiB frame limit but makes an entry over the 64 MiB entry limit:
    it used to reset the object (no writes until a restart). Now it is refused before it commits."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))
    async with Client.connect(TcpTransport(), paddr) as client:
        assert (await client.call("put", 1, "before")).status is ReplyStatus.OK
        huge = "x" * (64 * 1024 * 1024 - 64 * 1024)  # 63.9 MiB: its request frame fits, its entry does not
        assert len(huge) + 1024 < DEFAULT_MAX_FRAME
        reply = await client.call("put", 2, huge)
        del huge
        assert reply.status is ReplyStatus.ERROR and reply.body["type"] == "TransactionTooLarge", reply.body
        assert "entry limit" in reply.body["message"] and "rolled back" in reply.body["message"]
        assert (await client.call("put", 3, "after")).status is ReplyStatus.OK  # still serving
        assert (await client.call("get", 2)).body is None
        assert (await client.call("get", 1)).body == "before" and (await client.call("get", 3)).body == "after"
        status = (await client.call("__status__")).body
        assert not status["reset"] and status["durable_seq"] == status["last_seq"], status


async def test_arguments_of_the_wrong_json_type_are_a_bad_request_not_a_coercion(cluster: Cluster) -> None:
    """NaN was stored as "nan", null as "None", ``true`` as the key 1."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))
    async with Client.connect(TcpTransport(), paddr) as client:
        for args in ((True, "v"), (1, None), (1, 2.5), ("1", "v")):
            reply = await client.call("put", *args)
            assert reply.status is ReplyStatus.ERROR and reply.body["type"] == "BadRequest", (args, reply.body)
        assert (await client.call("get", 1)).body is None  # nothing was written under key 1
        status = (await client.call("__status__")).body
        assert status["last_seq"] == 1, status  # only the primary's own first entry (its branch marker)


def _flip_middle(path: str) -> None:
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0x40
        f.seek(0)
        f.write(data)


async def test_a_byte_flip_in_one_objects_log_fails_that_object_only_and_a_primary_repairs_it(
    cluster: Cluster,
) -> None:
    """It used to make the replica process exit with a traceback at the next primary's HELLO for
    that object, taking its other objects with it. Now the object is rebuilt on that replica as
    after a lost disk, the new primary catches it up, and the other object never noticed."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    pa = await trio.to_thread.run_sync(lambda: cluster.start_primary("a", name="pa", extra=("--app", "kv")))
    pb = await trio.to_thread.run_sync(lambda: cluster.start_primary("b", name="pb", extra=("--app", "kv")))
    async with Client.connect(TcpTransport(), pa) as ca, Client.connect(TcpTransport(), pb) as cb:
        for k in range(1, 9):
            assert (await ca.call("put", k, f"a{k}")).status is ReplyStatus.OK
            assert (await cb.call("put", k, f"b{k}")).status is ReplyStatus.OK
    cluster.primaries[0].kill()
    cluster.replicas[0].kill()  # the flip is found when the object is next loaded: at a restart
    log_a = os.path.join(cluster.root, "replica-0", "objects", "a", "entries.log")
    await trio.to_thread.run_sync(_flip_middle, log_a)
    await trio.to_thread.run_sync(cluster.restart_replica, 0)
    pa2 = await trio.to_thread.run_sync(lambda: cluster.start_primary("a", name="pa2", extra=("--app", "kv")))
    async with Client.connect(TcpTransport(), pa2) as ca, Client.connect(TcpTransport(), pb) as cb:
        for k in range(1, 9):  # every acknowledged write of a survived
            assert (await ca.call("get", k)).body == f"a{k}"
        assert (await ca.call("put", 9, "a9")).status is ReplyStatus.OK
        assert (await cb.call("put", 9, "b9")).status is ReplyStatus.OK  # b kept serving throughout
        with trio.fail_after(budget(60)):  # the new primary brings replica 0 back (ADMIT)
            while not (await ca.call("__status__")).body["replicas"][0].get("voter"):  # noqa: ASYNC110 - polls another process
                await trio.sleep(0.2)
    assert cluster.replicas[0].alive, "the replica process died"
    with open(cluster.replicas[0].log_path) as f:  # noqa: ASYNC230 - a small local file, after the fact
        text = f.read()
    assert "object a is damaged" in text and "rebuilt as after a lost disk" in text and "Traceback" not in text
    assert os.listdir(os.path.join(cluster.root, "replica-0", "quarantine"))
