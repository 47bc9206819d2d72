"""Ctrl-C (issue 18): every long-running command stops on the first SIGINT, leaves no process it
started behind, says one line (no traceback, no ExceptionGroup) and exits 130.

Each test starts the real command as a process, waits for an event that says it is busy (its
LISTENING line, or a peer seeing its request), sends SIGINT to that process only (not its group:
whatever it started must be stopped by it), and judges what it wrote to stderr after that point.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest
import trio

from interrupts import sigint_as_in_a_terminal
from walrelay.client import Client
from walrelay.procs import walrelay_argv
from walrelay.transport import TcpTransport
from walrelay.wire import ReplyStatus
from walrelay_chaos.pace import budget


@pytest.fixture(autouse=True)
def _kill_leftovers() -> Iterator[None]:
    yield
    for proc in _STARTED:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _STARTED.clear()


_STARTED: list[subprocess.Popen[bytes]] = []


class Command:
    """A walrelay command as a process in its own session: stdout a pipe, stderr a file."""

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        self.name = name
        self.err_path = tmp / f"{name}.stderr"
        self._err: IO[bytes] = open(self.err_path, "wb")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            walrelay_argv(*args),
            stdout=subprocess.PIPE,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=sigint_as_in_a_terminal,
        )
        _STARTED.append(self.proc)
        self.mark = 0
        self.children: list[int] = []

    def listening(self) -> str:
        """Blocks until the node's first line, LISTENING HOST:PORT; its address."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("LISTENING "), (line, self.err_path.read_text())
        return line.split()[1]

    def interrupt(self) -> None:
        """Ctrl-C to this process alone, remembering what it had written and started by then."""
        self.children = _descendants(self.proc.pid)
        self.mark = self.err_path.stat().st_size
        self.proc.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, str]:
        """Its exit status and what it wrote to stderr after the interrupt."""
        self.proc.communicate(timeout=budget(120))  # one that ignores Ctrl-C fails here, never hangs
        code = self.proc.returncode
        self._err.close()
        return code, self.err_path.read_bytes()[self.mark :].decode()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # dead, not yet reaped


def _assert_interrupted(cmd: Command, command: str) -> None:
    code, said = cmd.finish()
    assert code == 130, said
    assert said.splitlines() == [f"walrelay {command}: interrupted"], said
    assert all(_gone(p) for p in cmd.children), f"left running: {cmd.children}"


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="microseconds")


async def _use(address: str) -> None:
    """A write, then __bookmark_for_time__ around it: ISO times (as restore --to takes them) and
    the original integer microseconds name the same points; a bad time names the forms."""
    async with Client.connect(TcpTransport(), address) as client:
        before = time.time_ns() // 1000
        assert (await client.call("put", 1, "one")).status is ReplyStatus.OK
        after = time.time_ns() // 1000
        last = (await client.call("__bookmark__")).body["seq"]  # the put's entry (the schema's came first)
        for t, seq in ((_iso(before), last - 1), (_iso(after), last), (after, last), (f"@{after}", last)):
            reply = await client.call("__bookmark_for_time__", t)
            assert reply.status is ReplyStatus.OK, reply.body
            assert reply.body == {"bookmark": f"00000001-{seq:016x}", "seq": seq}, (t, reply.body)
        for bad in ("yesterday", _iso(after)[:-6], True, -1):
            reply = await client.call("__bookmark_for_time__", bad)
            assert reply.status is ReplyStatus.ERROR and reply.body["type"] == "BadRequest", (bad, reply.body)
            assert "ISO 8601" in reply.body["message"] or "zone" in reply.body["message"], reply.body


