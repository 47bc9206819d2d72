"""The replica as a trio server: executes the pure ReplicaState's effects against ReplicaStore.

One replica process can hold many objects. Per object there is one lock, so the appends of two
connections (say, a stale primary and its successor) are applied in one order and persisted in
that order. Group commit: every APPEND already received on a connection is run through the state
machine first, then the new entries of all of them are written with one fdatasync, then a single
cumulative ACK goes back.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from walrelay.entry import Entry
from walrelay.errors import EntryFormatError, ProtocolError, WalrelayError
from walrelay.fsutil import fsync_dir, makedirs_durably
from walrelay.placement import EpochAllocator
from walrelay.replica import (
    PersistArchived,
    PersistEntries,
    PersistLogEpoch,
    PersistPromise,
    PersistVoter,
    ReplicaEffect,
    ReplicaState,
    ResetToBase,
    SendAck,
    SendPromise,
    SendReject,
    TruncateSuffix,
)
from walrelay.replica_store import ReplicaStore, StoreCorruptError, check_object_name
from walrelay.transport import Channel, Transport
from walrelay.wire import (
    DEFAULT_MAX_FRAME,
    LENGTH,
    Admit,
    Append,
    Entries,
    Fetch,
    Hello,
    Message,
    Prepare,
    Reject,
    RejectReason,
    Role,
    Truncate,
)
from walrelay.wire import Ack as AckMsg

log = logging.getLogger("walrelay.replica")
_moves = itertools.count()
DEFAULT_MAX_OBJECTS = 10_000
FIRST_FRAME_MAX = 64 * 1024  # a HELLO is well under 1 KiB


class ObjectUnavailableError(WalrelayError):
    """This replica cannot serve the object (its files are damaged and cannot be rebuilt safely)."""


class ObjectBrokenError(WalrelayError):
    """An object's I/O failed on this replica: the connection closes, the object is reloaded."""


