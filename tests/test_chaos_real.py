"""Real-mode chaos: the TCP fault proxy, runs against OS processes, their checkers and the CLI.

The checkers are shown to fail: mutants planted in the node processes (walrelay_chaos.node) are
caught from the outside, through the client protocol, ``__status__`` and the archive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from walrelay.procs import walrelay_argv
from walrelay_chaos import schedule as op
from walrelay_chaos.fakeclock import SkewedClock, clock_skew_unavailable
from walrelay_chaos.mutants import ACKED_THEN_POWER_LOSS, MUTANTS
from walrelay_chaos.netproxy import LinkProxy
from walrelay_chaos.pace import budget
from walrelay_chaos.powermount import power_loss_unavailable
from walrelay_chaos.real import (
    WALRELAY_PRIMARY,
    WALRELAY_REPLICA,
    HarnessError,
    ImplError,
    NodeCommands,
    SetupError,
    random_real_schedule,
    run_real,
)
from walrelay_chaos.s3server import S3Server
from walrelay_chaos.verdicts import Violation

pytestmark = pytest.mark.integration

# -- the proxy ------------------------------------------------------------------------------------


async def _echo_server(nursery: trio.Nursery) -> str:
    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):  # a partition resets connections
                while data := await stream.receive_some(65536):
                    await stream.send_all(data)

    listeners = await nursery.start(trio.serve_tcp, echo, 0)
    host, port = listeners[0].socket.getsockname()[:2]
    return f"{host}:{port}"


async def _link(nursery: trio.Nursery) -> LinkProxy:
    link = LinkProxy("r0", await _echo_server(nursery))
    await nursery.start(link.serve)
    return link


async def _connect(link: LinkProxy) -> trio.SocketStream:
    host, port = link.address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _ended(stream: trio.SocketStream) -> bool:
    """The connection is over: reset (a partition aborts it) or closed (a refused dial)."""
    with trio.fail_after(budget(5)):
        try:
            return await stream.receive_some(10) == b""
        except trio.BrokenResourceError:
            return True


async def _receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.receive_some(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def test_the_proxy_passes_bytes_both_ways_in_order() -> None:
    async with trio.open_nursery() as nursery:
        link = await _link(nursery)
        stream = await _connect(link)
        payload = bytes(range(256)) * 1000
        await stream.send_all(payload)
        assert await _receive_exactly(stream, len(payload)) == payload
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_partition_breaks_live_connections_and_refuses_new_ones_until_healed() -> None:
    async with trio.open_nursery() as nursery:
        link = await _link(nursery)
        stream = await _connect(link)
        await stream.send_all(b"x")
        assert await _receive_exactly(stream, 1) == b"x"
        link.partition()
        assert await _ended(stream)
        assert link.aborted == 1
        fresh = await _connect(link)  # accepted by the kernel, then closed at once
        assert await _ended(fresh)
        link.heal()
        healed = await _connect(link)
        await healed.send_all(b"back")
        assert await _receive_exactly(healed, 4) == b"back"
        nursery.cancel_scope.cancel()


async def test_a_one_way_block_holds_bytes_until_healed_and_loses_none() -> None:
    async with trio.open_nursery() as nursery:
        link = await _link(nursery)
        stream = await _connect(link)
        await stream.send_all(b"x")  # the proxy has connected upstream (a new connection is refused)
        assert await _receive_exactly(stream, 1) == b"x"
        link.block("down")  # replies are held: requests still reach the echo server
        await stream.send_all(b"held")
        with trio.move_on_after(0.3) as waited:
            await stream.receive_some(10)
        assert waited.cancelled_caught  # nothing came back while blocked
        link.heal()
        assert await _receive_exactly(stream, 4) == b"held"
        with pytest.raises(ValueError, match="direction must be one of"):
            link.block("sideways")
        nursery.cancel_scope.cancel()


async def test_a_delayed_link_delivers_everything_in_order() -> None:
    async with trio.open_nursery() as nursery:
        link = await _link(nursery)
        link.delay(0.05)
        stream = await _connect(link)
        for i in range(20):
            await stream.send_all(bytes([i]) * 100)
        assert await _receive_exactly(stream, 2000) == b"".join(bytes([i]) * 100 for i in range(20))
        nursery.cancel_scope.cancel()


async def test_a_connection_that_breaks_under_the_proxy_does_not_break_the_proxy() -> None:
    """A node crashing mid-transfer breaks the proxy's write to it (EPIPE, ECONNRESET): that ends
    that connection only. (It once ended the whole run: trio wraps a nursery's errors in a group.)"""
    import socket as socket_mod
    import struct

    async def rude(stream: trio.SocketStream) -> None:
        await stream.receive_some(10)
        stream.socket.setsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()  # RST while the proxy is still forwarding

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, rude, 0)
        host, port = listeners[0].socket.getsockname()[:2]
        link = LinkProxy("r0", f"{host}:{port}")
        await nursery.start(link.serve)
        for _ in range(3):
            stream = await _connect(link)
            with contextlib.suppress(trio.BrokenResourceError):
                for _ in range(64):
                    await stream.send_all(b"y" * 65536)
            assert await _ended(stream)
            await stream.aclose()
        await trio.sleep(0.2)
        assert link.connections == 3  # still accepting: no error escaped into the nursery
        nursery.cancel_scope.cancel()


