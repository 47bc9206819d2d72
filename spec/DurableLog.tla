------------------------------ MODULE DurableLog ------------------------------
(***************************************************************************)
(* What walrelay promises, with no replicas, primaries, messages, archive  *)
(* or failures in sight. READ THIS FIRST: WalRelay.tla is one way to build *)
(* it, and TLC checks that it is one (WalRelayProperties.Refinement).      *)
(*                                                                         *)
(* An object is one durable log of transactions. A client write is an      *)
(* entry [w |-> write id, ts |-> timestamp] appended to the log of the     *)
(* CURRENT branch; its reply may be released once it is in that log, and   *)
(* nothing ever takes an entry out of a log again.                         *)
(*                                                                         *)
(* A restore to a bookmark (b, k) (a branch and a seq: any point of any    *)
(* branch) makes a NEW branch, numbered above every branch so far, whose   *)
(* log is exactly b's log through k followed by one marker entry (the      *)
(* transaction that records the restore). The new branch is current from   *)
(* then on, and the branch that was current stops for good: its whole log  *)
(* is the restore's undo point, so undoing the restore (a restore to that  *)
(* point) gives back exactly the state the restore replaced.               *)
(*                                                                         *)
(* Time: every entry's timestamp is at most the clock when it became       *)
(* durable, and timestamps never decrease along a branch's log. So "the    *)
(* state at time t" is exact: the log through its last entry at or before  *)
(* t, and no write acknowledged before t is missing from it.              *)
(*                                                                         *)
(* What is left to the implementation (and checked on WalRelay, not here): *)
(* which points stay restorable (every point of the last Window ticks:     *)
(* RetentionKeepsWindow, PITRExact) and how a failure is survived.         *)
(*                                                                         *)
(* The actions are written as relations between a state and the next one  *)
(* (primed variables constrained, not generated), because they are only   *)
(* ever checked against behaviours of WalRelay under the refinement        *)
(* mapping. Nothing here is a model of its own.                            *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets

CONSTANT Branches       \* branch numbers; 1 is the object's first branch

VARIABLES
    log,    \* log[b]: branch b's durable log (<<>> while b does not exist)
    made,   \* the branches that exist: {1}, and one more per restore
    undo,   \* undo[b]: the undo point of the restore that made b ([branch, end]; branch 0 for 1)
    acked,  \* every reply released: [seq, entry, branch]
    now     \* the clock

vars == <<log, made, undo, acked, now>>

MaxOf(S) == CHOOSE x \in S : \A y \in S : y <= x
Current == MaxOf(made)
Ids(b) == {log[b][i].w : i \in 1..Len(log[b])}
UsedIds == UNION {Ids(b) : b \in made}
IsPrefix(s, t) == Len(s) <= Len(t) /\ SubSeq(t, 1, Len(s)) = s
\* xs follows after entry `last` (or starts a log: last = <<>>): fresh, distinct write
\* ids; timestamps from last's on, never decreasing, none after the clock.
Follows(last, xs) ==
    /\ \A i \in 1..Len(xs) : xs[i].w \notin UsedIds /\ xs[i].ts <= now
    /\ \A i, j \in 1..Len(xs) : i < j => xs[i].w /= xs[j].w /\ xs[i].ts <= xs[j].ts
    /\ Len(xs) > 0 /\ last /= <<>> => last[1].ts <= xs[1].ts
Last(s) == IF s = <<>> THEN <<>> ELSE <<s[Len(s)]>>
\* The replies released in this step are for entries of the new logs.
AcksFor(lg, mk) ==
    /\ acked \subseteq acked'
    /\ \A a \in acked' \ acked : a.branch \in mk /\ a.seq \in 1..Len(lg[a.branch]) /\ lg[a.branch][a.seq] = a.entry
OnlyChanged(b) == \A c \in Branches \ {b} : log'[c] = log[c]

Init ==
    /\ log = [b \in Branches |-> <<>>]
    /\ made = {1}
    /\ undo = [b \in Branches |-> [branch |-> 0, end |-> 0]]
    /\ acked = {}
    /\ now = 0

\* Some entries become durable on the current branch (replies may be released).
Commit ==
    LET b == Current IN
    /\ Len(log'[b]) > Len(log[b]) /\ IsPrefix(log[b], log'[b])
    /\ Follows(Last(log[b]), SubSeq(log'[b], Len(log[b]) + 1, Len(log'[b])))
    /\ OnlyChanged(b)
    /\ AcksFor(log', made)
    /\ UNCHANGED <<made, undo, now>>

\* Replies released for entries already durable (any branch's: a reply may be
\* released late; it never speaks for an entry that is not in its log).
Ack ==
    /\ acked' /= acked
    /\ AcksFor(log, made)
    /\ UNCHANGED <<log, made, undo, now>>

\* A restore to (b, k) completes: branch nb is made and becomes current.
Restore ==
    \E nb \in Branches, b \in made :
        \E k \in 0..Len(log[b]) :
            /\ nb > Current
            /\ made' = made \cup {nb}
            /\ Len(log'[nb]) = k + 1
            /\ SubSeq(log'[nb], 1, k) = SubSeq(log[b], 1, k)
            /\ Follows(Last(SubSeq(log[b], 1, k)), <<log'[nb][k + 1]>>)
            /\ undo' = [undo EXCEPT ![nb] = [branch |-> Current, end |-> Len(log[Current])]]
            /\ OnlyChanged(nb)
            /\ AcksFor(log', made')
            /\ UNCHANGED now

Tick ==
    /\ now' = now + 1
    /\ UNCHANGED <<log, made, undo, acked>>

Next == Commit \/ Ack \/ Restore \/ Tick

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
(* What follows from Spec (checked on WalRelay through the mapping too).   *)

\* Every released reply's entry is in its branch's log, at its seq, for ever.
AckedInLog == \A a \in acked : a.branch \in made /\ a.seq \in 1..Len(log[a.branch])
                                                 /\ log[a.branch][a.seq] = a.entry

\* An undo point is a branch's whole log: undo is exact.
UndoPointsWhole == \A b \in made : undo[b].branch /= 0 => Len(log[undo[b].branch]) = undo[b].end

\* Timestamps never decrease along a branch's log.
TimeOrdered == \A b \in made : \A i \in 1..Len(log[b]) - 1 : log[b][i].ts <= log[b][i + 1].ts

\* No entry is stamped after the present: "the state at time t" holds every
\* write whose reply was released before t.
NoFutureEntries == \A b \in made : \A i \in 1..Len(log[b]) : log[b][i].ts <= now

Invariants == AckedInLog /\ UndoPointsWhole /\ TimeOrdered /\ NoFutureEntries

=============================================================================
