"""``walrelay demo``: the flight-booking workload on 1 primary + 5 replica processes over loopback TCP.

It shows the promise of the write path with real processes and SIGKILL: with 2 replicas dead,
writes are still acknowledged (3 of 5 store them); with 3 dead, replies are *held, not
acknowledged*; when one comes back, the held replies complete. It then stops everything and
replays each replica's log from its own disk to prove every acknowledged booking is stored on at
least 3 replicas (a replica that dropped its archived prefix is replayed on the archive's database
at its first entry, which must have the same chain). Last, failover: it restarts everything, stops
the primary (SIGSTOP) in the middle of a burst, promotes a second primary with the next epoch, shows
every acknowledged booking there, resumes the old primary and shows it refuses a booking because it
is fenced, then kills the second primary mid-burst (SIGKILL) and promotes a third, which must hold
every acknowledged booking and none that was reported failed.

Every primary ships its durable log to one WAL archive (a directory in the run's, or S3), which
each new primary continues across the failovers. Mid-run the demo takes a bookmark and notes a
time, with the bookings the primary served then; at the end it verifies the archive and restores
to the bookmark, to the time and to the last primary's latest bookmark with ``walrelay restore``,
and compares each SQLite file with what the primary served. Exit code 0 only if every check held.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import apsw
import trio

from walrelay.archive.dir_store import DirStore
from walrelay.archive.reader import ArchiveReader
from walrelay.archive.s3_store import S3Store
from walrelay.archive.store import ObjectStore, ObjectStoreError
from walrelay.client import Client
from walrelay.errors import WalrelayError
from walrelay.procs import Cluster, walrelay_argv
from walrelay.redact import redact
from walrelay.replay import Replayer, open_image
from walrelay.replica_store import ReplicaStore
from walrelay.transport import Transport
from walrelay.wire import ReplyStatus

OBJECT = "flights"
FLIGHTS = ("WR100", "WR200", "WR300")
SEATS = 400
CLIENTS = 8
SEGMENT_SECONDS = "0.5"  # cut an archive segment this often (the primary's default is 10 s)


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


async def _wait_all_stored(client: Client, limit_s: float = 20.0) -> None:
    with trio.fail_after(limit_s):
        while True:
            st = await _status(client)
            if all(r["stored_through"] == st["last_seq"] for r in st["replicas"]):
                return
            await trio.sleep(0.02)


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


@dataclass
class ReplicaDisk:
    """What one replica's disk holds, checked: its log replayed into a database.

    A replica drops the archived prefix of its log once the primary's TRUNCATE says the archive
    holds it (docs/archive-format.md §5.1); its file then starts at ``first`` > 1, and the entries
    before that count as held by it only through the archive: the database is the archive's at
    ``first`` (whose chain must be the replica's entry ``first``'s, which fixes every entry
    before it), with the replica's own entries after ``first`` replayed on top, each checked.
    ``problem``: why the log does not replay (then it holds nothing that counts)."""

    first: int  # the first seq in its file (0: empty)
    last: int
    archived_through: int  # from its state file
    image: bytes
    problem: str | None = None

    def how(self) -> str:
        """How its log was checked, after "log through seq N, ... bookings" (nothing: from seq 1)."""
        if self.problem is not None:
            return f" (its log does not check: {self.problem})"
        if self.first <= 1:
            return ""
        return (
            f" (its file holds seq {self.first}..{self.last}, archived through {self.archived_through}: "
            f"seq 1..{self.first} from the archive, the same chain at {self.first})"
        )


def _replica_disk(data_dir: str, object_name: str, reader: ArchiveReader) -> ReplicaDisk:
    """Rebuild the database from one stopped replica's own log on disk, on the archive's image at
    the log's first seq where the replica truncated its archived prefix (ReplicaDisk)."""
    store = ReplicaStore(data_dir, object_name)
    try:
        try:
            loaded = store.load()  # verifies the file (a torn tail is cut, as the replica's restart would)
            entries = store.read_entries(1)
        finally:
            store.close()
    except WalrelayError as e:
        return ReplicaDisk(0, 0, 0, b"", f"{type(e).__name__}: {e}")
    archived = loaded.archived_through
    if not entries:
        return ReplicaDisk(0, 0, archived, b"")
    head = entries[0]
    first, last = head.seq, entries[-1].seq

    def bad(why: str) -> ReplicaDisk:
        return ReplicaDisk(first, last, archived, b"", why)

    try:
        if first == 1:
            rep = Replayer(b"", head.page_size)
            rep.apply_all(entries)
        else:
            if first > archived:
                return bad(f"its file starts at seq {first}, but it accepted a TRUNCATE through {archived} only")
            try:
                base = reader.restore_image(first)
            except ObjectStoreError:
                raise  # the archive cannot be read: not a fault of this replica's log
            except WalrelayError as e:
                return bad(f"the archive cannot give the database at seq {first}, where its file starts: {e}")
            if (base.seq, base.chain) != (first, head.chain):
                return bad(
                    f"its entry seq {first} is not the archive's (chain {head.chain.hex()} vs {base.chain.hex()})"
                )
            rep = Replayer(base.image, base.page_size, last_seq=base.seq, last_chain=base.chain)
            rep.apply_all(entries[1:])
    except WalrelayError as e:
        return bad(f"{type(e).__name__}: {e}")
    return ReplicaDisk(first, rep.last_seq, archived, bytes(rep.image))


