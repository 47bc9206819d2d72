"""What the Ctrl-C tests need of the processes they start.

A test run started in the background by a non-interactive shell (as a CI runner may start it)
inherits SIGINT *ignored*, and so does every process it starts. Python then never installs its
KeyboardInterrupt handler, and the command under test is right to ignore the test's SIGINT, as a
background job ignores a terminal's Ctrl-C: the test would wait forever. Found when this session's
fresh-clone CI, started with ``( ... &)``, hung in ``test_chaos_runs_interrupt.py``.
"""

from __future__ import annotations

import signal


def sigint_as_in_a_terminal() -> None:
    """A ``preexec_fn``: SIGINT back to its default in the child, as in a terminal's foreground job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
