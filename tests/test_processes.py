"""Integration: real OS processes over loopback TCP, SIGKILL, garbage on the wire, bad CLI input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import trio

from walrelay.client import Client
from walrelay.procs import Cluster, client_transport
from walrelay.transport import split_address
from walrelay.wire import ReplyStatus
from walrelay_chaos.pace import budget

pytestmark = pytest.mark.integration


def _walrelay(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "walrelay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_demo_scenario_end_to_end(tmp_path: object) -> None:
    """The README's main job: kill 2 replicas (still acked), a 3rd (held), restart one (completes);
    then failover: pause the primary mid-burst, promote another, fence the old one, kill -9, promote;
    then restore from the archive every primary continued: to a mid-run bookmark and time, and to now;
    last, restore the object itself to the bookmark and undo that restore."""
    run_dir = os.path.join(str(tmp_path), "demo")
    dev = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev")
    proc = subprocess.run(  # the README's first command, as a user types it (./dev execs walrelay demo)
        [dev, "demo", "--dir", run_dir, "--bookings", "24", "--hold-seconds", "1"],
        capture_output=True,
        text=True,
        timeout=budget(240),
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for check in (
        "all bookings acknowledged with 5 replicas up (24/24)",
        "writes still acknowledged with 2 replicas down (24/24)",
        "no reply released without a quorum (held, not acknowledged) (0 acked, 0 errors, 5 held)",
        "held writes complete once a quorum is back (5/5)",
        "every acknowledged booking is on the disk of >= 3 replicas (53/53)",
    ):
        assert f"[ok] {check}" in out, out
    assert "FAIL" not in out
    # Replicas 3 and 4 died after phase 1 and must not have the later bookings; 0-2 must.
    assert "replica 3: log through seq 28," in out and "replica 0: log through seq 57," in out, out
    # Phase 8, failover. How many of a burst are acknowledged before a SIGSTOP/SIGKILL varies.
    for check in (
        "restarted primary A recovers every acknowledged booking (53/53)",
        "new primary B serves every booking acknowledged before the takeover (",
        "new primary B acknowledges new bookings (24/24)",
        "stale primary A refuses a booking after the takeover and says it is fenced (",
        "whatever A acknowledged after SIGCONT had been recovered by B (",
        "new primary B keeps acknowledging after the old one resumed (",
        "after SIGKILL of A and B, new primary C serves every acknowledged booking (",
        "no failed, stale or never-made booking is on C (failed: 0 of ",
    ):
        assert f"[ok] {check}" in out, out
    assert "stale: not on C; never made: 0 on C)" in out, out
    for line in ("A: epoch 2, serving,", "B: epoch 3, serving", "C: epoch 4, serving", "phase reset, reset: fenced"):
        assert line in out, out
    # Phase 9, point-in-time restore. The bookmark is taken after phase 3's 24 bookings: entry 1 is
    # the schema, 2-4 create the flights, so seq 28; the time t_mid, just after it, names it too.
    mark = "00000001-000000000000001c"
    for check in (
        "archive verifies (valid)",
        f"restore to the bookmark {mark} equals what the primary had then (24/24 bookings, 0 others)",
        f"restore to the time t_mid equals what the primary had then (24/24 bookings, 0 others; t_mid names {mark}, "
        f"C says {mark})",
        "restore to C's latest bookmark equals what C serves, across all epochs (",
    ):
        assert f"[ok] {check}" in out, out
    assert f"restored 'flights' to bookmark {mark} (seq 28," in out, out
    assert "one archive, continued by the primaries of epochs 1 -> 2 -> 3 -> 4;" in out, out
    assert os.path.isfile(os.path.join(run_dir, "restore-latest.db")), out
    # Phase 10: the object itself restored to the bookmark (a new branch), written on, then undone.
    for check in (
        f"restored object D serves exactly the bookings of {mark} (24/24 bookings, 0 others; undo ",
        "undoing the restore gives back exactly what C served before it (the new branch's bookings gone) (",
        "the archive with three branches verifies (valid)",
    ):
        assert f"[ok] {check}" in out, out
    assert "a booking after the request: ERROR RestorePending" in out, out
    assert out.count("[ok] ") == 21, out


async def test_deadline_turns_held_writes_into_unknown_not_success(cluster: Cluster) -> None:
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    paddr = await trio.to_thread.run_sync(
        lambda: cluster.start_primary("kvobj", extra=("--app", "kv", "--deadline", "1"))
    )
    async with Client.connect(client_transport(paddr), paddr) as client:
        ok = await client.call("put", 1, "durable")
        assert ok.status is ReplyStatus.OK
        for i in (2, 3, 4):
            cluster.replicas[i].kill()
        with trio.fail_after(budget(20)):
            reply = await client.call("put", 2, "doomed")
        assert reply.status is ReplyStatus.UNKNOWN, reply
        assert reply.body["type"] == "NotDurable"
        assert "2 of 5 replicas stored it, 3 needed" in reply.body["message"]
        after = await client.call("get", 1)
        assert after.status is ReplyStatus.ERROR and after.body["type"] == "ObjectReset", after
        status = (await client.call("__status__")).body
        assert status["reset"] and status["durable_seq"] < status["last_seq"]


def _send_raw(address: str, data: bytes) -> bytes:
    host, port = split_address(address)
    with socket.create_connection((host, port), timeout=budget(10)) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_malformed_frames_drop_one_connection_and_nodes_keep_serving(cluster: Cluster) -> None:
    """The frame decoder's own defences, reached in the clear (--insecure): over TLS, bytes from a
    peer without a certificate never reach it (tests/test_attacks.py)."""
    cluster.insecure = True
    addrs = await trio.to_thread.run_sync(cluster.start_replicas, 5)
    # Garbage at a replica: wrong wire version, then an oversized length, then a truncated frame.
    for junk in (b"\x00\x00\x00\x02\x09\x01", b"\xff\xff\xff\xff", b"\x00\x00\x00\x10\x01\x01abc"):
        answer = await trio.to_thread.run_sync(_send_raw, addrs[0], junk)
        assert b"\x12" in answer[:6] or answer == b"", answer  # a REJECT frame, or just a close
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=("--app", "kv")))
    # Garbage at the primary's client door: the reply names the problem.
    answer = await trio.to_thread.run_sync(_send_raw, paddr, b"\x00\x00\x00\x02\x07\x20")
    assert b"unsupported wire version 7" in answer, answer
    async with Client.connect(client_transport(paddr), paddr) as client:
        reply = await client.call("put", 7, "still fine")
        assert reply.status is ReplyStatus.OK, reply
        assert (await client.call("get", 7)).body == "still fine"
    with open(cluster.replicas[0].log_path) as f:  # noqa: ASYNC230 - a small local file, after the fact
        log = f.read()
    assert "unsupported wire version 9" in log and "exceeds the maximum" in log, log


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("primary", "--object", "x", "--replicas", "nonsense", "--data", "d"), "is not HOST:PORT"),
        (("primary", "--object", "x", "--replicas", "127.0.0.1:1", "--data", "d", "--deadline", "-3"), "must be > 0"),
        (("replica", "--id", "minus-one", "--data", "d"), "not a non-negative integer"),
        (("replica", "--id", "0", "--data", "/dev/null", "--insecure"), "exists and is not a directory"),
        (("replica", "--id", "0", "--data", "/nonexistent-walrelay/d", "--insecure"), "does not exist"),
        (("replica", "--id", "0", "--data", "d"), "missing --ca, --cert, --key: give --ca, --cert and --key"),
        (("replica", "--id", "0", "--data", "d", "--insecure", "--ca", "x"), "--insecure cannot go with"),
        (("call", "--primary", "127.0.0.1:1", "get"), "missing --ca, --cert, --key"),
        (("call", "--primary", "127.0.0.1", "get"), "is not HOST:PORT"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_bad_cli_arguments_get_a_clear_error(args: tuple[str, ...], fragment: str) -> None:
    proc = _walrelay(*args, timeout=budget(60))
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr


def test_primary_refuses_quorum_that_is_not_a_majority(tmp_path: object) -> None:
    proc = _walrelay(
        "primary", "--object", "x", "--replicas", ",".join(["127.0.0.1:9"] * 5), "--data", str(tmp_path),
        "--epoch", "1", "--quorum", "2", "--insecure", timeout=budget(60),
    )  # fmt: skip
    assert proc.returncode == 1
    assert "quorum 2 of 5 is not a majority" in proc.stderr
    assert "Traceback" not in proc.stderr
