"""``walrelay archive fuzz``: a corruption campaign against the archive's checker and its restores.

Once per process, the deterministic simulation (``sim.run_schedule`` with ``SCHEDULE``) writes an
archive with several branches (a restore, its undo, a restore of a restore, a failover with the
store down), and the *pristine* answers are recorded: for every branch, bookmarks (its first,
middle and last seq, its fork point and the seq before it, one beyond its end) and times (before
the first write, after the last, at and just before each branch's entries), each restored with
``ArchiveReader.restore_image`` (times through ``point_for_time``, in each branch's history and in
the current one): the image, or the error.

Each trial copies the pristine objects, applies one fault (``walrelay_chaos.corrupt``), writes
them to a fresh directory store, runs ``verify`` and every restore again, and classifies, treating
verify and restore as black boxes:

- **no-op**: the fault left every byte and key as it was (a swap of equal objects);
- **detected**: ``verify`` reported a problem (or refused to run with a clean error);
- per restore point: **identical** (same seq, chain, timestamp and image as pristine, or an error
  where pristine had one), **refused** (a clean ``WalrelayError`` where pristine answered),
  **silently wrong** (an answer that differs from pristine, or any answer where pristine could
  not give one), **crash** (any other exception: a bug; its traceback is kept);
- **missed**: not detected by verify, yet some restore is no longer identical.

Every ``cli_every``-th trial also runs ``walrelay archive verify`` and ``walrelay restore`` (a
bookmark, and a time in the current branch) as processes: exit codes must be 0 or 1, never a
traceback, a restored file must be the pristine image, and verify's exit code must agree with the
in-process verdict; a CLI that breaks one of these counts as a crash.

The campaign passes (exit 0) with no silently wrong restore, no crash, and every deletion
(``delete``, ``delete_record``) detected by verify.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from walrelay.archive.dir_store import DirStore
from walrelay.archive.reader import ArchiveReader
from walrelay.archive.store import ObjectInfo, ObjectStore
from walrelay.archive.verify import verify
from walrelay.errors import WalrelayError
from walrelay_chaos.corrupt import ARCHIVE_KINDS, ArchiveFaultSpace, Fault, RandomChooser, archive_key, json_object
from walrelay_chaos.schedule import (
    Bookmark,
    Check,
    CrashPrimary,
    NewPrimary,
    Op,
    Restore,
    Settle,
    StoreDown,
    StoreUp,
    Write,
)

# The archive under test. points[] are the simulation's restore targets: [0] the empty database,
# then one per Bookmark, and one per Restore (its undo point).
SCHEDULE: list[Op] = [
    Write(3), Settle(300), Bookmark(),  # points[1]: on branch 1
    Write(4), Settle(3000), Write(2), Settle(300), Bookmark(),  # points[2]
    StoreDown(ambiguous=True), Write(3), Settle(3000), CrashPrimary(), StoreUp(), NewPrimary(),  # a failover
    Write(3), Settle(3000), Bookmark(),  # points[3]
    Restore(1, by_request=True),  # branch A: back to points[1]; points[4] = its undo point
    Write(3), Settle(3000), Write(2), Settle(300), Bookmark(),  # points[5], on branch A
    Restore(4, by_request=False),  # the undo: branch B from branch 1's end; points[6]
    Write(3), Settle(3000), Bookmark(),  # points[7]
    Restore(5, by_request=True),  # a restore of a restore: branch C from branch A; points[8]
    Write(2), Settle(3000), Check(),
]  # fmt: skip
SCHEDULE_SEED = 0
OBJECT = "obj"  # walrelay_chaos.sim.OBJECT
DELETIONS = ("delete", "delete_record")
CLI_TIMEOUT_S = 120


class FuzzError(Exception):
    """The campaign cannot run (its pristine archive could not be built, or does not verify)."""


# -- the pristine archive and its answers ---------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The simulation's nodes warn by design (failovers); the campaign's output is its table."""
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(before)


