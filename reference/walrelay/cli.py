"""The walrelay command: one CLI for the whole product.

Bad arguments get a one-line error and exit code 2 (argparse's convention), never a traceback.
Errors walrelay raises on purpose (WalrelayError) print their message and exit 1. Ctrl-C stops
any command with one line and exit code 130; output cut by a closed pipe (``| head``) exits 141,
quietly (both like a shell reports a process killed by SIGINT or SIGPIPE).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from walrelay.errors import WalrelayError
from walrelay.placement import EpochAllocator
from walrelay.redact import redact
from walrelay.transport import Transport, split_address


def _address(value: str) -> str:
    try:
        split_address(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _addresses(value: str) -> list[str]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected a comma-separated list of HOST:PORT")
    return [_address(p) for p in parts]


def _positive_float(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if f <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be > 0")
    return f


def _nonneg_int(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a non-negative integer")
    return int(value)


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer")
    return int(value)


def _add_limit_arguments(p: argparse.ArgumentParser, *, replica: bool) -> None:
    from walrelay.replica_node import DEFAULT_MAX_OBJECTS
    from walrelay.tls import DEFAULT_HANDSHAKE_S
    from walrelay.transport import DEFAULT_IDLE_S, DEFAULT_MAX_CONNECTIONS

    g = p.add_argument_group("resource limits (issue 17: no peer may exhaust a node)")
    g.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"connections open at once; more are closed at once, and logged (default {DEFAULT_MAX_CONNECTIONS})",
    )
    g.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=DEFAULT_IDLE_S,
        help=f"close a connection that sent nothing for this many seconds (default {DEFAULT_IDLE_S:g})",
    )
    g.add_argument(
        "--handshake-timeout",
        type=_positive_float,
        default=DEFAULT_HANDSHAKE_S,
        help=f"seconds a peer has to finish its TLS handshake (default {DEFAULT_HANDSHAKE_S:g})",
    )
    if replica:
        g.add_argument(
            "--max-objects",
            type=_positive_int,
            default=DEFAULT_MAX_OBJECTS,
            help=f"objects this replica creates on primaries' request at most (default {DEFAULT_MAX_OBJECTS})",
        )


def _add_tls_arguments(p: argparse.ArgumentParser, who: str) -> None:
    g = p.add_argument_group("TLS (docs/protocol.md, 5.16; make the files with walrelay certs)")
    g.add_argument("--ca", metavar="FILE", help="the cluster's CA certificate")
    g.add_argument("--cert", metavar="FILE", help=f"this {who}'s certificate")
    g.add_argument("--key", metavar="FILE", help=f"this {who}'s private key")
    g.add_argument(
        "--insecure",
        action="store_true",
        help="plain TCP, no TLS and no authentication: any process that reaches the port can read every "
        "object and forge or delete log entries (for a throwaway setup only)",
    )


def tls_transport(args: argparse.Namespace, roles: tuple[str, ...]) -> Transport:
    """The transport the command's TLS flags ask for: TLS with the given certificate (whose role
    must be one of ``roles``), or, with --insecure only, plain TCP after a warning."""
    from walrelay.certs import CertPaths
    from walrelay.tls import DEFAULT_HANDSHAKE_S, TlsTransport, own_identity
    from walrelay.transport import TcpTransport

    given = [f for f in ("ca", "cert", "key") if getattr(args, f)]
    tcp = TcpTransport(
        max_connections=getattr(args, "max_connections", None), idle_s=getattr(args, "idle_timeout", None)
    )
    if args.insecure:
        if given:
            raise UsageError("--insecure cannot go with --ca/--cert/--key")
        print(
            f"walrelay {args.command}: WARNING: --insecure: plain TCP without authentication; any process "
            "that reaches this node can read every object and forge or delete log entries",
            file=sys.stderr,
        )
        return tcp
    if len(given) != 3:
        missing = ", ".join(f"--{f}" for f in ("ca", "cert", "key") if f not in given)
        raise UsageError(
            f"missing {missing}: give --ca, --cert and --key (make them with walrelay certs), or --insecure"
        )
    paths = CertPaths(args.ca, args.cert, args.key)
    me = own_identity(paths)
    if me.role not in roles:
        raise UsageError(
            f"--cert {args.cert} is of role {me.role!r}; walrelay {args.command} needs {' or '.join(roles)}"
        )
    return TlsTransport(tcp, paths, handshake_s=getattr(args, "handshake_timeout", DEFAULT_HANDSHAKE_S))


class UsageError(WalrelayError):
    """A command line that cannot work as given (exit 2, like argparse's own errors)."""


def build_parser() -> argparse.ArgumentParser:
    from walrelay import __version__

    p = argparse.ArgumentParser(prog="walrelay", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    p.add_argument("--version", action="version", version=f"walrelay {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the flight-booking demo: 1 primary + 5 replica processes over TCP")
    d.add_argument("--dir", help="data directory (default: a new temporary directory, removed afterwards)")
    d.add_argument("--bookings", type=_nonneg_int, default=60, help="bookings per phase (default 60)")
    d.add_argument("--hold-seconds", type=_positive_float, default=2.0, help="how long to watch held writes")
    d.add_argument(
        "--s3",
        metavar="URL",
        help="archive to S3 (http(s)://HOST[:PORT]/BUCKET[/PREFIX], an empty location; credentials from "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) instead of a local directory in the run directory",
    )

    r = sub.add_parser("replica", help="run one replica process")
    r.add_argument("--id", type=_nonneg_int, required=True, help="replica id (0-based)")
    r.add_argument("--listen", type=_address, default="127.0.0.1:0", help="HOST:PORT (port 0 = any)")
    r.add_argument("--data", required=True, help="data directory")
    r.add_argument(
        "--placement",
        help="epoch allocator directory: objects this replica has no state for start as non-voters "
        "promising its highest epoch (needed for failover; docs/failover.md)",
    )
    _add_tls_arguments(r, "replica")
    _add_limit_arguments(r, replica=True)

    pr = sub.add_parser("primary", help="run the primary for one object")
    from walrelay.archive.command import object_arg

    pr.add_argument("--object", required=True, type=object_arg, help="object name")
    from walrelay.apps import APPS

    pr.add_argument("--app", default="flights", choices=sorted(APPS), help="application (default: flights)")
    pr.add_argument("--replicas", type=_addresses, required=True, help="comma-separated HOST:PORT of each replica")
    pr.add_argument("--listen", type=_address, default="127.0.0.1:0", help="client address HOST:PORT")
    pr.add_argument("--data", required=True, help="data directory")
    who = pr.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--placement",
        help="epoch allocator directory: this primary takes the next epoch for the object, recovers "
        "from the replicas and fences every earlier primary (docs/failover.md)",
    )
    who.add_argument(
        "--epoch",
        type=_positive_int,
        help="a fixed epoch instead (a single-primary setup; two primaries must never share one)",
    )
    pr.add_argument("--quorum", type=_nonneg_int, default=3, help="acks needed (default 3)")
    _add_tls_arguments(pr, "primary")
    _add_limit_arguments(pr, replica=False)
    from walrelay.archive import command as archive_command

    archive_command.add_store_arguments(pr, required=False)
    pr.add_argument(
        "--segment-mb", type=_positive_float, default=16.0, help="archive: cut a segment at this many MB (default 16)"
    )
    pr.add_argument(
        "--segment-seconds",
        type=_positive_float,
        default=10.0,
        help="archive: cut a segment when its oldest entry is this old (default 10)",
    )
    pr.add_argument(
        "--retention-days",
        type=_positive_float,
        default=30.0,
        help="archive: keep every point this many days back restorable, delete older objects (default 30)",
    )
    pr.add_argument(
        "--deadline",
        type=_positive_float,
        default=30.0,
        help="seconds before a write that is not durable resets the object (default 30)",
    )
    pr.add_argument(
        "--restore-to",
        metavar="BOOKMARK",
        type=_bookmark,
        help="restore the object to this bookmark before serving: a new branch of its history; the undo "
        "bookmark is logged and in __status__ (needs --placement and an archive; docs/restore-branches.md)",
    )

    archive_command.add_parsers(sub)
    _add_archive_fuzz(sub)

    c = sub.add_parser("call", help="call an operation on an object's primary and print the reply as JSON")
    c.add_argument("--primary", type=_address, required=True, help="primary HOST:PORT")
    c.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="give up (exit 1) if the reply has not come within this many seconds, connecting included "
        "(default: wait as long as the primary holds the reply)",
    )
    c.add_argument(
        "--list",
        action="store_true",
        help="list the operations the object's app offers (and walrelay's own), with their arguments (__ops__)",
    )
    c.add_argument("op", nargs="?", help="operation name, or __status__ (see --list)")
    c.add_argument("args", nargs="*", help="arguments, each parsed as JSON if possible, else a string")
    _add_tls_arguments(c, "client or admin")

    ce = sub.add_parser("certs", help="make a cluster's CA and the certificates of its nodes and clients (mutual TLS)")
    cesub = ce.add_subparsers(dest="certs_command", required=True, metavar="CERTS_COMMAND")
    ci = cesub.add_parser("init", help="a new CA for a cluster: DIR/ca.crt and DIR/ca.key (keep ca.key private)")
    ci.add_argument("--dir", required=True, help="the certificates directory")
    ci.add_argument("--cluster", default="walrelay", help="the cluster's name, in every certificate (default walrelay)")
    cn = cesub.add_parser("node", help="a node's certificate from the CA in DIR: DIR/NAME.crt and DIR/NAME.key")
    cn.add_argument("--dir", required=True, help="the certificates directory (with ca.crt and ca.key)")
    cn.add_argument("--role", choices=("primary", "replica"), required=True, help="what the node is")
    cn.add_argument("--name", required=True, help="the certificate's name (default file names follow it)")
    cn.add_argument("--host", action="append", help="a host name or IP the node is reached at (repeatable)")
    cc = cesub.add_parser("client", help="a client's certificate from the CA in DIR: DIR/NAME.crt and DIR/NAME.key")
    cc.add_argument("--dir", required=True, help="the certificates directory (with ca.crt and ca.key)")
    cc.add_argument("--name", required=True, help="the certificate's name")
    cc.add_argument(
        "--admin",
        action="store_true",
        help="the admin role: may also change an object's history (__restore__, __snapshot__)",
    )

    b = sub.add_parser("bench", help="run the benchmark (not a test) and print ratios to raw apsw")
    b.add_argument("--seconds", type=_positive_float, default=3.0, help="seconds per measurement")
    b.add_argument("--concurrency", type=_nonneg_int, default=64, help="requests in flight for (c)")

    ch = sub.add_parser("chaos", help="the chaos harness (walrelay_chaos): campaigns, replays, mutants, reports")
    chsub = ch.add_subparsers(dest="chaos_command", required=True, metavar="CHAOS_COMMAND")
    rp = chsub.add_parser(
        "replay", help="run a replay file's schedule again (exactly, in sim mode) and print the verdict"
    )
    rp.add_argument(
        "file", metavar="FILE", help="a replay file (JSON: a campaign's runs/latest/seed-S/replay.json, or a test's)"
    )
    rp.add_argument(
        "--out",
        metavar="DIR",
        help="write the replay's history.jsonl, timeline.html and latency.png here (default: beside a campaign's "
        "seed-S/replay.json that has no report yet, such as a passing seed's; otherwise none)",
    )
    cm = chsub.add_parser(
        "mutants",
        help="plant each protocol bug in turn and print which the harness kills",
        description="Plant each protocol bug (mutant) in turn: run its directed schedule, then random seeds until "
        "one kills it; shrink that schedule and write both (runs/<timestamp>-mutants/NAME/).",
        epilog=_MUTANT_NAMES,
        formatter_class=_MutantsHelp,
    )
    cm.add_argument("--seeds", type=_nonneg_int, default=200, help="random seeds per mutant at most (default 200)")
    cm.add_argument("--seconds", type=_positive_float, default=60.0, help="random search per mutant (default 60)")
    cm.add_argument("--only", action="append", metavar="NAME", help="only this mutant (repeatable; names below)")
    cm.add_argument(
        "--shrink-budget",
        type=_nonneg_int,
        default=60,
        metavar="RUNS",
        help="runs spent shrinking each mutant's killing schedule at most (default 60; 0: no shrinking)",
    )
    _add_run_dir_arguments(cm, "mutants")
    cr = chsub.add_parser("run", help="a campaign: seeded random schedules, each run and judged")
    cr.add_argument(
        "--mode",
        choices=("sim", "real", "both"),
        default="sim",
        help="sim: the deterministic simulation (default); real: OS processes over TCP with fault proxies and "
        "an S3-protocol server; both: --seeds in sim, then --real-seeds in real mode",
    )
    cr.add_argument("--seeds", type=_positive_int, default=20, help="how many runs (seeds) at most (default 20)")
    cr.add_argument(
        "--real-seeds", type=_positive_int, default=4, help="with --mode both: runs in real mode (default 4)"
    )
    cr.add_argument("--first-seed", type=_nonneg_int, default=0, help="the first seed (default 0)")
    cr.add_argument("--minutes", type=_positive_float, help="stop starting runs after this long")
    _add_run_dir_arguments(cr, "sim|real")
    cr.add_argument(
        "--shrink-budget",
        type=_nonneg_int,
        metavar="RUNS",
        help="runs spent shrinking failing seeds, in all, the first failing seed first (default 100 in sim, "
        "10 in real mode; 0: no shrinking); each shrunk schedule goes to seed-S/shrunk/",
    )
    cr.add_argument(
        "--impl",
        metavar="FILE",
        help="real mode: the implementation under test, as argv templates (docs/conformance.md; default: walrelay)",
    )
    cr.add_argument(
        "--mutant",
        metavar="NAME",
        help="plant this bug in walrelay (walrelay_chaos.mutants; in every process in real mode): the checkers must "
        "fail it; replay files record it",
    )
    cr.add_argument(
        "--require-coverage",
        action="store_true",
        help="a simulation batch in which no run reached one of the dangerous cases (walrelay_chaos.coverage) "
        "is not valid but unknown (exit 2): a harness that avoids them proves nothing (real-mode batches are "
        "small: their coverage is reported, not required)",
    )
    rr = chsub.add_parser("report", help="draw timeline.html and latency.png again from a run's history.jsonl")
    rr.add_argument("history", metavar="HISTORY", help="a history.jsonl written by a chaos run")
    rr.add_argument("--out", metavar="DIR", help="where to write them (default: beside the history)")
    sv = chsub.add_parser("serve", help="browse the run directories (runs/): verdicts, seeds, timelines, over HTTP")
    sv.add_argument("--runs", metavar="DIR", default="runs", help="the runs directory (default: runs)")
    sv.add_argument("--port", type=_nonneg_int, default=8080, help="port on 127.0.0.1 (default 8080; 0: any free)")

    cf = sub.add_parser(
        "conform",
        help="per-rule conformance cases (docs/protocol.md rule ids) against an implementation's replica",
    )
    cf.add_argument(
        "--replica",
        metavar="IMPL",
        default="walrelay",
        help="an implementation file (docs/conformance.md) whose replica template is tested, or 'walrelay' "
        "(the default: the reference replica)",
    )
    cf.add_argument(
        "--primary",
        metavar="IMPL",
        help="instead: the primary cases (five scripted replicas) against this implementation file's primary "
        "template, or 'walrelay'",
    )
    cf.add_argument(
        "--out",
        metavar="DIR",
        help="write results.json and report.html here (per-rule cases: also the node logs; --directed and "
        "--kill-table: also each run's replay file and timeline)",
    )
    cf.add_argument("--only", action="append", metavar="ID", help="only cases whose id or rule id starts with ID")
    cf.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        help="seconds to wait for each answer before judging the silence (default 10; raise it on a loaded machine)",
    )
    cf.add_argument("--list", action="store_true", help="list the cases and the rules they check")
    cf.add_argument("--rules-index", action="store_true", help="print docs/conformance.md's rules index (markdown)")
    cf.add_argument(
        "--directed",
        metavar="IMPL",
        help="instead of the per-rule cases: run the chaos mutant table's directed schedules as real processes "
        "against this implementation file ('walrelay' for the reference); --only NAME picks schedules",
    )
    cf.add_argument(
        "--kill-table",
        action="store_true",
        help="plant each reference bug in every process and run its directed schedule in real mode: what is caught",
    )
    cf.add_argument(
        "--no-power-loss",
        action="store_true",
        help="do not mount the power-loss filesystem (FUSE) under the replica: the power.* cases then have no verdict",
    )

    t = sub.add_parser("tlc", help="model-check the TLA+ spec: run TLC on each config and compare with its expectation")
    t.add_argument(
        "configs",
        nargs="*",
        metavar="CONFIG",
        help="config name (file stem) or .cfg path; runs regardless of --suite (default: every config of --suite)",
    )
    t.add_argument(
        "--spec-dir", metavar="DIR", help="spec root with the .tla modules and .cfg files (default: <repo>/spec)"
    )
    t.add_argument("--suite", choices=("ci", "deep", "all"), default="ci", help="which configs to run (default ci)")
    t.add_argument(
        "--workers", metavar="N", type=_positive_int, help="TLC worker threads per config (default: CPUs / --jobs)"
    )
    t.add_argument("--jobs", metavar="K", type=_positive_int, default=1, help="configs run in parallel (default 1)")
    t.add_argument("--list", action="store_true", help="list the selected configs and exit")
    t.add_argument(
        "--trace",
        action="store_true",
        help="print every counterexample, expected violations (mutants, witnesses) included: each step named "
        "with its action and parameters (found by replaying the trace in TLC), only what changed shown",
    )
    t.add_argument(
        "--json", metavar="FILE", help="write the results as JSON to FILE (for CI records), counterexamples included"
    )
    stop = t.add_mutually_exclusive_group()
    stop.add_argument(
        "--keep-going", dest="fail_fast", action="store_false", help="run every config even after a failure (default)"
    )
    stop.add_argument("--fail-fast", dest="fail_fast", action="store_true", help="start no config after a failure")
    t.set_defaults(fail_fast=False)
    return p


