"""``python -m walrelay_chaos.node ARGS``: a walrelay node process with a mutant planted.

Real-mode chaos starts its nodes through this when it tests a mutant: the planted bug must be in
the processes, not in the controller. ``WALRELAY_CHAOS_MUTANT`` names the mutant
(``walrelay_chaos.mutants``, or a primary bug of ``walrelay_chaos.conform.bugs``); the rest is
``walrelay ARGS``. The reference itself has no switch.
"""

from __future__ import annotations

import os
import sys

from walrelay.cli import main as walrelay_main
from walrelay_chaos.mutants import MUTANTS, Patcher


def main() -> int:
    from walrelay_chaos.conform.bugs import BUGS

    name = os.environ.get("WALRELAY_CHAOS_MUTANT", "")
    if name in MUTANTS:
        MUTANTS[name].plant(Patcher())
    elif name in BUGS:
        BUGS[name](Patcher())
    else:
        print(f"walrelay_chaos.node: error: WALRELAY_CHAOS_MUTANT={name!r} names no mutant", file=sys.stderr)
        return 2
    return walrelay_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