def read_dir(root: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every object of a directory store, by key (temporary ``.`` files left out, as it does)."""
    out: dict[str, bytes] = {}
    base = Path(root)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                out[path.relative_to(base).as_posix()] = path.read_bytes()
    return out


def write_dir(files: Mapping[str, bytes], root: str | os.PathLike[str]) -> None:
    for key, data in files.items():
        path = Path(root).joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def build_archive(schedule: list[Op] = SCHEDULE, seed: int = SCHEDULE_SEED) -> dict[str, bytes]:
    """The objects the simulation archives when it plays ``schedule`` (a few tenths of a second)."""
    from walrelay_chaos.sim import run_schedule, scratch_root

    root = tempfile.mkdtemp(prefix="walrelay-archive-fuzz-build-", dir=scratch_root())
    try:
        with _quiet():
            try:
                # Retention off: the campaign needs every branch (retention retires superseded ones).
                run_schedule(root, schedule, seed=seed, retention=False)
            except AssertionError as e:
                raise FuzzError(f"the simulation that builds the archive failed a check: {e}") from None
        return read_dir(os.path.join(root, "archive"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Point:
    """A restore: a bookmark (``seq`` of ``branch``), or a time (in ``branch``'s history; None:
    the current branch's, as ``walrelay restore --to TIME``)."""

    name: str
    branch: int | None
    seq: int | None = None
    time_us: int | None = None


@dataclass(frozen=True)
class Answer:
    """What one restore gave: an image (and where it is), or an error, or a crash."""

    seq: int | None = None
    chain: bytes = b""
    timestamp_us: int | None = None
    image: bytes = field(default=b"", repr=False)
    named: str = ""  # the bookmark the archive answered with (for a time)
    error: str | None = None  # a WalrelayError: type and message
    crash: str | None = None  # any other exception: its traceback

    @property
    def ok(self) -> bool:
        return self.error is None and self.crash is None

    def same(self, other: Answer) -> bool:
        """The same database at the same point of the same history (the bookmark's branch may be
        named differently: (B, fork_seq) and (parent, fork_seq) are one point)."""
        return (self.seq, self.chain, self.timestamp_us, self.image) == (
            other.seq,
            other.chain,
            other.timestamp_us,
            other.image,
        )

    def brief(self) -> str:
        if self.crash is not None:
            return f"crash: {self.crash.strip().splitlines()[-1]}"
        if self.error is not None:
            return f"error: {self.error}"
        digest = hashlib.sha256(self.image).hexdigest()[:12]
        return (
            f"{self.named or 'seq'} seq {self.seq} chain {self.chain.hex()[:8]} ts {self.timestamp_us} image {digest}"
        )


def _bookmark(branch: int, seq: int) -> str:
    return f"{branch:08x}-{seq:016x}"  # docs/archive-format.md §6


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ListedOnce:
    """The directory store of one trial, its listings read once: nothing writes while a trial
    reads (a put or delete would forget them), and listing the directory again for every restore
    was most of a trial's time. Objects are read from the directory each time."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.inner = DirStore(root, create=False)
        self._listed: dict[str, list[ObjectInfo]] = {}

    def describe(self) -> str:
        return self.inner.describe()

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if prefix not in self._listed:
            self._listed[prefix] = self.inner.list(prefix)
        return list(self._listed[prefix])

    def put(self, key: str, data: bytes) -> None:
        self._listed.clear()
        self.inner.put(key, data)

    def delete(self, key: str) -> None:
        self._listed.clear()
        self.inner.delete(key)


def ask(store: ObjectStore, point: Point, object_name: str = OBJECT) -> Answer:
    """Restore one point (a fresh reader each time)."""
    try:
        reader = ArchiveReader(store, object_name)
        if point.time_us is not None:
            branch, seq = reader.point_for_time(point.time_us, point.branch)
            r = reader.restore_image(seq, branch)
            return Answer(r.seq, r.chain, r.timestamp_us, bytes(r.image), _bookmark(branch, seq))
        assert point.seq is not None
        r = reader.restore_image(point.seq, point.branch)
        return Answer(r.seq, r.chain, r.timestamp_us, bytes(r.image))
    except WalrelayError as e:
        return Answer(error=f"{type(e).__name__}: {e}")
    except Exception:
        return Answer(crash=traceback.format_exc())


@dataclass(frozen=True)
class BranchInfo:
    branch: int
    first: int  # its first snapshot's seq
    last: int  # the last seq any of its objects names
    fork_seq: int | None  # from its branch.json
    parent: int | None
    objects: int


def branches_of(files: Mapping[str, bytes], object_name: str = OBJECT) -> list[BranchInfo]:
    """The branches the archive's keys name (and their branch.json), from the format alone."""
    seqs: dict[int, list[int]] = {}
    snaps: dict[int, list[int]] = {}
    count: dict[int, int] = {}
    records: dict[int, dict[str, Any]] = {}
    for key, data in files.items():
        if not key.startswith(f"{object_name}/b") or len(key) < len(object_name) + 10:
            continue
        try:
            branch = int(key[len(object_name) + 2 : len(object_name) + 10])
        except ValueError:
            continue
        count[branch] = count.get(branch, 0) + 1
        k = archive_key(key)
        if k is None:
            continue
        if k.kind == "record":
            records[branch] = json_object(data) or {}
            continue
        seqs.setdefault(branch, []).extend((k.first, k.last))
        if k.kind == "snapshot":
            snaps.setdefault(branch, []).append(k.first)
    out = []
    for b in sorted(count):
        rec = records.get(b, {})
        fork, parent = rec.get("fork_seq"), rec.get("parent")
        held = seqs.get(b, [0])
        out.append(
            BranchInfo(
                b,
                min(snaps.get(b, held)),
                max(held),
                fork if isinstance(fork, int) else None,
                parent if isinstance(parent, int) else None,
                count[b],
            )
        )
    return out


@dataclass
class Pristine:
    files: dict[str, bytes]
    branches: list[BranchInfo]
    points: list[Point]
    answers: dict[str, Answer]
    object_name: str = OBJECT
    seconds: float = 0.0

    def __repr__(self) -> str:  # hypothesis prints its test's arguments: not megabytes of images
        return f"Pristine({self.summary()})"

    def summary(self) -> str:
        parts = []
        for b in self.branches:
            fork = f", fork of {b.parent} at {b.fork_seq}" if b.parent is not None else ""
            parts.append(f"branch {b.branch} ({b.objects} objects, seq {b.first}..{b.last}{fork})")
        ok = sum(1 for a in self.answers.values() if a.ok)
        return (
            f"{len(self.files)} objects in {len(self.branches)} branches: {'; '.join(parts)}; "
            f"{len(self.points)} restore points ({ok} restorable, {len(self.points) - ok} refused when pristine)"
        )


def plan_bookmarks(branches: list[BranchInfo]) -> list[Point]:
    points: dict[tuple[int, int], str] = {(1, 0): "the empty database", (1, 1): "the first write"}
    for b in branches:
        wanted = {
            b.first: "its first held seq",
            (b.first + b.last) // 2: "its middle seq",
            b.last: "its last seq",
            b.last + 1: "beyond its end",
        }
        if b.fork_seq is not None:
            wanted[b.fork_seq] = "its fork point"
            if b.fork_seq > 0:
                wanted[b.fork_seq - 1] = "before its fork (its parent's)"
        for seq, label in wanted.items():
            points.setdefault((b.branch, seq), f"{label} in branch {b.branch}")
    return [Point(f"bookmark {_bookmark(b, s)} ({label})", b, s) for (b, s), label in sorted(points.items())]


def plan_times(branches: list[BranchInfo], bookmarks: list[Point], answers: Mapping[str, Answer]) -> list[Point]:
    """Times from the pristine bookmarks' timestamps: before the first write, after the last, and
    at and just before each branch's first, middle and last entry; each in the current branch's
    history, and in the history of the branch whose entry it came from (before and after: in
    every branch's)."""
    stamps: dict[int, list[int]] = {}
    for p in bookmarks:
        a = answers[p.name]
        if a.ok and a.seq and a.timestamp_us and p.branch is not None:
            stamps.setdefault(p.branch, []).append(a.timestamp_us)
    every = sorted(t for ts in stamps.values() for t in ts)
    if not every:
        return []
    wanted: dict[tuple[int | None, int], str] = {}
    for b in [None, *(x.branch for x in branches)]:
        wanted[(b, every[0] - 1)] = "before the first write"
        wanted[(b, every[-1] + 1_000_000)] = "a second after the last write"
    for b, ts in stamps.items():
        for t in sorted(set(ts)):
            for branch in (None, b):
                wanted.setdefault((branch, t), f"an entry's time in branch {b}")
                wanted.setdefault((branch, t - 1), f"just before an entry's time in branch {b}")
    out = []
    for (b, t), label in sorted(wanted.items(), key=lambda x: (x[0][0] or 0, x[0][1])):
        where = f"branch {b}" if b is not None else "the current branch"
        out.append(Point(f"time {iso(t)} in {where} ({label})", b, time_us=t))
    return out


def make_pristine(files: Mapping[str, bytes] | None = None, object_name: str = OBJECT) -> Pristine:
    """The pristine archive (built by the simulation unless given) and its answers at every point."""
    started = time.monotonic()
    files = dict(files) if files is not None else build_archive()
    with tempfile.TemporaryDirectory(prefix="walrelay-archive-fuzz-") as d:
        write_dir(files, d)
        store = ListedOnce(d)
        report = verify(ArchiveReader(store, object_name))
        if not report.ok:
            raise FuzzError(f"the pristine archive does not verify: {report.problems[:3]}")
        branches = branches_of(files, object_name)
        bookmarks = plan_bookmarks(branches)
        answers = {p.name: ask(store, p, object_name) for p in bookmarks}
        times = plan_times(branches, bookmarks, answers)
        answers.update({p.name: ask(store, p, object_name) for p in times})
    crashed = {name: a.crash for name, a in answers.items() if a.crash is not None}
    if crashed:
        name, tb = next(iter(crashed.items()))
        raise FuzzError(f"a restore of the pristine archive crashed at {name}:\n{tb}")
    return Pristine(files, branches, [*bookmarks, *times], answers, object_name, time.monotonic() - started)


@functools.cache
def pristine() -> Pristine:
    """The campaign's pristine archive, built once per process."""
    return make_pristine()


# -- trials ---------------------------------------------------------------------------------------


@dataclass
class TrialResult:
    index: int  # -1: not a seeded trial (a hypothesis example)
    kind: str
    fault: str
    noop: bool = False
    detected: bool = False  # verify found a problem (or refused to run, cleanly)
    verify_says: str = ""  # its first problem, or error
    identical: int = 0  # restore points that answered as pristine did
    refused: list[str] = field(default_factory=list)  # points refused where pristine answered
    wrong: list[str] = field(default_factory=list)  # points answered differently (with both answers)
    crashes: list[str] = field(default_factory=list)  # point (or verify, or CLI) and traceback
    cli: list[str] = field(default_factory=list)  # what the CLI did, when this trial ran it

    @property
    def harmful(self) -> bool:
        """Some restore no longer answers as it did."""
        return bool(self.refused or self.wrong or self.crashes)

    @property
    def missed(self) -> bool:
        """Undetected by verify, yet some restore changed."""
        return not self.noop and not self.detected and self.harmful

    @property
    def deletion(self) -> bool:
        return self.kind in DELETIONS and not self.noop

    def problems(self) -> list[str]:
        """What makes this trial fail the campaign, or the test's stricter bar (``missed``)."""
        out = [f"silently wrong: {w}" for w in self.wrong]
        out += [f"crash: {c}" for c in self.crashes]
        if self.deletion and not self.detected:
            out.append("a deletion verify did not detect")
        if self.missed and not self.wrong and not self.crashes:
            out.append(f"verify found nothing, yet {len(self.refused)} restores are refused: {self.refused[:2]}")
        return out


def trial_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"walrelay-archive-fuzz/{seed}/{index}")


def draw_trial_fault(p: Pristine, seed: int, index: int) -> Fault:
    """Trial ``index``'s fault: kinds in turn (so that each gets its share), the rest drawn."""
    space = ArchiveFaultSpace(p.files)
    kinds = space.kinds()
    order = [k for k in ARCHIVE_KINDS if k in kinds] + [k for k in kinds if k not in ARCHIVE_KINDS]
    return space.draw(RandomChooser(trial_rng(seed, index)), [order[index % len(order)]])


def run_trial(
    p: Pristine, fault: Fault, *, index: int = -1, workdir: str | None = None, cli: bool = False
) -> TrialResult:
    """Apply ``fault`` to a copy of the pristine archive, then run verify and every restore."""
    files = fault.apply(p.files)
    result = TrialResult(index, fault.kind, fault.describe())
    if files == p.files:
        result.noop = True
        return result
    d = tempfile.mkdtemp(prefix=f"trial-{index}-", dir=workdir)
    try:
        write_dir(files, d)
        store = ListedOnce(d)
        try:
            report = verify(ArchiveReader(store, p.object_name))
            result.detected = not report.ok
            result.verify_says = report.problems[0] if report.problems else "valid"
        except WalrelayError as e:  # a clean refusal: the CLI exits 1 with its message
            result.detected = True
            result.verify_says = f"verify refused: {type(e).__name__}: {e}"
        except Exception:
            result.verify_says = "verify crashed"
            result.crashes.append(f"verify: {traceback.format_exc()}")
        for point in p.points:
            before, now = p.answers[point.name], ask(store, point, p.object_name)
            if now.crash is not None:
                result.crashes.append(f"{point.name}: {now.crash}")
            elif not now.ok:
                if before.ok:
                    result.refused.append(point.name)
                else:
                    result.identical += 1
            elif not before.ok or not now.same(before):
                result.wrong.append(f"{point.name}: pristine {before.brief()}; now {now.brief()}")
            else:
                result.identical += 1
        if cli:
            _cli_checks(p, d, result, random.Random(f"walrelay-archive-fuzz-cli/{fault.describe()}"))
    finally:
        shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{d}.out.db")
    return result


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "walrelay", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
    )


