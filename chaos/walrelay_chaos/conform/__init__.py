"""``walrelay conform``: per-rule conformance cases for any implementation of the protocol.

The harness plays one side of the wire (a scripted primary for ``--replica``) against the other
side's real process, started from an implementation file (docs/conformance.md), and judges each
numbered rule of docs/protocol.md on its own (rules.py, replica_cases.py).
"""