def _bookings_in(image: bytes) -> set[Booking]:
    if not image:
        return set()
    conn = open_image(image)
    try:
        rows = conn.execute("SELECT flight, seat, passenger FROM bookings").fetchall()
    finally:
        conn.close()
    return {(str(f), int(str(s)), str(p)) for f, s, p in rows}


@dataclass
class Facts:
    """What the run learnt that its closing lines print: the points to restore to, and whether a
    signal (Ctrl-C, SIGTERM) stopped it."""

    mark: Mark | None = None
    latest: str | None = None
    interrupted: int = 0  # the signal that stopped the run (0: none)
    killed: set[int] = field(default_factory=set)  # the pids of the node processes it killed then


async def _scenario(
    cluster: Cluster, store: tuple[str, str], bookings: int, hold_seconds: float, facts: Facts | None = None
) -> list[Check]:
    """``store``: the archive arguments every primary gets (``--archive DIR`` or ``--s3 URL``)."""
    facts = facts if facts is not None else Facts()
    checks: list[Check] = []
    tr = cluster.client_transport()
    extra = (*store, "--segment-seconds", SEGMENT_SECONDS)
    _say("[1/10] starting 5 replica processes")
    addrs = await trio.to_thread.run_sync(cluster.start_replicas, 5)
    for i, a in enumerate(addrs):
        _say(f"      replica {i} on {a}")
    _say("[2/10] starting the primary (epoch 1, quorum 3 of 5)")
    paddr = await trio.to_thread.run_sync(lambda: cluster.start_primary(OBJECT, extra=extra))
    _say(f"      primary on {paddr}, archiving to {store[1]}")

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
            _say(f"[3/10] booking {bookings} seats with {CLIENTS} clients, all 5 replicas up")
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
            mark = await _take_mark(admin)
            facts.mark = mark
            _say(
                f"      bookmark {mark.bookmark} (seq {mark.seq}) right after them; the primary serves "
                f"{len(mark.bookings)} bookings; time t_mid = {_iso(mark.t_us)} (@{mark.t_us})"
            )

            # Let the two slowest replicas store everything first, so that what they hold when
            # they die (checked in phase 7) does not depend on timing.
            await _wait_all_stored(admin)
            _say("[4/10] SIGKILL replicas 3 and 4 (2 of 5 down)")
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

            _say("[5/10] SIGKILL replica 2 (3 of 5 down: no quorum)")
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

            _say("[6/10] restarting replica 2 (same disk, same port)")
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

    _say("[7/10] stopping all processes; replaying each replica's log from its own disk (and the archive)")
    await trio.to_thread.run_sync(cluster.close)
    reader = ArchiveReader(_open_store(store), OBJECT)
    copies: dict[Booking, int] = dict.fromkeys(acked, 0)
    wrong: list[str] = []
    for i in range(5):
        disk = await trio.to_thread.run_sync(_replica_disk, os.path.join(cluster.root, f"replica-{i}"), OBJECT, reader)
        held_rows = _bookings_in(disk.image)
        _say(
            f"      replica {i}: log through seq {disk.last}, {len(held_rows & acked)} of {len(acked)} "
            f"acknowledged bookings{disk.how()}"
        )
        if disk.problem is not None:
            wrong.append(f"replica {i}: {disk.problem}")
        for b in acked & held_rows:
            copies[b] += 1
    short = [b for b, n in copies.items() if n < 3]
    # One check (tests/test_processes.py counts them): the bookings are there and every replica's log checks,
    # so a wrong log fails it even when the other replicas hold 3 copies of everything.
    checks.append(
        Check(
            "every acknowledged booking is on the disk of >= 3 replicas",
            not short and not wrong,
            f"{len(acked) - len(short)}/{len(acked)}"
            + (f"; first short: {short[0]}" if short else "")
            + (f"; {len(wrong)} of 5 replicas' logs do not check, {wrong[0]}" if wrong else ""),
        )
    )

    fo = await _failover(cluster, tr, extra, next_bookings, acked, bookings, checks)
    pitr = await _point_in_time_restore(cluster, tr, store, mark, fo.epochs, checks)
    facts.latest = pitr.latest
    undo = await _restore_and_undo(cluster, tr, store, extra, mark, next_bookings, checks)

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
    _say(
        f"  failover (phase 8): epochs {' -> '.join(map(str, fo.epochs))}; {fo.acked} acknowledged in all, "
        f"{fo.in_doubt} in doubt of which {fo.in_doubt_kept} kept; "
        f"the booking sent to the replaced primary: {fo.stale_reply}"
    )
    _say(
        f"  archive (phase 9): {pitr.segments} segments and {pitr.snapshots} snapshots through seq {pitr.end}, "
        f"continued by the primaries of epochs {' -> '.join(map(str, [mark.epoch, *fo.epochs]))}; "
        f"restored to bookmark {mark.bookmark}, to @{mark.t_us} and to {pitr.latest}"
    )
    _say(
        f"  restore of the object (phase 10): to {mark.bookmark} as branch {undo.branch}, undone to "
        f"{undo.undo_bookmark} as branch {undo.undo_branch}"
    )
    return checks


