"""The primary's archive task: feeds durable entries to the ArchiverState and runs its uploads.

I/O only; the decisions are ``ArchiverState``'s. It starts once recovery is done: it reads where
the archive of the object's branch ends and checks that the recovered log agrees with it there (an
archive of another history is refused, never extended). Then, every tick, it hands over the entries
that became durable since the last tick, takes a database image when a snapshot is wanted (between
transactions: nothing else runs while this task does), and performs the one upload in flight,
retrying a failed one with backoff forever: the archive never gets a gap, and while the store is
down the primary keeps the entries (``PrimaryState.archive_floor``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from walrelay.archive.archiver import Archived, ArchiverState, Put, SnapshotImage, WantSnapshot
from walrelay.archive.format import branch_record_key
from walrelay.archive.manifest import Manifest, Vouched, manifest_key
from walrelay.archive.reader import ArchiveReader, BranchListing
from walrelay.archive.retention import (
    DEFAULT_GRACE_US,
    DEFAULT_WINDOW_US,
    apply_retention,
    apply_superseded,
    plan_retention,
    plan_superseded,
)
from walrelay.archive.store import ObjectStore, ObjectStoreError, TransientStoreError
from walrelay.branching import GENESIS_BRANCH, BranchRecord
from walrelay.errors import WalrelayError
from walrelay.object_runtime import ObjectRuntime
from walrelay.primary import PrimaryState

log = logging.getLogger("walrelay.archive")


class ArchiveShipper:
    def __init__(
        self,
        store: ObjectStore,
        object_name: str,
        *,
        segment_bytes: int,
        segment_age_s: float,
        tick_s: float = 0.05,
        max_backoff_s: float = 5.0,
        run_io: Callable[..., Awaitable[Any]] | None = None,
        retention_window_us: int | None = DEFAULT_WINDOW_US,
        retain_every_s: float = 600.0,
        retention_grace_us: int = DEFAULT_GRACE_US,
        wall_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        """``retention_window_us``: keep every point of the last this-many microseconds
        restorable and delete what is older (None: keep everything); checked every
        ``retain_every_s`` against the wall clock ``wall_us`` (entry timestamps are wall times),
        with ``retention_grace_us`` more kept for restores running now (the simulation compresses
        all three into seconds)."""
        self.store = store
        self.object_name = object_name
        self.segment_bytes = segment_bytes
        self.segment_age_us = int(segment_age_s * 1_000_000)
        self.tick_s = tick_s
        self.max_backoff_s = max_backoff_s
        self.run_io: Callable[..., Awaitable[Any]] = run_io or trio.to_thread.run_sync
        self.archiver: ArchiverState | None = None
        self.retention_window_us = retention_window_us
        self.retain_every_s = retain_every_s
        self.retention_grace_us = retention_grace_us
        self.wall_us = wall_us
        self.retained_deleted = 0  # objects retention deleted, for status and tests
        self.uploaded = 0  # PUTs confirmed, for status and tests
        self.failed_puts = 0
        self.error: str | None = None  # why shipping stopped, if it did
        self.last_open_error: str | None = None  # the last transient failure to read the archive
        self.branch = GENESIS_BRANCH  # the branch being shipped (the database's, see branching.py)
        self.record: BranchRecord | None = None
        self.flush_to = 0  # cut segments at once until the archive holds the log through here
        self.snapshot_wanted = False  # a snapshot on demand was asked for and not yet taken
        self.writer = 0  # the epoch of the primary shipping: names its manifests (set by the primary)
        self.created_us: int | None = None  # when the primary started (a new archive's creation time)

    def status(self) -> dict[str, Any]:
        a = self.archiver
        if a is None or self.error is not None:
            return {
                "store": self.store.describe(),
                "state": "stopped" if self.error else "starting",
                "error": self.error,
            }
        return {
            "store": self.store.describe(),
            "branch": a.branch,
            "archived_through": a.archived_through,
            "snapshot_through": a.snapshot_through,
            "in_flight": a.in_flight.key if a.in_flight else None,
            "failures": a.failures,
            "cuts": dict(a.cuts),
            "last_error": a.last_error,
            "uploaded": self.uploaded,
            "failed_puts": self.failed_puts,
            "retention_deleted": self.retained_deleted,
        }

    @staticmethod
    def archivable_end(state: PrimaryState) -> int:
        """Spec: ArchivableEnd. Only durable entries are archived: an entry that is not may be lost
        in a failover, and the archive would then hold a history that never committed."""
        return state.durable_seq

    async def _open(self, state: PrimaryState) -> ArchiverState:
        reader = ArchiveReader(self.store, self.object_name)
        listing = await self.run_io(reader.listing)
        branch = self.branch
        b = listing.branches.get(branch)
        if b is None or not b.snapshots:
            if b is not None and b.segments:
                raise WalrelayError(
                    f"archive of {self.object_name!r}: segments without a snapshot; run walrelay archive verify"
                )
            if branch != GENESIS_BRANCH:
                raise WalrelayError(
                    f"archive of {self.object_name!r} has no fork snapshot for branch {branch}, the branch this "
                    "object's database is on; run walrelay archive verify"
                )
            return ArchiverState(
                self.object_name,
                branch,
                segment_bytes=self.segment_bytes,
                segment_age_us=self.segment_age_us,
                writer=self.writer,
                manifest_n=self._next_n(b),
                created_us=self._created(state),
            )
        end, chain = await self.run_io(reader.end, b)
        if end > state.last_seq or state.chains.get(end) != chain:
            raise WalrelayError(
                f"archive of {self.object_name!r} in {self.store.describe()} ends at seq {end} with a chain this "
                f"object's log does not have there: it is another object's history, refusing to extend it"
            )
        prev, n = await self.run_io(self._record_found, reader, b, end, chain)
        return ArchiverState(
            self.object_name,
            branch,
            archived_through=end,
            archived_chain=chain,
            snapshot_through=b.snapshots[-1][1],
            segment_bytes=self.segment_bytes,
            segment_age_us=self.segment_age_us,
            writer=self.writer,
            manifest_n=n,
            prev_manifest=prev,
        )

    def _created(self, state: PrimaryState | None) -> int:
        """A new archive's creation time: when its primary started, and never after the first
        entry it holds (the shipper may open after writes began)."""
        t = self.wall_us() if self.created_us is None else self.created_us
        first = state.log.get(1) if state is not None else None
        return min(t, first.timestamp_us) if first is not None else t

    def _next_n(self, b: BranchListing | None) -> int:
        """This writer's next manifest number on the branch (a primary with a fixed epoch that
        restarts continues its own numbering instead of overwriting its manifests)."""
        mine = [n for _, w, n in (b.manifests if b else []) if w == self.writer]
        return max(mine, default=0) + 1

    def _record_found(
        self, reader: ArchiveReader, b: BranchListing, end: int, chain: bytes
    ) -> tuple[tuple[str, int] | None, int]:
        """``record_found`` for this writer, then a missing ``branch.json``; returns the manifest
        the next one follows and this writer's next manifest number."""
        n = self._next_n(b)
        prev = record_found(reader, b, writer=self.writer, n=n, end=end, chain=chain, created_us=self._created(None))
        if self.record is not None and self.record.branch == b.branch and b.record_key is None:
            # The restore that made this branch stopped after its branch became durable but before
            # it wrote the record: the record is in the database, so any primary can write it.
            self.store.put(branch_record_key(self.object_name, b.branch), self.record.to_json())
        wrote = prev is not None and prev[0] == manifest_key(self.object_name, b.branch, self.writer, n)
        return prev, n + 1 if wrote else n

    def record_branch(self) -> None:
        """A restore's new branch is durable: vouch for its fork snapshot and write its
        ``branch.json`` (in that order), before the primary serves on it."""
        assert self.record is not None
        reader = ArchiveReader(self.store, self.object_name)
        b = reader.listing().branches.get(self.record.branch)
        if b is None or not b.snapshots:
            raise WalrelayError(
                f"archive of {self.object_name!r} lost the fork snapshot of branch {self.record.branch}"
            )
        end, chain = reader.end(b)
        self._record_found(reader, b, end, chain)

    async def run(
        self,
        state: PrimaryState,
        runtime: ObjectRuntime,
        now_us: Callable[[], int],
        on_archived: Callable[[int], None] = lambda seq: None,
    ) -> None:
        """Ship until cancelled; ``on_archived(seq)`` after each confirmed segment (the primary
        then tells replicas they may truncate). An archive that cannot be continued (another history, or a
        store that refuses for a definite reason) stops shipping with an error in the status and
        the log; the object keeps serving from its replicas."""
        # Nothing durable may leave the retained log before the archiver has taken it, from now on
        # (opening reads the store, and the primary keeps committing meanwhile).
        state.archive_floor = 0
        backoff = 0.5
        while True:
            try:
                await self._run(state, runtime, now_us, on_archived)
            except TransientStoreError as e:  # the store did not answer: try again, never give up
                self.last_open_error = str(e)
                log.warning("object %s: archive not reachable (will retry): %s", self.object_name, e)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            except (WalrelayError, ObjectStoreError) as e:
                self.error = str(e)
                log.error("object %s: archiving stopped: %s", self.object_name, e)
            return

    async def _run(
        self,
        state: PrimaryState,
        runtime: ObjectRuntime,
        now_us: Callable[[], int],
        on_archived: Callable[[int], None],
    ) -> None:
        a = await self._open(state)
        self.archiver = a
        state.archive_floor = a.durable_through
        if a.archived_through:
            on_archived(a.archived_through)  # confirmed by an earlier primary: replicas may truncate
        todo: list[Any] = list(a.start())
        backoff = 0.05
        next_retention = trio.current_time() + self.retain_every_s
        while True:
            if self.retention_window_us is not None and trio.current_time() >= next_retention:
                next_retention = trio.current_time() + self.retain_every_s
                await self._retain()
            # Entries that became durable since the last look (the retained log still has them:
            # nothing beyond archive_floor is ever trimmed).
            end = self.archivable_end(state)
            if end > a.durable_through:
                fresh = [state.log[s] for s in range(a.durable_through + 1, end + 1)]
                todo += a.on_durable(fresh, now_us())
                state.archive_floor = a.durable_through
            todo += a.on_tick(now_us())
            if self.snapshot_wanted:
                self.snapshot_wanted = False
                todo += a.request_snapshot()
            if self.flush_to > a.archived_through and a.durable_through >= self.flush_to and a.in_flight is None:
                todo += a.flush()
            while todo:
                eff = todo.pop(0)
                if isinstance(eff, WantSnapshot):
                    c = runtime.capture  # between transactions: image, seq and checksum agree
                    image = SnapshotImage(
                        state.last_seq,
                        state.last_timestamp_us,
                        state.last_chain,
                        c.page_size,
                        c.image(),
                        c.checksum.value,
                    )
                    todo += a.on_snapshot_image(image)
                elif isinstance(eff, Archived):
                    log.debug("object %s archived through seq %d", self.object_name, eff.seq)
                    on_archived(eff.seq)
            put = a.in_flight
            if put is None:
                await trio.sleep(self.tick_s)
                continue
            todo = await self._upload(a, put)
            if a.failures:
                await trio.sleep(min(backoff, self.max_backoff_s))
                backoff *= 2
            else:
                backoff = 0.05

    async def wait_archived(self, seq: int, *, poll_s: float = 0.02) -> None:
        """Until the archive holds the log through ``seq`` (cutting segments at once meanwhile).
        Raises WalrelayError if shipping stopped for good."""
        self.flush_to = max(self.flush_to, seq)
        while self.archiver is None or self.archiver.archived_through < seq:
            if self.error is not None:
                raise WalrelayError(f"the archive cannot take the log: {self.error}")
            await trio.sleep(poll_s)

    async def snapshot_now(self, seq: int, *, poll_s: float = 0.02) -> int:
        """A snapshot on demand, of the database at ``seq`` or later: asks for it, cuts the
        segments it must follow at once, and returns its seq once the store confirmed it."""
        self.snapshot_wanted = True
        self.flush_to = max(self.flush_to, seq)
        while self.archiver is None or (self.archiver.snapshot_through or 0) < seq:
            if self.error is not None:
                raise WalrelayError(f"the archive cannot take a snapshot: {self.error}")
            if self.archiver is not None and self.archiver.archived_through >= seq:
                self.flush_to = max(self.flush_to, self.archiver.durable_through)
            await trio.sleep(poll_s)
        return self.archiver.snapshot_through or 0

    async def drain(self, state: PrimaryState, timeout_s: float) -> int:
        """A clean stop: archive what is durable now instead of leaving it to the next primary.

        Called after the shipping task was cancelled (the primary is stopping), so nothing else
        uploads meanwhile; gives up quietly at the first store failure or at the timeout (the
        next primary continues from wherever the archive ends). Returns the PUTs confirmed.
        """
        a = self.archiver
        if a is None or self.error is not None:
            return 0
        end = self.archivable_end(state)
        if end > a.durable_through:
            a.on_durable([state.log[s] for s in range(a.durable_through + 1, end + 1)], 0)
        a.flush()
        done = 0
        with trio.move_on_after(timeout_s):
            while a.in_flight is not None:
                put = a.in_flight
                try:
                    await self.run_io(self.store.put, put.key, put.data)
                except ObjectStoreError as e:
                    log.warning("object %s: final upload of %s failed: %s", self.object_name, put.key, e)
                    break
                a.on_put_done(put.key)
                done += 1
        return done

    async def _retain(self) -> None:
        assert self.retention_window_us is not None
        reader = ArchiveReader(self.store, self.object_name)
        window, grace = self.retention_window_us, self.retention_grace_us

        def run() -> int:
            now = self.wall_us()
            superseded = plan_superseded(reader, now_us=now, window_us=window, grace_us=grace)
            deleted = apply_superseded(reader, superseded)
            b = reader.listing().branches.get(self.branch)
            if b is None:
                return deleted
            plan = plan_retention(reader, b, now_us=now, window_us=window, grace_us=grace)
            return deleted + apply_retention(reader, plan)

        try:
            deleted: int = await self.run_io(run)
        except WalrelayError as e:  # retention is housekeeping: try again next time
            log.warning("object %s: retention failed (will retry): %s", self.object_name, e)
            return
        if deleted:
            self.retained_deleted += deleted
            log.info("object %s: retention deleted %d archive objects", self.object_name, deleted)

    async def _upload(self, a: ArchiverState, put: Put) -> list[Any]:
        try:
            await self.run_io(self.store.put, put.key, put.data)
        except ObjectStoreError as e:
            self.failed_puts += 1
            if a.failures in (0, 10, 100):
                log.warning("object %s: upload of %s failed (will retry): %s", self.object_name, put.key, e)
            return list(a.on_put_failed(put.key, str(e)))
        self.uploaded += 1
        return list(a.on_put_done(put.key))


