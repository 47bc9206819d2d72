"""The archiver as a pure state machine: durable entries in, PUTs of segments and snapshots out.

Spec (spec/WalRelay.tla): ``CutSegment`` (a segment of durable entries only, ``ArchivableEnd``),
``ConfirmUpload`` (the confirmed point advances only when the store said the PUT is done),
``TakeSnapshot``. The I/O layer (``primary_node``) runs one PUT at a time, in the order given, and
reports each result; so the archive is always a gap-free prefix of the committed log, and a failed
PUT is retried with the same key and bytes until it succeeds: it is never skipped.

Cut rule: a segment is cut when the durable entries not yet archived reach ``segment_bytes``
(16 MiB) or the oldest of them has waited ``segment_age_us`` (10 s), whichever comes first.
Snapshot rule: a snapshot (the whole database at an entry boundary) is taken when the log archived
since the last snapshot outgrows the database; the I/O layer supplies the image,
taken between transactions, and the snapshot is uploaded only once its seq is archived (so a
snapshot never describes an uncommitted state).

Manifests (``manifest.py``): after each confirmed upload the archiver PUTs a manifest that vouches
for it, and only a confirmed manifest advances ``archived_through`` (and so lets replicas
truncate): an entry counts as archived only once the archive says it must be there. A snapshot
queued right behind a segment shares that segment's manifest, and an automatic snapshot waits for
the next segment to pair with, so that every manifest but a few (the first snapshot of a branch,
a snapshot on demand of an already-archived point) advances the recorded end: then deleting the
newest manifest leaves a segment beyond the recorded end, which verify reports.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from walrelay.archive.format import encode_segment, encode_snapshot, segment_key, snapshot_key
from walrelay.archive.manifest import Manifest, Vouched
from walrelay.entry import GENESIS_CHAIN, Entry

SEGMENT_BYTES = 16 * 1024 * 1024
SEGMENT_AGE_US = 10_000_000


@dataclass(frozen=True, slots=True)
class Put:
    """Upload these bytes under this key, then call ``on_put_done`` (or ``on_put_failed``)."""

    key: str
    data: bytes
    kind: str  # "segment" | "snapshot" | "manifest"
    first: int  # segment: first seq; snapshot: its seq; manifest: its number
    last: int  # segment: last seq; snapshot: its seq; manifest: the end it records
    last_chain: bytes  # chain of entry ``last``


@dataclass(frozen=True, slots=True)
class Archived:
    """Entries through ``seq`` are confirmed in the archive: replicas may truncate through it."""

    seq: int


@dataclass(frozen=True, slots=True)
class WantSnapshot:
    """Ask the I/O layer for a database image at the current end of the log (between transactions)."""


ArchiverEffect = Put | Archived | WantSnapshot


@dataclass(frozen=True, slots=True)
class SnapshotImage:
    seq: int
    timestamp_us: int
    chain: bytes
    page_size: int
    image: bytes
    db_checksum: int


GENESIS_PAGE_SIZE = 4096  # the page size recorded for the empty database (it has no pages)


class ArchiverState:
    def __init__(
        self,
        object_name: str,
        branch: int,
        *,
        archived_through: int = 0,
        archived_chain: bytes = GENESIS_CHAIN,
        snapshot_through: int | None = None,
        segment_bytes: int = SEGMENT_BYTES,
        segment_age_us: int = SEGMENT_AGE_US,
        writer: int = 0,
        manifest_n: int = 1,
        prev_manifest: tuple[str, int] | None = None,
        created_us: int = 0,
    ) -> None:
        """``archived_through``/``archived_chain``: where this branch's archive ends (read from
        the store at start). ``snapshot_through``: its newest snapshot's seq, None if it has none:
        then the branch is new, ``archived_through`` must be 0, and the first upload is the
        genesis snapshot (the empty database at seq 0) that every restore can start from.

        Manifests: ``writer`` (this primary's epoch) numbers them from ``manifest_n``; the first
        follows ``prev_manifest`` (key, through: the branch's newest manifest, None if it has none).
        ``created_us``: the creation time a manifest that follows none records."""
        if snapshot_through is None and archived_through != 0:
            raise ValueError("an archive with segments but no snapshot cannot be continued")
        self.object_name = object_name
        self.branch = branch
        self.archived_through = archived_through
        self.segment_bytes = segment_bytes
        self.segment_age_us = segment_age_us
        self.pending: deque[Entry] = deque()  # durable, not yet cut, in seq order
        self.pending_bytes = 0
        self.oldest_at_us: int | None = None  # when the oldest pending entry became durable
        self.in_flight: Put | None = None
        self.uploads: deque[Put] = deque()  # cut, waiting for the one in flight
        self.cut_through = archived_through  # the last seq in a segment (archived, in flight or queued)
        self.cut_chain = archived_chain
        self.snapshot_through = snapshot_through
        self.since_snapshot_bytes = 0  # segment bytes archived since the newest snapshot
        self.db_bytes = 0  # size of the newest snapshot's database
        self.snapshot_asked = False
        self.held_snapshot: SnapshotImage | None = None
        self.failures = 0  # consecutive failures of the upload in flight
        # Why segments were cut (for __status__ and the chaos harness's coverage): the size limit,
        # the age limit, or a flush (a clean stop, a restore archiving its branch through the end).
        self.cuts = {"size": 0, "age": 0, "flush": 0}
        self.last_error: str | None = None
        self.snapshot_on_demand = False
        if snapshot_through is None:
            image = b""
            self.held_snapshot = SnapshotImage(0, 0, GENESIS_CHAIN, GENESIS_PAGE_SIZE, image, 0)
            self.snapshot_on_demand = True  # uploaded at once: every restore of the branch starts here
        self.writer = writer
        self.manifest_n = manifest_n
        self.prev_manifest = prev_manifest
        self.created_us = created_us
        self.vouch: list[Vouched] = []  # confirmed, not yet in a manifest
        self.uploaded_through = archived_through  # confirmed segments reach here (maybe unrecorded)
        self.uploaded_chain = archived_chain

    @property
    def durable_through(self) -> int:
        """The last durable seq the archiver has been given."""
        return self.pending[-1].seq if self.pending else self.cut_through

    # -- inputs --------------------------------------------------------------------------------

    def start(self) -> list[ArchiverEffect]:
        """First effects (the genesis snapshot of a new branch)."""
        return self._release_snapshot() + self._next_upload()

    def on_durable(self, entries: list[Entry], now_us: int) -> list[ArchiverEffect]:
        """Entries that just became durable (in seq order). Only these are ever archived."""
        for e in entries:
            if e.seq <= self.durable_through:
                continue
            if e.seq != self.durable_through + 1:
                raise ValueError(f"archiver got seq {e.seq} after {self.durable_through}: a gap")
            self.pending.append(e)
            self.pending_bytes += e.size
            if self.oldest_at_us is None:
                self.oldest_at_us = now_us
        return self._step(now_us)

    def on_tick(self, now_us: int) -> list[ArchiverEffect]:
        return self._step(now_us)

    def request_snapshot(self) -> list[ArchiverEffect]:
        """A snapshot on demand (an operator's ``__snapshot__``): of the database as it is now,
        uploaded after the segments through its seq, like any other."""
        if self.held_snapshot is not None and self.snapshot_through is not None:
            # An automatic snapshot waiting for a segment to pair with is older than "now":
            # drop it, or the operator would get that older point back (or wait for ever).
            self.held_snapshot = None
        self.snapshot_on_demand = True
        return self._ask_snapshot()

    def flush(self) -> list[ArchiverEffect]:
        """Cut whatever durable entries are pending now, whatever their size or age (a clean stop)."""
        if self.pending:
            self.cuts["flush"] += 1
            self._cut()
        return self._release_snapshot() + self._next_upload()

    def on_snapshot_image(self, snap: SnapshotImage) -> list[ArchiverEffect]:
        """The image the I/O layer took at ``snap.seq`` (its last_seq then, maybe not durable yet:
        it waits until a segment through ``snap.seq`` is queued ahead of it)."""
        self.snapshot_asked = False
        if self.held_snapshot is None or snap.seq > self.held_snapshot.seq:
            self.held_snapshot = snap
        return self._release_snapshot() + self._next_upload()

    def on_put_done(self, key: str) -> list[ArchiverEffect]:
        put = self.in_flight
        if put is None or put.key != key:
            raise ValueError(f"confirmation for {key}, but the upload in flight is {put and put.key}")
        self.in_flight = None
        self.failures = 0
        self.last_error = None
        effects: list[ArchiverEffect] = []
        if put.kind == "manifest":
            # Spec: ConfirmUpload. Only now is the upload archived: the archive says it must exist.
            self.prev_manifest = (put.key, put.last)
            self.manifest_n += 1
            if put.last > self.archived_through:
                self.archived_through = put.last
                effects.append(Archived(put.last))
            return effects + self._release_snapshot() + self._next_upload()
        self.vouch.append(Vouched.of(put.key, put.data))
        if put.kind == "segment":
            self.uploaded_through, self.uploaded_chain = put.last, put.last_chain
            self.since_snapshot_bytes += len(put.data)
        else:
            self.snapshot_through = max(self.snapshot_through or 0, put.first)
            self.since_snapshot_bytes = 0
            self.db_bytes = len(put.data)
        if not (self.uploads and self.uploads[0].kind == "snapshot"):
            self.uploads.appendleft(self._manifest())  # a snapshot right behind shares it
        return effects + self._release_snapshot() + self._next_upload()

    def _manifest(self) -> Put:
        """The manifest vouching for what was confirmed since the last one (spec: the upload's
        confirmation is this manifest's)."""
        prev_key, prev_through = self.prev_manifest if self.prev_manifest else (None, None)
        m = Manifest(
            branch=self.branch,
            writer=self.writer,
            n=self.manifest_n,
            prev=prev_key,
            prev_through=prev_through,
            objects=tuple(self.vouch),
            through=self.uploaded_through,
            through_chain=self.uploaded_chain,
            created_us=self.created_us if prev_key is None else None,
        )
        self.vouch = []
        return Put(m.key(self.object_name), m.to_json(), "manifest", m.n, m.through, m.through_chain)

    def on_put_failed(self, key: str, error: str) -> list[ArchiverEffect]:
        """The PUT failed or its outcome is unknown: the same PUT goes again (never skipped)."""
        put = self.in_flight
        if put is None or put.key != key:
            raise ValueError(f"failure for {key}, but the upload in flight is {put and put.key}")
        self.failures += 1
        self.last_error = error
        return [put]

    # -- decisions -----------------------------------------------------------------------------

    def _step(self, now_us: int) -> list[ArchiverEffect]:
        if self.pending and self.pending_bytes >= self.segment_bytes:
            self.cuts["size"] += 1
            self._cut()
        elif self.pending and self.oldest_at_us is not None and now_us - self.oldest_at_us >= self.segment_age_us:
            self.cuts["age"] += 1
            self._cut()
        effects: list[ArchiverEffect] = []
        if self.since_snapshot_bytes > self.db_bytes:
            effects += self._ask_snapshot()
        return effects + self._release_snapshot() + self._next_upload()

    def _cut(self) -> None:
        """Pending entries become segments of at most ``segment_bytes`` each (one if a single
        entry is larger)."""
        while self.pending:
            batch: list[Entry] = []
            size = 0
            while self.pending and (not batch or size + self.pending[0].size <= self.segment_bytes):
                e = self.pending.popleft()
                batch.append(e)
                size += e.size
            data = encode_segment(self.branch, tuple(batch), self.cut_chain)
            key = segment_key(self.object_name, self.branch, batch[0].seq, batch[-1].seq)
            self.uploads.append(Put(key, data, "segment", batch[0].seq, batch[-1].seq, batch[-1].chain))
            self.cut_through, self.cut_chain = batch[-1].seq, batch[-1].chain
        self.pending_bytes = 0
        self.oldest_at_us = None

    def _ask_snapshot(self) -> list[ArchiverEffect]:
        if self.snapshot_asked or self.held_snapshot is not None:
            return []
        self.snapshot_asked = True
        return [WantSnapshot()]

    def _release_snapshot(self) -> list[ArchiverEffect]:
        """Queue the held snapshot once a segment through its seq is queued ahead of it (uploads
        go in order, so the snapshot lands after them and never describes an uncommitted state)."""
        snap = self.held_snapshot
        if snap is None or snap.seq > self.cut_through:
            return []
        behind = self.uploads[-1] if self.uploads else self.in_flight
        if not self.snapshot_on_demand and (behind is None or behind.kind != "segment"):
            return []  # wait for the next segment, to share its manifest (see the module's doc)
        self.held_snapshot = None
        self.snapshot_on_demand = False
        data = encode_snapshot(
            self.branch, snap.seq, snap.timestamp_us, snap.chain, snap.page_size, snap.image, snap.db_checksum
        )
        key = snapshot_key(self.object_name, self.branch, snap.seq)
        self.uploads.append(Put(key, data, "snapshot", snap.seq, snap.seq, snap.chain))
        return []

    def _next_upload(self) -> list[ArchiverEffect]:
        if self.in_flight is not None or not self.uploads:
            return []
        self.in_flight = self.uploads.popleft()
        return [self.in_flight]