def test_replica_and_primary_stop_on_ctrl_c(tmp_path: Path) -> None:
    """A replica and a primary serving through it (one shared cluster): each stops on SIGINT."""
    replica = Command(tmp_path, "replica", "replica", "--id", "0", "--data", str(tmp_path / "r0"), "--insecure")
    raddr = replica.listening()
    primary = Command(
        tmp_path,
        "primary",
        *("primary", "--object", "o", "--app", "kv", "--replicas", raddr, "--quorum", "1", "--epoch", "1"),
        *("--data", str(tmp_path / "p"), "--insecure"),
    )
    paddr = primary.listening()
    # Serving (a write went through the replica) before the interrupt, then --list on the way.
    trio.run(_use, paddr)
    listed = subprocess.run(
        walrelay_argv("call", "--primary", paddr, "--insecure", "--list"), capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "operations of app 'kv'" in listed.stdout and "put k:int v:str" in listed.stdout, listed.stdout
    assert "__bookmark_for_time__ TIME" in listed.stdout, listed.stdout
    primary.interrupt()
    _assert_interrupted(primary, "primary")
    replica.interrupt()
    _assert_interrupted(replica, "replica")


@contextmanager
def _hung_peer() -> Iterator[tuple[str, socket.socket]]:
    """A TCP server that accepts and never answers (a hung primary)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        host, port = server.getsockname()[:2]
        yield f"{host}:{port}", server


def test_call_to_a_hung_primary_stops_on_ctrl_c_and_gives_up_after_timeout(tmp_path: Path) -> None:
    with _hung_peer() as (address, server):
        call = Command(tmp_path, "call", "call", "--primary", address, "--insecure", "__status__")
        conn, _ = server.accept()
        with conn:
            assert conn.recv(1 << 16)  # the request: the call now waits for its reply
            call.interrupt()
            _assert_interrupted(call, "call")
        # --timeout: the same silence ends the call with exit 1 and a sentence, not a hang.
        timed = Command(tmp_path, "timed", "call", "--primary", address, "--insecure", "--timeout", "0.2", "put", "1")
        conn, _ = server.accept()
        with conn:
            code, said = timed.finish()
    assert code == 1, said
    assert f"no reply from {address} within 0.2 s (--timeout); whether put took effect is unknown" in said, said
    assert "Traceback" not in said


def test_conform_stops_on_ctrl_c_and_kills_the_replica_it_started(tmp_path: Path) -> None:
    """conform against an implementation whose replica accepts and never answers: the case waits
    (--timeout is an hour); Ctrl-C ends conform and the replica process it started."""
    fifo = tmp_path / "connected"
    os.mkfifo(fifo)
    silent = tmp_path / "silent_replica.py"
    silent.write_text(
        "import os, signal, socket, sys\n"
        "host, port = sys.argv[1].rsplit(':', 1)\n"
        "s = socket.create_server((host, int(port)))\n"
        "print('LISTENING %s:%d' % s.getsockname()[:2], flush=True)\n"
        "c, _ = s.accept()\n"
        "c.recv(1 << 16)\n"
        f"open({str(fifo)!r}, 'w').write(str(os.getpid()))\n"
        "signal.pause()\n"
    )
    impl = tmp_path / "impl.json"
    impl.write_text(
        json.dumps(
            {
                "replica": ["{python}", str(silent), "{listen}", "{id}", "{data}"],
                "primary": ["{python}", "-m", "walrelay", "primary"],
            }
        )
    )
    conform = Command(
        tmp_path,
        "conform",
        *("conform", "--replica", str(impl), "--only", "hello.answer", "--timeout", "3600", "--no-power-loss"),
        *("--out", str(tmp_path / "out")),
    )
    pid = int(fifo.read_text())  # blocks until the silent replica got the case's first frame
    conform.interrupt()
    assert pid in conform.children
    _assert_interrupted(conform, "conform")


def test_main_sees_ctrl_c_through_nested_exception_groups(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """However deep trio's nurseries wrap the KeyboardInterrupt, main() says one line and exits
    130 (a failure beside it is named in that line); a group without one is not an interruption."""
    from walrelay import cli

    def interrupted(argv: object) -> int:
        cli._RUNNING["command"] = "walrelay archive"
        raise BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [KeyboardInterrupt()]), OSError("disk gone")])

    monkeypatch.setattr(cli, "_main", interrupted)
    monkeypatch.setitem(cli._RUNNING, "terminated", False)
    assert cli.main([]) == 130
    assert capsys.readouterr().err == "walrelay archive: interrupted (while it failed: OSError: disk gone)\n"

    def failed(argv: object) -> int:
        raise ExceptionGroup("g", [ValueError("a bug")])

    monkeypatch.setattr(cli, "_main", failed)
    with pytest.raises(ExceptionGroup):
        cli.main([])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))


def _wait_for_line(cmd: Command, text: str) -> None:
    """Blocks until the command prints a stdout line containing ``text`` (its progress: an event)."""
    assert cmd.proc.stdout is not None
    for raw in cmd.proc.stdout:
        if text in raw.decode():
            return
    raise AssertionError(f"{cmd.name} ended before printing {text!r}: {cmd.err_path.read_text()}")


@pytest.mark.integration
def test_tlc_stops_on_ctrl_c_and_kills_its_java(tmp_path: Path) -> None:
    """TLC runs as a Java child for minutes; Ctrl-C must stop it too, not leave it model-checking."""
    cmd = Command(tmp_path, "tlc", "tlc", "r3_q2_e2_w1_c1_corrupt_promise")
    _wait_for_line(cmd, "start r3_q2_e2_w1_c1_corrupt_promise")
    while not any("java" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                  for p in _descendants(cmd.proc.pid) if not _gone(p)):  # fmt: skip
        assert cmd.proc.poll() is None, cmd.err_path.read_text()
        time.sleep(0.05)  # polling for the child to exist, not a time limit
    cmd.interrupt()
    assert cmd.children
    _assert_interrupted(cmd, "tlc")


def test_archive_fuzz_stops_on_ctrl_c(tmp_path: Path) -> None:
    cmd = Command(tmp_path, "fuzz", "archive", "fuzz", "--trials", "100000")
    _wait_for_line(cmd, "trial")
    cmd.interrupt()
    _assert_interrupted(cmd, "archive")  # the handler names the command, not its subcommand


def test_bench_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The benchmark runs for minutes and starts a cluster for its end-to-end rows."""
    cmd = Command(tmp_path, "bench", "bench", "--seconds", "1")
    _wait_for_line(cmd, "(b) walrelay capture")
    cmd.interrupt()
    _assert_interrupted(cmd, "bench")