def _add_archive_fuzz(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``walrelay archive fuzz`` (walrelay_chaos.archive_fuzz), beside the subcommands that
    walrelay.archive.command adds to ``archive``."""
    archive = sub.choices["archive"]
    asub = next(a for a in archive._actions if isinstance(a, argparse._SubParsersAction))
    f = asub.add_parser(
        "fuzz",
        help="corruption campaign: faults on a simulated archive, each judged by verify and by restores",
        description="Build an archive with several branches in the simulation, then, per trial, apply one fault "
        "(flip, truncate, delete, overlap, swap, corrupt_record, delete_record) to a copy and run verify and every "
        "restore point. Exit 0 only if no restore is silently wrong, nothing crashes and verify detects every "
        "deletion.",
    )
    f.add_argument("--trials", type=_positive_int, default=300, help="how many faults (default 300)")
    f.add_argument("--seed", type=_nonneg_int, default=0, help="names every trial's fault (default 0)")
    f.add_argument("--trial", type=_nonneg_int, metavar="K", help="run only trial K of the seed (a replay), verbosely")
    f.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    f.add_argument(
        "--cli-every",
        type=_nonneg_int,
        default=25,
        metavar="N",
        help="every N-th trial also runs walrelay archive verify and walrelay restore as processes (0: never; "
        "default 25)",
    )


def _parse_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _print_listening(address: str) -> None:
    # The first line on stdout is the machine-readable contract for whoever started us.
    print(f"LISTENING {address}", flush=True)


async def _serve(
    run: Callable[..., Awaitable[None]],
    listen: str,
    close: Callable[[], None],
    drain: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Start a node, announce its bound address on stdout, serve until SIGTERM (then ``drain``, a
    clean stop's last work) or until cancelled, then close it."""
    stopped_by_signal = False
    try:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(run, listen)
            _print_listening(address)
            # SIGTERM ends the node cleanly: a cancellation trio delivers at a checkpoint, not a
            # KeyboardInterrupt raised at an arbitrary point (say, inside trio's own machinery).
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    stopped_by_signal = True
                    nursery.cancel_scope.cancel()
                    break
        if stopped_by_signal and drain is not None:
            await drain()
    except* WalrelayError as eg:  # say, recovery gave up: a clear message, not a traceback
        raise eg.exceptions[0] from None
    finally:
        close()


async def _run_replica(args: argparse.Namespace) -> None:
    from walrelay.replica_node import ReplicaNode

    placement = EpochAllocator(args.placement) if args.placement else None
    node = ReplicaNode(args.id, args.data, args.transport, placement, max_objects=args.max_objects)
    await _serve(node.serve, args.listen, node.close)


_MUTANT_NAMES = "\0mutant names"  # replaced by the list when help is shown (the import is slow)


class _MutantsHelp(argparse.HelpFormatter):
    """``chaos mutants --help``: lists the mutants (walrelay_chaos.mutants) in the epilog, importing
    them only when help is asked for."""

    def add_text(self, text: str | None) -> None:
        if text == _MUTANT_NAMES:
            from walrelay_chaos.mutants import MUTANTS

            text = "mutants: " + ", ".join(MUTANTS)
        super().add_text(text)


def _add_run_dir_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument(
        "--runs",
        metavar="DIR",
        default="runs",
        help=f"where run directories go: DIR/<timestamp>-{kind}/, with DIR/latest and DIR/index.html (default: runs)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write to exactly this run directory instead (results.json, seed-S/, index.html; no latest link)",
    )


def _say(line: str) -> None:
    print(line, flush=True)  # progress as it happens, also into a pipe (| tee)


def _chaos_run_dir(args: argparse.Namespace, kind: str, sub: str | None = None) -> tuple[Any, str]:
    """The run directory of a campaign (a Path: ``--out``, or a new ``--runs``/<timestamp>-<kind>/)
    and how to name it on the console."""
    from pathlib import Path

    from walrelay_chaos import runs

    if args.out:
        out = Path(args.out) / sub if sub else Path(args.out)
        return out, str(out)
    out = runs.new_run_dir(Path(args.runs), kind)
    return out, f"{out} ({Path(args.runs) / 'latest'})"


def _run_chaos_campaign(args: argparse.Namespace) -> int:
    from pathlib import Path

    from walrelay_chaos.campaign import CampaignError, run_campaign
    from walrelay_chaos.mutants import MUTANTS
    from walrelay_chaos.real import ImplError, NodeCommands
    from walrelay_chaos.replay import replay_command

    if args.impl and args.mode != "real":
        print(
            "walrelay chaos run: error: --impl needs --mode real (the simulation runs walrelay itself)", file=sys.stderr
        )
        return 2
    if args.impl and args.mutant:
        print("walrelay chaos run: error: --mutant plants a bug in walrelay; it cannot go with --impl", file=sys.stderr)
        return 2
    if args.mutant and args.mutant not in MUTANTS:
        print(f"walrelay chaos run: error: no mutant {args.mutant!r}; known: {', '.join(MUTANTS)}", file=sys.stderr)
        return 2
    try:
        impl = NodeCommands.from_file(args.impl) if args.impl else None
    except ImplError as e:
        print(f"walrelay chaos run: error: --impl {e}", file=sys.stderr)
        return 2
    plan = [("sim", args.seeds), ("real", args.real_seeds)] if args.mode == "both" else [(args.mode, args.seeds)]
    codes = []
    for mode, seeds in plan:
        where, named = _chaos_run_dir(args, mode, mode if args.mode == "both" else None)
        what = "simulation" if mode == "sim" else "real processes over TCP"
        _say(f"chaos campaign ({what}): up to {seeds} seeds from {args.first_seed}; run directory {named}")
        try:
            result = run_campaign(
                where,
                seeds=seeds,
                first_seed=args.first_seed,
                minutes=args.minutes,
                mode=mode,
                impl=impl,
                mutant=args.mutant,
                require_coverage=args.require_coverage and mode == "sim",
                shrink_budget=args.shrink_budget,
                progress=_say,
            )
        except CampaignError as e:
            print(f"walrelay chaos run: error: {e}", file=sys.stderr)
            codes.append(2)  # no verdict here; a verdict already reached (sim) still counts
            continue
        if result.interrupted:
            found = f"; {len(result.invalid)} invalid so far" if result.invalid else ""
            print(
                f"walrelay chaos run: interrupted after {result.runs} runs{found}; {where / 'results.json'}",
                file=sys.stderr,
                flush=True,
            )
            return 130
        verdict = {0: "valid", 1: "INVALID", 2: "unknown (harness errors or missing coverage)"}[result.exit_code]
        if mode == "sim":
            speed = result.simulated_seconds / result.seconds if result.seconds else 0.0
            detail = f"{result.simulated_seconds:.0f} simulated seconds, {speed:.0f}x real time"
        else:
            detail = f"each run's timeline in {where}/seed-S/timeline.html"
        reached = ", ".join(f"{name} {n}" for name, n in (result.coverage.counts if result.coverage else {}).items())
        _say(f"{mode}: {verdict}: {result.runs} runs in {result.seconds:.1f} s ({detail}); {where / 'results.json'}")
        _say(f"    coverage (runs that reached each case): {reached}")
        if result.coverage_missing:
            _say(f"    never reached: {', '.join(result.coverage_missing)}")
        if result.invalid:
            first = result.invalid[0]
            shrunk = first.get("shrunk")
            if shrunk:
                _say(f"    first failure, seed {first['seed']}, shrunk to {shrunk['ops']} of {first['ops']} ops:")
                _say(f"      {shrunk['message']}")
                _say(f"      {replay_command(shrunk['replay'])}")
            else:
                _say(f"    first failure, seed {first['seed']}: {replay_command(first['replay'])}")
        index = Path(args.runs) / "index.html" if not args.out else where / "index.html"
        _say(f"    browse: {index} (or walrelay chaos serve)")
        codes.append(result.exit_code)
    return 1 if 1 in codes else max(codes)


def _run_chaos_mutants(args: argparse.Namespace) -> int:
    from walrelay_chaos.campaign import kill_table, run_mutants
    from walrelay_chaos.mutants import MUTANTS

    unknown = sorted(set(args.only or ()) - set(MUTANTS))
    if unknown:
        print(f"walrelay chaos mutants: error: no mutant {unknown[0]!r}; known: {', '.join(MUTANTS)}", file=sys.stderr)
        return 2
    where, named = _chaos_run_dir(args, "mutants")
    _say(f"chaos mutants: run directory {named}")
    result = run_mutants(
        seeds=args.seeds,
        seconds=args.seconds,
        only=args.only,
        progress=_say,
        out_dir=where,
        shrink_budget=args.shrink_budget,
    )
    if result.interrupted:
        print(
            f"walrelay chaos mutants: interrupted after {result.finished} mutants; {where / 'results.json'}",
            file=sys.stderr,
            flush=True,
        )
        return 130
    rows = result.rows
    print(kill_table(rows))
    survivors = [r.mutant for r in rows if not r.killed]
    print(
        f"{len(rows) - len(survivors)} of {len(rows)} mutants killed"
        + (f"; survived: {survivors}" if survivors else "")
        + f"; {where / 'results.json'}"
    )
    return 1 if survivors else 0


def _run_chaos_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from walrelay_chaos.runs import serve_main

    return serve_main(Path(args.runs), args.port)


def _bookmark(text: str) -> str:
    from walrelay.archive.format import bookmark, parse_bookmark

    try:
        return bookmark(*parse_bookmark(text))
    except (ValueError, WalrelayError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def shipper_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The archive settings of ``walrelay primary``, from the units a user gives (MB, seconds,
    days) to the shipper's (bytes, seconds, microseconds)."""
    return {
        "segment_bytes": int(args.segment_mb * 1024 * 1024),
        "segment_age_s": args.segment_seconds,
        "retention_window_us": int(args.retention_days * 86_400_000_000),
    }


async def _run_primary(args: argparse.Namespace) -> None:
    from walrelay.apps import APPS
    from walrelay.primary_node import PrimaryNode

    app_cls = APPS.get(args.app)
    if app_cls is None:
        raise WalrelayError(f"unknown app {args.app!r}; known: {', '.join(sorted(APPS))}")
    from walrelay.archive.command import open_store
    from walrelay.archive.shipper import ArchiveShipper

    store = open_store(args, create=True)
    shipper = None
    if store is not None:
        shipper = ArchiveShipper(store, args.object, **shipper_settings(args))
    node = PrimaryNode(
        object_name=args.object,
        archive=shipper,
        app=app_cls(),
        replica_addresses=args.replicas,
        data_dir=args.data,
        transport=args.transport,
        epoch=args.epoch,
        placement=EpochAllocator(args.placement) if args.placement else None,
        quorum=args.quorum,
        deadline_s=args.deadline,
        restore_to=args.restore_to,
    )
    await _serve(node.run, args.listen, node.close, node.drain)


async def _run_call(args: argparse.Namespace) -> int:
    from walrelay.client import Client
    from walrelay.primary_node import OPS_OP

    op, call_args = (OPS_OP, []) if args.list else (args.op, [_parse_arg(a) for a in args.args])
    with trio.move_on_after(args.timeout if args.timeout is not None else float("inf")) as waited:
        async with Client.connect(args.transport, args.primary) as client:
            reply = await client.call(op, *call_args)
    if waited.cancelled_caught:
        print(
            f"walrelay call: error: no reply from {args.primary} within {args.timeout:g} s (--timeout); "
            f"whether {op} took effect is unknown",
            file=sys.stderr,
        )
        return 1
    if args.list and reply.status == 0 and isinstance(reply.body, dict):
        print(_ops_table(reply.body))
        return 0
    print(json.dumps({"status": reply.status.name, "body": reply.body}, sort_keys=True))
    return 0 if reply.status == 0 else 1


def _ops_table(body: dict[str, Any]) -> str:
    """``call --list``: the reply of __ops__ as lines a person reads (the app's, then walrelay's)."""
    lines = [f"operations of app {body.get('app', '?')!r} (walrelay call --primary ADDRESS OP ARGS...):"]
    for title, key in (("", "operations"), ("walrelay's own (the client door, docs/protocol.md):", "system")):
        if title:
            lines.append(title)
        for o in body.get(key, []):
            usage = f"{o.get('name', '?')} {' '.join(o.get('args', []))}".rstrip()
            doc = o.get("doc") or ""
            lines.append(f"  {usage:<40} {doc}".rstrip())
    return "\n".join(lines)


def _run_certs(args: argparse.Namespace) -> int:
    from walrelay import certs

    try:
        if args.certs_command == "init":
            path = certs.create_ca(args.dir, args.cluster)
            print(f"CA of cluster {args.cluster!r}: {path} (keep {path.with_suffix('.key')} private)")
        elif args.certs_command == "node":
            crt, key = certs.issue(args.dir, args.role, args.name, hosts=tuple(args.host or ("127.0.0.1", "localhost")))
            print(f"{args.role} {args.name!r}: {crt} and {key}")
        else:
            role = "admin" if args.admin else "client"
            crt, key = certs.issue(args.dir, role, args.name)
            print(f"{role} {args.name!r}: {crt} and {key}")
    except (WalrelayError, OSError) as e:
        print(f"walrelay certs: error: {e}", file=sys.stderr)
        return 1
    return 0


# What the interruption handler says and does: the running command (set once its arguments are
# parsed), and whether SIGTERM (not Ctrl-C) raised the KeyboardInterrupt.
_RUNNING = {"command": "walrelay", "terminated": False}


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM: unwinds like Ctrl-C (a node's _serve turns it into a clean stop first), noted so
    that a node stopped this way exits 0."""
    _RUNNING["terminated"] = True
    raise KeyboardInterrupt


def _leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaves(sub)]
    return [e]


def _stdout_broken() -> bool:
    """True if stdout is a pipe whose reader has gone (``walrelay archive ls | head``)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """The walrelay command. Ctrl-C, anywhere in any command (however deep in trio's exception
    groups the KeyboardInterrupt arrives), and a closed stdout pipe are handled here once."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a cut pipe shows here, not at exit as "Exception ignored ..."
        return code
    except SystemExit:
        raise
    except BaseException as e:
        leaves = _leaves(e)
        command = str(_RUNNING["command"])
        if any(isinstance(x, KeyboardInterrupt) for x in leaves):
            if _RUNNING["terminated"] and command in ("walrelay replica", "walrelay primary"):
                return 0  # SIGTERM stops a node cleanly
            others = [x for x in leaves if not isinstance(x, KeyboardInterrupt | trio.Cancelled)]
            also = f" (while it failed: {type(others[0]).__name__}: {others[0]})" if others else ""
            what = "terminated (SIGTERM)" if _RUNNING["terminated"] else "interrupted"
            print(redact(f"{command}: {what}{also}"), file=sys.stderr, flush=True)
            return 130
        if all(isinstance(x, BrokenPipeError) for x in leaves) and _stdout_broken():
            # The reader wanted no more (| head): stop quietly, and let the exit's flush write nowhere.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 141
        if isinstance(e, BrokenPipeError):  # a socket's, not stdout's
            print(redact(f"{command}: error: {e}"), file=sys.stderr)
            return 1
        raise


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _RUNNING["command"] = f"walrelay {args.command}"
    if args.command == "call" and args.list == (args.op is not None):
        call = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["call"]
        call.error(
            "give an operation (OP ARGS...) or --list, not both"
            if args.list
            else "give an operation (OP ARGS...), or --list to see them"
        )
    # The chaos harness runs nodes in this process (sim mode) and faults make them warn all the
    # time, by design (even "recovery gave up" is a right answer there): quiet unless asked; the
    # verdicts are the output, and real mode keeps the processes' logs of failing runs.
    fuzz = args.command == "archive" and args.archive_command == "fuzz"
    quiet = (args.command == "chaos" or fuzz) and not args.verbose
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.CRITICAL if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # SIGTERM ends a node cleanly (KeyboardInterrupt unwinds trio); SIGKILL is the crash test.
    signal.signal(signal.SIGTERM, _on_sigterm)
    roles = {"replica": ("replica",), "primary": ("primary",), "call": ("client", "admin")}.get(args.command)
    if roles is not None:
        try:
            args.transport = tls_transport(args, roles)
        except UsageError as e:  # before anything listens or dials
            print(f"walrelay {args.command}: error: {e}", file=sys.stderr)
            return 2
        except WalrelayError as e:  # the files given cannot be used
            print(f"walrelay {args.command}: error: {e}", file=sys.stderr)
            return 1
    if args.command == "certs":
        return _run_certs(args)
    try:
        if args.command == "replica":
            from walrelay.replica_node import prepare_data_dir

            try:
                prepare_data_dir(args.data)
            except WalrelayError as e:  # a usage error: exit 2, before LISTENING
                print(f"walrelay replica: error: {e}", file=sys.stderr)
                return 2
            trio.run(_run_replica, args)
            return 0
        if args.command == "primary":
            trio.run(_run_primary, args)
            return 0
        if args.command == "call":
            return trio.run(_run_call, args)
        if fuzz:
            from walrelay_chaos.archive_fuzz import main as run_archive_fuzz

            return run_archive_fuzz(
                args.trials, args.seed, as_json=args.json, only=args.trial, cli_every=args.cli_every
            )
        if args.command in ("archive", "restore"):
            from walrelay.archive.command import run as run_archive

            return run_archive(args)
        if args.command == "demo":
            from walrelay.demo import run_demo

            return run_demo(dir=args.dir, bookings=args.bookings, hold_seconds=args.hold_seconds, s3=args.s3)
        if args.command == "bench":
            from walrelay.bench import run_bench

            return run_bench(seconds=args.seconds, concurrency=args.concurrency)
        if args.command == "chaos" and args.chaos_command == "run":
            return _run_chaos_campaign(args)
        if args.command == "chaos" and args.chaos_command == "report":
            from pathlib import Path

            from walrelay_chaos.report import report_main

            history = Path(args.history)
            return report_main(history, Path(args.out) if args.out else history.parent)
        if args.command == "chaos" and args.chaos_command == "mutants":
            return _run_chaos_mutants(args)
        if args.command == "chaos" and args.chaos_command == "serve":
            return _run_chaos_serve(args)
        if args.command == "chaos":
            from walrelay_chaos.campaign import CampaignError
            from walrelay_chaos.replay import run_replay
            from walrelay_chaos.schedule import ScheduleError

            try:
                valid, verdict = run_replay(args.file, args.out, beside=True)
            except (ScheduleError, CampaignError) as e:
                print(f"walrelay chaos replay: error: {e}", file=sys.stderr)
                return 2
            except Exception as e:  # the harness failed, not the system: no verdict (1 means invalid)
                print(f"walrelay chaos replay: harness error, no verdict: {type(e).__name__}: {e}", file=sys.stderr)
                return 2
            print(verdict)
            return 0 if valid else 1
        if args.command == "conform" and (args.directed or args.kill_table):
            from walrelay_chaos.conform.command import run_directed_command

            return run_directed_command(args.directed, kill=args.kill_table, only=args.only, out=args.out)
        if args.command == "conform":
            from walrelay_chaos.conform.command import run as run_conform

            return run_conform(
                args.replica,
                out=args.out,
                only=args.only,
                timeout=args.timeout,
                list_only=args.list,
                power_loss=not args.no_power_loss,
                rules_index_only=args.rules_index,
                primary=args.primary,
            )
        if args.command == "tlc":
            from walrelay.tlc.command import run_command

            return run_command(
                args.configs,
                spec_dir=args.spec_dir,
                suite=args.suite,
                workers=args.workers,
                jobs=args.jobs,
                list_only=args.list,
                json_path=args.json,
                fail_fast=args.fail_fast,
                trace=args.trace,
            )
    except UsageError as e:  # a value no parser type could check (exit 2, like argparse's errors)
        print(redact(f"walrelay {args.command}: error: {e}"), file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # main() tells stdout's (quiet) from a socket's
    except (WalrelayError, ValueError, OSError) as e:
        print(redact(f"walrelay {args.command}: error: {e}"), file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] if len(sys.argv) > 1 else None))