# -- runs against processes -----------------------------------------------------------------------

# A write that only replicas 0 and 1 store, the primary's crash, a takeover from 2, 3 and 4.
ACK_AFTER_2: list[op.Op] = [
    op.Cut(0b11100),  # (faults begin once every replica is admitted as a voter)
    op.Write(1),
    op.Settle(1500),  # the mutant acknowledges it from 2 acks, within milliseconds
    op.CrashPrimary(),
    op.Heal(),
    op.Cut(0b00011),
    op.NewPrimary(),
    op.Check(),
]

# A stale primary keeps running after a takeover and is written to.
STALE_WRITES: list[op.Op] = [
    op.Settle(1000),
    op.NewPrimary(),
    op.Write(2),
    op.Settle(300),
    op.WriteStale(2),
    op.Settle(500),
    op.Check(),
]


def _pids_running(fragment: str) -> set[str]:
    pids = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
            except (OSError, IndexError):
                continue
            if fragment in cmd and state != "Z":
                pids.add(pid)
    return pids


def _parent(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _children_of_root(root: str) -> list[str]:
    """Processes whose command line names ``root``: a run must leave none behind."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if root in cmd:
                found.append(cmd)
    return found


def test_a_real_run_with_every_fault_is_valid_and_leaves_nothing_running(
    tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    schedule: list[op.Op] = [
        op.Write(3),
        op.Settle(300),
        op.Bookmark(),
        op.Cut(0b00011),
        op.Write(2),
        op.Settle(300),
        op.Check(),
        op.NewPrimary(),  # the old one is now stale
        op.WriteStale(1),
        op.Write(2),
        op.Settle(500),
        op.StoreDown(ambiguous=True),
        op.Write(3),
        op.Settle(1500),  # segments are cut and their PUTs are ambiguous
        op.StoreUp(),
        op.SlowStore(300),
        op.Write(3),
        op.Settle(1500),  # segments are cut and their PUTs held by the proxy
        op.StoreUp(),
        op.Heal(),
        op.CrashReplica(2),
        op.LoseDisk(3),
        op.Write(2),
        op.Pause(300, takeover=False),  # writes wait out the pause
        op.Bookmark(),
        op.OneWay(0b00001, to_replica=False),
        op.Delay(0b00010, 50),
        op.Write(2),
        op.Settle(300),
        op.Reset(0b00110),
        op.Heal(),
        op.Check(),
    ]
    events: list[dict[str, object]] = []
    root = str(tmp_path / "run")
    os.makedirs(root)
    out = run_real(root, schedule, s3_servers[0], history=events)
    # Bookmarks under faults may go unanswered for a while on a loaded machine: at least one.
    assert len(out.ok) >= 5 and len(out.bookmarks) >= 1 and not out.skipped
    faults = {e["f"] for e in events if e["process"] == "nemesis"}
    assert {"start-partition", "new-primary", "start-store-down", "crash-replica", "lose-disk", "start-pause"} <= faults
    assert {"start-slow-store", "stop-slow-store"} <= faults and "slow-put" in out.reached
    assert {"start-one-way", "start-delay", "reset", "stop-one-way", "stop-delay"} <= faults
    assert {e["f"] for e in events if e["type"] == "ok"} >= {"write", "read", "bookmark"}
    assert _children_of_root(root) == []


# A GC pause: the primary is stopped (SIGSTOP), another takes over, the first wakes up and is
# written to, believing it still serves.
PAUSED_PRIMARY: list[op.Op] = [
    op.Settle(500),
    op.Write(2),
    op.Settle(300),
    op.Pause(1000, takeover=True),
    op.WriteStale(2),
    op.Write(1),
    op.Settle(500),
    op.Check(),
]


# A split brain over a bridge replica: each primary reaches a different majority, both written to.
BRIDGED: list[op.Op] = [op.Settle(500), op.Write(2), op.Settle(300), op.Bridge(0, 2), op.Settle(300), op.Check()]


@pytest.mark.parametrize(
    ("mutant", "schedule", "fragment"),
    [
        ("ack_after_2", ACK_AFTER_2, "acknowledged write"),
        ("no_epoch_check_at_replica", STALE_WRITES, "acknowledged write"),
        ("no_epoch_check_at_replica", PAUSED_PRIMARY, "acknowledged write"),
        ("no_epoch_check_at_replica", BRIDGED, "acknowledged write"),
    ],
)
def test_real_mode_checkers_catch_a_mutant_the_reference_passes(
    mutant: str, schedule: list[op.Op], fragment: str, tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    run_real(str(tmp_path / "ref"), schedule, s3_servers[0])  # the reference passes
    try:
        out = run_real(str(tmp_path / "mut"), schedule, s3_servers[0], impl=NodeCommands.walrelay(mutant))
    except AssertionError as e:
        assert fragment in str(e), e
        assert isinstance(e, Violation) and e.verdicts[0].prop == "acked-write-lost", e  # the record names it
    else:
        pytest.fail(f"{mutant} passed: {len(out.ok)} acknowledged, {len(out.unknown)} unknown, {out.seconds:.1f} s")
    assert _children_of_root(str(tmp_path)) == []


def test_real_power_loss_drops_unsynced_writes_and_catches_an_ack_before_fsync(
    tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    """Real mode's PowerFail runs the replicas on the power-loss filesystem (FUSE): what a replica
    did not fsync is gone, which a SIGKILL never shows. CI has FUSE (./dev setup installs it);
    elsewhere the fault must say it fell back to a SIGKILL, and the mutant then goes unseen."""
    missing = power_loss_unavailable()
    assert missing is None or os.environ.get("CI") != "true", missing
    events: list[dict[str, object]] = []
    run_real(str(tmp_path / "ref"), ACKED_THEN_POWER_LOSS, s3_servers[0], history=events)  # the reference passes
    notes = [e for e in events if e.get("f") == "power-fail"]
    assert notes and all(("unsynced writes dropped" in str(e["value"])) == (missing is None) for e in notes), notes
    try:
        run_real(
            str(tmp_path / "mut"),
            ACKED_THEN_POWER_LOSS,
            s3_servers[0],
            impl=NodeCommands.walrelay("replica_acks_before_fsync"),
        )
    except AssertionError as e:
        assert missing is None and "acknowledged write" in str(e), e
    else:
        assert missing is not None, "replica_acks_before_fsync passed a real power failure"
    assert _children_of_root(str(tmp_path)) == []


def test_a_skewed_clock_moves_a_process_wall_clock_from_outside_and_leaves_its_monotonic_clock(
    tmp_path: Path,
) -> None:
    """libfaketime under a child process: the jump shows in time.time() at once, by the amount
    written, and the monotonic clock (timers, deadlines) is not touched."""
    missing = clock_skew_unavailable()
    assert missing is None or os.environ.get("CI") != "true", missing  # CI has it (./dev setup)
    if missing is not None:
        return  # nothing to run here; CI asserts above that it has it
    clock = SkewedClock(tmp_path / "p.clock")
    code = (
        "import sys, time\n"
        "w0, m0 = time.time(), time.monotonic()\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "print(time.time() - w0, time.monotonic() - m0, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **clock.env()},
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    clock.jump(-90_000)  # 90 s back
    proc.stdin.write("\n")
    proc.stdin.flush()
    wall, mono = (float(x) for x in proc.stdout.readline().split())
    proc.wait(timeout=budget(60))
    assert -90.0 <= wall < -90.0 + mono + 1.0, (wall, mono)  # moved by the jump (plus time elapsed)
    assert mono >= 0.0


# Restores by request and by flag, one crashed half way, a clock jump back and one forwards
# across failovers, with bookmarks before and after: the reference passes, nothing is skipped.
RESTORES_AND_CLOCKS: list[op.Op] = [
    op.Write(3),
    op.Settle(300),
    op.Bookmark(),  # points[1]
    op.ClockJump(3000, back=False),
    op.Write(3),
    op.Settle(1500),
    op.Restore(1, by_request=True),  # points[2]: the undo point
    op.Write(2),
    op.ClockJump(5000, back=True),
    op.Settle(300),
    op.RestoreCrash(2, by_request=False, late=False),  # undo, crashed half way; points[3]
    op.Write(2),
    op.Settle(300),
    op.CrashPrimary(),
    op.NewPrimary(),
    op.Write(2),
    op.Bookmark(),
    op.Restore(0, by_request=False),  # the genesis point: the empty database
    op.Write(1),
    op.Check(),
]


def test_real_restores_and_clock_jumps_are_played_and_judged(tmp_path: Path, s3_servers: list[S3Server]) -> None:
    events: list[dict[str, object]] = []
    out = run_real(str(tmp_path / "run"), RESTORES_AND_CLOCKS, s3_servers[0], history=events)
    assert out.restores == 3 and out.clock_jumps == (0 if clock_skew_unavailable() else 2), out
    assert [b.kind for b in out.bookmarks].count("undo point") == 3
    assert {"restored", "restored again"} <= out.reached
    assert out.skipped == ([] if clock_skew_unavailable() is None else ["ClockJump", "ClockJump"])
    oks = [e for e in events if e["f"] == "restore" and e["type"] == "ok"]
    assert len(oks) == 3 and all("undo_bookmark" in e for e in oks)


def test_an_implementation_without_restore_arguments_skips_restores_by_flag_and_says_so(
    tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    impl = dataclasses.replace(NodeCommands.walrelay(), restore=())
    schedule: list[op.Op] = [
        op.Write(2),
        op.Settle(300),
        op.Restore(0, by_request=False),
        op.Restore(0, by_request=True),
    ]
    out = run_real(str(tmp_path / "run"), schedule, s3_servers[0], impl=impl)
    assert out.skipped == ["Restore"] and out.restores == 1


@pytest.mark.parametrize(
    ("mutant", "fragment"),
    [
        ("restore_before_archived", "never served"),  # the undo point it left cannot be restored
        ("branch_number_reused", "never served"),  # the reused keys break the final takeover
        ("timestamps_not_monotonic_across_failover", "entry timestamps go back"),
    ],
)
def test_real_mode_catches_the_restore_and_clock_mutants_from_the_outside(
    mutant: str, fragment: str, tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    schedule = MUTANTS[mutant].directed
    run_real(str(tmp_path / "ref"), schedule, s3_servers[0])  # the reference passes
    with pytest.raises(AssertionError, match=fragment):
        run_real(str(tmp_path / "mut"), schedule, s3_servers[0], impl=NodeCommands.walrelay(mutant))
    assert _children_of_root(str(tmp_path)) == []


def test_a_broken_implementation_is_a_harness_error_that_names_the_cause(
    tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    missing = str(tmp_path / "no-such-node")
    impl = NodeCommands((missing, "replica", "{id}"), (missing, "primary"))
    with pytest.raises(HarnessError, match="no-such-node") as caught:
        run_real(str(tmp_path / "run"), [op.Write(1)], s3_servers[0], impl=impl)
    assert "FileNotFoundError" in str(caught.value) and "Traceback" in caught.value.detail


def test_an_implementation_that_refuses_the_workload_is_a_setup_error_never_invalid(
    tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    # docs/conformance.md's old example: walrelay without --app kv runs the flights app, which
    # answers every put UnknownOperation. Nothing was tested: unknown (a harness error), not invalid.
    base = NodeCommands.walrelay()
    at = base.primary.index("--app")
    impl = dataclasses.replace(base, primary=base.primary[:at] + base.primary[at + 2 :])
    with pytest.raises(SetupError) as caught:
        run_real(str(tmp_path / "run"), [op.Write(2), op.Settle(300), op.Check()], s3_servers[0], impl=impl)
    assert not isinstance(caught.value, AssertionError)  # the campaign's verdict: unknown
    text = str(caught.value)
    assert text.startswith("setup error: p0 refuses the operation 'put' (UnknownOperation") and "--app kv" in text
    # A primary that exits at once (never listens) is one too, with what it said.
    quits = dataclasses.replace(base, primary=(sys.executable, "-c", "print('no kv here')"))
    with pytest.raises(SetupError, match=r"the cluster did not start: .*p0 did not start \(said .no kv here.\)"):
        run_real(str(tmp_path / "run2"), [op.Write(1)], s3_servers[0], impl=quits)
    assert _children_of_root(str(tmp_path)) == []


def test_an_implementation_file_is_checked_and_names_what_is_wrong(tmp_path: Path) -> None:
    good = {"replica": [sys.executable, "-m", "walrelay", *WALRELAY_REPLICA], "primary": ["x", "{s3}"]}
    path = tmp_path / "impl.json"
    path.write_text(json.dumps(good))
    impl = NodeCommands.from_file(path)
    assert impl.argv("primary", s3="http://h/b", **dict.fromkeys(["object", "replicas", "listen"], "")) == [
        "x",
        "http://h/b",
    ]
    assert not impl.walrelay_files  # another implementation's files are not read
    for body, fragment in [
        ("[1]", "expected a JSON object"),
        ("{", "not JSON"),
        (json.dumps({**good, "extra": 1}), "unknown key 'extra'"),
        (json.dumps({"replica": good["replica"]}), "primary must be a non-empty list"),
        (json.dumps({**good, "primary": ["{nope}"]}), "bad placeholder"),
        (json.dumps({**good, "restore": ["--restore-to"]}), "restore must name {bookmark}"),
        (json.dumps({**good, "restore": "--restore-to {bookmark}"}), "restore must be a list"),
        (json.dumps({**good, "restore": ["{id}"]}), "bad placeholder {id}"),
    ]:
        path.write_text(body)
        with pytest.raises(ImplError, match=fragment):
            NodeCommands.from_file(path)


def test_the_cli_runs_a_real_campaign_through_an_implementation_file_and_replays_it(
    tmp_path: Path, s3_servers: list[S3Server]
) -> None:
    """The conformance door: the implementation is named only by argv templates (here walrelay
    itself, as another implementation would be), and every run gets a replay file and timeline."""
    impl = tmp_path / "impl.json"
    head = [sys.executable, "-m", "walrelay"]
    impl.write_text(json.dumps({"replica": head + WALRELAY_REPLICA, "primary": head + WALRELAY_PRIMARY}))
    out = tmp_path / "out"
    proc = subprocess.run(
        walrelay_argv(
            "chaos",
            "run",
            "--mode",
            "real",
            "--seeds",
            "1",  # one run and its replay: each costs about 20 s of CI
            "--first-seed",
            "9",
            "--impl",
            str(impl),
            "--out",
            str(out),
        ),
        capture_output=True,
        text=True,
        timeout=budget(600),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    body = json.loads((out / "results.json").read_text())
    assert (body["valid"], body["mode"], body["runs"]) == (True, "real", 1)
    for seed in (9,):
        assert "valid" in (out / f"seed-{seed}" / "timeline.html").read_text()
        replay = json.loads((out / f"seed-{seed}" / "replay.json").read_text())
        assert replay["harness"] == "walrelay-chaos-real/1"
        assert replay["impl"] == json.loads(impl.read_text())  # a replay tests the same implementation
        assert [op.op_from_json(o, where="test") for o in replay["schedule"]] == random_real_schedule(
            random.Random(seed)
        )
    proc = subprocess.run(
        walrelay_argv("chaos", "replay", str(out / "seed-9" / "replay.json")),
        capture_output=True,
        text=True,
        timeout=budget(600),
    )
    assert proc.returncode == 0 and "real mode: the same schedule, not the same timing" in proc.stdout, (
        proc.stdout + proc.stderr[-3000:]
    )


def test_an_implementation_given_epochs_by_the_harness_passes(tmp_path: Path, s3_servers: list[S3Server]) -> None:
    """A primary template naming ``{epoch}`` gets one allocated per primary (for implementations
    that take their epoch as an argument): walrelay's ``--epoch`` in place of ``--placement``."""
    primary = [*WALRELAY_PRIMARY]
    at = primary.index("--placement")
    primary[at : at + 2] = ["--epoch", "{epoch}"]
    impl = NodeCommands((*walrelay_argv(), *WALRELAY_REPLICA), (*walrelay_argv(), *primary))
    assert impl.takes_epoch and not NodeCommands.walrelay().takes_epoch
    schedule = [*STALE_WRITES, op.CrashPrimary(), op.NewPrimary(), op.Write(1), op.Check()]
    out = run_real(str(tmp_path), schedule, s3_servers[0], impl=impl)
    assert len(out.ok) >= 3
    from walrelay.placement import EpochAllocator  # the allocator's file is checksummed: read it as it does

    assert EpochAllocator(tmp_path / "placement").current("obj") == 4  # p0, p1, p2 and the takeover: one each


def test_a_controller_killed_by_sigkill_leaves_no_node_running(tmp_path: Path) -> None:
    """A CI timeout may SIGKILL the campaign: its node processes die with it (PR_SET_PDEATHSIG),
    though each runs in its own session."""
    import signal
    import time

    out = tmp_path / "out"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the run's scratch directory: known to this test
    proc = subprocess.Popen(
        walrelay_argv("chaos", "run", "--mode", "real", "--seeds", "50", "--out", str(out)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )

    def until(done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + budget(seconds)
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
        return done()

    def replicas() -> int:
        return len([c for c in _children_of_root(str(tmp_path)) if " replica " in c])

    try:
        assert until(lambda: replicas() >= 5, 30)  # its replicas run (each names its data directory)
        # Its own S3 server (a child of the campaign), not any other moto_server on the machine.
        motos = {pid for pid in _pids_running("moto_server") if _parent(pid) == proc.pid}
        assert motos, "the campaign's moto_server was not found among its children"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert until(lambda: not [c for c in _children_of_root(str(tmp_path)) if "walrelay" in c], 10)
    assert until(lambda: not motos & _pids_running("moto_server"), 10)  # ... and its S3 server
