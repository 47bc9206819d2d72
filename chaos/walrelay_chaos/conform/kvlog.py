"""Real logs for scripted replicas: entries of the ``kv`` app, made by the reference's own write path.

A case that tests a primary's *recovery* must hand it logs it can replay: every entry's pages must
rebuild a SQLite database whose checksum matches (protocol.md 7.5, step 5), and the app must find
its table there. Fake pages would make any primary give up for the wrong reason. So these logs are
made the way a primary makes them: the ``kv`` app on apsw, each commit captured below SQLite
(walrelay.capture) and turned into an entry by the primary state machine, under a chosen epoch.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

from walrelay.apps import APPS
from walrelay.entry import Entry
from walrelay.object_runtime import ObjectRuntime
from walrelay.primary import PrimaryConfig, PrimaryState

_counter = itertools.count()


def kv_log(epoch: int, puts: list[tuple[int, str]]) -> list[Entry]:
    """The log of a fresh ``kv`` object whose primary of ``epoch`` ran ``put(k, v)`` for each
    pair: seq 1 is the app's schema, then one entry per put."""
    entries: list[Entry] = []
    with tempfile.TemporaryDirectory(prefix="walrelay-kvlog-") as d:
        state = PrimaryState(PrimaryConfig(epoch=epoch))
        runtime = ObjectRuntime(
            str(Path(d) / f"kv-{next(_counter)}.db"),
            APPS["kv"](),
            state,
            lambda effects: None,  # nothing is sent: only the entries are wanted
            monotonic_us=lambda: time.monotonic_ns() // 1000,
            on_entry=entries.append,
        )
        try:
            for k, v in puts:
                outcome = runtime.run("put", [k, v])
                assert outcome.ok, outcome
        finally:
            runtime.close()
    return entries
