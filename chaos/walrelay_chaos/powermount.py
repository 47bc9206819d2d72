"""Mount and drive the power-loss filesystem (walrelay_chaos.powerfs) from a harness.

The filesystem runs as its own process (its own trio loop and FUSE session), one per node data
directory; the harness SIGKILLs the node, asks the filesystem to drop what was not synced (SIGUSR1,
answered by a ``POWERFAIL`` line), and starts the node again. This module needs no pyfuse3 itself,
so harnesses import it everywhere and learn from ``power_loss_unavailable`` why it cannot run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from walrelay.errors import WalrelayError
from walrelay.procs import parent_death_hook


class PowerFsError(WalrelayError):
    """The power-loss filesystem would not mount or answer."""


def power_loss_unavailable() -> str | None:
    """Why the power-loss filesystem cannot run here, or None (it needs FUSE: /dev/fuse,
    fusermount3 and the pyfuse3 module; ./dev setup installs them where it can)."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian: fuse3)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError as e:
        return f"the pyfuse3 module cannot be imported ({e}; Debian: libfuse3-dev, then pip install pyfuse3)"
    return None


class PowerFs:
    """The power-loss filesystem (walrelay_chaos.powerfs) mounted on ``mount`` over ``backing``."""

    def __init__(self, backing: Path, mount: Path, log_path: Path, timeout: float) -> None:
        backing.mkdir(parents=True, exist_ok=True)
        mount.mkdir(parents=True, exist_ok=True)
        self.mount = mount
        self.timeout = timeout
        self.log = open(log_path, "ab")  # noqa: SIM115 - the child's stderr, closed in stop()
        # Dies with the thread that starts it (PR_SET_PDEATHSIG), like the nodes, but by SIGTERM, so
        # that it unmounts: a harness killed by SIGKILL leaves neither a filesystem process nor a
        # dead mount behind. So start it from a thread that lives as long as the run (the main one).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "walrelay_chaos.powerfs", str(backing), str(mount)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            preexec_fn=parent_death_hook(signal.SIGTERM),
        )
        line = self._line()
        if line != "MOUNTED":
            self.stop()
            raise PowerFsError(f"the power-loss filesystem did not mount (said {line!r}; its log: {log_path})")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.timeout)
        return got[0].decode().strip() if got else ""

    def hold_syncs(self) -> None:
        """From now until the power failure every fsync blocks (and then fails): the harness can
        make a node write and not sync, for certain."""
        self.proc.send_signal(signal.SIGUSR2)
        line = self._line()
        if line != "HOLDING":
            raise PowerFsError(f"the power-loss filesystem did not hold fsyncs (said {line!r})")

    def wait_held(self) -> None:
        """Until some fsync is being held (the node wrote and is waiting for its sync)."""
        line = self._line()
        if line != "HELD":
            raise PowerFsError(f"no fsync came to be held within {self.timeout:.0f} s (said {line!r})")

    def power_on(self) -> None:
        self.proc.send_signal(signal.SIGWINCH)
        line = self._line()
        if line != "POWERON":
            raise PowerFsError(f"the power-loss filesystem did not come back on (said {line!r})")

    def power_fail(self, torn: bool = False) -> str:
        """Cut the power: drop every write not fsync'd, fail every operation from now until
        ``power_on`` (the harness kills the node in between); ``torn``: persist the first half of
        each file's unsynced bytes first (a write cut by the power)."""
        self.proc.send_signal(signal.SIGHUP if torn else signal.SIGUSR1)
        line = self._line()
        if not line.startswith("POWERFAIL"):
            raise PowerFsError(f"the power-loss filesystem did not answer the power failure (said {line!r})")
        return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], capture_output=True, check=False)
        self.log.close()
