"""``walrelay bench``: a benchmark, not a test. Prints ratios to raw apsw measured in the same run.

(a) raw apsw, WAL, synchronous=NORMAL, one single-row INSERT per transaction;
(b) the same loop through walrelay's capture (shadow VFS + WAL hook + entry encoding);
(c) the full write path: the kv app on a primary process, 5 replica processes over loopback TCP,
    fdatasync before every ACK, group commit, N requests in flight from the bench process;
    plus request latency (send to released reply) at 1 and at N in flight;
(d) the same with the WAL archive on (a local directory, 1 s segments): throughput, and bytes
    uploaded per byte of log committed;
(e) restore: replaying the whole archived log from the genesis snapshot (MB of log per second),
    against a plain copy of the same segment bytes measured in the same run;
(f) the chaos simulation: simulated seconds per wall second (real time is the baseline, 1.0x)
    under a steady write load, and random fault schedules judged per minute
    (walrelay_chaos.speed).
Absolute numbers depend on the machine; the ratios are the claim.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable

import apsw
import trio

from walrelay.archive.dir_store import DirStore
from walrelay.archive.reader import ArchiveReader
from walrelay.capture import Commit, WalCapture
from walrelay.client import Client
from walrelay.entry import GENESIS_CHAIN, encode
from walrelay.procs import Cluster, client_transport
from walrelay.replay import Replayer
from walrelay.transport import Transport
from walrelay.wire import ReplyStatus

PAYLOAD = "x" * 100


def _loop(conn: apsw.Connection, seconds: float, after_commit: Callable[[], object] = lambda: None) -> float:
    conn.execute("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(100):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (n, PAYLOAD))
            conn.execute("COMMIT")
            after_commit()
            n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def bench_raw(root: str, seconds: float) -> float:
    conn = apsw.Connection(os.path.join(root, "raw.db"))
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "NORMAL")
    try:
        return _loop(conn, seconds)
    finally:
        conn.close()


def bench_capture(root: str, seconds: float) -> float:
    last_chain, seq = GENESIS_CHAIN, 0

    def on_commit(c: Commit) -> None:
        nonlocal last_chain, seq
        seq += 1
        e = encode(
            epoch=1, seq=seq, timestamp_us=time.time_ns() // 1000, page_size=c.page_size,
            db_pages=c.db_pages, db_checksum=c.db_checksum, frames=c.pages, prev_chain=last_chain,
        )  # fmt: skip
        last_chain = e.chain

    cap = WalCapture(os.path.join(root, "capture.db"), on_commit)
    try:
        return _loop(cap.conn, seconds, cap.maybe_checkpoint)
    finally:
        cap.close()


async def _replicated(address: str, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    tr = client_transport(address)  # TLS with the cluster's admin certificate, or plain TCP if insecure
    latencies: list[float] = []
    count = 0
    key = iter(range(10**12))
    conns = max(1, min(8, concurrency))
    async with trio.open_nursery() as nursery:
        clients = []
        for _ in range(conns):
            clients.append(await nursery.start(_client, tr, address))
        t0 = trio.current_time()
        deadline = t0 + seconds

        async def worker(i: int) -> None:
            nonlocal count
            client = clients[i % conns]
            while trio.current_time() < deadline:
                s = trio.current_time()
                reply = await client.call("put", next(key), PAYLOAD)
                if reply.status is not ReplyStatus.OK:
                    raise RuntimeError(f"put failed: {reply.body}")
                latencies.append((trio.current_time() - s) * 1000)
                count += 1

        async with trio.open_nursery() as workers:
            for i in range(concurrency):
                workers.start_soon(worker, i)
        elapsed = trio.current_time() - t0
        nursery.cancel_scope.cancel()
    return count / elapsed, latencies


async def _client(tr: Transport, address: str, *, task_status: trio.TaskStatus[Client]) -> None:
    async with Client.connect(tr, address) as c:
        task_status.started(c)
        await trio.sleep_forever()


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def bench_restore(archive: str, object_name: str) -> tuple[float, float, int]:
    """(MB/s replaying the whole log from genesis, MB/s copying the same segment bytes, log bytes)."""
    store = DirStore(archive, create=False)
    reader = ArchiveReader(store, object_name)
    b = reader.branch(1)
    t0 = time.perf_counter()
    replayer: Replayer | None = None
    log_bytes = 0
    for e in reader.entries(b, 0, GENESIS_CHAIN):
        replayer = replayer or Replayer(b"", e.page_size)
        replayer.apply(e)
        log_bytes += e.size
    replay_s = time.perf_counter() - t0
    paths = [os.path.join(archive, *key.split("/")) for key, _ in b.segments]
    t0 = time.perf_counter()
    with open(os.path.join(archive, "copy.bin"), "wb") as out:
        for path in paths:
            with open(path, "rb") as f:
                out.write(f.read())
    copy_s = time.perf_counter() - t0
    seg_bytes = sum(os.path.getsize(p) for p in paths)
    return log_bytes / replay_s / 1e6, seg_bytes / copy_s / 1e6, log_bytes


def _archive_bytes(archive: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(archive) for f in fs)


def run_bench(*, seconds: float = 3.0, concurrency: int = 64) -> int:
    root = tempfile.mkdtemp(prefix="walrelay-bench-")
    try:
        print(f"walrelay bench: {os.cpu_count()} CPUs, {seconds:g} s per measurement, data in {root}", flush=True)
        raw = bench_raw(root, seconds)
        print(f"(a) raw apsw, WAL, synchronous=NORMAL        {raw:10.0f} tx/s   1.00x", flush=True)
        cap = bench_capture(root, seconds)
        print(f"(b) walrelay capture + entry encoding        {cap:10.0f} tx/s   {cap / raw:.2f}x", flush=True)
        cluster = Cluster(os.path.join(root, "cluster"))
        os.makedirs(cluster.root)
        try:
            cluster.start_replicas(5)
            paddr = cluster.start_primary("bench", extra=("--app", "kv"))
            trio.run(_replicated, paddr, 0.5, 4)  # warm up: connections, page cache
            tput1, lat1 = trio.run(_replicated, paddr, seconds, 1)
            tput, lat = trio.run(_replicated, paddr, seconds, concurrency)
        finally:
            cluster.close()
        print(f"(c) 5 replicas, mutual TLS, fsync, {concurrency:>3} in flight {tput:7.0f} tx/s   {tput / raw:.2f}x",
              flush=True)  # fmt: skip
        print(f"    same, 1 in flight                         {tput1:10.0f} tx/s   {tput1 / raw:.2f}x")
        print(f"    latency, 1 in flight:  p50 {_pct(lat1, 50):.2f} ms  p99 {_pct(lat1, 99):.2f} ms")
        print(
            f"    latency, {concurrency} in flight: p50 {_pct(lat, 50):.2f} ms  p99 {_pct(lat, 99):.2f} ms", flush=True
        )
        # TLS's cost on the write path: the same cluster with plain TCP (--insecure), same run.
        plain = Cluster(os.path.join(root, "cluster-plain"), insecure=True)
        os.makedirs(plain.root)
        try:
            plain.start_replicas(5)
            paddr = plain.start_primary("bench", extra=("--app", "kv"))
            trio.run(_replicated, paddr, 0.5, 4)
            ptput1, plat1 = trio.run(_replicated, paddr, seconds, 1)
            ptput, _ = trio.run(_replicated, paddr, seconds, concurrency)
        finally:
            plain.close()
        print(f"    mutual TLS vs plain TCP (--insecure), 1 in flight: {tput1:.0f} vs {ptput1:.0f} tx/s "
              f"({tput1 / ptput1:.2f}x), p50 {_pct(lat1, 50):.2f} vs {_pct(plat1, 50):.2f} ms; "
              f"{concurrency} in flight: {tput:.0f} vs {ptput:.0f} tx/s ({tput / ptput:.2f}x)", flush=True)  # fmt: skip
        archive = os.path.join(root, "archive")
        cluster = Cluster(os.path.join(root, "cluster-archive"))
        os.makedirs(cluster.root)
        try:
            cluster.start_replicas(5)
            extra = ("--app", "kv", "--archive", archive, "--segment-seconds", "1")
            paddr = cluster.start_primary("bench", extra=extra)
            trio.run(_replicated, paddr, 0.5, 4)
            tput_a, _ = trio.run(_replicated, paddr, seconds, concurrency)
            time.sleep(2.5)  # the last segment is cut after 1 s and uploaded
        finally:
            cluster.close()
        print(f"(d) same with the archive on, {concurrency:>3} in flight {tput_a:10.0f} tx/s   {tput_a / raw:.2f}x"
              f"   ({tput_a / tput:.2f}x of (c))", flush=True)  # fmt: skip
        replay, copy, log_bytes = bench_restore(archive, "bench")
        uploaded = _archive_bytes(archive)
        print(f"    uploaded {uploaded / 1e6:.1f} MB for {log_bytes / 1e6:.1f} MB of log: "
              f"{uploaded / log_bytes:.2f} bytes uploaded per byte committed (segments + snapshots)")  # fmt: skip
        print(f"(e) restore: replay the whole log               {replay:8.1f} MB/s   "
              f"{replay / copy:.3f}x of a plain copy ({copy:.0f} MB/s)")  # fmt: skip
        from walrelay_chaos.speed import schedules_per_minute, sim_speed

        for per_tick in (1, 4):
            sim_s, wall_s, acked = sim_speed(30.0, per_tick)
            print(f"(f) chaos simulation, {per_tick * 10:>2} writes/simulated s {sim_s / wall_s:8.1f}x real time "
                  f"({sim_s:.1f} simulated s in {wall_s:.2f} s, {acked} writes acknowledged)", flush=True)  # fmt: skip
        runs, spent = schedules_per_minute(max(seconds * 4, 10.0))
        print(f"    random fault schedules, judged            {runs * 60 / spent:8.0f} per minute "
              f"({runs} in {spent:.1f} s)", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0