def record_found(
    reader: ArchiveReader, b: BranchListing, *, writer: int, n: int, end: int, chain: bytes, created_us: int
) -> tuple[str, int] | None:
    """Before a primary uploads anything to a branch: vouch for what it holds beyond its newest
    manifest (a primary stopped between an upload and its manifest; a restored branch's fork
    snapshot, written before the branch existed; an archive written before manifests), in a
    manifest of ``writer`` numbered ``n``. ``end``/``chain``: where the branch's log ends, read and
    checked by the caller. The caller writes a missing ``branch.json`` only after this: the first
    manifest comes first, so a branch record with no manifest is never a crash's leftover (verify
    reports it). Returns the manifest the writer's next one follows (None: there is none)."""
    tip = reader.tip(b)
    recorded = tip.through if tip is not None else -1
    low = tip.prev_through if tip is not None and tip.prev_through is not None else recorded
    vouched = {o.key for o in tip.objects} if tip is not None else set()
    keys = [key for key, k in b.segments if k.last > recorded]
    keys += [key for key, seq in b.snapshots if seq > low and key not in vouched]
    prev: tuple[str, int] | None = (b.manifests[-1][0], tip.through) if tip is not None else None
    if not keys:
        return prev
    objects = tuple(Vouched.of(key, reader.store.get(key)) for key in sorted(keys))
    m = Manifest(
        branch=b.branch,
        writer=writer,
        n=n,
        prev=prev[0] if prev else None,
        prev_through=prev[1] if prev else None,
        objects=objects,
        through=end,
        through_chain=chain,
        created_us=created_us if prev is None else None,
    )
    key = m.key(reader.object_name)
    reader.store.put(key, m.to_json())
    log.info("object %s: recorded %d objects found beyond the newest manifest", reader.object_name, len(objects))
    return key, m.through