@dataclass
class UndoSummary:
    branch: int
    undo_bookmark: str
    undo_branch: int


async def _restart_for_restore(
    cluster: Cluster, tr: Transport, extra: tuple[str, ...], client: Client, to: str, name: str
) -> tuple[str, str, dict[str, Any]]:
    """__restore__(to) on the running primary, a clean stop, and a new primary that performs it.
    Returns (the undo bookmark the request answered, the new primary's address, its status)."""
    reply = await client.call("__restore__", to)
    if reply.status is not ReplyStatus.OK:
        raise RuntimeError(f"__restore__({to}) failed: {reply.status.name} {reply.body}")
    undo = str(reply.body["undo_bookmark"])
    _say(f"      __restore__({to}) -> undo bookmark {undo} (applies on the next start)")
    refused = await client.call("book", FLIGHTS[0], 1, "after-the-request")
    _say(f"      a booking after the request: {refused.status.name} {_message(refused.body)}")
    old = cluster.primary
    assert old is not None
    await trio.to_thread.run_sync(old.stop)
    addr = await trio.to_thread.run_sync(lambda: cluster.start_primary(OBJECT, name=name, extra=extra))
    async with Client.connect(tr, addr) as new:
        st = await _wait_serving(new, limit_s=60)
    return undo, addr, st


async def _restore_and_undo(
    cluster: Cluster,
    tr: Transport,
    store: tuple[str, str],
    extra: tuple[str, ...],
    mark: Mark,
    next_bookings: Callable[[int, str], list[Booking]],
    checks: list[Check],
) -> UndoSummary:
    """Phase 10: restore the object itself to the mid-run bookmark (a new branch of its history),
    write on it, then undo the restore with the undo bookmark it answered."""
    _say(f"[10/10] restoring the object itself to {mark.bookmark}, then undoing that restore")
    c = cluster.primary
    assert c is not None and c.address is not None
    async with Client.connect(tr, c.address) as to_c:
        before = await _all_bookings(to_c)
        undo, d_addr, st = await _restart_for_restore(cluster, tr, extra, to_c, mark.bookmark, "primary-d")
    restored = st.get("restored") or {}
    _say(
        f"      D: epoch {st['epoch']}, branch {st['branch']}, restored to {restored.get('restored_to')}, "
        f"undo bookmark {restored.get('undo_bookmark')}"
    )
    async with Client.connect(tr, d_addr) as to_d:
        on_d = await _all_bookings(to_d)
        checks.append(
            Check(
                f"restored object D serves exactly the bookings of {mark.bookmark}",
                on_d == mark.bookings and restored.get("undo_bookmark") == undo,
                f"{len(on_d & mark.bookings)}/{len(mark.bookings)} bookings, {len(on_d - mark.bookings)} others; "
                f"undo {restored.get('undo_bookmark')} (asked: {undo})",
            )
        )
        new = next_bookings(3, "branch")
        tally = Tally()
        await _book_many([to_d], new, tally)
        _say(f"      3 bookings on the new branch: {len(tally.acked)} acknowledged")
        undo2, e_addr, st_e = await _restart_for_restore(cluster, tr, extra, to_d, undo, "primary-e")
    async with Client.connect(tr, e_addr) as to_e:
        on_e = await _all_bookings(to_e)
        # The archive is live: E ships its branch. Verify it once every durable entry is recorded
        # (a segment whose manifest is still in flight is reported as unrecorded).
        await _wait_archived(to_e, 0)
    _say(f"      E: epoch {st_e['epoch']}, branch {st_e['branch']}, restored to {undo}; undo of the undo: {undo2}")
    checks.append(
        Check(
            "undoing the restore gives back exactly what C served before it (the new branch's bookings gone)",
            on_e == before and not (on_e & set(new)),
            f"{len(on_e & before)}/{len(before)} of C's bookings, {len(on_e - before)} others",
        )
    )
    rc, said = await _cli("archive", "verify", OBJECT, *store)
    rc2, listed = await _cli("archive", "ls", OBJECT, *store)
    for line in listed.splitlines():
        if line.startswith("branch") and "restored from" in line:
            _say(f"      {line}")
    last = said.splitlines()[-1] if said else ""
    checks.append(Check("the archive with three branches verifies", rc == 0 and rc2 == 0, last))
    return UndoSummary(int(st["branch"]), undo, int(st_e["branch"]))


Booking = tuple[str, int, str]


@dataclass
class Outcomes:
    """Each booking of a burst as its client saw it (Jepsen's three outcomes, plus never sent)."""

    ok: set[Booking] = field(default_factory=set)
    failed: set[Booking] = field(default_factory=set)  # ERROR: the primary says it did not happen
    unknown: set[Booking] = field(default_factory=set)  # UNKNOWN, or the connection died: maybe
    unsent: set[Booking] = field(default_factory=set)  # the connection was gone before the request
    in_flight: set[Booking] = field(default_factory=set)  # sent, no answer yet
    sent: int = 0

    @property
    def replied(self) -> int:
        return len(self.ok) + len(self.failed) + len(self.unknown)

    def no_answer(self, batch: list[Booking]) -> set[Booking]:
        """Sent (or queued) but not settled: in doubt, like UNKNOWN."""
        return set(batch) - self.ok - self.failed - self.unsent


