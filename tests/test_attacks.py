"""Issue 17's attacks, each against real processes on loopback: none may do harm any more.

Each test is one attack that worked before (the issue lists them) and asserts what must hold now:
the attacker is refused with a clear error, and the legitimate cluster keeps serving its writes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from test_replica_state import make_log
from walrelay import wire
from walrelay.certs import CertPaths, throwaway
from walrelay.client import Client
from walrelay.procs import Cluster, client_transport, walrelay_argv
from walrelay.transport import TcpTransport
from walrelay.wire import DEFAULT_MAX_FRAME, ReplyStatus
from walrelay_chaos.conform.peer import Closed, PeerError, ScriptedPrimary, Silent, Transcript
from walrelay_chaos.pace import budget

pytestmark = pytest.mark.integration


async def test_a_put_whose_entry_would_exceed_the_entry_limit_is_refused_and_the_object_keeps_serving(
    cluster: Cluster,
) -> None:
    """A 63.9 MiB value fits the 64 MiB frame limit but makes an entry over the 64 MiB entry limit:
    it used to reset the object (no writes until a restart). Now it is refused before it commits."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))
    async with Client.connect(client_transport(paddr), paddr) as client:
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
    async with Client.connect(client_transport(paddr), paddr) as client:
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
    async with Client.connect(client_transport(pa), pa) as ca, Client.connect(client_transport(pb), pb) as cb:
        for k in range(1, 9):
            assert (await ca.call("put", k, f"a{k}")).status is ReplyStatus.OK
            assert (await cb.call("put", k, f"b{k}")).status is ReplyStatus.OK
    cluster.primaries[0].kill()
    cluster.replicas[0].kill()  # the flip is found when the object is next loaded: at a restart
    log_a = os.path.join(cluster.root, "replica-0", "objects", "a", "entries.log")
    await trio.to_thread.run_sync(_flip_middle, log_a)
    await trio.to_thread.run_sync(cluster.restart_replica, 0)
    pa2 = await trio.to_thread.run_sync(lambda: cluster.start_primary("a", name="pa2", extra=("--app", "kv")))
    async with Client.connect(client_transport(pa2), pa2) as ca, Client.connect(client_transport(pb), pb) as cb:
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


def _forge(address: str, tls: CertPaths | None) -> list[str]:
    """What the issue's attacker sent a replica: a HELLO to learn its epoch and chain, a PREPARE
    with the largest epoch (which fenced every later primary), a forged APPEND, a TRUNCATE through
    everything, a FETCH of the whole database. Returns what came back (each frame's kind), or why nothing did."""
    got: list[str] = []
    try:
        with ScriptedPrimary(address, Transcript(), budget(10), tls) as peer:
            peer.send(wire.Hello(wire.Role.PRIMARY, 0, "kvobj", 0, 0))
            peer.send(wire.Prepare(2**64 - 1))
            peer.send(wire.Append(2**64 - 1, 0, 1, tuple(make_log(1, epoch=2**64 - 1, salt=66))))  # a forged entry
            peer.send(wire.Truncate(epoch=2**64 - 1, through=10**6, chain=bytes(16)))
            peer.send(wire.Fetch(2**64 - 1, 1, 10**6))
            while True:
                got.append(type(peer.recv()).__name__)
    except (Closed, Silent, PeerError) as e:
        got.append(f"{type(e).__name__}: {e}")
    return got


