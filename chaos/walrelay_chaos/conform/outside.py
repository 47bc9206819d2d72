"""Read a replica's log over the wire, as a recovering primary would, for any implementation.

After a real-mode run the harness must check that every replica holds the committed log, without
assuming a file layout. It asks the replica itself: HELLO, then PREPARE at the epoch the replica
already promised (idempotent, docs/protocol.md R-5.10-3: nothing changes), then FETCH from the
first seq it still holds through ENTRIES(final=1). The PROMISE's ``last_seq`` and ``last_chain``
must agree with the entries fetched (the harness checks, it does not trust).
"""

from __future__ import annotations

from dataclasses import dataclass

from walrelay import wire
from walrelay.certs import CertPaths
from walrelay.entry import Entry
from walrelay_chaos.conform.peer import PeerError, ScriptedPrimary, Transcript


@dataclass(frozen=True)
class OutsideLog:
    promise: wire.Promise
    entries: dict[int, Entry]


class OutsideReadError(PeerError):
    """The replica would not give its log over the wire, or gave one that contradicts its PROMISE."""


def read_log(address: str, object_name: str, *, timeout: float = 10.0, tls: CertPaths | None = None) -> OutsideLog:
    """``tls``: a primary certificate, for a replica that runs TLS."""
    t = Transcript()
    with ScriptedPrimary(address, t, timeout, tls) as peer:
        peer.send(wire.Hello(wire.Role.PRIMARY, 0, object_name, 0, 0))
        hello = peer.recv()
        if not isinstance(hello, wire.Hello):
            raise OutsideReadError(f"{address} answered HELLO with {type(hello).__name__.upper()}")
        if hello.epoch == 0:
            raise OutsideReadError(f"{address} has promised no epoch for {object_name!r}: it never took part")
        peer.send(wire.Prepare(hello.epoch))
        p = peer.recv()
        if not isinstance(p, wire.Promise):
            raise OutsideReadError(f"{address} answered PREPARE({hello.epoch}) with {type(p).__name__.upper()}")
        entries: dict[int, Entry] = {}
        nxt = p.truncated_through + 1
        while p.last_seq >= nxt:
            peer.send(wire.Fetch(epoch=hello.epoch, from_seq=nxt, max_bytes=wire.DEFAULT_MAX_FRAME - 4096))
            got = peer.recv()
            if not isinstance(got, wire.Entries):
                raise OutsideReadError(f"{address} answered FETCH(from {nxt}) with {type(got).__name__.upper()}")
            seqs = [e.seq for e in got.entries]
            if seqs != list(range(nxt, nxt + len(seqs))):
                raise OutsideReadError(f"{address} answered FETCH(from {nxt}) with seqs {seqs[:5]}...")
            entries.update((e.seq, e) for e in got.entries)
            if got.final:
                break
            if not got.entries:
                raise OutsideReadError(f"{address} sent ENTRIES(final=0) with no entry")
            nxt = seqs[-1] + 1
        last = max(entries, default=p.truncated_through)
        if last != p.last_seq or (entries and entries[last].chain != p.last_chain):
            raise OutsideReadError(
                f"{address} promised a log ending at seq {p.last_seq}, but FETCH gave one ending at {last} "
                "(or with another chain)"
            )
        return OutsideLog(p, entries)
