"""The archive end to end with real processes: a primary ships to a directory or to a real
moto_server (S3 protocol), and the ``walrelay`` CLI lists, verifies and restores from it.

Writes go one at a time, so write k is entry k + 1 (entry 1 is the app's schema): a restore to
seq 1 + j must hold exactly keys 1..j, checked in the SQLite file ``restore`` writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio

from walrelay.archive.format import bookmark, segment_key
from walrelay.client import Client
from walrelay.procs import Cluster, client_transport, walrelay_argv
from walrelay.wire import ReplyStatus
from walrelay_chaos.pace import budget
from walrelay_chaos.s3server import ACCESS_KEY, SECRET_KEY, S3Server

pytestmark = pytest.mark.integration

WRITES = 30
MID = 12


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        walrelay_argv(*args),
        capture_output=True,
        text=True,
        timeout=budget(120),
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


async def _status(address: str) -> dict[str, Any]:
    async with Client.connect(client_transport(address), address) as client:
        body = (await client.call("__status__")).body
        assert isinstance(body, dict)
        return body


async def _write_and_wait_archived(cluster: Cluster, store_args: tuple[str, ...]) -> dict[str, Any]:
    """WRITES writes, one at a time; returns the bookmark and a time taken right after write MID."""
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    extra = ("--app", "kv", *store_args, "--segment-seconds", "0.3", "--segment-mb", "0.004")
    address = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=extra))
    marks: dict[str, Any] = {}
    async with Client.connect(client_transport(address), address) as client:
        for k in range(1, WRITES + 1):
            assert (await client.call("put", k, f"v{k}")).status is ReplyStatus.OK
            if k == MID:
                # current_bookmark() right after write MID, and a time between MID and MID + 1
                reply = await client.call("__bookmark__")
                assert reply.status is ReplyStatus.OK, reply
                marks["bookmark"] = reply.body["bookmark"]
                await trio.sleep(0.01)
                marks["time_us"] = time.time_ns() // 1000
                await trio.sleep(0.01)
        reply = await client.call("__bookmark_for_time__", marks["time_us"])
        assert reply.status is ReplyStatus.OK, reply
        marks["for_time"] = reply.body["bookmark"]
        reply = await client.call("__bookmark_for_time__", "yesterday")
        assert reply.status is ReplyStatus.ERROR and "microseconds" in reply.body["message"]
    with trio.fail_after(budget(60)):
        while True:
            status = await _status(address)
            archive = status["archive"]
            if archive.get("archived_through") == status["durable_seq"] == WRITES + 1:
                return marks
            await trio.sleep(0.05)


def _keys_in(path: Path) -> dict[int, str]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchall():
            return {}
        return {int(k): str(v) for k, v in conn.execute("SELECT k, v FROM kv")}
    finally:
        conn.close()


def _check_restores(store_args: tuple[str, ...], tmp: Path, env: dict[str, str] | None = None) -> None:
    for j in (0, 1, 7, WRITES):
        out = tmp / f"restore-{j}.db"
        proc = _cli("restore", "kvobj", "--to", bookmark(1, 1 + j), "--out", str(out), *store_args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert _keys_in(out) == {k: f"v{k}" for k in range(1, j + 1)}
    # By time: between the creation and the first write, the empty database (and it says so).
    rows = json.loads(_cli("archive", "ls", "kvobj", "--json", *store_args, env=env).stdout)
    created = next(r["time"] for r in rows if r["kind"] == "created")
    first = min(r["first_time"] for r in rows if r["kind"] == "segment")
    assert created < first
    out = tmp / "restore-empty.db"
    proc = _cli("restore", "kvobj", "--to", created, "--out", str(out), *store_args, env=env)
    assert proc.returncode == 0 and "the EMPTY database" in proc.stdout, proc.stderr
    assert _keys_in(out) == {}
    # Before the creation, and after the newest archived entry (later ones may not be archived
    # yet), a time names no point the archive can prove: refused, never a guess.
    for to, out, fragment in (
        ("1970-01-01T00:00:00Z", tmp / "epoch.db", f"before object 'kvobj' existed: it was created at {created}"),
        ("2999-01-01T00:00:00+00:00", tmp / "now.db", "after the newest archived entry"),
        (bookmark(1, 10_000), tmp / "far.db", "beyond the archive's end"),
        (bookmark(1, 3), tmp / "restore-0.db", "already exists"),
        ("yesterday", tmp / "bad.db", "bad point 'yesterday': expected latest, a bookmark BRANCH-SEQ in hex"),
        ("2026-01-01T00:00:00", tmp / "bad.db", "has no zone"),
    ):
        proc = _cli("restore", "kvobj", "--to", to, "--out", str(out), *store_args, env=env)
        usage = out.name == "bad.db"  # a value no point can be: a usage error (exit 2), like argparse's
        assert proc.returncode == (2 if usage else 1) and fragment in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not any((tmp / name).exists() for name in ("far.db", "bad.db", "epoch.db", "now.db"))


async def test_a_primary_archives_to_a_directory_and_the_cli_restores_exactly(cluster: Cluster, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    store_args = ("--archive", str(archive))
    marks = await _write_and_wait_archived(cluster, store_args)
    # current_bookmark() and bookmark_for_time() name the same point; both restore exactly to it.
    assert marks["bookmark"] == marks["for_time"] == bookmark(1, 1 + MID)
    for to in (marks["bookmark"], f"@{marks['time_us']}"):
        out = tmp_path / f"mid-{to[:3]}.db"
        proc = _cli("restore", "kvobj", "--to", to, "--out", str(out), *store_args)
        assert proc.returncode == 0, proc.stderr
        assert _keys_in(out) == {k: f"v{k}" for k in range(1, MID + 1)}
    proc = _cli("archive", "verify", "kvobj", *store_args)
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stdout + proc.stderr
    listing = json.loads(_cli("archive", "ls", "kvobj", "--json", *store_args).stdout)
    segments = [r for r in listing if r["kind"] == "segment"]
    assert len(segments) > 1 and segments[0]["first"] == 1 and segments[-1]["last"] == WRITES + 1
    assert any(r["kind"] == "snapshot" and r["first"] == 0 for r in listing)
    await trio.to_thread.run_sync(_check_restores, store_args, tmp_path)
    # Damage a segment that a restore needs (no snapshot inside its range, so the restore to its
    # last seq must replay it): verify and restore both name it, and restore writes nothing.
    snaps = {r["first"] for r in listing if r["kind"] == "snapshot"}
    needed = [r for r in segments if not any(r["first"] <= q <= r["last"] for q in snaps)]
    assert needed, listing
    segments = [segments[0], needed[0]]
    victim = archive / Path(segments[1]["key"])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    proc = _cli("archive", "verify", "kvobj", *store_args)
    assert proc.returncode == 1 and segments[1]["key"] in proc.stdout, proc.stdout
    target = bookmark(1, segments[1]["last"])
    proc = _cli("restore", "kvobj", "--to", target, "--out", str(tmp_path / "x.db"), *store_args)
    assert proc.returncode == 1 and segments[1]["key"] in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


async def test_a_primary_archives_to_a_real_s3_server(
    tmp_path: Path, s3_servers: list[S3Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the primary process inherits them
    for server in s3_servers:
        url = f"{server.endpoint}/walrelay-proc-{server.name}/prefix"
        store_args = ("--s3", url)
        sub = tmp_path / server.name
        sub.mkdir()
        c = Cluster(str(sub))
        try:
            await _write_and_wait_archived(c, store_args)
        finally:
            await trio.to_thread.run_sync(c.close)
        assert not any(node.alive for node in [*c.replicas, *c.primaries])
        proc = _cli("archive", "verify", "kvobj", *store_args, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert segment_key("kvobj", 1, 1, 1)[:10] in _cli("archive", "ls", "kvobj", *store_args, env=env).stdout
        await trio.to_thread.run_sync(_check_restores, store_args, sub, env)


def test_the_demo_archives_to_a_real_s3_server_and_restores_from_it(
    tmp_path: Path, s3_servers: list[S3Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`walrelay demo --s3 URL`: the same story with the archive on an S3-protocol server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    url = f"{s3_servers[0].endpoint}/walrelay-demo-s3/run1"
    args = ["demo", "--dir", str(tmp_path / "demo"), "--bookings", "12", "--hold-seconds", "1", "--s3", url]
    proc = subprocess.run(
        walrelay_argv(*args), capture_output=True, text=True, timeout=budget(240), stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "[ok] archive verifies" in proc.stdout and "FAIL" not in proc.stdout
    # A second run on the same location is refused up front: it holds another history.
    args[2] = str(tmp_path / "demo2")
    again = subprocess.run(
        walrelay_argv(*args), capture_output=True, text=True, timeout=budget(240), stdin=subprocess.DEVNULL
    )
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stdout[-2000:] + again.stderr[-2000:]


async def test_a_clean_stop_archives_what_is_durable_before_exiting(cluster: Cluster, tmp_path: Path) -> None:
    """SIGTERM: the primary uploads the segment it had not cut yet (10 minutes to go) before it exits."""
    archive = tmp_path / "archive"
    await trio.to_thread.run_sync(cluster.start_replicas, 5)
    extra = ("--app", "kv", "--archive", str(archive), "--segment-seconds", "600")
    address = await trio.to_thread.run_sync(lambda: cluster.start_primary("kvobj", extra=extra))
    async with Client.connect(client_transport(address), address) as client:
        for k in range(1, 6):
            assert (await client.call("put", k, f"v{k}")).status is ReplyStatus.OK
    assert cluster.primary is not None
    await trio.to_thread.run_sync(lambda: cluster.primary.stop(timeout=budget(30)))  # type: ignore[union-attr]
    listing = json.loads(_cli("archive", "ls", "kvobj", "--json", "--archive", str(archive)).stdout)
    assert max(r["last"] for r in listing if r["kind"] == "segment") == 6, listing
    out = tmp_path / "after-stop.db"
    proc = _cli("restore", "kvobj", "--to", bookmark(1, 6), "--out", str(out), "--archive", str(archive))
    assert proc.returncode == 0, proc.stderr
    assert _keys_in(out) == {k: f"v{k}" for k in range(1, 6)}