def _cli_checks(p: Pristine, d: str, result: TrialResult, rng: random.Random) -> None:
    """The same archive through the command line: exit 0 or 1, never a traceback; verify's exit
    code is the in-process verdict; a restored file holds the pristine image."""
    runs: list[tuple[str, Point | None, list[str]]] = [("verify", None, ["archive", "verify", p.object_name])]
    bookmarks = [x for x in p.points if x.seq is not None and x.branch is not None]
    times = [x for x in p.points if x.time_us is not None and x.branch is None]
    out = f"{d}.out.db"  # beside the store, not in it
    if bookmarks and times:
        mark, when = rng.choice(bookmarks), rng.choice(times)
        to = _bookmark(mark.branch or 0, mark.seq or 0)
        runs.append(("restore", mark, ["restore", p.object_name, "--to", to, "--out", out]))
        runs.append(("restore", when, ["restore", p.object_name, "--to", iso(when.time_us or 0), "--out", out]))
    for what, point, args in runs:
        with contextlib.suppress(FileNotFoundError):
            os.remove(out)
        proc = _run_cli(*args, "--archive", d)
        label = f"walrelay {' '.join(args[:2])}{f' {point.name}' if point else ''}"
        result.cli.append(f"{label}: exit {proc.returncode}")
        if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
            result.crashes.append(f"CLI {label}: exit {proc.returncode}, stderr: {proc.stderr.strip()[-2000:]}")
            continue
        if what == "verify":
            if not result.crashes and (proc.returncode == 0) == result.detected:
                result.crashes.append(f"CLI {label}: exit {proc.returncode}, but in process: {result.verify_says}")
            continue
        assert point is not None
        before = p.answers[point.name]
        if proc.returncode == 0:
            got = Path(out).read_bytes()
            want = bytearray(before.image)
            if len(want) >= 20 and want[18] == 2 and want[19] == 2:
                want[18] = want[19] = 1  # walrelay restore writes a rollback-journal file
            if not before.ok or got != bytes(want):
                result.wrong.append(
                    f"CLI {label}: exit 0 with a file of {len(got)} bytes (sha256 "
                    f"{hashlib.sha256(got).hexdigest()[:12]}); pristine: {before.brief()}"
                )


