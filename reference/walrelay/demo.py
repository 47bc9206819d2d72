"""``walrelay demo``: the flight-booking workload on 1 primary + 5 replica processes over loopback TCP.

It shows the promise of the write path with real processes and SIGKILL: with 2 replicas dead,
writes are still acknowledged (3 of 5 store them); with 3 dead, replies are *held, not
acknowledged*; when one comes back, the held replies complete. It then stops everything and
replays each replica's log from its own disk to prove every acknowledged booking is stored on at
least 3 replicas. Exit code 0 only if every check held.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any

import trio

from walrelay.client import Client
from walrelay.procs import Cluster
from walrelay.replay import Replayer, open_image
from walrelay.replica_store import ReplicaStore
from walrelay.transport import TcpTransport
from walrelay.wire import ReplyStatus

OBJECT = "flights"
FLIGHTS = ("WR100", "WR200", "WR300")
SEATS = 400
CLIENTS = 8


@dataclass
class Tally:
    acked: list[tuple[str, int, str]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _say(text: str = "") -> None:
    print(text, flush=True)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _status(client: Client) -> dict[str, Any]:
    reply = await client.call("__status__")
    body: dict[str, Any] = reply.body
    return body


async def _wait_all_connected(client: Client, n: int, limit_s: float = 20.0) -> None:
    with trio.fail_after(limit_s):
        while True:
            st = await _status(client)
            if sum(1 for r in st["replicas"] if r["connected"]) == n and st["durable_seq"] == st["last_seq"]:
                return
            await trio.sleep(0.05)


async def _book_many(clients: list[Client], bookings: list[tuple[str, int, str]], tally: Tally) -> None:
    async def one(client: Client, flight: str, seat: int, who: str) -> None:
        t0 = trio.current_time()
        reply = await client.call("book", flight, seat, who)
        if reply.status is ReplyStatus.OK:
            tally.latencies_ms.append((trio.current_time() - t0) * 1000)
            tally.acked.append((flight, seat, who))
        else:
            tally.errors.append(f"{flight}/{seat}: {reply.status.name} {reply.body}")

    limiter = trio.CapacityLimiter(len(clients) * 4)

    async def limited(i: int, b: tuple[str, int, str]) -> None:
        async with limiter:
            await one(clients[i % len(clients)], *b)

    async with trio.open_nursery() as nursery:
        for i, b in enumerate(bookings):
            nursery.start_soon(limited, i, b)


def _replayed_bookings(root: str, replica: int) -> tuple[set[tuple[str, int, str]], int]:
    """Rebuild the database from one replica's own log on disk and read the bookings from it."""
    store = ReplicaStore(os.path.join(root, f"replica-{replica}"), OBJECT)
    entries = store.read_entries(1)
    if not entries:
        return set(), 0
    rep = Replayer(b"", entries[0].page_size)
    rep.apply_all(entries)
    conn = open_image(rep.image)
    rows = conn.execute("SELECT flight, seat, passenger FROM bookings").fetchall()
    return {(str(f), int(str(s)), str(p)) for f, s, p in rows}, rep.last_seq


