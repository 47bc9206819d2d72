"""``walrelay tlc``: run the TLA+ model checks in spec/ and say plainly whether each one held.

TLC by itself reports "error found" or "no error"; a suite of models *and mutants* needs more: a
mutant (a planted bug) passes only if TLC refutes it with the right invariant, and a witness
passes only if a state we claim is reachable is reached. This package runs TLC once per config
file and compares what TLC found with what the config says it should find.

Config header (the contract with spec authors)
----------------------------------------------
Every TLC ``.cfg`` under the spec dir starts with ``\\* key: value`` comment lines, before any
TLC statement (TLC itself ignores them as comments)::

    \\* module: MCWalRelay        required: the .tla module to check, <spec dir>/<module>.tla
    \\* expect: ok                required: ok | violation InvName | witness InvName
    \\* suite: ci                 required: ci (run in CI) | deep (only with --suite deep/all)
    \\* deadlock: off             optional, default off (we pass -deadlock); on = check deadlocks
    \\* timeout: 300              optional seconds; past it the run is killed: outcome "timeout"
    \\* about: one line           optional; shown by --list
    INVARIANTS ...

* ``expect: ok``: TLC must exit 0 with no error.
* ``expect: violation X``: TLC must report invariant, action property or temporal property X
  violated (exit 12, or 13 for properties). Used for mutants: the spec must refute the bug.
* ``expect: witness X``: mechanically the same, but X is a "this state is never reached"
  invariant whose violation proves reachability; reported as "reached X".

Anything else (another invariant, a parse error, a deadlock, a timeout, ok where a violation was
expected) fails the suite. Unknown, duplicated or missing keys, and keys placed after the first
TLC statement, are errors naming the file and the key. Other comment lines are free text. X must
be listed under INVARIANT(S) or PROPERTY/PROPERTIES in the same file. TLC names no property when
a temporal (liveness) property fails, so a config expecting one must list only that PROPERTY.
CHECK_DEADLOCK, ALIAS and POSTCONDITION are refused: TLC 2.15 misreads them in a .cfg.

Modules: ``configs`` (header and discovery), ``jar`` (java + tla2tools.jar), ``messages`` (TLC
``-tool`` output), ``tlcproc`` (one TLC run; the exit codes TLC 2.15 uses), ``trace``
(readable counterexample: only what each step changed), ``values`` (TLA+ values as TLC prints
them, and their diffs), ``actions`` (each step's action and parameters: from the source, and by
replaying the trace in TLC), ``verdict`` (expected vs got), ``suite`` (many runs, table, JSON),
``command`` (the CLI entry).
"""
