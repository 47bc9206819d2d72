"""``walrelay archive ls|verify`` and ``walrelay restore``: the archive from the command line.

Every failure is a one-line error naming what is wrong (the object key, the bookmark, the time);
exit status 0 = done / valid, 1 = the archive is bad or cannot answer, 2 = bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime

import apsw

from walrelay.archive.dir_store import DirStore
from walrelay.archive.format import ArchiveFormatError, bookmark, parse_bookmark, parse_key
from walrelay.archive.reader import ArchiveError, ArchiveReader, Restored
from walrelay.archive.retention import DAY_US, apply_retention, apply_superseded, plan_retention, plan_superseded
from walrelay.archive.s3_store import S3Store, parse_s3_url
from walrelay.archive.store import ObjectStore, ObjectStoreError
from walrelay.archive.verify import verify
from walrelay.errors import WalrelayError
from walrelay.fsutil import fsync_dir
from walrelay.replica_store import check_object_name

_LOOKS_LIKE_BOOKMARK = re.compile(r"[0-9a-fA-F]+-[0-9a-fA-F]+")
TIME_FORMATS = (
    "an ISO 8601 time with a zone (2026-11-26T12:00:00Z, 2026-11-26T13:00:00+01:00) or @MICROSECONDS since the epoch"
)
POINT_FORMATS = f"latest, a bookmark BRANCH-SEQ in hex (like 00000001-000000000000002a), or {TIME_FORMATS}"
LATEST = "latest"


def add_store_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    where = p.add_mutually_exclusive_group(required=required)
    where.add_argument("--archive", metavar="DIR", help="archive in a local directory")
    where.add_argument(
        "--s3",
        metavar="URL",
        type=s3_url_arg,
        help="archive in S3: http(s)://HOST[:PORT]/BUCKET[/PREFIX]; credentials from AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY",
    )


def s3_url_arg(url: str) -> str:
    """``--s3``: an address parse_s3_url takes (a bad one is a usage error, quoted without credentials)."""
    try:
        parse_s3_url(url)
    except ObjectStoreError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return url


def object_arg(name: str) -> str:
    """An object name as replicas and archives accept it (a bad one is a usage error)."""
    try:
        return check_object_name(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def open_store(args: argparse.Namespace, *, create: bool = False) -> ObjectStore | None:
    if getattr(args, "archive", None):
        return DirStore(args.archive, create=create)
    if getattr(args, "s3", None):
        return S3Store(args.s3, create_bucket=create)
    return None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("archive", help="inspect an object's WAL archive")
    asub = a.add_subparsers(dest="archive_command", required=True, metavar="SUBCOMMAND")
    ls = asub.add_parser("ls", help="list branches, snapshots and segments with seq and time ranges")
    ls.add_argument("object", type=object_arg, help="object name")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_arguments(ls, required=True)
    v = asub.add_parser("verify", help="check every object, the chain, and every snapshot against the log")
    v.add_argument("object", type=object_arg, help="object name")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    add_store_arguments(v, required=True)

    rt = asub.add_parser("retain", help="delete what no restore inside the retention window can need")
    rt.add_argument("object", type=object_arg, help="object name")
    rt.add_argument(
        "--window-days",
        type=_bounded(36_500),
        default=30.0,
        help="keep every point this many days back (default 30)",
    )
    rt.add_argument(
        "--grace-hours", type=_bounded(8_760), default=1.0, help="and this much more, for restores running now"
    )
    rt.add_argument(
        "--now", metavar="TIME", type=_time_arg, help="the current time (ISO 8601 or @MICROSECONDS; default: now)"
    )
    rt.add_argument("--dry-run", action="store_true", help="print what would be deleted, delete nothing")
    add_store_arguments(rt, required=True)

    r = sub.add_parser("restore", help="write the object's database as of a bookmark or a time to a SQLite file")
    r.add_argument("object", type=object_arg, help="object name")
    r.add_argument(
        "--to",
        default=LATEST,
        type=_point_arg,
        metavar="POINT",
        help="latest (the default: the newest archived point of the current branch), a bookmark (BRANCH-SEQ "
        "hex, like 00000001-000000000000002a) or a time: ISO 8601 with a zone (2026-11-26T12:00:00Z, or an "
        "offset such as +01:00; a time without a zone is refused, never guessed) or @MICROSECONDS since the "
        "epoch. A time means the last entry at or before it; it is refused if the archive cannot prove which "
        "entry that is (a gap, a time after the newest archived entry, or before the object existed), and a "
        "time before the first write restores the empty database, saying so",
    )
    r.add_argument("--out", required=True, metavar="FILE", help="the SQLite file to write (must not exist)")
    add_store_arguments(r, required=True)


def parse_time(text: str) -> int:
    """Microseconds since the epoch, from ``@MICROS`` or an ISO 8601 time with a zone."""
    if text.startswith("@"):
        if not text[1:].isdigit():
            raise ArchiveError(f"bad time {text!r}: after '@' come the microseconds since the epoch")
        return int(text[1:])
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ArchiveError(f"bad time {text!r}: expected {TIME_FORMATS}") from None
    if t.tzinfo is None:
        raise ArchiveError(f"time {text!r} has no zone: add Z (UTC) or an offset such as +01:00")
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


Point = tuple[str, int, int]  # ("latest", 0, 0), ("bookmark", branch, seq) or ("time", t_us, 0)


def parse_point(text: str) -> Point:
    """What ``restore --to`` names: the latest point, a bookmark or a time (one-line errors that
    list the accepted forms)."""
    if text == LATEST:
        return (LATEST, 0, 0)
    if _LOOKS_LIKE_BOOKMARK.fullmatch(text):
        try:
            branch, seq = parse_bookmark(text)
        except ArchiveFormatError as e:
            raise ArchiveError(f"{e}; --to also takes latest, or {TIME_FORMATS}") from None
        return ("bookmark", branch, seq)
    try:
        return ("time", parse_time(text), 0)
    except ArchiveError as e:
        if text.startswith("@") or "no zone" in str(e):
            raise
        raise ArchiveError(f"bad point {text!r}: expected {POINT_FORMATS}") from None


def _point_arg(text: str) -> Point:
    try:
        return parse_point(text)
    except ArchiveError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _time_arg(text: str) -> int:
    try:
        return parse_time(text)
    except ArchiveError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _bounded(most: int) -> Callable[[str], float]:
    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 <= value <= most:  # also refuses nan and inf
            raise argparse.ArgumentTypeError(f"must be between 0 and {most}, got {text}")
        return value

    return number


def iso_time(us: int | None) -> str:
    if us is None:
        return "-"
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_iso = iso_time


def _branch(b: int) -> str:
    """A branch as bookmarks show it: 8 lowercase hex digits."""
    return f"{b:08x}"


def run(args: argparse.Namespace) -> int:
    store = open_store(args)
    assert store is not None  # the store arguments are required
    reader = ArchiveReader(store, args.object)
    if args.command == "restore":
        return _restore(reader, args.to, args.out)
    if args.archive_command == "retain":
        return _retain(reader, args)
    if args.archive_command == "verify":
        report = verify(reader)
        if args.json:
            print(
                json.dumps(
                    {
                        "valid": report.ok,
                        "problems": report.problems,
                        "notes": report.notes,
                        "branches": [vars(b) for b in report.branches],
                    }
                )
            )
        else:
            for b in report.branches:
                if b.orphan or b.retired:
                    what = "an orphan (a restore that never completed)" if b.orphan else "retired by retention"
                    print(f"branch {_branch(b.branch)}: {what}")
                    continue
                print(
                    f"branch {_branch(b.branch)}: {b.snapshots} snapshots, {b.segments} segments, "
                    f"{b.manifests} manifests, "
                    f"log from snapshot {b.first_snapshot} through seq {b.end} "
                    f"({_iso(b.first_ts)} .. {_iso(b.last_ts)}); manifests record it through seq {b.recorded_through}"
                )
            for n in report.notes:
                print(f"note: {n}")
            print("valid" if report.ok else f"INVALID: {report.problems[0]}")
            for p in report.problems[1:]:
                print(f"  also: {p}")
        return 0 if report.ok else 1
    return _ls(reader, as_json=args.json)


def _retain(reader: ArchiveReader, args: argparse.Namespace) -> int:
    now = args.now if args.now is not None else int(datetime.now(UTC).timestamp() * 1_000_000)
    b = reader.branch(None)
    plan = plan_retention(
        reader,
        b,
        now_us=now,
        window_us=int(args.window_days * DAY_US),
        grace_us=int(args.grace_hours * 3_600_000_000),
    )
    kept = (
        f"snapshot at seq {plan.keep_snapshot[1]}"
        if plan.keep_snapshot
        else "everything (no snapshot before the window)"
    )
    superseded = plan_superseded(
        reader, now_us=now, window_us=int(args.window_days * DAY_US), grace_us=int(args.grace_hours * 3_600_000_000)
    )
    print(f"window starts {_iso(plan.horizon_us)} (seq {plan.horizon_seq}); keeping {kept}")
    would = "would " if args.dry_run else ""
    for key in superseded:
        k = parse_key(key)
        print(f"{would}retire branch {_branch(k.branch)} ({key})" if k.kind == "retired" else f"{would}delete {key}")
    if plan.floor is not None:
        print(f"{would}write the retention floor {plan.floor.key(reader.object_name)}")
    for key in plan.delete:
        print(f"{would}delete {key}")
    if not args.dry_run:
        apply_superseded(reader, superseded)
        apply_retention(reader, plan)
    n = len([k for k in superseded if parse_key(k).kind != "retired"]) + len(plan.delete)
    print(f"{n} objects {'would be ' if args.dry_run else ''}deleted")
    return 0


def _ls(reader: ArchiveReader, *, as_json: bool) -> int:
    listing = reader.listing()
    if not listing.branches:
        raise ArchiveError(f"no archive for object {reader.object_name!r} in {reader.store.describe()}")
    rows: list[dict[str, object]] = []
    current = reader.current_branch(listing)
    genesis = listing.branches.get(1)
    created = reader.created_us(genesis) if genesis is not None else None
    if created is not None:
        rows.append({"branch": 1, "kind": "created", "key": "", "first": 0, "last": 0, "time": _iso(created)})
    for b in sorted(listing.branches.values(), key=lambda b: b.branch):
        if b.record_key is not None:
            rec = reader.record(b)
            assert rec is not None
            rows.append(
                {
                    "branch": b.branch,
                    "kind": "branch",
                    "key": b.record_key,
                    "first": rec.fork_seq,
                    "last": rec.fork_seq,
                    "parent": rec.parent,
                    "restored_to": rec.restored_to,
                    "undo_bookmark": rec.undo_bookmark,
                    "current": b.branch == current,
                }
            )
        elif b.branch != 1:
            rows.append({"branch": b.branch, "kind": "orphan", "key": "", "first": 0, "last": 0})
        for key, seq in b.snapshots:
            rows.append({"branch": b.branch, "kind": "snapshot", "key": key, "first": seq, "last": seq})
        for key, k in b.segments:
            seg = reader.segment(key)
            rows.append(
                {
                    "branch": b.branch,
                    "kind": "segment",
                    "key": key,
                    "first": k.first,
                    "last": k.last,
                    "first_time": _iso(seg.first_ts),
                    "last_time": _iso(seg.last_ts),
                }
            )
    order = {"created": 0, "branch": 0, "orphan": 0, "snapshot": 1, "segment": 2}
    rows.sort(key=lambda r: (str(r["branch"]).zfill(10), order[str(r["kind"])], str(r["first"]).zfill(20)))
    for r in rows:  # every point also as the bookmark that names it (what restore --to takes)
        if r["kind"] in ("created", "branch", "snapshot", "segment"):
            r["first_bookmark"] = bookmark(int(str(r["branch"])), int(str(r["first"])))
            r["last_bookmark"] = bookmark(int(str(r["branch"])), int(str(r["last"])))
    if as_json:
        print(json.dumps(rows))
    else:
        for r in rows:
            br = _branch(int(str(r["branch"])))
            if r["kind"] == "branch":
                now = "  (current)" if r["current"] else ""
                parent = _branch(int(str(r["parent"])))
                print(
                    f"branch {br}  restored from {r['restored_to']} (branch {parent} seq {r['first']}, bookmark "
                    f"{r['first_bookmark']}); undo bookmark {r['undo_bookmark']}{now}"
                )
                continue
            if r["kind"] == "created":
                print(
                    f"branch {br}  created {r['time']}: the earliest time the object can be restored to "
                    f"(bookmark {r['first_bookmark']}, the empty database)"
                )
                continue
            if r["kind"] == "orphan":
                print(f"branch {br}  no branch.json: a restore that never completed (never read)")
                continue
            if r["kind"] == "segment":
                print(
                    f"branch {br}  segment   seq {r['first']}..{r['last']}  {r['first_bookmark']} .. "
                    f"{r['last_bookmark']}  {r['first_time']} .. {r['last_time']}  {r['key']}"
                )
                continue
            print(f"branch {br}  {r['kind']:<8}  seq {r['first']}  {r['first_bookmark']}  {r['key']}")
    for key in listing.foreign:
        print(f"warning: {key} is not an archive object")
    return 0


SEGMENT_AGE = (
    "A point the primary has not uploaded yet is archived within the segment age (10 s by default); a restore of "
    "the object itself (__restore__, walrelay primary --restore-to) archives it first"
)


def _restore(reader: ArchiveReader, point: Point, out: str) -> int:
    if os.path.exists(out):
        raise ArchiveError(f"{out} already exists; restore writes a new file only")
    kind, a, b = point
    if kind == LATEST:
        branch, seq = _latest(reader)
    elif kind == "bookmark":
        branch, seq = a, b
        _check_bookmark(reader, branch, seq)
    else:
        branch, seq = reader.point_for_time(a, past_end_ok=False)
    restored = reader.restore_image(seq, branch)
    if restored.seq != seq:  # restore_image replays through seq or raises; never a nearby point
        raise ArchiveError(f"the archive restored seq {restored.seq}, not the seq {seq} asked for")
    _write_sqlite(restored, out)
    newest = (
        " (the newest archived point; later writes the primary has not archived yet, within the segment age, "
        "10 s by default, are not in it)"
        if kind == LATEST
        else ""
    )
    if restored.seq == 0:
        print(
            f"restored {reader.object_name!r} to bookmark {bookmark(branch, 0)}: the EMPTY database (before the first "
            f"write){newest} into {out}"
        )
        return 0
    print(
        f"restored {reader.object_name!r} to bookmark {bookmark(branch, restored.seq)} "
        f"(seq {restored.seq}, {_iso(restored.timestamp_us)}){newest} into {out}"
    )
    return 0


def _latest(reader: ArchiveReader) -> tuple[int, int]:
    """``--to latest``: the current branch's archived end, unless the archive holds entries past
    a gap there (then the newest point is not the end: refused, naming the missing seqs)."""
    bl = reader.branch(None)
    end, _ = reader.end(bl)
    later = [k.first for _, k in bl.segments if k.first > end + 1]
    tip = reader.tip(bl)
    recorded = tip.through if tip is not None else 0
    if later or recorded > end:
        upto = min(later) - 1 if later else recorded
        raise ArchiveError(
            f"archive of {reader.object_name!r} branch {_branch(bl.branch)} has a gap: no segment holds seq "
            f"{end + 1} (seqs {end + 1}..{upto} are missing), so its latest point is unknown; bookmark "
            f"{bookmark(bl.branch, end)} is the last before the gap; run walrelay archive verify"
        )
    return bl.branch, end


def _check_bookmark(reader: ArchiveReader, branch: int, seq: int) -> None:
    """A bookmark the archive cannot restore: say why, in the bookmark's terms (a branch in hex),
    and mention the segment age only where it may be the reason (the current branch's end)."""
    mark = bookmark(branch, seq)
    listing = reader.listing()
    if listing.branches and branch not in listing.branches:
        have = ", ".join(_branch(b) for b in sorted(listing.branches))
        raise ArchiveError(
            f"bookmark {mark}: object {reader.object_name!r} has no branch {_branch(branch)} in "
            f"{reader.store.describe()} (its branches: {have})"
        )
    try:
        reader.restore_point_check(branch, seq)
    except ArchiveError as e:
        if _past_current_end(reader, branch, seq):
            raise ArchiveError(f"bookmark {mark}: {e}. {SEGMENT_AGE}") from None  # maybe not uploaded yet
        raise ArchiveError(f"bookmark {mark}: {e}") from None


def _past_current_end(reader: ArchiveReader, branch: int, seq: int) -> bool:
    """Whether the point lies past the archived end of the current branch (where the primary
    may not have uploaded it yet); False if the archive cannot say."""
    try:
        listing = reader.listing()
        bl = listing.branches.get(branch)
        return bl is not None and branch == reader.current_branch(listing) and seq > reader.end(bl)[0]
    except (WalrelayError, ValueError):
        return False


def _write_sqlite(restored: Restored, out: str) -> None:
    """A plain SQLite file: the image, with the header switched from WAL to rollback mode (bytes
    18-19), so that ``sqlite3`` opens it with no -wal file; checked with ``PRAGMA integrity_check``
    before it appears under ``out``, which is never overwritten (a hard link fails if it exists)."""
    data = bytearray(restored.image)
    if len(data) >= 20 and data[18] == 2 and data[19] == 2:
        data[18] = data[19] = 1
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".restore-", suffix=".db", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if data:
            try:
                conn = apsw.Connection(tmp, flags=apsw.SQLITE_OPEN_READONLY)
                try:
                    check = conn.execute("PRAGMA integrity_check").fetchall()
                finally:
                    conn.close()
            except apsw.Error as e:
                raise ArchiveError(f"the restored image is not a usable SQLite database: {e}") from None
            if check != [("ok",)]:
                raise ArchiveError(f"restored database fails PRAGMA integrity_check: {check[:3]}")
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise ArchiveError(f"{out} already exists; restore writes a new file only") from None
        fsync_dir(directory)
    finally:
        os.remove(tmp)