@dataclass
class Mark:
    """A point taken mid-run: the primary's bookmark, what it served there, and a time just after."""

    bookmark: str
    seq: int
    epoch: int
    bookings: set[Booking]
    t_us: int  # wall clock, microseconds since the epoch: after entry ``seq``, before the next write


async def _take_mark(client: Client) -> Mark:
    """Call with no write in flight: the bookmark, the bookings read right after it, then the time."""
    reply = await client.call("__bookmark__")  # held until the point is durable
    if reply.status is not ReplyStatus.OK:
        raise RuntimeError(f"__bookmark__ failed: {reply.status.name} {reply.body}")
    served = await _all_bookings(client)
    epoch = int((await _status(client))["epoch"])
    t_us = time.time_ns() // 1000
    await trio.sleep(0.02)  # so the next write's timestamp lies strictly after t_us
    return Mark(str(reply.body["bookmark"]), int(reply.body["seq"]), epoch, served, t_us)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class FailoverSummary:
    epochs: list[int]
    acked: int
    in_doubt: int
    in_doubt_kept: int
    stale_reply: str


async def _wait_serving(client: Client, *, all_connected: bool = False, limit_s: float = 30.0) -> dict[str, Any]:
    """Poll ``__status__`` until the primary serves (recovered, and a quorum holds its log)."""
    with trio.fail_after(limit_s):
        while True:
            st = await _status(client)
            if st["phase"] in ("gave up", "reset"):
                why = st.get("gave_up") or st.get("reset")
                raise RuntimeError(f"primary epoch {st['epoch']}: {st['phase']}: {why}")
            if st["phase"] == "serving" and (
                not all_connected
                or (all(r["connected"] for r in st["replicas"]) and st["durable_seq"] == st["last_seq"])
            ):
                return st
            await trio.sleep(0.05)


async def _all_bookings(client: Client) -> set[Booking]:
    found: set[Booking] = set()
    for f in FLIGHTS:
        reply = await client.call("bookings", f)
        if reply.status is not ReplyStatus.OK:
            raise RuntimeError(f"reading the bookings of {f} failed: {reply.status.name} {reply.body}")
        found |= {(f, int(row["seat"]), str(row["passenger"])) for row in reply.body}
    return found


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return f"{body.get('type', '?')}: {body.get('message', body)}"
    return str(body)


async def _burst(
    tr: Transport,
    address: str,
    batch: list[Booking],
    out: Outcomes,
    *,
    after: int = 0,
    then: Callable[[], None] | None = None,
) -> None:
    """Book ``batch`` over CLIENTS pipelined connections to one primary. If ``then`` is given,
    call it (a signal to that primary) right after the ``after``-th acknowledgement, while the
    rest of the burst is still in flight."""
    fired = False
    limiter = trio.CapacityLimiter(CLIENTS * 4)
    async with trio.open_nursery() as connections:
        clients: list[Client] = [await connections.start(_client_task, tr, address) for _ in range(CLIENTS)]

        async def one(i: int, b: Booking) -> None:
            nonlocal fired
            client = clients[i % len(clients)]
            async with limiter:
                if client.closed_reason is not None:
                    out.unsent.add(b)
                    return
                out.sent += 1
                out.in_flight.add(b)
                try:
                    reply = await client.call("book", *b)
                except ConnectionError:
                    out.unknown.add(b)
                    return
                finally:
                    out.in_flight.discard(b)
            {ReplyStatus.OK: out.ok, ReplyStatus.ERROR: out.failed}.get(reply.status, out.unknown).add(b)
            if then is not None and not fired and len(out.ok) >= after:
                fired = True
                then()

        async with trio.open_nursery() as calls:
            for i, b in enumerate(batch):
                calls.start_soon(one, i, b)
        connections.cancel_scope.cancel()