def prepare_data_dir(path: str) -> None:
    """Check ``--data`` before serving anything (issue 17): a file there, a missing parent or a
    directory the process cannot write is a clear error before LISTENING, not a traceback at the
    first primary's HELLO. A missing directory (whose parent exists) is an empty disk, as after a
    lost disk: it is created, durably."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise WalrelayError(f"--data {path}: exists and is not a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(path):
        if not os.path.isdir(parent):
            raise WalrelayError(f"--data {path}: its parent directory {parent} does not exist")
        try:
            makedirs_durably(path)
        except OSError as e:
            raise WalrelayError(f"--data {path}: cannot create it: {e.strerror or e}") from None
    probe = os.path.join(path, f".walrelay-write-check-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WalrelayError(f"--data {path}: not writable: {e.strerror or e}") from None


class ObjectReplica:
    def __init__(self, replica_id: int, store: ReplicaStore) -> None:
        self.store = store
        loaded = store.load()
        if loaded.torn_bytes_dropped:
            log.warning(
                "%s: dropped %d bytes of torn tail (never acknowledged)",
                store.log_path,
                loaded.torn_bytes_dropped,
            )
        self.state = ReplicaState(
            replica_id,
            promised_epoch=loaded.promised_epoch,
            last_seq=loaded.last_seq,
            last_chain=loaded.last_chain,
            archived_through=loaded.archived_through,
            chains=loaded.chains,
            log_epoch=loaded.log_epoch,
            voter=loaded.voter,
        )
        self.lock = trio.Lock()
        # What state.json holds: a promise saved ahead of the entries must not carry a log epoch
        # (or voter flag) that describes entries not yet on disk.
        self.disk_log_epoch = loaded.log_epoch
        self.disk_voter = loaded.voter
        self.fresh = loaded.fresh
        self.broken: str | None = None  # why its I/O failed: reloaded from disk before further use


class ReplicaNode:
    def __init__(
        self,
        replica_id: int,
        data_dir: str,
        transport: Transport,
        placement: EpochAllocator | None = None,
        run_io: Callable[..., Awaitable[Any]] | None = None,
        compact_min_bytes: int = 1 << 20,
        max_objects: int | None = DEFAULT_MAX_OBJECTS,
    ) -> None:
        """``placement``: the epoch allocator. With it, an object this replica holds no state for
        starts as a non-voter that promised the highest epoch ever issued (docs/failover.md: it
        cannot tell "never heard of it" from "lost my disk"). Without it (the single-epoch
        demo), such an object starts as an empty voter, as in the spec's initial state.

        ``run_io`` runs the blocking disk calls: a worker thread by default, so one fsync does not
        stall other connections; a deterministic simulation runs them inline instead (a thread's
        finishing time would make the interleaving depend on the host)."""
        self.run_io: Callable[..., Awaitable[Any]] = run_io or trio.to_thread.run_sync
        self.compact_min_bytes = compact_min_bytes  # archived entries are dropped from the file past this
        self.replica_id = replica_id
        self.data_dir = data_dir
        self.transport = transport
        self.placement = placement
        self.objects: dict[str, ObjectReplica] = {}
        # Objects are created on a primary's HELLO: at most this many on this replica (issue 17:
        # 1,000 HELLOs with new names used to make 1,000 directories). None: no limit.
        self.max_objects = max_objects

    def get_object(self, name: str) -> ObjectReplica:
        """The object's replica, loaded on first use. A damaged log or state file fails this
        object only (``_rebuild``), never the process and its other objects (issue 17)."""
        obj = self.objects.get(name)
        if obj is None:
            check_object_name(name)
            self._check_room_for(name)
            try:
                obj = self._open(name)
            except StoreCorruptError as e:
                obj = self._rebuild(name, e)
            self.objects[name] = obj
        return obj

    def _check_room_for(self, name: str) -> None:
        if self.max_objects is None or os.path.isdir(os.path.join(self.data_dir, "objects", name)):
            return
        try:
            held = len(os.listdir(os.path.join(self.data_dir, "objects")))
        except FileNotFoundError:
            held = 0
        if held >= self.max_objects:
            raise ObjectUnavailableError(
                f"replica {self.replica_id} holds {held} objects, its limit (--max-objects {self.max_objects}): "
                f"not creating {name!r}"
            )

    def _open(self, name: str) -> ObjectReplica:
        store = ReplicaStore(self.data_dir, name, compact_min_bytes=self.compact_min_bytes)
        try:
            obj = ObjectReplica(self.replica_id, store)
        except BaseException:
            store.close()
            raise
        if obj.fresh and self.placement is not None:
            st = obj.state
            st.promised_epoch, st.voter = self.placement.current(name), False
            # Durable before anything is answered: a restart must not forget this promise.
            store.save_state(st.promised_epoch, st.archived_through, st.log_epoch, st.voter)
            obj.disk_voter = False
        return obj

    def _rebuild(self, name: str, why: Exception) -> ObjectReplica:
        """Repair a damaged object as a lost disk: its files move to ``<data>/quarantine/`` (kept
        for a person to look at) and it starts again empty, promising the highest epoch ever
        issued and as a non-voter (docs/failover.md), so it counts for nothing until a primary
        has caught it up from the others. Never obeyed: a damaged promise could fence every
        primary for good, a damaged log could vote for entries it no longer holds. Without a
        placement allocator that repair is not safe (an empty replica would be a voter that
        promised nothing): the object is refused instead, naming the file."""
        store_dir = os.path.join(self.data_dir, "objects", name)
        if self.placement is None:
            raise ObjectUnavailableError(
                f"replica {self.replica_id}: object {name} is damaged and refused: {why}. Without a placement "
                f"allocator it cannot be rebuilt safely; move {store_dir} aside to rebuild it as a lost disk"
            )
        quarantine = os.path.join(self.data_dir, "quarantine")
        makedirs_durably(quarantine)
        dest = os.path.join(quarantine, f"{name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}.{next(_moves)}")
        os.rename(store_dir, dest)
        fsync_dir(quarantine)
        fsync_dir(os.path.dirname(store_dir))
        log.error(
            "replica %d: object %s is damaged: %s; its files are kept in %s and it is rebuilt as after a lost "
            "disk (a non-voter until a primary catches it up from the other replicas)",
            self.replica_id,
            name,
            why,
            dest,
        )
        return self._open(name)

    async def _reopen_if_broken(self, name: str, obj: ObjectReplica) -> ObjectReplica:
        """An object whose I/O failed on some connection is loaded again from its files (which the
        load verifies, rebuilding it if they are damaged), under the old instance's lock so that
        no connection is half way through a batch on it meanwhile."""
        if obj.broken is None:
            return obj
        async with obj.lock:
            if self.objects.get(name) is obj:
                obj.store.close()
                del self.objects[name]
            return self.get_object(name)

    async def serve(self, address: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await self.transport.serve(address, self.handle, task_status=task_status)

    async def handle(self, stream: trio.abc.Stream) -> None:
        # The first frame must be a HELLO: a small one is all a peer gets to send before the
        # replica knows it is talking to a primary for a valid object (R-5.1-1 still applies).
        chan = Channel(stream, max_frame=FIRST_FRAME_MAX)
        peer = "?"
        try:
            first = await chan.receive()
            if first is None:
                return
            if not isinstance(first, Hello) or first.role is not Role.PRIMARY:
                raise ProtocolError(f"expected HELLO from a primary, got {type(first).__name__}")
            try:
                obj = await self._reopen_if_broken(first.object_name, self.get_object(first.object_name))
            except (ValueError, WalrelayError, OSError) as e:
                # A bad name, or this object's files cannot be used: this connection is refused,
                # every other object (and connection) is served as before.
                if not isinstance(e, ValueError):
                    log.error("replica %d: object %s refused: %s", self.replica_id, first.object_name, e)
                await chan.send(Reject(RejectReason.WRONG_OBJECT, 0, str(e)))
                return
            peer = f"primary epoch {first.epoch} for {first.object_name}"
            chan.set_max_frame(DEFAULT_MAX_FRAME)
            # Under the object's lock: another connection's batch may be between state update and
            # fsync, and a HELLO must only report what is on disk.
            async with obj.lock:
                st = obj.state
                await chan.send(
                    Hello(
                        Role.REPLICA, self.replica_id, first.object_name, st.promised_epoch, st.last_seq, st.last_chain
                    )
                )
            while True:
                msg = await chan.receive()
                if msg is None:
                    return
                batch = [msg, *chan.receive_nowait_buffered()]
                await self._process(obj, chan, batch)
        except ObjectBrokenError as e:
            log.error("replica %d: %s; closing the connection of %s", self.replica_id, e, peer)
        except ProtocolError as e:
            log.warning("replica %d: protocol error from %s: %s; closing connection", self.replica_id, peer, e)
            # Best effort: tell the peer why before hanging up.
            with trio.move_on_after(1):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await chan.send(Reject(RejectReason.BAD_ENTRY, 0, f"protocol error: {e}"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            return

    async def _process(self, obj: ObjectReplica, chan: Channel, batch: list[Message]) -> None:
        async with obj.lock:
            if obj.broken is not None:
                raise ObjectBrokenError(f"object {obj.store.dir}: {obj.broken} (it is reloaded on the next HELLO)")
            try:
                await self._process_locked(obj, chan, batch)
            except ConnectionError:
                raise  # the peer went away: nothing wrong with the object
            except (StoreCorruptError, EntryFormatError, OSError) as e:
                # The object's own files failed it (a read of a damaged log, a disk error): its
                # state in memory may no longer match the disk, so it is dropped and reloaded
                # (verified) by the next connection for it; other objects are not touched.
                obj.broken = f"{type(e).__name__}: {e}"
                raise ObjectBrokenError(f"object {obj.store.dir}: {obj.broken}") from None

    async def _process_locked(self, obj: ObjectReplica, chan: Channel, batch: list[Message]) -> None:
        effects: list[ReplicaEffect] = []
        bad: Message | None = None
        for msg in batch:
            if isinstance(msg, Append):
                effects.extend(obj.state.on_append(msg.epoch, msg.entries, msg.log_end))
            elif isinstance(msg, Prepare):
                effects.extend(obj.state.on_prepare(msg.epoch))
            elif isinstance(msg, Admit):
                effects.extend(obj.state.on_admit(msg.epoch, msg.upto))
            elif isinstance(msg, Truncate):
                effects.extend(obj.state.on_truncate(msg.through, msg.chain, msg.epoch))
            elif isinstance(msg, Fetch):
                # Reads what is durable: run everything before it first (the ACKs go out too).
                await self._execute(obj, chan, effects)
                effects = []
                await self._fetch(obj, chan, msg)
            else:
                bad = msg
                break
        # The state machine already counts the good prefix as held: persist it before
        # hanging up on the bad frame, or a later HELLO would claim entries the disk lacks.
        await self._execute(obj, chan, effects)
        if bad is not None:
            raise ProtocolError(f"expected APPEND, PREPARE, FETCH, ADMIT or TRUNCATE, got {type(bad).__name__}")

    async def _fetch(self, obj: ObjectReplica, chan: Channel, msg: Fetch) -> None:
        """FETCH: entries for a recovering primary, one ENTRIES frame per FETCH.

        Only for a primary this replica may still serve: after promising a higher epoch, the
        answer is REJECT(STALE_EPOCH) (a fenced primary must not rebuild from us and serve).
        """
        st = obj.state
        if msg.epoch < st.promised_epoch:
            await chan.send(
                Reject(
                    RejectReason.STALE_EPOCH,
                    st.promised_epoch,
                    f"fetch for epoch {msg.epoch} refused: replica {st.replica_id} promised epoch {st.promised_epoch}",
                )
            )
            return
        entries = await self.run_io(obj.store.read_entries, msg.from_seq)
        if entries and entries[0].seq != msg.from_seq:
            # Dropped after archiving (5.12): answering from a later seq would break ENTRIES' "the
            # first is at from_seq", and a primary must rebuild that prefix from the archive.
            raise ProtocolError(
                f"FETCH from seq {msg.from_seq}: replica {st.replica_id} holds its log from seq {entries[0].seq} on "
                f"(truncated through {st.archived_through})"
            )
        out: list[Entry] = []
        size = 0
        for e in entries:
            # As framed: each entry's 4-byte length counts, or many small entries outgrow the frame.
            cost = LENGTH.size + e.size
            if out and size + cost > msg.max_bytes:
                break
            out.append(e)
            size += cost
        final = not entries or out[-1].seq == entries[-1].seq
        await chan.send(Entries(final, tuple(out)))

    async def _execute(self, obj: ObjectReplica, chan: Channel, effects: list[ReplicaEffect]) -> None:
        """Run effects in order, merging consecutive entry writes into one fdatasync (group commit).

        Durability order: a new promise is saved before the entries (it fences); a truncation is
        applied before the entries that follow it; a new log epoch or voter flag is saved after
        the entries it describes (claiming a newer log epoch than the disk holds would make a
        recovering primary prefer this log) and before any ACK or PROMISE that follows.

        A reply that cannot be sent (the peer hung up) does not end the run: the state machine
        already counts the whole batch as applied, so every later effect is still made durable,
        and only then is the connection's failure raised. (Found by the chaos harness: a batch of
        PREPARE and APPEND whose PROMISE failed left the entries in memory only; the replica then
        promised a log its disk did not hold, and a recovering primary gave up.)
        """
        pending: list[PersistEntries] = []
        promise: int | None = None
        state_dirty = False
        last_ack: SendAck | None = None
        broken: trio.BrokenResourceError | trio.ClosedResourceError | None = None

        async def send(msg: Message) -> None:
            nonlocal broken
            if broken is None:
                try:
                    await chan.send(msg)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                    broken = e

        async def durable() -> None:
            nonlocal pending, promise, state_dirty
            await self._flush(obj, pending, promise)
            if state_dirty:
                await self._save_state(obj)
            pending, promise, state_dirty = [], None, False

        for eff in effects:
            if isinstance(eff, PersistEntries):
                pending.append(eff)
            elif isinstance(eff, PersistPromise):
                promise = eff.epoch
            elif isinstance(eff, TruncateSuffix):
                await durable()
                await self.run_io(obj.store.truncate_after, eff.keep_through)
            elif isinstance(eff, PersistLogEpoch | PersistVoter):
                state_dirty = True
            elif isinstance(eff, PersistArchived):
                # Recorded durably first; only then may the file lose the entries (a crash in
                # between leaves archived entries in the file, which is harmless). Saved with the
                # log epoch and voter flag as they are on disk: later messages of this batch may
                # have changed them in memory ahead of their entries.
                await durable()
                st = obj.state
                await self.run_io(
                    obj.store.save_state, st.promised_epoch, eff.through, obj.disk_log_epoch, obj.disk_voter
                )
                await self.run_io(obj.store.drop_through, eff.through)
            elif isinstance(eff, ResetToBase):
                # State first, with no log epoch: a crash before the file is replaced leaves a log
                # that no recovery prefers (log epoch 0) and claims nothing about the new one.
                await durable()
                st = obj.state
                through = eff.entry.seq if eff.entry is not None else 0
                await self.run_io(obj.store.save_state, st.promised_epoch, through, 0, obj.disk_voter)
                obj.disk_log_epoch = 0
                await self.run_io(obj.store.reset_to, eff.entry)
            elif isinstance(eff, SendAck):
                last_ack = eff  # cumulative: only the last one matters
            elif isinstance(eff, SendPromise):
                await durable()  # the promise is on disk before the PROMISE leaves
                await send(eff.promise)
            elif isinstance(eff, SendReject):
                await durable()
                if last_ack is not None:
                    await send(AckMsg(last_ack.epoch, last_ack.stored_through, last_ack.chain, last_ack.log_epoch))
                    last_ack = None
                await send(Reject(eff.reason, eff.promised_epoch, eff.message))
        await durable()
        if last_ack is not None:
            await send(AckMsg(last_ack.epoch, last_ack.stored_through, last_ack.chain, last_ack.log_epoch))
        if broken is not None:
            raise broken

    async def _save_state(self, obj: ObjectReplica) -> None:
        st = obj.state
        log_epoch, voter = st.log_epoch, st.voter
        await self.run_io(obj.store.save_state, st.promised_epoch, st.archived_through, log_epoch, voter)
        obj.disk_log_epoch, obj.disk_voter = log_epoch, voter

    async def _flush(self, obj: ObjectReplica, pending: list[PersistEntries], promise: int | None) -> None:
        """Make the effects durable: promise first (it fences), then entries, one fdatasync each.

        The promise is saved with the log epoch and voter flag as they are on disk so far: those
        describe entries, and the entries of this batch are not written yet.
        """
        store = obj.store
        if promise is not None:
            await self.run_io(store.save_state, promise, obj.state.archived_through, obj.disk_log_epoch, obj.disk_voter)
        entries = tuple(e for p in pending for e in p.entries)
        if entries:
            await self.run_io(store.append_durably, entries)

    def close(self) -> None:
        for obj in self.objects.values():
            obj.store.close()
