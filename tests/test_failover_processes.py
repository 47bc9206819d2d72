"""Failover with real processes over loopback TCP: kill -9, takeover, fencing, racing primaries.

Every primary here takes its epoch from the cluster's placement directory (docs/failover.md), so
starting another primary for the same object is a takeover: it recovers from the replicas and
fences the one before. Outcomes are recorded per write as the client saw them (ok / error /
unknown, where a dropped connection is unknown); the checks are Jepsen's set checker in small:
every acknowledged write is present afterwards, and nothing reported as failed is.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from walrelay.client import Client
from walrelay.procs import Cluster, client_transport, walrelay_argv
from walrelay.wire import ReplyStatus
from walrelay_chaos.pace import budget

pytestmark = pytest.mark.integration


@dataclass
class Outcomes:
    ok: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)  # ERROR: the primary says it did not happen
    unknown: set[int] = field(default_factory=set)  # UNKNOWN or connection lost: maybe
    bodies: list[Any] = field(default_factory=list)
    enough: int = 0  # set ``reached`` once this many writes were acknowledged (0: never)
    reached: trio.Event = field(default_factory=trio.Event)


async def _put(client: Client, k: int, v: str, out: Outcomes) -> None:
    try:
        reply = await client.call("put", k, v)
    except ConnectionError:
        out.unknown.add(k)
        return
    out.bodies.append(reply.body)
    {ReplyStatus.OK: out.ok, ReplyStatus.ERROR: out.failed}.get(reply.status, out.unknown).add(k)
    if out.enough and len(out.ok) >= out.enough:
        out.reached.set()


async def _burst(address: str, keys: range, out: Outcomes, tag: str, concurrency: int = 8) -> None:
    """Pipelined writes over a few connections until the keys run out or the primary dies."""
    todo = iter(keys)

    async def worker() -> None:
        try:
            async with Client.connect(client_transport(address), address) as client:
                for k in todo:
                    await _put(client, k, f"{tag}{k}", out)
        except OSError:
            pass

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)


async def _read_all(address: str, keys: range) -> dict[int, str]:
    async with Client.connect(client_transport(address), address) as client:
        found = {}
        for k in keys:
            reply = await client.call("get", k)
            assert reply.status is ReplyStatus.OK, reply
            if reply.body is not None:
                found[k] = reply.body
        return found


async def _status(address: str) -> dict[str, Any]:
    async with Client.connect(client_transport(address), address) as client:
        body = (await client.call("__status__")).body
        assert isinstance(body, dict)
        return body


async def _start_primary(cluster: Cluster, name: str) -> str:
    return await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", name=name, extra=("--app", "kv")))


async def test_kill_9_mid_burst_then_a_new_primary_has_every_acknowledged_write(cluster: Cluster) -> None:
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    a = await _start_primary(cluster, "primary-a")
    killer = cluster.primary
    assert killer is not None
    out = Outcomes(enough=40)

    async def kill_when_some_acked() -> None:
        await out.reached.wait()
        await trio.to_thread.run_sync(killer.kill)

    with trio.fail_after(budget(120)):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_when_some_acked)
            await _burst(a, range(1, 100_000), out, "a")
    assert len(out.ok) >= 40 and out.unknown, (len(out.ok), len(out.unknown))
    assert not out.failed
    b = await _start_primary(cluster, "primary-b")
    with trio.fail_after(budget(60)):
        found = await _read_all(b, range(1, max(out.ok | out.unknown) + 1))
        status = await _status(b)
    lost = sorted(k for k in out.ok if found.get(k) != f"a{k}")
    assert not lost, f"acknowledged writes lost in the failover: {lost[:20]}"
    assert set(found) <= out.ok | out.unknown  # nothing appeared that was never written
    assert status["epoch"] == 2 and status["phase"] == "serving", status
    assert status["recovered_end"] >= len(out.ok)


async def test_a_restarted_primary_drops_its_unacknowledged_local_commits(cluster: Cluster) -> None:
    """The same host and data directory, with commits that never reached any replica: after the
    restart the object is exactly what recovery proved, not what the local disk held."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    a = await _start_primary(cluster, "primary-a")
    out = Outcomes()
    with trio.fail_after(budget(60)):
        await _burst(a, range(1, 21), out, "a", concurrency=1)
    assert out.ok == set(range(1, 21))
    for r in cluster.replicas:
        r.kill()
    doomed = Outcomes()
    with trio.move_on_after(1.5):  # held forever: no replica to store them
        await _burst(a, range(21, 31), doomed, "doomed", concurrency=10)
    assert not doomed.ok
    assert cluster.primary is not None
    cluster.primary.kill()
    for i in range(5):
        await trio.to_thread.run_sync(cluster.restart_replica, i)
    again = await _start_primary(cluster, "primary-a")  # same data directory
    with trio.fail_after(budget(60)):
        found = await _read_all(again, range(1, 31))
        status = await _status(again)
    assert found == {k: f"a{k}" for k in range(1, 21)}
    assert status["epoch"] == 2 and status["phase"] == "serving"
    with open(cluster.primary.log_path) as f:  # noqa: ASYNC230 - a small local file, after the fact
        assert "discarding local" in f.read()


