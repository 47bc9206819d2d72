"""Manifests for archives that tests build object by object (the shipper writes them for real)."""

from __future__ import annotations

from walrelay.archive.reader import ArchiveReader
from walrelay.archive.shipper import record_found


def record_all(reader: ArchiveReader, *, writer: int = 1, created_us: int = 0) -> None:
    """Vouch for every object of every branch that is not an orphan, as a primary opening it would."""
    for b in reader.listing().branches.values():
        if not b.snapshots or (b.branch != 1 and b.record_key is None):
            continue
        end, chain = reader.end(b)
        n = 1 + max((n for _, w, n in b.manifests if w == writer), default=0)
        record_found(reader, b, writer=writer, n=n, end=end, chain=chain, created_us=created_us)
