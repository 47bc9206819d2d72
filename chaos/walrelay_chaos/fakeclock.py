"""Clock skew for any process: Debian's libfaketime, preloaded into a primary, offset at run time.

Real mode's ``ClockJump`` moves the current primary's wall clock and leaves it off (the way a
host's clock is wrong, not the way NTP slews it). The implementation under test cannot be asked to
lie about its own time, so the harness does what Jepsen does: every primary of a run whose
schedule has a clock jump starts with ``LD_PRELOAD=libfaketime.so.1`` and reads its offset from a
file of its own (``FAKETIME_TIMESTAMP_FILE``, re-read on every call: ``FAKETIME_NO_CACHE``); a jump
rewrites that file. Monotonic clocks are left alone (``FAKETIME_DONT_FAKE_MONOTONIC``): a primary's
timers and deadlines run at the true rate, only the timestamps it writes into entries move.

The limit, stated where the verdict is printed: a program that reads the clock without going
through the C library (a statically linked Go binary reads the vDSO itself) does not see the jump.
Such a run is still judged, but a timestamp bug cannot show in it.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

# Where Debian (and most distributions) put the library; WALRELAY_LIBFAKETIME overrides.
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def libfaketime() -> str | None:
    """The library's path, or None where it is not installed (./dev setup installs Debian's
    ``faketime`` package where it can)."""
    own = os.environ.get("WALRELAY_LIBFAKETIME")
    if own:
        return own if os.path.isfile(own) else None
    for path in (*_CANDIDATES, *sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))):
        if os.path.isfile(path):
            return path
    return None


def clock_skew_unavailable() -> str | None:
    """Why clock jumps cannot be made here, or None."""
    if libfaketime() is None:
        hint = " (Debian: apt-get install faketime)" if shutil.which("apt-get") else ""
        return f"libfaketime is not installed{hint}; set WALRELAY_LIBFAKETIME to its path"
    return None


class SkewedClock:
    """One process's wall clock, off the true one by ``offset_ms`` (0 at the start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset_ms = 0
        self._write()

    def env(self) -> dict[str, str]:
        """What the process's environment needs (added to, never replacing, an LD_PRELOAD)."""
        lib = libfaketime()
        if lib is None:
            raise RuntimeError(clock_skew_unavailable())
        preload = " ".join(p for p in (os.environ.get("LD_PRELOAD", ""), lib) if p)
        return {
            "LD_PRELOAD": preload,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def jump(self, ms: int) -> None:
        """Move the clock by ``ms`` (negative: back); it stays off by the sum of the jumps."""
        self.offset_ms += ms
        self._write()

    def _write(self) -> None:
        # libfaketime's relative form: "+S" or "-S" seconds, fractions allowed. Written whole and
        # renamed, so the process never reads a half-written offset.
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{self.offset_ms / 1000:+.3f}\n")
        os.replace(tmp, self.path)
