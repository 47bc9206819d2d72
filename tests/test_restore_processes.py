"""Restoring an object with real processes over loopback TCP: `walrelay primary --restore-to`.

The restore points here are newer than anything uploaded (the first primary is killed -9 before
its segment age passes), so the restoring primary must archive the old branch from the replicas
first; the offline `walrelay restore` of the undo point then shows that it did. Bad restore
requests end with one clear line and exit code, never a traceback.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from typing import Any

import pytest
import trio

from test_failover_processes import _read_all
from walrelay.client import Client
from walrelay.procs import Cluster, client_transport, walrelay_argv
from walrelay.wire import ReplyStatus
from walrelay_chaos.pace import budget

pytestmark = pytest.mark.integration


async def _call(address: str, op: str, *args: Any) -> Any:
    async with Client.connect(client_transport(address), address) as client:
        reply = await client.call(op, *args)
        assert reply.status is ReplyStatus.OK, (op, reply)
        return reply.body


async def _put_all(address: str, keys: range, tag: str) -> None:
    async with Client.connect(client_transport(address), address) as client:
        for k in keys:
            reply = await client.call("put", k, f"{tag}{k}")
            assert reply.status is ReplyStatus.OK, reply


async def _kv_primary_with_archive(cluster: Cluster, archive: str) -> str:
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    return await trio.to_thread.run_sync(
        lambda: cluster.start_primary("kvobj", name="p1", extra=("--app", "kv", "--archive", archive))
    )


async def _serving(address: str) -> dict[str, Any]:
    """Wait until the primary serves (a restore runs before that); its status then."""
    while (st := await _call(address, "__status__"))["phase"] != "serving":
        assert st["phase"] not in ("gave up", "reset"), st
        await trio.sleep(0.1)
    return st


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        walrelay_argv(*args), capture_output=True, text=True, timeout=budget(120), stdin=subprocess.DEVNULL
    )


async def test_restore_at_start_then_undo_with_processes(cluster: Cluster, tmp_path: Any) -> None:
    archive = str(tmp_path / "archive")
    extra = ("--app", "kv", "--archive", archive, "--segment-seconds", "60")

    async def start(name: str, *more: str) -> str:
        return await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", name=name, extra=(*extra, *more)))

    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    a = await start("primary-a")
    with trio.fail_after(budget(60)):
        await _put_all(a, range(1, 21), "a")
        mark = (await _call(a, "__bookmark__"))["bookmark"]
        await _put_all(a, range(21, 41), "a")
    assert cluster.primary is not None
    cluster.primary.kill()  # nothing after the genesis snapshot is uploaded yet (60 s segments)

    b = await start("primary-b", "--restore-to", mark)
    with trio.fail_after(budget(90)):
        st = await _serving(b)
        found = await _read_all(b, range(1, 46))
        await _put_all(b, range(41, 46), "b")
    assert found == {k: f"a{k}" for k in range(1, 21)}, "the restored object is the bookmark's database"
    restored = st["restored"]
    assert restored["restored_to"] == mark and st["branch"] == restored["branch"] == st["epoch"], st
    undo = restored["undo_bookmark"]
    assert undo.startswith("00000001-") and undo > mark  # branch 1's end: sorts after the bookmark

    # The undo point was newer than any upload when the restore began: the restore archived it.
    out = str(tmp_path / "undo.db")
    proc = await trio.to_thread.run_sync(_cli, "restore", "kvobj", "--to", undo, "--out", out, "--archive", archive)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(out) as db:
        rows = dict(db.execute("SELECT k, v FROM kv"))
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert rows == {k: f"a{k}" for k in range(1, 41)}

    assert cluster.primary is not None
    cluster.primary.kill()
    c = await start("primary-c", "--restore-to", undo)
    with trio.fail_after(budget(90)):
        st = await _serving(c)
        found = await _read_all(c, range(1, 46))
    assert found == {k: f"a{k}" for k in range(1, 41)}, "undo: branch 1's end, without what branch b wrote"
    assert st["restored"]["undo_bookmark"].startswith(f"{restored['branch']:08x}-")

    proc = await trio.to_thread.run_sync(_cli, "archive", "verify", "kvobj", "--archive", archive)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("valid"), proc.stdout + proc.stderr
    listing = (await trio.to_thread.run_sync(_cli, "archive", "ls", "kvobj", "--archive", archive)).stdout
    assert f"restored from {mark}" in listing and f"restored from {undo}" in listing and "(current)" in listing


async def test_bad_restore_requests_get_one_clear_error(cluster: Cluster, tmp_path: Any) -> None:
    archive = str(tmp_path / "archive")
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    addrs = ",".join(r.address or "" for r in cluster.replicas)
    base = ["primary", "--object", "kvobj", "--app", "kv", "--replicas", addrs, "--data", str(tmp_path / "p")]
    base += cluster.tls_args("primary")

    def run(*more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            walrelay_argv(*base, *more), capture_output=True, text=True, timeout=budget(60), stdin=subprocess.DEVNULL
        )

    proc = await trio.to_thread.run_sync(run, "--placement", cluster.placement, "--restore-to", "yesterday")
    assert proc.returncode == 2 and "--restore-to" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = await trio.to_thread.run_sync(
        run, "--epoch", "1", "--archive", archive, "--restore-to", "00000001-0000000000000001"
    )
    assert proc.returncode != 0 and "needs --placement" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # A bookmark of a branch that does not exist: the restore gives up, naming it, and exits 1.
    proc = await trio.to_thread.run_sync(
        run, "--placement", cluster.placement, "--archive", archive, "--restore-to", "00000063-0000000000000001"
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "restore to 00000063-0000000000000001 failed" in proc.stderr and "branch 99" in proc.stderr, proc.stderr


async def test_restore_requests_are_checked_before_they_are_recorded(cluster: Cluster, tmp_path: Any) -> None:
    archive = str(tmp_path / "archive")
    p = await _kv_primary_with_archive(cluster, archive)
    with trio.fail_after(budget(60)):
        await _put_all(p, range(1, 4), "p")
        async with Client.connect(client_transport(p), p) as client:
            for args, kind in [
                ((), "BadRequest"),
                (("not a bookmark",), "BadRequest"),
                (("00000063-0000000000000001",), "UnknownBookmark"),  # no branch 0x63
                (("00000001-00000000000000ff",), "UnknownBookmark"),  # beyond the log
            ]:
                reply = await client.call("__restore__", *args)
                assert reply.status is ReplyStatus.ERROR and reply.body["type"] == kind, (args, reply)
            ok = await client.call("put", 9, "still-writable")
            assert ok.status is ReplyStatus.OK, "a refused request leaves the object as it was"
            done = await client.call("__restore__", "00000001-0000000000000002")
            assert done.status is ReplyStatus.OK and done.body["undo_bookmark"] > "00000001-0000000000000002"
            again = await client.call("__restore__", "00000001-0000000000000001")
            assert again.status is ReplyStatus.ERROR and again.body["type"] == "RestorePending"
            refused = await client.call("put", 10, "after")
            assert refused.status is ReplyStatus.ERROR and refused.body["type"] == "RestorePending"


async def test_a_snapshot_on_demand_is_in_the_archive_when_it_is_answered(cluster: Cluster, tmp_path: Any) -> None:
    archive = str(tmp_path / "archive")
    p = await _kv_primary_with_archive(cluster, archive)
    with trio.fail_after(budget(60)):
        await _put_all(p, range(1, 11), "p")
        last = (await _call(p, "__bookmark__"))["seq"]
        snap = await _call(p, "__snapshot__")
    assert snap["seq"] >= last and snap["bookmark"] == f"00000001-{snap['seq']:016x}"
    listing = await trio.to_thread.run_sync(_cli, "archive", "ls", "kvobj", "--archive", archive, "--json")
    rows = json.loads(listing.stdout)
    assert {"kind": "snapshot", "first": snap["seq"]}.items() <= next(
        r for r in rows if r["kind"] == "snapshot" and r["first"] == snap["seq"]
    ).items()
    proc = await trio.to_thread.run_sync(_cli, "archive", "verify", "kvobj", "--archive", archive)
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_a_requested_restore_that_cannot_be_done_is_dropped_and_the_object_serves(
    cluster: Cluster, tmp_path: Any
) -> None:
    """The archive object the restore needs is corrupt by the time the next start performs it: that
    start names the object, drops the request (a transaction), and serves the object as it was;
    a start that failed instead would fail again on every start, with writes refused forever."""
    archive = tmp_path / "archive"
    extra = ("--app", "kv", "--archive", str(archive), "--segment-seconds", "60")
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    a = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", name="pa", extra=extra))
    with trio.fail_after(budget(60)):
        await _put_all(a, range(1, 6), "a")
        mark = (await _call(a, "__bookmark__"))["bookmark"]
        await _put_all(a, range(6, 11), "a")
        await _call(a, "__snapshot__")  # segments through here are cut; a newer snapshot stands after them
        asked = await _call(a, "__restore__", mark)
    assert asked["restore_to"] == mark
    seq = int(mark.split("-")[1], 16)
    [victim] = [
        p
        for p in (archive / "kvobj" / "b00000001" / "seg").iterdir()
        if int(p.name.split("-")[0]) <= seq <= int(p.name.split("-")[1])
    ]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert cluster.primary is not None
    cluster.primary.kill()
    b = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", name="pb", extra=extra))
    with trio.fail_after(budget(90)):
        st = await _serving(b)
        found = await _read_all(b, range(1, 12))
        await _put_all(b, range(11, 12), "b")  # writable again
    assert st["pending_restore"] is None and st["restored"] is None and st["branch"] == 1, st
    assert f"restore to {mark} failed" in st["restore_error"] and victim.name in st["restore_error"], st
    assert found == {k: f"a{k}" for k in range(1, 11)}
