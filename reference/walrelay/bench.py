"""``walrelay bench``: a benchmark, not a test. Prints ratios to raw apsw measured in the same run.

(a) raw apsw, WAL, synchronous=NORMAL, one single-row INSERT per transaction;
(b) the same loop through walrelay's capture (shadow VFS + WAL hook + entry encoding);
(c) the full write path: the kv app on a primary process, 5 replica processes over loopback TCP,
    fdatasync before every ACK, group commit, N requests in flight from the bench process;
    plus request latency (send to released reply) at 1 and at N in flight.
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

from walrelay.capture import Commit, WalCapture
from walrelay.client import Client
from walrelay.entry import GENESIS_CHAIN, encode
from walrelay.procs import Cluster
from walrelay.transport import TcpTransport
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
    tr = TcpTransport()
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


async def _client(tr: TcpTransport, address: str, *, task_status: trio.TaskStatus[Client]) -> None:
    async with Client.connect(tr, address) as c:
        task_status.started(c)
        await trio.sleep_forever()


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


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
        print(f"(c) 5 replicas over TCP, fsync, {concurrency:>3} in flight {tput:10.0f} tx/s   {tput / raw:.2f}x",
              flush=True)  # fmt: skip
        print(f"    same, 1 in flight                         {tput1:10.0f} tx/s   {tput1 / raw:.2f}x")
        print(f"    latency, 1 in flight:  p50 {_pct(lat1, 50):.2f} ms  p99 {_pct(lat1, 99):.2f} ms")
        print(f"    latency, {concurrency} in flight: p50 {_pct(lat, 50):.2f} ms  p99 {_pct(lat, 99):.2f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0