async def _failover(
    cluster: Cluster,
    tr: Transport,
    extra: tuple[str, ...],
    next_bookings: Callable[[int, str], list[Booking]],
    acked: set[Booking],
    n: int,
    checks: list[Check],
) -> FailoverSummary:
    """Phase 8: primary A stopped mid-burst, B promoted, A fenced, B killed mid-burst, C promoted."""
    _say("[8/10] primary failover: SIGSTOP and SIGKILL the primary mid-burst, promote a new one, fence the old one")
    _say("      restarting the 5 replicas on their disks, and the primary (call it A) with a new epoch")
    for i in range(len(cluster.replicas)):
        await trio.to_thread.run_sync(cluster.restart_replica, i)
    a_addr = await trio.to_thread.run_sync(lambda: cluster.start_primary(OBJECT, extra=extra))
    a = cluster.primary
    assert a is not None
    epochs: list[int] = []

    # This connection to A is opened now and used again after A was replaced: A's own view.
    async with Client.connect(tr, a_addr) as to_a:
        st = await _wait_serving(to_a, all_connected=True)
        epochs.append(st["epoch"])
        on_a = await _all_bookings(to_a)
        _say(
            f"      A: epoch {st['epoch']}, {st['phase']}, recovered {st['recovered_end']} log entries "
            f"from the replicas; it serves {len(acked & on_a)} of the {len(acked)} acknowledged bookings"
        )
        checks.append(
            Check(
                "restarted primary A recovers every acknowledged booking",
                acked <= on_a,
                f"{len(acked & on_a)}/{len(acked)}",
            )
        )

        burst_a = next_bookings(3 * n, "A")
        a_out = Outcomes()
        paused = trio.Event()
        a_done = trio.Event()
        a_scope = trio.CancelScope()

        def pause_a() -> None:
            a.pause()
            paused.set()

        async def run_burst_a() -> None:
            with a_scope:
                await _burst(tr, a_addr, burst_a, a_out, after=n, then=pause_a)
            if not paused.is_set():  # the burst ended before the n-th acknowledgement
                pause_a()
            a_done.set()

        _say(f"      a) booking {len(burst_a)} seats on A with {CLIENTS} clients; SIGSTOP A right after the {n}th ack")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_burst_a)
            await paused.wait()
            await trio.sleep(0.2)  # replies A wrote before it stopped reach their clients
            _say(
                f"         A stopped: {len(a_out.ok)} acknowledged, {len(a_out.in_flight)} waiting for a reply, "
                f"{len(burst_a) - a_out.sent} not sent yet"
            )

            _say("      b) starting primary B for the same object while A is stopped (A still holds its connections)")
            t0 = trio.current_time()
            b_addr = await trio.to_thread.run_sync(lambda: cluster.start_primary(OBJECT, name="primary-b", extra=extra))
            b = cluster.primary
            assert b is not None
            async with Client.connect(tr, b_addr) as to_b:
                st = await _wait_serving(to_b)
                epochs.append(st["epoch"])
                _say(
                    f"         B: epoch {st['epoch']}, {st['phase']} {trio.current_time() - t0:.1f} s after it "
                    f"started, recovered {st['recovered_end']} log entries from the replicas"
                )
                a_acked = set(a_out.ok)  # A is stopped: it acknowledges nothing more until SIGCONT
                a_waiting = set(a_out.in_flight)
                so_far = acked | a_acked
                on_b = await _all_bookings(to_b)
                _say(
                    f"         B serves {len(a_acked & on_b)} of the {len(a_acked)} bookings A acknowledged, "
                    f"and {len(a_waiting & on_b)} of the {len(a_waiting)} it was still waiting to acknowledge"
                )
                checks.append(
                    Check(
                        "new primary B serves every booking acknowledged before the takeover",
                        so_far <= on_b,
                        f"{len(so_far & on_b)}/{len(so_far)}, {len(a_acked & on_b)}/{len(a_acked)} from A's burst",
                    )
                )

                on_b_batch = next_bookings(n, "B")
                b_out = Outcomes()
                _say(f"      c) booking {len(on_b_batch)} seats on B")
                await _burst(tr, b_addr, on_b_batch, b_out)
                _say(f"         {len(b_out.ok)} acknowledged")
                checks.append(
                    Check(
                        "new primary B acknowledges new bookings",
                        b_out.ok == set(on_b_batch),
                        f"{len(b_out.ok)}/{len(on_b_batch)}",
                    )
                )

                _say("      d) SIGCONT A, which never learnt it was replaced; one booking on a connection from before")
                stale_booking = next_bookings(1, "stale")[0]
                a.resume()
                with trio.fail_after(30):
                    stale = await to_a.call("book", *stale_booking)
                    st_a = await _status(to_a)
                _say(f"         A answered {stale.status.name}: {_message(stale.body)}")
                _say(f"         A's status: epoch {st_a['epoch']}, phase {st_a['phase']}, reset: {st_a['reset']}")
                with trio.move_on_after(20):
                    await a_done.wait()
                a_scope.cancel()  # anything A still has not answered stays in doubt
            late = set(a_out.ok) - a_acked
            a_doubt = a_out.no_answer(burst_a)
            _say(
                f"         the rest of A's burst: {len(late)} acknowledged after SIGCONT ({len(late & on_b)} of them "
                f"recovered by B), {len(a_out.failed)} failed, {len(a_doubt)} unknown"
            )
            fenced = "fenced" in _message(stale.body) and "fenced" in str(st_a["reset"])
            checks.append(
                Check(
                    "stale primary A refuses a booking after the takeover and says it is fenced",
                    stale.status is not ReplyStatus.OK and fenced and st_a["phase"] == "reset",
                    f"{stale.status.name}, phase {st_a['phase']}",
                )
            )
            # A may still release replies for entries a quorum stored before it was replaced (their
            # ACKs were waiting in its sockets); then B must have recovered every one of them.
            checks.append(
                Check(
                    "whatever A acknowledged after SIGCONT had been recovered by B",
                    late <= on_b,
                    f"{len(late & on_b)}/{len(late)}",
                )
            )

            _say(f"      e) SIGKILL A; booking {3 * n} seats on B, SIGKILL B right after the {n}th ack")
            await trio.to_thread.run_sync(a.kill)
            burst_b = next_bookings(3 * n, "Bkill")
            b2_out = Outcomes()
            await _burst(tr, b_addr, burst_b, b2_out, after=n, then=b.kill)
            b.kill()  # in case the burst ended first
            b_doubt = b2_out.no_answer(burst_b)
            _say(
                f"         B killed: {len(b2_out.ok)} acknowledged, {len(b_doubt)} without an answer, "
                f"{len(b2_out.unsent)} not sent"
            )
            checks.append(
                Check(
                    "new primary B keeps acknowledging after the old one resumed",
                    len(b2_out.ok) >= min(n, len(burst_b)),
                    f"{len(b2_out.ok)} acknowledged before its SIGKILL",
                )
            )

    _say("      f) starting primary C")
    c_addr = await trio.to_thread.run_sync(lambda: cluster.start_primary(OBJECT, name="primary-c", extra=extra))
    async with Client.connect(tr, c_addr) as to_c:
        st = await _wait_serving(to_c)
        epochs.append(st["epoch"])
        on_c = await _all_bookings(to_c)
    all_acked = acked | a_out.ok | b_out.ok | b2_out.ok
    doubt = a_doubt | b_doubt
    failed = a_out.failed | a_out.unsent | b_out.failed | b2_out.failed | b2_out.unsent
    attempted = acked | set(burst_a) | set(on_b_batch) | set(burst_b)
    _say(
        f"         C: epoch {st['epoch']}, {st['phase']}, recovered {st['recovered_end']} log entries; it serves "
        f"{len(all_acked & on_c)} of {len(all_acked)} acknowledged bookings and {len(doubt & on_c)} of {len(doubt)} "
        "in doubt"
    )
    checks.append(
        Check(
            "after SIGKILL of A and B, new primary C serves every acknowledged booking",
            all_acked <= on_c,
            f"{len(all_acked & on_c)}/{len(all_acked)}",
        )
    )
    bogus = (on_c & failed) | (on_c - attempted)
    checks.append(
        Check(
            "no failed, stale or never-made booking is on C",
            not bogus and stale_booking not in on_c,
            f"failed: {len(on_c & failed)} of {len(failed)} on C; "
            f"stale: {'on C' if stale_booking in on_c else 'not on C'}; "
            f"never made: {len(on_c - attempted - {stale_booking})} on C",
        )
    )
    return FailoverSummary(
        epochs=epochs,
        acked=len(all_acked),
        in_doubt=len(doubt),
        in_doubt_kept=len(doubt & on_c),
        stale_reply=stale.status.name,
    )


