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
    /\ promised \in [Replicas -> 0..MaxEpoch]
    /\ logEpoch \in [Replicas -> 0..MaxEpoch]
    /\ logLen \in [Replicas -> 0..MaxWrites]
    /\ truncated \in [Replicas -> 0..MaxWrites]
    /\ voter \in [Replicas -> BOOLEAN]
    /\ epochAlloc \in 0..MaxEpoch
    /\ pstate \in [Epochs -> {"idle", "recovering", "syncing", "serving", "fenced", "crashed"}]
    /\ commit \in [Epochs -> 0..MaxWrites]
    /\ now \in 0..MaxTime
    /\ nextWrite \in 1..MaxWrites + 1
    /\ \A e \in Epochs : commit[e] <= Len(elog[e]) /\ archived[e] <= Len(elog[e])

\* A replica's log is a prefix of the log it names, and it never holds an
\* epoch's log above its promise (what the chain check gives the implementation).
ReplicaLogsWellFormed ==
    \A r \in Replicas :
        /\ logEpoch[r] <= promised[r]
        /\ truncated[r] <= logLen[r]
        /\ logEpoch[r] = 0 => logLen[r] = 0
        /\ logEpoch[r] > 0 => logLen[r] <= Len(elog[logEpoch[r]])

-----------------------------------------------------------------------------
(* The invariants of the architecture notes.                               *)

\* 1. Every released reply's entry is in every later primary's log.
AckedWritesSurvive ==
    \A a \in acked : \A e \in Epochs :
        (e > a.epoch /\ Live(e)) => (Len(elog[e]) >= a.seq /\ elog[e][a.seq] = a.entry)

\* 2. Two committed logs never differ at the same seq.
LogAgreement ==
    \A e \in Epochs : pstate[e] /= "idle" =>
        \A i \in 1..Min(commit[e], Len(committed)) : elog[e][i] = committed[i]

\* 3. Fencing: once a later primary has recovered (from a promise quorum), no
\*    entry of an earlier epoch that it lacks ever becomes durable.
Fencing == lateDurable = {}

\* 4. Segments and snapshots hold committed entries only; overlapping
\*    segments agree (both equal the committed log); every segment starts
\*    where the archive can already reach (no gaps), unless a snapshot already
\*    covers it (a late PUT can bring back a segment retention deleted: garbage
\*    that restore never reads and the next retention pass deletes again).
ArchiveIsCommittedPrefix ==
    /\ \A g \in segments :
        /\ g.last <= Len(committed)
        /\ \A i \in g.first..g.last : g.ents[i - g.first + 1] = committed[i]
        /\ ArchiveHolds(g.first - 1) \/ \E sn \in snapshots : sn.last >= g.last
    /\ \A s \in snapshots : s.last <= Len(committed) /\ s.db = DbOf(committed, s.last)

\* 5. A replica never drops an entry the archive cannot give back.
TruncateAfterArchive == \A r \in Replicas : truncated[r] <= ArchiveEnd

\* 6. Restoring any point a primary offers gives exactly the database right
\*    after that committed entry (and only committed points are offered).
PITRExact ==
    \A e \in Epochs : pstate[e] = "serving" =>
        \A b \in RestorePoints(e) : b <= Len(committed) /\ RestoreDb(e, b) = DbOf(committed, b)

\* 7. Timestamps never decrease along a primary's log (so along the
\*    committed log), which makes bookmark_for_time exact.
MonotonicTime ==
    \A e \in Epochs : \A i \in 1..Len(elog[e]) - 1 : elog[e][i].ts <= elog[e][i + 1].ts

\* Retention keeps every point whose state was current inside the window:
\* from the state at the window's start through the archive's end.
RetentionKeepsWindow ==
    \A b \in BookmarkForTime(committed, Min(ArchiveEnd, Len(committed)), now - Window)..ArchiveEnd :
        ArchiveHolds(b)

Safety ==
    /\ TypeOK /\ ReplicaLogsWellFormed /\ AckedWritesSurvive /\ LogAgreement /\ Fencing
    /\ ArchiveIsCommittedPrefix /\ TruncateAfterArchive /\ PITRExact /\ MonotonicTime
    /\ RetentionKeepsWindow

-----------------------------------------------------------------------------
(* Action properties (checked as [][A]_vars).                              *)

IsPrefix(s, t) == Len(s) <= Len(t) /\ SubSeq(t, 1, Len(s)) = s

\* The committed log only grows: nothing committed is rewritten or dropped.
CommittedLogOnlyGrows == [][IsPrefix(committed, committed')]_vars

\* Epochs only grow: promises (even across disk loss) and the allocator.
EpochsOnlyGrow == [][/\ epochAlloc' >= epochAlloc
                     /\ \A r \in Replicas : promised'[r] >= promised[r]]_vars

\* A released reply is never taken back: the gate's commit point never moves
\* back, and each acknowledged entry stays committed at its seq.
AcksNeverRetracted == [][/\ \A e \in Epochs : commit'[e] >= commit[e]
                         /\ \A a \in acked : a \in acked' /\ committed'[a.seq] = a.entry]_vars

-----------------------------------------------------------------------------
(* Liveness, under FairSpec (WalRelayFairness in MCWalRelay.tla).          *)

Written(w) == \E e \in Epochs : \E i \in 1..Len(elog[e]) : elog[e][i].w = w
Acked(w) == \E a \in acked : a.entry.w = w
WriterGone(w) == \E e \in Epochs : /\ \E i \in 1..Len(elog[e]) : elog[e][i].w = w
                                   /\ pstate[e] \in {"crashed", "fenced"}

\* While its primary lives (and a quorum is up and connected: fairness), a
\* write is eventually acknowledged.
WriteEventuallyAcked == \A w \in 1..MaxWrites : Written(w) ~> (Acked(w) \/ WriterGone(w))

\* A durable entry is eventually in the archive, unless no primary is left
\* to upload it (the model bounds how many primaries can ever start).
NoPrimaryLeft == epochAlloc = MaxEpoch /\ \A e \in Epochs : pstate[e] \in {"crashed", "fenced"}
DurableEventuallyArchived == \A s \in 1..MaxWrites : (Len(committed) >= s) ~> (ArchiveEnd >= s \/ NoPrimaryLeft)

=============================================================================
