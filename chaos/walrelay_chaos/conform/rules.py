"""The numbered MUSTs of docs/protocol.md that the conformance cases cite.

Each rule id (``R-<section>-<n>``) is written in bold at its rule in docs/protocol.md, with the
same text in substance; ``tests/test_conform.py`` checks that every id here is there, and that
every case cites at least one. The text is what the report prints beside a verdict, so it is
phrased as the obligation a reader of a failing case needs to see.
"""

# ruff: noqa: E501 - each rule is one line of prose, printed whole in reports
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    section: str
    text: str


_RULES = (
    # §5.1 framing
    Rule(
        "R-5.1-1",
        "5.1",
        "A receiver rejects a frame whose length exceeds max_frame as soon as it has read the 4 length bytes, before buffering the body.",
    ),
    Rule(
        "R-5.1-2",
        "5.1",
        "Decoding is strict: an unknown version, an unknown type, or a body shorter or longer than its fields is a protocol error.",
    ),
    # §5.3 / §5.8 handshake
    Rule(
        "R-5.3-1",
        "5.3",
        "A replica answers a primary's HELLO with HELLO(role=2, its node_id, the object name echoed, its promised epoch, last_seq, last_chain).",
    ),
    Rule(
        "R-5.3-2", "5.3", "A replica's HELLO makes no promise, and the primary's HELLO epoch promises nothing either."
    ),
    Rule(
        "R-5.3-3",
        "5.6",
        "A HELLO naming an object the replica cannot serve is answered with REJECT(WRONG_OBJECT) instead of a HELLO.",
    ),
    Rule(
        "R-5.8-1",
        "5.8",
        "The first message on a connection must be a primary's HELLO; anything else is a protocol error (REJECT(BAD_ENTRY), then close).",
    ),
    Rule(
        "R-5.8-2",
        "5.8",
        "A primary checks each replica's HELLO (role, node_id equal to its configured index, object): two addresses that reach one replica cannot both pass, so one replica never counts twice.",
    ),
    Rule(
        "R-5.9-1",
        "5.9",
        "A protocol error closes that one connection and nothing else: the replica keeps serving its other connections and objects.",
    ),
    # §5.16 transport security
    Rule(
        "R-5.16-2",
        "5.16",
        "A replica takes a connection only from a peer whose certificate (verified against the cluster's CA) names its cluster and the role primary; a peer without TLS, with another CA's certificate or with another role's is closed before a single frame is answered.",
    ),
    # §5.10 / §5.11 PREPARE / PROMISE
    Rule(
        "R-5.10-1",
        "5.10",
        "A PREPARE above the promise is persisted (fsync) before the PROMISE that answers it; the PROMISE reports the replica's log_epoch, last_seq, last_chain, truncated_through and voter.",
    ),
    Rule(
        "R-5.10-2", "5.10", "A PREPARE below the promise is answered REJECT(STALE_EPOCH, promised) and changes nothing."
    ),
    Rule("R-5.10-3", "5.10", "A PREPARE at the epoch already promised gets the same PROMISE again."),
    Rule("R-6.1-1", "6.1", "The promised epoch is durable: it survives a crash (SIGKILL) and a restart."),
    # §6.2 APPEND
    Rule(
        "R-6.2-1",
        "6.2",
        "An APPEND whose epoch is below the promise is refused in full: REJECT(STALE_EPOCH), nothing stored, no ACK.",
    ),
    Rule(
        "R-6.2-2",
        "6.2",
        "An APPEND with a higher epoch promises that epoch implicitly, durably, before the entries are looked at.",
    ),
    Rule(
        "R-6.2-3",
        "6.2",
        'The accepted entries are on stable storage before the ACK that covers them is sent: an ACK means "on stable storage".',
    ),
    Rule(
        "R-6.2-4",
        "6.2",
        "An ACK is cumulative and exact: stored_through is the replica's last stored seq and chain is that entry's chain, with log_epoch the epoch whose log it holds.",
    ),
    Rule(
        "R-6.2-5",
        "6.2",
        "An entry that does not follow the previous one by chain is not stored: the good prefix is persisted and ACKed, then REJECT(DIVERGED).",
    ),
    Rule(
        "R-6.2-6",
        "6.2",
        "A frame whose entries skip a seq stores nothing past the gap; the ACK says where the log ends.",
    ),
    Rule("R-6.2-7", "6.2", "Duplicates (same seq, same chain) are skipped and acknowledged again."),
    Rule(
        "R-6.2-8",
        "6.2",
        "Within one log epoch the replica never overwrites an entry it holds: a differing entry at a held seq is DIVERGED, and the held entry stays.",
    ),
    Rule(
        "R-6.2-9",
        "6.2",
        "A frame from another epoch whose last entry reaches log_end is adopted: the differing suffix is replaced, entries beyond the frame are dropped, and log_epoch becomes the sender's epoch.",
    ),
    Rule(
        "R-6.2-10",
        "5.4",
        "A frame from an epoch other than log_epoch whose last entry is not log_end stores nothing; the replica answers with an ACK of what it holds.",
    ),
    Rule(
        "R-5.4-1",
        "5.4",
        "The entries of an APPEND are consecutive; nothing after a hole inside a frame is stored (the replica treats the hole as a gap, 6.2, or the frame as a protocol error).",
    ),
    Rule(
        "R-5.4-2",
        "5.4",
        "Every entry of an APPEND passes the checks of 3.5; one bad entry makes the whole frame a protocol error, and none of its entries is stored.",
    ),
    # §5.12 / §5.13 FETCH / ENTRIES
    Rule(
        "R-5.12-1",
        "5.12",
        "FETCH is answered with exactly one ENTRIES: the entries from from_seq, in order, within max_bytes but at least one; final = 1 when the last one sent is the replica's last_seq.",
    ),
    Rule(
        "R-5.12-2",
        "5.12",
        "A FETCH below the promise is answered REJECT(STALE_EPOCH, promised); a FETCH makes no promise.",
    ),
    # §5.14 ADMIT
    Rule(
        "R-5.14-1",
        "5.14",
        "An ADMIT that does not match (below the promise, another log epoch, or upto beyond the log) is ignored silently: never answered, and the replica stays a non-voter.",
    ),
    Rule("R-5.14-2", "5.14", "A matching ADMIT makes the replica a voter, durably, shown in its next PROMISE."),
    Rule(
        "R-6.1-2",
        "6.1",
        "An object the replica holds no state for starts as a non-voter that has promised the epoch allocator's current epoch.",
    ),
    # §5.15 TRUNCATE
    Rule(
        "R-5.15-1",
        "5.15",
        "A TRUNCATE whose epoch is below the promise is ignored entirely: the log reported in the PROMISE to the newer epoch stays.",
    ),
    Rule(
        "R-5.15-2",
        "5.15",
        "A TRUNCATE at an entry the replica holds with that chain records truncated_through durably; TRUNCATE is never answered.",
    ),
    # §7 primary
    Rule(
        "R-7.2-1",
        "7.2",
        "The output gate: a write's reply is held until a quorum (3 of 5) of distinct replicas acknowledged its entry under this primary's epoch.",
    ),
    Rule(
        "R-7.2-2",
        "7.2",
        "An ACK counts towards durability only if its log_epoch is the primary's epoch and its chain equals the primary's chain at stored_through.",
    ),
    Rule(
        "R-7.3-2",
        "7.3",
        "A write not durable within the deadline resets the primary: its held reply becomes UNKNOWN, and it never acknowledges a write again.",
    ),
    Rule(
        "R-7.5-1",
        "7.5",
        "Recovery chooses, among the promises of a fence quorum of voters, the log best by (log_epoch, last_seq) compared as a pair: a newer epoch's shorter log beats an older, longer one.",
    ),
    Rule(
        "R-7.3-1",
        "7.3",
        "A primary fenced by a REJECT(STALE_EPOCH) from a newer epoch resets: its held replies fail (UNKNOWN) and it never acknowledges a write again.",
    ),
    Rule(
        "R-7.3-3",
        "7.3",
        "A REJECT (or ACK) naming a promise above every epoch the allocator issued is a corrupt replica, not a newer primary: the primary counts that replica as down and keeps acknowledging with the others.",
    ),
    # §8 storage
    Rule(
        "R-8-1",
        "8",
        "A torn tail (a last record cut by a power failure between write and fsync, never acknowledged) is cut on restart, and the replica serves the acknowledged entries before it.",
    ),
    Rule("R-5.15-3", "5.15", "A TRUNCATE naming a chain the replica does not hold at that seq truncates nothing."),
    Rule(
        "R-5.15-4",
        "5.15",
        "A base offer (a TRUNCATE whose entry the replica does not hold; through 0: the empty log) lets the next adopting APPEND of that epoch that starts at the offered entry replace the whole log by it.",
    ),
)

RULES: dict[str, Rule] = {r.id: r for r in _RULES}