# -- the campaign ---------------------------------------------------------------------------------


@dataclass
class KindRow:
    kind: str
    trials: int = 0
    noop: int = 0
    detected: int = 0
    refused: int = 0  # trials in which some restore was refused
    wrong: int = 0  # trials with a silently wrong restore
    crashes: int = 0
    missed: int = 0  # undetected by verify, yet some restore changed

    @property
    def effective(self) -> int:
        return self.trials - self.noop

    @property
    def detected_pct(self) -> float:
        return 100.0 * self.detected / self.effective if self.effective else 100.0

    def add(self, r: TrialResult) -> None:
        self.trials += 1
        self.noop += r.noop
        self.detected += r.detected
        self.refused += bool(r.refused)
        self.wrong += bool(r.wrong)
        self.crashes += bool(r.crashes)
        self.missed += r.missed


@dataclass
class CampaignResult:
    seed: int
    trials: list[TrialResult]
    seconds: float
    archive: str  # what the pristine archive holds
    points: int

    def rows(self) -> list[KindRow]:
        by_kind: dict[str, KindRow] = {}
        for r in self.trials:
            by_kind.setdefault(r.kind, KindRow(r.kind)).add(r)
        order = {k: i for i, k in enumerate(ARCHIVE_KINDS)}
        rows = sorted(by_kind.values(), key=lambda row: (order.get(row.kind, len(order)), row.kind))
        total = KindRow("all")
        for r in self.trials:
            total.add(r)
        return [*rows, total]

    @property
    def deletions(self) -> tuple[int, int]:
        """(detected by verify, all) of the deletions that changed something."""
        d = [r for r in self.trials if r.deletion]
        return sum(r.detected for r in d), len(d)

    @property
    def ok(self) -> bool:
        detected, deletions = self.deletions
        return not any(r.wrong or r.crashes for r in self.trials) and detected == deletions

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def failures(self) -> list[TrialResult]:
        return [r for r in self.trials if r.problems()]

    def table(self) -> str:
        head = ("kind", "trials", "no-op", "detected", "det %", "refused", "wrong", "crashes", "missed")
        lines = [f"{head[0]:<15}" + "".join(f"{h:>10}" for h in head[1:])]
        for row in self.rows():
            cells = (row.trials, row.noop, row.detected, f"{row.detected_pct:.1f}", row.refused, row.wrong)
            cells2 = (row.crashes, row.missed)
            lines.append(f"{row.kind:<15}" + "".join(f"{c:>10}" for c in (*cells, *cells2)))
        detected, deletions = self.deletions
        pct = 100.0 * detected / deletions if deletions else 100.0
        lines.append(f"deletions detected by verify: {detected}/{deletions} ({pct:.1f}%)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        detected, deletions = self.deletions
        return {
            "valid": self.ok,
            "seed": self.seed,
            "trials": len(self.trials),
            "seconds": round(self.seconds, 2),
            "archive": self.archive,
            "restore_points": self.points,
            "rows": [
                {**asdict(row), "detected_pct": round(row.detected_pct, 1), "effective": row.effective}
                for row in self.rows()
            ],
            "deletions": {"detected": detected, "total": deletions},
            "failures": [
                {
                    "trial": r.index,
                    "kind": r.kind,
                    "fault": r.fault,
                    "verify": r.verify_says,
                    "problems": r.problems(),
                    "replay": replay_command(self.seed, r.index),
                }
                for r in self.failures()
            ],
        }


def one_line(problem: str) -> str:
    """A problem on one line: a traceback shortened to where it was caught and its exception."""
    lines = [line for line in problem.splitlines() if line.strip()]
    if len(lines) > 1 and "Traceback" in lines[0]:
        return f"{lines[0].removesuffix('Traceback (most recent call last):').strip()} {lines[-1].strip()}"
    return lines[0] if lines else problem


def replay_command(seed: int, trial: int) -> str:
    return f"walrelay archive fuzz --seed {seed} --trial {trial}"


def run_campaign(
    trials: int,
    seed: int = 0,
    *,
    only: int | None = None,
    cli_every: int = 25,
    progress: Callable[[str], None] | None = None,
    every: int = 50,
) -> CampaignResult:
    """``trials`` faults drawn from ``seed`` (or trial ``only`` of them), each judged; every
    ``cli_every``-th trial (0: none) also through the CLI."""
    started = time.monotonic()
    p = pristine()
    indexes = [only] if only is not None else list(range(trials))
    results: list[TrialResult] = []
    from walrelay_chaos.sim import scratch_root

    workdir = tempfile.mkdtemp(prefix="walrelay-archive-fuzz-", dir=scratch_root())
    try:
        for n, i in enumerate(indexes, 1):
            fault = draw_trial_fault(p, seed, i)
            cli = only is not None or (cli_every > 0 and i % cli_every == 0)
            results.append(run_trial(p, fault, index=i, workdir=workdir, cli=cli))
            if progress is not None and (n % every == 0 or n == len(indexes)):
                bad = sum(1 for r in results if r.wrong or r.crashes)
                det = sum(r.detected for r in results)
                progress(
                    f"archive fuzz: {n}/{len(indexes)} trials, {det} detected by verify, {bad} wrong or crashed "
                    f"({time.monotonic() - started:.1f} s)"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return CampaignResult(seed, results, time.monotonic() - started, p.summary(), len(p.points))


def main(trials: int, seed: int, *, as_json: bool, only: int | None = None, cli_every: int = 25) -> int:
    """``walrelay archive fuzz``: exit 0 only with no silently wrong restore, no crash, and every
    deletion detected by verify; 1 otherwise; 2 if the campaign could not run."""

    def say(line: str) -> None:
        print(line, file=sys.stderr if as_json else sys.stdout, flush=True)

    try:
        p = pristine()
    except FuzzError as e:
        print(f"walrelay archive fuzz: error: {e}", file=sys.stderr)
        return 2
    say(f"archive fuzz: seed {seed}; pristine archive: {p.summary()} (built in {p.seconds:.1f} s)")
    result = run_campaign(trials, seed, only=only, cli_every=cli_every, progress=say)
    if as_json:
        print(json.dumps(result.to_json(), indent=1))
        return result.exit_code
    print(result.table())
    for r in result.failures()[:20]:
        print(f"trial {r.index} ({r.fault}); verify: {r.verify_says}")
        for problem in r.problems()[:3]:
            print(f"    {one_line(problem)}")
        print(f"    replay: {replay_command(seed, r.index)}")
    if len(result.failures()) > 20:
        print(f"... and {len(result.failures()) - 20} more failing trials (--json lists them all)")
    if only is not None and result.trials:
        r = result.trials[0]
        print(f"trial {r.index}: {r.fault}; verify: {r.verify_says}; {r.identical} restores identical")
        for line in [*r.refused, *r.cli]:
            print(f"    {line}")
    verdict = "valid" if result.ok else "INVALID"
    print(f"{verdict}: {len(result.trials)} trials in {result.seconds:.1f} s")
    return result.exit_code