async def test_forged_prepare_truncate_and_fetch_from_anyone_but_a_primary_are_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Before issue 17 any local process could FETCH the whole database, fence every later primary
    with one PREPARE of epoch 2^64-1, or TRUNCATE every acknowledged entry. Now a replica takes
    those only from a primary certificate of its cluster: each forger (no certificate, a client's,
    an admin's, a replica's, another CA's primary) gets no frame back, the replica logs why, and
    the cluster goes on acknowledging writes and fails over with all of them. One cluster for all
    five forgers: each must leave it unharmed for the next."""
    addrs = await trio.to_thread.run_sync(cluster.start_replicas, 5)
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))
    async with Client.connect(client_transport(paddr), paddr) as client:
        for k in range(1, 6):
            assert (await client.call("put", k, f"v{k}")).status is ReplyStatus.OK
    log_path = Path(cluster.replicas[0].log_path)
    for n, who in enumerate(["no certificate", "client", "admin", "replica", "another CA's primary"], start=6):
        if who == "no certificate":
            tls = None
        elif who == "another CA's primary":
            tls = CertPaths.in_dir(throwaway(tmp_path / "rogue", "test"), "primary")
        else:
            tls = CertPaths.in_dir(cluster.certs, who)
        before = await trio.to_thread.run_sync(lambda: len(log_path.read_text()))
        for address in addrs:
            got = await trio.to_thread.run_sync(_forge, address, tls)
            assert len(got) == 1 and got[0].startswith(("Closed", "PeerError")), (who, got)  # not one frame answered
        log = await trio.to_thread.run_sync(log_path.read_text)
        expect = {"no certificate": "TLS handshake failed", "another CA's primary": "TLS handshake failed"}
        assert (
            expect.get(who, f"peer is {who} {who!r} of cluster 'test'; a replica takes primary here") in log[before:]
        ), (who, log[before:])
        async with Client.connect(client_transport(paddr), paddr) as client:
            assert (await client.call("put", n, f"v{n}")).status is ReplyStatus.OK  # the primary was not fenced
    p2 = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", name="p2", extra=("--app", "kv")))
    async with Client.connect(client_transport(p2), p2) as client:
        for k in range(1, 11):  # nothing was truncated: a failover finds every acknowledged write
            assert (await client.call("get", k)).body == f"v{k}"


async def test_history_changing_operations_need_an_admin_certificate(cluster: Cluster) -> None:
    """An anonymous __restore__ on the client door blocked all writes and rolled the data back at
    the next start. Without a certificate there is no connection at all; with a client one it is
    Forbidden and nothing is recorded; with an admin one it is accepted."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    extra = ("--app", "kv", "--archive", os.path.join(cluster.root, "archive"))
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=extra))
    async with Client.connect(cluster.client_transport("client"), paddr) as client:
        assert (await client.call("put", 1, "v1")).status is ReplyStatus.OK
        for op, args in (("__restore__", ("00000001-0000000000000000",)), ("__snapshot__", ())):
            reply = await client.call(op, *args)
            assert reply.status is ReplyStatus.ERROR and reply.body["type"] == "Forbidden", reply.body
            assert "needs an admin certificate" in reply.body["message"] and "client 'client'" in reply.body["message"]
        assert (await client.call("put", 2, "v2")).status is ReplyStatus.OK  # no restore is pending
        status = (await client.call("__status__")).body
        assert status.get("pending_restore") is None, status
    with pytest.raises(OSError):
        async with Client.connect(TcpTransport(), paddr) as anonymous:
            await anonymous.call("__restore__", "00000001-0000000000000000")
    async with Client.connect(cluster.client_transport("admin"), paddr) as admin:
        reply = await admin.call("__snapshot__")
        assert reply.status is ReplyStatus.OK, reply.body


async def test_walrelay_call_takes_the_certificate_flags_and_a_client_may_not_restore(cluster: Cluster) -> None:
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))

    def call(role: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = walrelay_argv("call", "--primary", paddr, *cluster.tls_args(role), *args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=budget(60), stdin=subprocess.DEVNULL)

    ok = await trio.to_thread.run_sync(call, "client", "put", "1", "one")
    assert ok.returncode == 0 and '"status": "OK"' in ok.stdout, ok.stdout + ok.stderr
    refused = await trio.to_thread.run_sync(call, "client", "__restore__", "00000001-0000000000000000")
    assert refused.returncode == 1 and "Forbidden" in refused.stdout, refused.stdout + refused.stderr
    wrong = await trio.to_thread.run_sync(call, "replica", "__status__")
    assert wrong.returncode == 2 and "is of role 'replica'; walrelay call needs client or admin" in wrong.stderr


async def test_a_promise_no_allocator_issued_counts_its_replica_as_down_and_stops_no_primary(
    cluster: Cluster,
) -> None:
    """One PREPARE of epoch 2^64-1 to one replica (now possible only with a primary certificate:
    a buggy or compromised primary, or a flipped bit that got past the state file's checksum) used
    to reset the serving primary at its next write and make every later primary give up at
    recovery. The allocator is the only source of epochs, so a primary can tell that promise is
    impossible (R-7.3-3, spec: Believable, FencedOnlyByIssued): it counts that replica as down,
    says so once in its log, and keeps serving; a new primary recovers without it."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))
    async with Client.connect(client_transport(paddr), paddr) as client:
        assert (await client.call("put", 1, "v1")).status is ReplyStatus.OK

    def fence_replica_0() -> object:
        address = cluster.replicas[0].address
        assert address is not None
        with ScriptedPrimary(address, Transcript(), budget(10), CertPaths.in_dir(cluster.certs, "primary")) as peer:
            peer.send(wire.Hello(wire.Role.PRIMARY, 0, "kvobj", 0, 0))
            peer.send(wire.Prepare(2**64 - 1))
            while not isinstance(msg := peer.recv(), (wire.Promise, wire.Reject)):
                pass
            return msg

    assert isinstance(await trio.to_thread.run_sync(fence_replica_0), wire.Promise)  # it did promise
    async with Client.connect(client_transport(paddr), paddr) as client:
        for k in range(2, 5):  # replica 0 now refuses our APPENDs: the primary must not reset
            assert (await client.call("put", k, f"v{k}")).status is ReplyStatus.OK
        status = (await client.call("__status__")).body
    notes = [r["note"] for r in status["replicas"] if r["note"]]
    assert any("highest epoch issued is 1" in n and "counted as down" in n for n in notes), status
    p2 = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", name="p2", extra=("--app", "kv")))
    async with Client.connect(client_transport(p2), p2) as client:
        for k in range(1, 5):
            assert (await client.call("get", k)).body == (f"v{k}" if k > 1 else "v1")
        assert (await client.call("put", 5, "v5")).status is ReplyStatus.OK
    logs = await trio.to_thread.run_sync(lambda: Path(cluster.primaries[-1].log_path).read_text())
    assert "promised epoch 18446744073709551615, but the highest epoch issued is 2" in logs, logs
