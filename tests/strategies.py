"""Hypothesis strategies shared by the tests: log entries and random SQL workloads.

The SQL workload is generated as plain data (frozen dataclasses) and interpreted against the live
database by ``tests/test_capture.py``: table choices are indices taken modulo the tables that
exist when the operation runs, so every generated workload is valid whatever came before it
(including rolled-back DDL). Blob contents are derived from a drawn seed, not drawn byte by byte,
so examples stay small for Hypothesis to store and shrink.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from hypothesis import settings
from hypothesis import strategies as st

from walrelay.entry import MAX_PAGES

# -- sizing ---------------------------------------------------------------------------------------


def examples(factor: float) -> int:
    """The active profile's ``max_examples`` scaled by ``factor`` (never below 5), so a test can
    run more or fewer examples than the default and still grow with the nightly profile."""
    return max(5, int(settings().max_examples * factor))


def seeded_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# -- entries --------------------------------------------------------------------------------------

u64 = st.integers(min_value=0, max_value=2**64 - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
PAGE_SIZES = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
chains = st.binary(min_size=16, max_size=16)


@st.composite
def frame_sets(draw: st.DrawFn, page_size: int, max_frames: int = 6) -> dict[int, bytes]:
    """Pages keyed by page number; each page is a drawn prefix over seeded filler."""
    pgnos = draw(st.lists(st.one_of(st.integers(1, 64), st.integers(1, MAX_PAGES)), max_size=max_frames, unique=True))
    frames: dict[int, bytes] = {}
    for pgno in pgnos:
        prefix = draw(st.binary(max_size=32))
        frames[pgno] = (prefix + seeded_bytes(draw(u32), page_size))[:page_size]
    return frames


@dataclass(frozen=True)
class EntryFields:
    epoch: int
    seq: int
    timestamp_us: int
    page_size: int
    db_pages: int
    db_checksum: int
    frames: dict[int, bytes]
    prev_chain: bytes


@st.composite
def entry_fields(draw: st.DrawFn, max_page_size: int = 65536) -> EntryFields:
    page_size = draw(st.sampled_from([n for n in PAGE_SIZES if n <= max_page_size]))
    return EntryFields(
        epoch=draw(u64),
        seq=draw(st.integers(min_value=1, max_value=2**64 - 1)),
        timestamp_us=draw(u64),
        page_size=page_size,
        db_pages=draw(u32),
        db_checksum=draw(u64),
        frames=draw(frame_sets(page_size)),
        prev_chain=draw(chains),
    )


# -- SQL workloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTable:
    extra_columns: int


@dataclass(frozen=True)
class Insert:
    table: int
    rows: int
    size: int  # blob bytes per row
    seed: int


@dataclass(frozen=True)
class Update:
    table: int
    modulus: int  # rows with id % modulus == residue
    residue: int
    size: int
    seed: int


@dataclass(frozen=True)
class Delete:
    table: int
    modulus: int
    residue: int


@dataclass(frozen=True)
class CreateIndex:
    table: int
    column: int  # index into the table's indexable columns (text columns, then length(a))


@dataclass(frozen=True)
class AddColumn:
    table: int


@dataclass(frozen=True)
class DropTable:
    table: int


@dataclass(frozen=True)
class Select:
    table: int


@dataclass(frozen=True)
class Savepoint:
    """SAVEPOINT; ops; optionally ROLLBACK TO it; RELEASE. Only inside an explicit transaction."""

    ops: tuple[Op, ...]
    rollback: bool


Op = CreateTable | Insert | Update | Delete | CreateIndex | AddColumn | DropTable | Select | Savepoint


@dataclass(frozen=True)
class Txn:
    """One transaction. ``explicit=False`` runs a single op in autocommit mode."""

    ops: tuple[Op, ...]
    explicit: bool
    end: Literal["COMMIT", "ROLLBACK"]


@dataclass(frozen=True)
class Checkpoint:
    """``capture.maybe_checkpoint()`` between transactions."""


@dataclass(frozen=True)
class Vacuum:
    pass


Step = Txn | Checkpoint | Vacuum


@dataclass(frozen=True)
class Workload:
    page_size: int
    cache_size: int
    checkpoint_frames: int
    steps: tuple[Step, ...]


table_index = st.integers(min_value=0, max_value=7)
# Mostly small rows, sometimes rows that overflow into many pages.
blob_size = st.one_of(st.integers(0, 300), st.integers(0, 3000), st.integers(3000, 40_000))
selector = st.tuples(st.integers(1, 5), st.integers(0, 4)).map(lambda mr: (mr[0], mr[1] % mr[0]))


@st.composite
def inserts(draw: st.DrawFn) -> Insert:
    rows = draw(st.one_of(st.integers(1, 5), st.integers(1, 120)))
    size = draw(blob_size)
    size = min(size, 240_000 // rows)  # bound one statement to ~240 KB
    return Insert(table=draw(table_index), rows=rows, size=size, seed=draw(u32))


@st.composite
def updates(draw: st.DrawFn) -> Update:
    modulus, residue = draw(selector)
    return Update(table=draw(table_index), modulus=modulus, residue=residue, size=draw(blob_size), seed=draw(u32))


@st.composite
def deletes(draw: st.DrawFn) -> Delete:
    modulus, residue = draw(selector)
    return Delete(table=draw(table_index), modulus=modulus, residue=residue)


data_ops: st.SearchStrategy[Op] = st.one_of(
    inserts(),
    inserts(),
    updates(),
    updates(),
    deletes(),
    st.builds(Select, table_index),
)
schema_ops: st.SearchStrategy[Op] = st.one_of(
    st.builds(CreateTable, st.integers(0, 2)),
    st.builds(CreateIndex, table_index, st.integers(0, 5)),
    st.builds(AddColumn, table_index),
    st.builds(DropTable, table_index),
)
plain_ops: st.SearchStrategy[Op] = st.one_of(data_ops, data_ops, schema_ops)
ops: st.SearchStrategy[Op] = st.one_of(
    plain_ops,
    st.builds(Savepoint, st.lists(plain_ops, min_size=1, max_size=3).map(tuple), st.booleans()),
)


@st.composite
def transactions(draw: st.DrawFn) -> Txn:
    if draw(st.integers(0, 3)) == 0:
        return Txn(ops=(draw(plain_ops),), explicit=False, end="COMMIT")
    body = tuple(draw(st.lists(ops, max_size=8)))  # may be empty: BEGIN; COMMIT
    ends: list[Literal["COMMIT", "ROLLBACK"]] = ["COMMIT", "COMMIT", "COMMIT", "ROLLBACK"]
    end = draw(st.sampled_from(ends))
    return Txn(ops=body, explicit=True, end=end)


steps: st.SearchStrategy[Step] = st.one_of(
    transactions(),
    transactions(),
    transactions(),
    st.just(Checkpoint()),
    transactions(),
    st.just(Checkpoint()),
    st.just(Vacuum()),
)


@st.composite
def workloads(draw: st.DrawFn, max_steps: int = 30) -> Workload:
    first = Txn(ops=(CreateTable(extra_columns=draw(st.integers(0, 2))),), explicit=False, end="COMMIT")
    return Workload(
        page_size=draw(st.sampled_from([512, 1024, 4096])),
        cache_size=draw(st.integers(5, 10)),
        checkpoint_frames=draw(st.one_of(st.integers(1, 4), st.integers(1, 60))),
        steps=(first, *draw(st.lists(steps, min_size=3, max_size=max_steps))),
    )