async def test_a_paused_primary_is_fenced_and_never_acknowledges_again(cluster: Cluster) -> None:
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    a = await _start_primary(cluster, "primary-a")
    old = cluster.primary
    assert old is not None
    before = Outcomes()
    with trio.fail_after(budget(60)):
        await _burst(a, range(1, 11), before, "a", concurrency=2)
    assert before.ok == set(range(1, 11))
    async with Client.connect(client_transport(a), a) as stale_client:  # connected before the pause
        old.pause()
        b = await _start_primary(cluster, "primary-b")
        during = Outcomes()
        with trio.fail_after(budget(60)):
            await _burst(b, range(11, 21), during, "b", concurrency=2)
        assert during.ok == set(range(11, 21))
        old.resume()
        stale = Outcomes()
        with trio.fail_after(budget(60)):
            await _put(stale_client, 5, "stale overwrite", stale)
            await _put(stale_client, 99, "stale new", stale)
    assert not stale.ok, stale.bodies
    assert any("fenced" in str(body) for body in stale.bodies), stale.bodies
    with trio.fail_after(budget(60)):
        found = await _read_all(b, range(1, 100))
        old_status = await _status(a)
    assert found == {**{k: f"a{k}" for k in range(1, 11)}, **{k: f"b{k}" for k in range(11, 21)}}
    assert old_status["phase"] == "reset" and "fenced" in old_status["reset"], old_status


async def test_two_racing_primaries_never_both_acknowledge_a_lost_write(cluster: Cluster) -> None:
    """Two primaries start for one object at once and both take writes; a third recovers after.
    Each write either failed/was unknown, or is in the final state: no acknowledgement is lost."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    outs = {"a": Outcomes(), "b": Outcomes()}
    addresses: dict[str, str] = {}

    async def primary_and_writes(tag: str, keys: range) -> None:
        addresses[tag] = await _start_primary(cluster, f"primary-{tag}")
        await _burst(addresses[tag], keys, outs[tag], tag, concurrency=4)

    with trio.fail_after(budget(120)):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(primary_and_writes, "a", range(1, 201))
            nursery.start_soon(primary_and_writes, "b", range(1001, 1201))
    acked = outs["a"].ok | outs["b"].ok
    assert acked, "neither primary acknowledged anything"
    for tag in ("a", "b"):
        cluster.primaries[0 if tag == "a" else 1].kill()
    c = await _start_primary(cluster, "primary-c")
    with trio.fail_after(budget(60)):
        found = await _read_all(c, range(1, 1201))
    lost = sorted(k for k in acked if k not in found)
    assert not lost, f"acknowledged writes lost between racing primaries: {lost[:20]}"
    failed = outs["a"].failed | outs["b"].failed
    assert not (failed & set(found)), "a write reported as failed is in the final state"


async def test_a_primary_with_a_superseded_epoch_gives_up_with_a_clear_error(cluster: Cluster) -> None:
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    for name in ("primary-a", "primary-b", "primary-c"):  # epochs 1, 2, 3
        address = await _start_primary(cluster, name)
    with trio.fail_after(budget(60)):
        assert (await _status(address))["epoch"] == 3
    addrs = ",".join(r.address or "" for r in cluster.replicas)
    argv = ["primary", "--object", "kvobj", "--app", "kv", "--replicas", addrs, "--data", cluster.root + "/late"]
    proc = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            walrelay_argv(*argv, "--epoch", "2", *cluster.tls_args("primary")),
            capture_output=True,
            text=True,
            timeout=budget(60),
            stdin=subprocess.DEVNULL,
        )
    )
    assert proc.returncode == 1, proc.stderr
    assert "recovery gave up" in proc.stderr and "a newer primary exists" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


async def test_a_replica_that_lost_its_disk_is_rebuilt_and_admitted_again(cluster: Cluster) -> None:
    """It rejoins empty as a non-voter (it cannot tell a new object from a lost disk), gets the
    whole log, and votes again once the primary saw it hold everything committed."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    a = await _start_primary(cluster, "primary-a")
    out = Outcomes()
    with trio.fail_after(budget(60)):
        await _burst(a, range(1, 31), out, "a", concurrency=4)
    assert out.ok == set(range(1, 31))
    connects = (await _status(a))["replicas"][4]["connects"]
    await trio.to_thread.run_sync(cluster.lose_disk, 4)
    with trio.fail_after(budget(60)):
        while True:  # the new disk's handshake, then its catch-up and ADMIT
            status = await _status(a)
            row = status["replicas"][4]
            if row["connects"] > connects and row["voter"] and row["stored_through"] == status["last_seq"]:
                break
            await trio.sleep(0.05)
    # Rebuilt for real: with two other replicas gone, the object still has a quorum with it.
    for i in (0, 1):
        cluster.replicas[i].kill()
    with trio.fail_after(budget(60)):
        await _burst(a, range(31, 36), out, "a", concurrency=1)
    assert out.ok == set(range(1, 36))
