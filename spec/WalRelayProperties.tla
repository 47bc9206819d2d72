-------------------------- MODULE WalRelayProperties --------------------------
(***************************************************************************)
(* What walrelay promises, stated over WalRelay's variables. Numbers refer *)
(* to the invariants of the architecture notes (docs/spec-map.md maps each *)
(* one to the test or chaos checker that checks it on the implementation). *)
(***************************************************************************)
EXTENDS WalRelay

-----------------------------------------------------------------------------
(* Type and structural invariants: cheap, and they catch spec typos early. *)

TypeOK ==
    /\ promised \in [Replicas -> 0..MaxEpoch + 1]  \* MaxEpoch + 1: corrupt (CorruptPromise)
    /\ logEpoch \in [Replicas -> 0..MaxEpoch]
    /\ logLen \in [Replicas -> 0..MaxWrites]
    /\ truncated \in [Replicas -> 0..MaxWrites]
    /\ voter \in [Replicas -> BOOLEAN]
    /\ epochAlloc \in 0..MaxEpoch
    /\ pstate \in [Epochs -> {"idle", "recovering", "syncing", "serving", "fenced", "crashed", "gaveup"}]
    /\ \A e \in Epochs : restoring[e].t \in -1..MaxTime
    /\ commit \in [Epochs -> 0..MaxWrites]
    /\ now \in 0..MaxTime
    /\ nextWrite \in 1..MaxWrites + 1
    /\ branchOf \in [Epochs -> Branches]
    /\ \A e \in Epochs : commit[e] <= Len(elog[e]) /\ archived[e] <= Len(elog[e])

\* A replica's log is a prefix of the log it names, and it never holds an
\* epoch's log above its promise (what the chain check gives the implementation).
ReplicaLogsWellFormed ==
    \A r \in Replicas :
        /\ logEpoch[r] <= promised[r]
        /\ truncated[r] <= logLen[r]
        /\ logEpoch[r] = 0 => logLen[r] = 0
        /\ logEpoch[r] > 0 => logLen[r] <= Len(elog[logEpoch[r]])

\* What a replica stores is what its naming says: entries truncated+1..logLen of
\* elog[logEpoch] (and Filler, i.e. nothing, below). The pair (logEpoch, logLen)
\* is what the chain proves in the implementation; this checks that the content
\* a replica adopted, and reports in its PROMISE, really is that log.
ReplicaLogsMatch ==
    \A r \in Replicas :
        /\ Len(rlog[r]) = logLen[r]
        /\ \A i \in 1..logLen[r] : rlog[r][i] = IF i <= truncated[r] THEN Filler ELSE elog[logEpoch[r]][i]

-----------------------------------------------------------------------------
(* The invariants of the architecture notes.                               *)

\* Branch br's log starts with branch b's log through seq s: br is b, or br
\* forked at s or later from a branch that does (the depth bounds the recursion
\* on a corrupt fork graph, as a mutant may build).
RECURSIVE Inherits(_, _, _, _)
Inherits(br, b, s, depth) ==
    \/ br = b
    \/ /\ depth > 0 /\ fork[br].parent /= 0 /\ fork[br].at >= s
       /\ Inherits(fork[br].parent, b, s, depth - 1)

\* 1. Every released reply's entry is in every later live primary's log of its
\*    branch, or of a branch forked from it at or after its seq. (A restore to
\*    an earlier point rolls it back on purpose: UndoIsExact keeps it restorable.)
AckedWritesSurvive ==
    \A a \in acked : \A e \in Epochs :
        (e > a.epoch /\ Live(e) /\ Inherits(branchOf[e], a.branch, a.seq, MaxEpoch))
            => (Len(elog[e]) >= a.seq /\ elog[e][a.seq] = a.entry)

\* 2. Two committed logs of a branch never differ at the same seq.
LogAgreement ==
    \A e \in Epochs : pstate[e] /= "idle" =>
        \A i \in 1..Min(commit[e], Len(committed[branchOf[e]])) : elog[e][i] = committed[branchOf[e]][i]

\* 3. Fencing: once a later primary has recovered (from a promise quorum), no
\*    entry of an earlier epoch that it lacks ever becomes durable.
Fencing == lateDurable = {}

\* 3b. Only an issued epoch fences: a primary stops as fenced only once a later
\*     epoch was issued. A REJECT naming a promise no allocator issued (a
\*     corrupt replica) must not stop the object (CorruptPromise, Believable).
FencedOnlyByIssued == \A e \in Epochs : pstate[e] = "fenced" => epochAlloc > e

\* 4. Per branch: segments and snapshots hold committed entries only;
\*    overlapping segments agree (both equal the branch's committed log); every
\*    segment starts where the branch's archive can already reach (no gaps),
\*    unless a snapshot already covers it (a late PUT can bring back a segment
\*    retention deleted: garbage that restore never reads and the next retention
\*    pass deletes again). A branch starts as its parent's committed state at
\*    the fork point (so its fork snapshot is DbOf(committed[parent], at)).
ArchiveIsCommittedPrefix ==
    /\ \A g \in segments :
        /\ g.last <= Len(committed[g.branch])
        /\ \A i \in g.first..g.last : g.ents[i - g.first + 1] = committed[g.branch][i]
        /\ ArchiveHolds(g.branch, g.first - 1) \/ \E sn \in snapshots : sn.branch = g.branch /\ sn.last >= g.last
    /\ \A s \in snapshots : s.last <= Len(committed[s.branch]) /\ s.db = DbOf(committed[s.branch], s.last)
    /\ \A br \in Branches : fork[br].parent /= 0 =>
        LET p == fork[br].parent  k == fork[br].at IN
        /\ k <= Len(committed[p]) /\ k <= Len(committed[br])
        /\ SubSeq(committed[br], 1, k) = SubSeq(committed[p], 1, k)

\* 5. A replica never drops an entry its log's branch archive cannot give back.
TruncateAfterArchive == \A r \in Replicas : truncated[r] <= ArchiveEnd(BranchOfLog(logEpoch[r]))

\* 6. Restoring any point a primary offers gives exactly the database right
\*    after that committed entry of its branch (only committed points are offered).
PITRExact ==
    \A e \in Epochs : pstate[e] = "serving" =>
        \A n \in RestorePoints(e) : n <= Len(committed[branchOf[e]]) /\ RestoreDb(e, n) = DbOf(committed[branchOf[e]], n)

\* 7. Timestamps never decrease along a primary's log (so along the
\*    committed log), which makes bookmark_for_time exact.
MonotonicTime ==
    \A e \in Epochs : \A i \in 1..Len(elog[e]) - 1 : elog[e][i].ts <= elog[e][i + 1].ts

\* Retention keeps every point of a branch whose state was current inside the
\* window: from the state at the window's start (not before the branch's fork
\* point: earlier states are its parent's) through the branch's archive end.
\* Measured against history, not against the archive as it is now: a deletion that
\* shrinks the archive must not shrink what is checked. ConfirmedEnd is the highest
\* point any primary saw confirmed (ConfirmUpload) or read back (Recover) on the
\* branch, or its fork point (the fork snapshot, written before the branch serves).
WindowStart(br) == BookmarkForTime(committed[br], Min(ArchiveEnd(br), Len(committed[br])), now - Window)
BranchExists(br) == br = 1 \/ fork[br].parent /= 0
ConfirmedEnd(br) == MaxOf({archived[e] : e \in {e \in Epochs : pstate[e] /= "idle" /\ branchOf[e] = br}}
                          \cup {IF BranchExists(br) THEN fork[br].at ELSE 0})
HighWater(br) == Max(ArchiveEnd(br), ConfirmedEnd(br))
WindowStartH(br) == BookmarkForTime(committed[br], Min(HighWater(br), Len(committed[br])), now - Window)
RetentionKeepsWindow ==
    \A br \in Branches : BranchExists(br) =>
        \A n \in Max(fork[br].at, WindowStartH(br))..HighWater(br) : ArchiveHolds(br, n)

\* 8. Undo is exact: once a restore completed (its marker committed), its undo
\*    point (the old branch, the old log's end) is the old branch's whole
\*    committed log (nothing committed there after the fork, so every reply the
\*    old branch released is at or before it), and the old branch's archive
\*    alone restores exactly it, for as long as the window keeps it. The
\*    acknowledged writes the restore rolled back are therefore archived
\*    (RolledBackAcksArchived is this invariant's last conjunct).
RestoreCompleted(f) == IsRestore(f) /\ commit[f] > restoring[f].k
UndoIsExact ==
    \A f \in Epochs : RestoreCompleted(f) =>
        LET b == restoring[f].undoBranch  n == restoring[f].undoEnd IN
        n >= WindowStart(b) =>
            /\ n = Len(committed[b])
            /\ ArchiveHolds(b, n) /\ ArchiveDb(b, n) = DbOf(committed[b], n)
            /\ \A a \in acked : a.branch = b => a.seq <= n

\* 9. The ACK table is not trusted, it is checked: acks[e][r] = n means replica r
\*    stores e's log through n, unless r has promised a later epoch since (it may
\*    then hold another primary's log; e can no longer use r). A lost disk's ACKs
\*    stop counting (AcksAfterLoss). Without this, a replica that ACKs more than
\*    it stored is caught only when a failover happens to lose the entry.
AckConsistency ==
    \A e \in Epochs : \A r \in Replicas : acks[e][r] > 0 =>
        \/ /\ logEpoch[r] = e /\ logLen[r] >= acks[e][r]
           /\ \A i \in truncated[r] + 1..acks[e][r] : rlog[r][i] = elog[e][i]
        \/ promised[r] > e

\* 11. A restore to a time is exact: once it completed, the point it restored is
\*     the last entry of the branch's committed log at or before that time (every
\*     entry through it is at or before t, the next one after t). The branch is
\*     frozen by then (the old one by the restore, UndoIsExact; any other one by
\*     the restore that superseded it), so its committed log is the whole of it.
RestoreToTimeExact ==
    \A f \in Epochs : (RestoreCompleted(f) /\ restoring[f].t >= 0) =>
        LET b == restoring[f].branch  k == restoring[f].k  t == restoring[f].t  L == committed[b] IN
        /\ k <= Len(L)
        /\ \A i \in 1..k : L[i].ts <= t
        /\ k < Len(L) => L[k + 1].ts > t

Safety ==
    /\ TypeOK /\ ReplicaLogsWellFormed /\ AckedWritesSurvive /\ LogAgreement /\ Fencing /\ FencedOnlyByIssued
    /\ ArchiveIsCommittedPrefix /\ TruncateAfterArchive /\ PITRExact /\ MonotonicTime
    /\ RetentionKeepsWindow /\ UndoIsExact /\ AckConsistency /\ ReplicaLogsMatch
    /\ RestoreToTimeExact

-----------------------------------------------------------------------------
(* Refinement: WalRelay implements DurableLog (the abstract spec).         *)
(* A branch exists for DurableLog once its marker is committed (a restore  *)
(* that installed its branch and died before that did not happen: a later  *)
(* primary may still complete it, or the old branch goes on). A branch's   *)
(* durable log is its committed history; its undo point is the one its     *)
(* restore recorded; a reply is a released reply without its epoch.        *)

AbsMade == {1} \cup {br \in Branches : fork[br].parent /= 0 /\ Len(committed[br]) > fork[br].at}
AbsLog == [br \in Branches |-> IF br \in AbsMade THEN committed[br] ELSE <<>>]
RestoreOf(br) == CHOOSE f \in Epochs : IsRestore(f) /\ restoring[f].newBranch = br
AbsUndo == [br \in Branches |-> IF br \in AbsMade /\ br /= 1
                                 THEN [branch |-> restoring[RestoreOf(br)].undoBranch,
                                       end |-> restoring[RestoreOf(br)].undoEnd]
                                 ELSE [branch |-> 0, end |-> 0]]
AbsAcked == {[seq |-> a.seq, entry |-> a.entry, branch |-> a.branch] : a \in {a \in acked : a.branch \in AbsMade}}

Abs == INSTANCE DurableLog WITH log <- AbsLog, made <- AbsMade, undo <- AbsUndo, acked <- AbsAcked, now <- now

\* Checked as PROPERTIES: every behaviour of WalRelay, mapped, is one of DurableLog.
\* Abs!Spec is RefinementInit /\ Refinement; TLC names a violated action property,
\* not a violated conjunction (message 2116 names none), so the two halves are listed.
RefinementInit == Abs!Init
\* (The same formula as [][Abs!Next]_Abs!vars, with the stuttering case first, and checked
\* on the variables the mapping reads: most steps of WalRelay change none of them, and
\* TLC then neither builds the mapped state nor evaluates Abs!Next.)
MappedVars == <<committed, acked, fork, restoring, now>>
Refinement == [][UNCHANGED MappedVars \/ UNCHANGED Abs!vars \/ Abs!Next]_Abs!vars
THEOREM Spec => Abs!Spec   \* what the two check together
\* DurableLog's own invariants on the mapped state (implied by Refinement; cheap, and
\* a violation names which promise broke).
AbstractInvariants == Abs!Invariants

-----------------------------------------------------------------------------
(* Action properties (checked as [][A]_vars).                              *)

IsPrefix(s, t) == Len(s) <= Len(t) /\ SubSeq(t, 1, Len(s)) = s

\* Each branch's committed log only grows: nothing committed is rewritten or
\* dropped (a restore starts a new branch; it never rewrites an old one).
CommittedLogOnlyGrows == [][\A br \in Branches : IsPrefix(committed[br], committed'[br])]_vars

\* Epochs only grow: promises (even across disk loss) and the allocator. A
\* corrupt promise (one no allocator issued) is the exception: repairing the
\* replica (LoseDisk) replaces it with the highest epoch issued.
EpochsOnlyGrow == [][/\ epochAlloc' >= epochAlloc
                     /\ \A r \in Replicas : promised[r] <= MaxEpoch => promised'[r] >= promised[r]]_vars

\* A released reply is never taken back: the gate's commit point never moves
\* back, and each acknowledged entry stays committed at its seq.
AcksNeverRetracted == [][/\ \A e \in Epochs : commit'[e] >= commit[e]
                         /\ \A a \in acked : a \in acked' /\ committed'[a.branch][a.seq] = a.entry]_vars

-----------------------------------------------------------------------------
(* Liveness, under FairSpec (WalRelayFairness in MCWalRelay.tla).          *)

Written(w) == \E e \in Epochs : \E i \in 1..Len(elog[e]) : elog[e][i].w = w
Acked(w) == \E a \in acked : a.entry.w = w
WriterGone(w) == \E e \in Epochs : /\ \E i \in 1..Len(elog[e]) : elog[e][i].w = w
                                   /\ pstate[e] \in {"crashed", "fenced", "gaveup"}

\* While its primary lives (and a quorum is up and connected: fairness), a
\* write is eventually acknowledged.
WriteEventuallyAcked == \A w \in 1..MaxWrites : Written(w) ~> (Acked(w) \/ WriterGone(w))

\* A durable entry is eventually in the archive, unless no primary is left
\* to upload it (the model bounds how many primaries can ever start).
NoPrimaryLeft == epochAlloc = MaxEpoch /\ \A e \in Epochs : pstate[e] \in {"crashed", "fenced", "gaveup"}
DurableEventuallyArchived ==
    \A br \in Branches : \A s \in 1..MaxWrites : (Len(committed[br]) >= s) ~> (ArchiveEnd(br) >= s \/ NoPrimaryLeft)

\* Properties that a dead system cannot meet (issue 14). WriteEventuallyAcked is met
\* once the writer is gone, so a protocol whose primaries are all fenced by their own
\* replicas passes it. The newest primary can be fenced by no one (placement starts
\* every epoch, fairly, and no restore is left to fence it): a write it takes must be
\* acknowledged unless it crashed.
NewestWriteEventuallyAcked ==
    \A w \in 1..MaxWrites : (\E i \in 1..Len(elog[MaxEpoch]) : elog[MaxEpoch][i].w = w)
                              ~> (Acked(w) \/ pstate[MaxEpoch] = "crashed")

\* A restore that was begun completes, unless its process crashed, or it gave up
\* because the object really changed meanwhile: some replica reported a log more
\* recent than the one the restore archived. A protocol whose restores always give
\* up meets every invariant; it does not meet this.
ObjectChanged(f) == \E p \in Promises(f) :
                       Better(p, [logEpoch |-> restoring[f].from, logLen |-> restoring[f].undoEnd])
\* (The model bounds write ids and the branch marker takes one: a restore whose
\* marker finds none left waits for ever. That is the bound, not the protocol; TLC
\* found it first, the last disjunct excuses it.)
RestoreEventuallyResolves ==
    \A f \in Epochs : IsRestore(f) ~> \/ RestoreCompleted(f)
                                      \/ pstate[f] = "crashed"
                                      \/ pstate[f] = "gaveup" /\ ObjectChanged(f)
                                      \/ pstate[f] = "recovering" /\ nextWrite > MaxWrites

=============================================================================