async def _scenario(cluster: Cluster, bookings: int, hold_seconds: float) -> list[Check]:
    checks: list[Check] = []
    tr = TcpTransport()
    _say("[1/7] starting 5 replica processes")
    addrs = await trio.to_thread.run_sync(cluster.start_replicas, 5)
    for i, a in enumerate(addrs):
        _say(f"      replica {i} on {a}")
    _say("[2/7] starting the primary (epoch 1, quorum 3 of 5)")
    paddr = await trio.to_thread.run_sync(cluster.start_primary, OBJECT)
    _say(f"      primary on {paddr}")

    async with Client.connect(tr, paddr) as admin:
        await _wait_all_connected(admin, 5)
        for f in FLIGHTS:
            r = await admin.call("create_flight", f, SEATS)
            if r.status is not ReplyStatus.OK:
                raise RuntimeError(f"create_flight {f} failed: {r.body}")
        seats = iter((f, s) for s in range(1, SEATS + 1) for f in FLIGHTS)

        def next_bookings(n: int, tag: str) -> list[tuple[str, int, str]]:
            return [(f, s, f"{tag}-{f}-{s}") for (f, s), _ in zip(seats, range(n), strict=False)]

        async with trio.open_nursery() as nursery:
            clients: list[Client] = []
            for _ in range(CLIENTS):
                clients.append(await nursery.start(_client_task, tr, paddr))

            normal = Tally()
            _say(f"[3/7] booking {bookings} seats with {CLIENTS} clients, all 5 replicas up")
            batch = next_bookings(bookings, "all5")
            await _book_many(clients, batch, normal)
            _say(f"      {len(normal.acked)} acknowledged, {len(normal.errors)} errors")
            checks.append(
                Check(
                    "all bookings acknowledged with 5 replicas up",
                    len(normal.acked) == len(batch),
                    f"{len(normal.acked)}/{len(batch)}",
                )
            )

            _say("[4/7] SIGKILL replicas 3 and 4 (2 of 5 down)")
            cluster.replicas[3].kill()
            cluster.replicas[4].kill()
            degraded = Tally()
            batch = next_bookings(bookings, "three")
            await _book_many(clients, batch, degraded)
            st = await _status(admin)
            _say(f"      {len(degraded.acked)} acknowledged with 3 of 5 replicas; durable_seq {st['durable_seq']}")
            checks.append(
                Check(
                    "writes still acknowledged with 2 replicas down",
                    len(degraded.acked) == len(batch),
                    f"{len(degraded.acked)}/{len(batch)}",
                )
            )

            _say("[5/7] SIGKILL replica 2 (3 of 5 down: no quorum)")
            cluster.replicas[2].kill()
            held = Tally()
            held_batch = next_bookings(5, "held")
            done = trio.Event()

            async def send_held() -> None:
                await _book_many(clients, held_batch, held)
                done.set()

            nursery.start_soon(send_held)
            await trio.sleep(hold_seconds)
            st = await _status(admin)
            up = [r["replica"] for r in st["replicas"] if r["stored_through"] >= st["last_seq"]]
            _say(f"      after {hold_seconds:g}s: {len(held.acked)} acknowledged, {st['held_replies']} replies held")
            _say(
                f"      why: seq {st['durable_seq'] + 1}..{st['last_seq']} stored by {len(up)} of 5 replicas "
                f"({', '.join(map(str, up)) or 'none'}); {st['quorum']} needed"
            )
            checks.append(
                Check(
                    "no reply released without a quorum (held, not acknowledged)",
                    not held.acked and not held.errors and st["held_replies"] >= 1,
                    f"{len(held.acked)} acked, {len(held.errors)} errors, {st['held_replies']} held",
                )
            )

            _say("[6/7] restarting replica 2 (same disk, same port)")
            t0 = trio.current_time()
            await trio.to_thread.run_sync(cluster.restart_replica, 2)
            with trio.move_on_after(30):
                await done.wait()
            waited = (trio.current_time() - t0) * 1000
            _say(f"      {len(held.acked)} held bookings acknowledged {waited:.0f} ms after the restart began")
            checks.append(
                Check(
                    "held writes complete once a quorum is back",
                    len(held.acked) == len(held_batch),
                    f"{len(held.acked)}/{len(held_batch)}",
                )
            )

            visible = await admin.call("bookings", "WR100")
            nursery.cancel_scope.cancel()

    acked = set(normal.acked) | set(degraded.acked) | set(held.acked)
    primary_wr100 = {(int(row["seat"]), str(row["passenger"])) for row in visible.body}
    acked_wr100 = {(s, p) for f, s, p in acked if f == "WR100"}
    checks.append(
        Check(
            "primary serves every acknowledged booking",
            acked_wr100 <= primary_wr100,
            f"{len(acked_wr100 & primary_wr100)}/{len(acked_wr100)} on WR100",
        )
    )

    _say("[7/7] stopping all processes; replaying each replica's log from its own disk")
    await trio.to_thread.run_sync(cluster.close)
    copies: dict[tuple[str, int, str], int] = dict.fromkeys(acked, 0)
    for i in range(5):
        held_rows, last = _replayed_bookings(cluster.root, i)
        _say(
            f"      replica {i}: log through seq {last}, {len(held_rows & acked)} of {len(acked)} acknowledged bookings"
        )
        for b in acked & held_rows:
            copies[b] += 1
    short = [b for b, n in copies.items() if n < 3]
    checks.append(
        Check(
            "every acknowledged booking is on the disk of >= 3 replicas",
            not short,
            f"{len(acked) - len(short)}/{len(acked)}" + (f"; first short: {short[0]}" if short else ""),
        )
    )

    lat = normal.latencies_ms + degraded.latencies_ms
    _say()
    _say("summary")
    _say(
        f"  acknowledged: {len(acked)}   held then acknowledged: {len(held.acked)}   "
        f"errors: {len(normal.errors) + len(degraded.errors) + len(held.errors)}"
    )
    _say(
        f"  commit-to-ack latency (phases 3-4, {len(lat)} ops, {CLIENTS} clients): "
        f"p50 {_pct(lat, 50):.2f} ms  p99 {_pct(lat, 99):.2f} ms  mean {statistics.fmean(lat) if lat else 0:.2f} ms"
    )
    return checks


async def _client_task(tr: TcpTransport, address: str, *, task_status: trio.TaskStatus[Client]) -> None:
    async with Client.connect(tr, address) as client:
        task_status.started(client)
        await trio.sleep_forever()


def run_demo(*, dir: str | None = None, bookings: int = 60, hold_seconds: float = 2.0) -> int:
    root = dir or tempfile.mkdtemp(prefix="walrelay-demo-")
    os.makedirs(root, exist_ok=True)
    if os.listdir(root):
        print(f"walrelay demo: error: {root} is not empty; give an empty or new --dir")
        return 2
    _say("walrelay demo: flight bookings on 1 primary + 5 replicas (ack after 3), separate processes, loopback TCP")
    _say(f"data and node logs: {root}")
    cluster = Cluster(root)
    try:
        checks = trio.run(_scenario, cluster, bookings, hold_seconds)
    except Exception as e:
        _say(f"demo failed: {type(e).__name__}: {e}  (node logs in {root})")
        cluster.close()
        return 1
    finally:
        cluster.close()
    _say()
    _say("checks")
    for c in checks:
        _say(f"  [{'ok' if c.ok else 'FAIL'}] {c.name} ({c.detail})")
    ok = all(c.ok for c in checks)
    if ok and dir is None:
        shutil.rmtree(root, ignore_errors=True)
    elif not ok:
        _say(f"node logs kept in {root}")
    _say("demo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1