@dataclass
class ArchiveSummary:
    segments: int
    snapshots: int
    end: int
    latest: str  # the last primary's bookmark at the end


async def _cli(*args: str) -> tuple[int, str]:
    """Run ``walrelay ARGS`` as a user would; its exit status and its output (stdout, then stderr)."""
    proc = await trio.run_process(walrelay_argv(*args), capture_stdout=True, capture_stderr=True, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace").strip()


def _restored_bookings(path: str) -> set[Booking]:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT flight, seat, passenger FROM bookings").fetchall()
    finally:
        conn.close()
    return {(str(f), int(str(s)), str(p)) for f, s, p in rows}


def _open_store(store: tuple[str, str]) -> ObjectStore:
    kind, where = store
    return S3Store(where) if kind == "--s3" else DirStore(where, create=False)


def _archived_epochs(store: tuple[str, str]) -> list[int]:
    """The epochs of the primaries that wrote the archived entries (each entry records its own)."""
    reader = ArchiveReader(_open_store(store), OBJECT)
    epochs: set[int] = set()
    for key, _ in reader.branch().segments:
        epochs |= {e.epoch for e in reader.segment(key).entries}
    return sorted(epochs)


async def _wait_archived(client: Client, seq: int, limit_s: float = 30.0) -> dict[str, Any]:
    """Poll until the primary's archive holds every durable entry, at least through ``seq``."""
    with trio.fail_after(limit_s):
        while True:
            st = await _status(client)
            archive = st.get("archive") or {}
            if archive.get("state") == "stopped":
                raise RuntimeError(f"primary epoch {st['epoch']}: archiving stopped: {archive.get('error')}")
            through = archive.get("archived_through", -1)
            if through == st["durable_seq"] and through >= seq:
                return st
            await trio.sleep(0.05)


async def _restore_check(store: tuple[str, str], to: str, out: str, expected: set[Booking]) -> tuple[bool, str, str]:
    """``walrelay restore OBJECT --to TO --out OUT``, then the bookings in OUT against ``expected``:
    (equal, detail for the check, the bookmark the restore says it reached)."""
    rc, said = await _cli("restore", OBJECT, "--to", to, "--out", out, *store)
    _say(f"      $ walrelay restore {OBJECT} --to {to} --out {os.path.basename(out)}")
    _say(f"        {said}")
    if rc != 0:
        return False, f"restore exited {rc}: {said.splitlines()[-1] if said else ''}", ""
    got = await trio.to_thread.run_sync(_restored_bookings, out)
    reached = said.split(" to bookmark ", 1)[-1].split(" ", 1)[0]
    detail = f"{len(got & expected)}/{len(expected)} bookings, {len(got - expected)} others"
    return got == expected, detail, reached


async def _point_in_time_restore(
    cluster: Cluster, tr: Transport, store: tuple[str, str], mark: Mark, epochs: list[int], checks: list[Check]
) -> ArchiveSummary:
    """Phase 9: the archive the primaries of every epoch continued, verified and restored from."""
    _say("[9/10] point-in-time restore from the archive, which every primary so far has continued")
    c = cluster.primary
    assert c is not None and c.address is not None
    async with Client.connect(tr, c.address) as to_c:
        reply = await to_c.call("__bookmark__")
        if reply.status is not ReplyStatus.OK:
            raise RuntimeError(f"__bookmark__ on C failed: {reply.status.name} {reply.body}")
        latest, latest_seq = str(reply.body["bookmark"]), int(reply.body["seq"])
        on_c = await _all_bookings(to_c)
        st = await _wait_archived(to_c, latest_seq)
        _say(
            f"      C (epoch {st['epoch']}): latest bookmark {latest}, durable_seq {st['durable_seq']}, "
            f"archived through seq {st['archive']['archived_through']}"
        )
        reply = await to_c.call("__bookmark_for_time__", mark.t_us)
        for_time = (
            str(reply.body["bookmark"]) if reply.status is ReplyStatus.OK else f"{reply.status.name} {reply.body}"
        )
        _say(
            f"      C's __bookmark_for_time__(t_mid) = {for_time} (the bookmark taken at t_mid, while epoch "
            f"{mark.epoch}'s primary served: {mark.bookmark})"
        )

    rc, said = await _cli("archive", "verify", OBJECT, *store)
    _say(f"      $ walrelay archive verify {OBJECT}")
    for line in said.splitlines():
        _say(f"        {line}")
    checks.append(Check("archive verifies", rc == 0 and said.endswith("valid"), said.splitlines()[-1] if said else ""))
    rc, listed = await _cli("archive", "ls", OBJECT, "--json", *store)
    rows: list[dict[str, Any]] = json.loads(listed) if rc == 0 else []
    segments = [r for r in rows if r["kind"] == "segment"]
    snapshots = [r for r in rows if r["kind"] == "snapshot"]
    end = max((int(r["last"]) for r in segments), default=0)
    written_by = await trio.to_thread.run_sync(_archived_epochs, store)
    _say(f"      $ walrelay archive ls {OBJECT}: {len(segments)} segments, {len(snapshots)} snapshots, seq 1..{end}")
    _say(
        f"      one archive, continued by the primaries of epochs {' -> '.join(map(str, [mark.epoch, *epochs]))}; "
        f"its entries were written in epochs {', '.join(map(str, written_by))}"
    )

    out = os.path.join(cluster.root, "restore-{}.db")
    ok, detail, _ = await _restore_check(store, mark.bookmark, out.format("bookmark"), mark.bookings)
    checks.append(Check(f"restore to the bookmark {mark.bookmark} equals what the primary had then", ok, detail))
    ok, detail, reached = await _restore_check(store, f"@{mark.t_us}", out.format("time"), mark.bookings)
    checks.append(
        Check(
            "restore to the time t_mid equals what the primary had then",
            ok and reached == for_time == mark.bookmark,
            f"{detail}; t_mid names {reached or '?'}, C says {for_time}",
        )
    )
    ok, detail, _ = await _restore_check(store, latest, out.format("latest"), on_c)
    checks.append(
        Check(
            "restore to C's latest bookmark equals what C serves, across all epochs",
            ok,
            f"{detail}; entries of epochs {', '.join(map(str, written_by))}",
        )
    )
    return ArchiveSummary(len(segments), len(snapshots), end, latest)


async def _client_task(tr: Transport, address: str, *, task_status: trio.TaskStatus[Client]) -> None:
    async with Client.connect(tr, address) as client:
        task_status.started(client)
        await trio.sleep_forever()


def _s3_in_use(url: str) -> str | None:
    """Why the demo cannot archive to this S3 URL (it already holds the object, or no answer), or None."""
    try:
        keys = S3Store(url, create_bucket=True).list(f"{OBJECT}/")
    except ObjectStoreError as e:
        return str(e)
    if keys:
        return f"{redact(url)} already holds {len(keys)} archive objects of {OBJECT!r}; give an empty bucket or prefix"
    return None


def _kill_all(cluster: Cluster) -> set[int]:
    """SIGKILL every node process the demo started that still runs (a stopped one too); no waiting,
    so a signal handler may call it. Returns the pids it signalled."""
    pids: set[int] = set()
    for node in [*cluster.replicas, *cluster.primaries]:
        if node.proc is not None and node.proc.poll() is None:
            try:
                node.proc.send_signal(signal.SIGKILL)
                pids.add(node.proc.pid)
            except ProcessLookupError:
                pass
    return pids


async def _main(
    cluster: Cluster, store: tuple[str, str], bookings: int, hold_seconds: float, facts: Facts
) -> list[Check] | None:
    """The scenario, stopped by the first SIGINT or SIGTERM: then every node it started is
    SIGKILLed at once (so a thread waiting for a node to listen returns) and the scenario is
    cancelled; ``facts.interrupted`` names the signal and the answer is None."""
    checks: list[Check] | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for sig in signals:
                    facts.interrupted = int(sig)
                    facts.killed |= _kill_all(cluster)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            checks = await _scenario(cluster, store, bookings, hold_seconds, facts)
            nursery.cancel_scope.cancel()
    return None if facts.interrupted else checks


def _next_steps(root: str, store: tuple[str, str], facts: Facts) -> list[str]:
    """The closing lines of a run whose data is kept: where it is and commands to try on it."""
    root = os.path.abspath(root)
    kind, where = store
    at = ["--s3", redact(where)] if kind == "--s3" else ["--archive", os.path.abspath(where)]

    def cmd(*args: str) -> str:
        return "  walrelay " + shlex.join([*args, *at])

    lines = [f"the run's data is kept in {root}: node logs (*.log), replica-N/ and primary*/ data, certs/"]
    if kind != "--s3":
        lines.append(f"its WAL archive is {at[1]}; commands to try on it:")
    else:
        lines.append(f"its WAL archive is {at[1]} (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); try:")
    lines.append(cmd("archive", "ls", OBJECT))
    lines.append(cmd("archive", "verify", OBJECT))
    if facts.mark is not None:
        mid = os.path.join(root, "mine-mid.db")
        lines.append(cmd("restore", OBJECT, "--to", facts.mark.bookmark, "--out", mid) + "   # the mid-run bookmark")
        at_time = os.path.join(root, "mine-time.db")
        lines.append(cmd("restore", OBJECT, "--to", _iso(facts.mark.t_us), "--out", at_time) + "   # t_mid, by time")
    if facts.latest is not None:
        latest = os.path.join(root, "mine-latest.db")
        lines.append(cmd("restore", OBJECT, "--to", facts.latest, "--out", latest) + "   # C's latest, before phase 10")
    bindir = os.path.dirname(sys.executable)
    lines.append(f"(walrelay is {os.path.join(bindir, 'walrelay')}: in a checkout, ./dev walrelay ..., or first")
    lines.append(f" source {os.path.join(bindir, 'activate')})")
    return lines


def run_demo(*, dir: str | None = None, bookings: int = 60, hold_seconds: float = 2.0, s3: str | None = None) -> int:
    """``s3``: archive to this S3 URL (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY);
    None: to ``archive/`` in the run's directory. Ctrl-C (or SIGTERM) stops it at once: every node
    it started is killed, one line says so, exit status 130 (143 for SIGTERM)."""
    try:
        return _run_demo(dir=dir, bookings=bookings, hold_seconds=hold_seconds, s3=s3)
    except KeyboardInterrupt:  # before or after the scenario, while nothing runs
        print("walrelay demo: interrupted", file=sys.stderr, flush=True)
        return 130


def _run_demo(*, dir: str | None, bookings: int, hold_seconds: float, s3: str | None) -> int:
    if s3 is not None and (why := _s3_in_use(s3)):
        print(f"walrelay demo: error: {why}")
        return 2
    root = dir or tempfile.mkdtemp(prefix="walrelay-demo-")
    os.makedirs(root, exist_ok=True)
    if os.listdir(root):
        print(f"walrelay demo: error: {root} is not empty; give an empty or new --dir")
        return 2
    store: tuple[str, str] = ("--s3", s3) if s3 is not None else ("--archive", os.path.join(root, "archive"))
    _say("walrelay demo: flight bookings on 1 primary + 5 replicas (ack after 3), separate processes, loopback TCP")
    kept = "kept" if dir is not None else "removed at the end if every check holds; --dir DIR keeps it"
    _say(f"data and node logs: {root} ({kept}); WAL archive: {redact(store[1])}")
    cluster = Cluster(root)
    facts = Facts()
    checks: list[Check] | None = None
    failure: str | None = None

    def interrupt_cleanup(sig: int, _frame: object) -> None:
        """A signal while the nodes are being stopped: kill them all at once instead (never a
        KeyboardInterrupt, which would leave the rest running)."""
        facts.interrupted = facts.interrupted or sig
        facts.killed |= _kill_all(cluster)

    try:
        checks = trio.run(_main, cluster, store, bookings, hold_seconds, facts)
    except Exception as e:
        failure = f"{type(e).__name__}: {e}"
    finally:
        handlers = {s: signal.signal(s, interrupt_cleanup) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if facts.interrupted:
                facts.killed |= _kill_all(cluster)  # any a thread started after the signal
            cluster.close()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
    if facts.interrupted:
        name = signal.Signals(facts.interrupted).name
        print(
            f"walrelay demo: interrupted ({name}); killed {len(facts.killed)} node "
            f"process{'es' if len(facts.killed) != 1 else ''} it had running; "
            f"data and node logs in {root}",
            file=sys.stderr,
            flush=True,
        )
        return 130 if facts.interrupted == signal.SIGINT else 128 + facts.interrupted
    if checks is None:
        _say(f"demo failed: {failure}  (node logs in {root})")
        return 1
    _say()
    _say("checks")
    for c in checks:
        _say(f"  [{'ok' if c.ok else 'FAIL'}] {c.name} ({c.detail})")
    ok = all(c.ok for c in checks)
    _say()
    if ok and dir is None:
        shutil.rmtree(root, ignore_errors=True)
        _say(f"removed the run's directory {root}; run with --dir DIR to keep it and try the archive commands on it")
    elif not ok:
        _say(f"node logs kept in {root}")
    else:
        for line in _next_steps(root, store, facts):
            _say(line)
    _say("demo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1
