"""Bugs planted in the reference PRIMARY to prove that the primary cases can fail.

The chaos mutant table (walrelay_chaos.mutants) has bugs with directed chaos schedules; these are
the primary rules no chaos schedule is aimed at, each named for the rule it breaks. Planted in a
process by ``python -m walrelay_chaos.node`` (``WALRELAY_CHAOS_MUTANT`` names either table), so
``walrelay conform --primary`` meets them as it would meet another implementation's bugs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from walrelay.primary import PrimaryConfig, PrimaryState
from walrelay_chaos.mutants import Patch


def _ack_chain_unchecked(mp: Patch) -> None:
    """R-7.2-2: an ACK counts whatever chain it carries (length alone taken as proof)."""
    orig = PrimaryState.on_ack

    def on_ack(self: PrimaryState, r: int, *, chain: bytes, stored_through: int, **kw: Any) -> Any:
        return orig(self, r, chain=self.chains.get(stored_through, chain), stored_through=stored_through, **kw)

    mp.setattr(PrimaryState, "on_ack", on_ack)


def _ack_log_epoch_unchecked(mp: Patch) -> None:
    """R-7.2-2: an ACK counts under any log epoch (identical entries held as another log)."""
    orig = PrimaryState.on_ack

    def on_ack(self: PrimaryState, r: int, *, log_epoch: int, **kw: Any) -> Any:
        return orig(self, r, log_epoch=self.epoch, **kw)

    mp.setattr(PrimaryState, "on_ack", on_ack)


def _no_deadline(mp: Patch) -> None:
    """R-7.3-2: the deadline is never enforced (a write waits for its quorum forever)."""
    orig = PrimaryConfig.__post_init__

    def post_init(self: PrimaryConfig) -> None:
        orig(self)
        object.__setattr__(self, "deadline_us", 10**15)

    mp.setattr(PrimaryConfig, "__post_init__", post_init)


def _believes_any_promise(mp: Patch) -> None:
    """R-7.3-3: every REJECT with a higher promise fences, even one no allocator issued (the spec's
    mutant ``reject_of_an_unissued_epoch_believed``): one corrupt replica stops the object."""
    orig = PrimaryState.on_reject

    def on_reject(self: PrimaryState, r: int, **kw: Any) -> Any:
        kw["issued"] = None
        return orig(self, r, **kw)

    mp.setattr(PrimaryState, "on_reject", on_reject)


BUGS: dict[str, Callable[[Patch], None]] = {
    "believes_any_promise": _believes_any_promise,
    "ack_chain_unchecked": _ack_chain_unchecked,
    "ack_log_epoch_unchecked": _ack_log_epoch_unchecked,
    "no_deadline": _no_deadline,
}
