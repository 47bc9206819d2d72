"""Coverage ("sometimes") assertions: did a batch of runs reach the dangerous cases at all?

A harness that never provokes the hard cases passes every checker and proves nothing. So each
campaign counts, per target, the runs that reached it, and a batch that was asked to
(``--require-coverage``) and missed one gets no verdict of "valid" (FoundationDB's and Antithesis's
"sometimes" assertions). The targets (issue 6):

* ``takeover-with-writes-in-flight``: a primary crashed or was replaced while writes sent to it
  were unanswered, after at least one write was acknowledged;
* ``stale-primary-fenced``: a primary learned from a replica that a newer one exists and answered
  a client "fenced";
* ``segment-cut-by-size``: the archiver closed a segment because it reached its size (16 MB in
  production; the simulation scales it down);
* ``segment-cut-by-age``: the archiver closed a segment because its oldest entry reached the age
  limit (10 s in production);
* ``restore-inside-unuploaded-window``: a restore targeted a point the archive did not hold yet
  when the restore was asked for;
* ``ambiguous-put``: the object store stored a PUT but its answer was lost;
* ``power-loss-reverted-rename``: a replica lost power between a rename and its directory's
  fsync, and the rename was undone (issue 16: the simulated disk models directories);
* ``slow-put``: an archive PUT was slowed down (SlowStore), so uploads queued behind it;
* ``checkpoint-restart``: a primary checkpointed its WAL and SQLite restarted it with new salts,
  and capture went on from the new generation (the simulation checkpoints every 8 frames);
* ``retention-deleted-during-restore``: retention deleted archive objects while a restore ran
  (between its request and the restored primary serving, or its refusal): the simulation runs
  retention on a compressed clock (an 8-second window, 1 s of grace), so deletions race restores,
  failovers and stale primaries.

The first two are read from the run's history (``walrelay_chaos.sim.History``), in either mode;
the others are reported by the simulation (``sim.EVENT_HOOK``), which sees the archive and store,
and real mode reports ambiguous PUTs from its S3 fault proxy's record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

TARGETS = (
    "takeover-with-writes-in-flight",
    "stale-primary-fenced",
    "segment-cut-by-size",
    "segment-cut-by-age",
    "restore-inside-unuploaded-window",
    "ambiguous-put",
    "power-loss-reverted-rename",
    "slow-put",
    "checkpoint-restart",
    "retention-deleted-during-restore",
)
# The targets a real-mode batch can show from outside (its history, its S3 proxy's record); the
# rest need the simulation.
HISTORY_TARGETS = ("takeover-with-writes-in-flight", "stale-primary-fenced")
REAL_TARGETS = (*HISTORY_TARGETS, "ambiguous-put", "slow-put")


def from_history(events: Sequence[dict[str, Any]]) -> set[str]:
    """The targets a history shows it reached."""
    reached: set[str] = set()
    in_flight: dict[Any, dict[str, Any]] = {}  # process -> its pending write invoke
    acked = 0
    for e in events:
        p, kind, f = e.get("process"), e.get("type"), e.get("f")
        if p == "nemesis":
            # The harness's own last takeover (after healing) is not a fault the schedule made.
            if f in ("crash-primary", "new-primary") and not e.get("final") and in_flight and acked:
                reached.add("takeover-with-writes-in-flight")
            continue
        if kind == "invoke":
            if f == "write":
                in_flight[p] = e
            continue
        in_flight.pop(p, None)
        if f == "write" and kind == "ok":
            acked += 1
        if kind in ("fail", "info") and "fenced" in str(e.get("error", "")):
            reached.add("stale-primary-fenced")
    return reached


class Tally:
    """Runs that reached each target, over a batch."""

    def __init__(self, targets: Iterable[str] = TARGETS) -> None:
        self.counts: dict[str, int] = dict.fromkeys(targets, 0)

    def add(self, reached: Iterable[str]) -> None:
        for name in set(reached):
            if name in self.counts:
                self.counts[name] += 1

    @property
    def missing(self) -> list[str]:
        return [name for name, n in self.counts.items() if n == 0]
