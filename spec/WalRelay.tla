------------------------------ MODULE WalRelay ------------------------------
(***************************************************************************)
(* The walrelay protocol for ONE object: a primary per epoch, N replicas,  *)
(* an output gate that releases a reply once Quorum replicas stored its    *)
(* entry, failover under a higher epoch (promise quorum, choose the most   *)
(* recent log by (log epoch, length), re-replicate, then serve), and the   *)
(* WAL archive in object storage (segments, snapshots, retention, PITR).   *)
(*                                                                         *)
(* What is abstracted, and why it is sound:                                *)
(*  - An entry is [w |-> write id, ts |-> timestamp]. Write ids are unique *)
(*    (a client write is a fresh INSERT), so the database after a log      *)
(*    prefix is the SET of its write ids (DbOf). Page-exactness is the     *)
(*    implementation's job (tests/test_capture.py); the spec decides WHICH *)
(*    entries a state contains.                                            *)
(*  - The chain hash of an entry identifies the whole log prefix it ends.  *)
(*    So a replica's log is always a prefix of some primary's log; the     *)
(*    pair (logEpoch, logLen) names it: elog[logEpoch][1..logLen]. A       *)
(*    replica accepting an APPEND adopts the sender's prefix (the          *)
(*    implementation gets there by DIVERGED/catch-up round trips; chains   *)
(*    make the result the same). The replica ALSO keeps its entries        *)
(*    explicitly (rlog, from the APPEND's content; truncated ones are      *)
(*    Filler) and reports them in its PROMISE, which is all recovery reads *)
(*    of it: the naming is checked against the content (ReplicaLogsMatch), *)
(*    not trusted, so a replica that stores what it did not check (mutant  *)
(*    append_without_chain_check) is expressible and refuted.              *)
(*  - elog[e] is primary e's log (its SQLite database). When e crashes it  *)
(*    is kept only because messages in flight refer to it; a crashed       *)
(*    primary takes no step.                                               *)
(*  - Messages live in a set that handlers never consume: any message can  *)
(*    be delivered late, twice, out of order, or never (loss). Retries are *)
(*    therefore implicit. The same holds for PUTs to object storage: a PUT *)
(*    may be applied late, twice, or never, and its confirmation may be    *)
(*    lost (the ambiguous PUT).                                            *)
(*  - A replica crash without disk loss is not an action: a replica has no *)
(*    volatile state that matters (it persists before it acknowledges,     *)
(*    atomically in ReceiveAppend), so a crash looks like a replica that   *)
(*    takes no steps for a while. Permanent disk loss IS an action.        *)
(*  - The 16 MB / 10 s cut of the archiver is a nondeterministic segment   *)
(*    boundary; 30 days is Window ticks of the clock `now`.                *)
(*  - Entries archived and then deleted by retention survive only inside a *)
(*    snapshot's database. Where recovery needs such an entry it reads the *)
(*    history variable `committed` instead, guarded by ArchiveHolds; the   *)
(*    invariant ArchiveIsCommittedPrefix proves the snapshot equals it.    *)
(*                                                                         *)
(* Restore branches (Durable Objects PITR): a quiesced serving primary e  *)
(*  restores to a bookmark (b, k) by handing over to a NEW epoch f (the    *)
(*  same process continuing, BeginRestore) which fences e's log with a     *)
(*  promise quorum and installs b's state at k plus one marker entry on a  *)
(*  new branch numbered f (RecoverRestore). Branch 1 is the genesis branch *)
(*  (epoch 1 can never restore: f = epochAlloc + 1 >= 2). The restore's   *)
(*  undo point is (e's branch, e's log end).                               *)
(*                                                                         *)
(* Operators named Mayxxx / xxxEnd / Better / NextTs / Eager... are the    *)
(* protocol's decision points; mutants (MCWalRelayMutants.tla) replace one *)
(* of them with a classic bug and TLC must refute it.                      *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets

CONSTANTS
    Replicas,     \* the replicas of the object (5 in production)
    Quorum,       \* stored copies before the output gate releases a reply (3)
    FenceQuorum,  \* promises a new primary needs before it recovers (3)
    MaxEpoch,     \* bound: primaries ever started (epochs 1..MaxEpoch)
    MaxWrites,    \* bound: client writes (so also the longest log)
    MaxTime,      \* bound: ticks of the wall clock
    MaxDiskLoss,  \* bound: permanent disk losses (tolerated: N - Quorum)
    MaxPuts,      \* bound: distinct objects (segments + snapshots) ever PUT
    Lags,         \* how far behind a primary's host clock may be, e.g. {0, 1}
    Window,       \* retention window in ticks (30 days)
    MaxRestores,  \* bound: restores ever begun (0: the model has no branches)
    MaxCorruptPromises \* bound: replicas whose promise turns into one no allocator issued

ASSUME /\ Quorum \in 1..Cardinality(Replicas)
       /\ FenceQuorum \in 1..Cardinality(Replicas)
       /\ MaxEpoch \in Nat /\ MaxWrites \in Nat /\ MaxTime \in Nat
       /\ MaxDiskLoss \in Nat /\ MaxPuts \in Nat /\ Window \in Nat /\ Lags \subseteq Nat
       /\ MaxRestores \in Nat /\ MaxCorruptPromises \in Nat

VARIABLES
    \* ---- replica, persistent (fsync'd before any ACK/PROMISE leaves) ----
    promised,    \* highest epoch promised; APPENDs and PREPAREs below it are refused
    logEpoch,    \* epoch of the primary whose log this replica holds a prefix of
    logLen,      \* ... and how much of it: elog[logEpoch][1..logLen]
    truncated,   \* entries 1..truncated were dropped after the archive confirmed them
    rlog,        \* its entries, as stored (Filler for 1..truncated); the chain is their content
    voter,       \* FALSE after a disk loss, until caught up (its promise must not count)
    \* ---- placement, durable, outside the object ----
    epochAlloc,  \* highest epoch ever handed to a primary
    \* ---- primary e (one per epoch), volatile ----
    pstate,      \* "idle" | "recovering" | "syncing" | "serving" | "fenced" | "crashed" | "gaveup"
    elog,        \* its log (its SQLite database)
    commit,      \* output gate: entries 1..commit are durable, their replies released
    lag,         \* how far behind its host's clock is
    archived,    \* the archive is confirmed to hold its log through here
    upload,      \* the segment it is uploading (kind "none" if none)
    acks,        \* its ACK table: acks[e][r] = how far r said it stores e's log
    branchOf,    \* the branch of its log (read from the replayed database: the marker)
    restoring,   \* restoring[f]: the restore f performs (from = 0: f is a plain failover)
    \* ---- environment ----
    msgs,        \* every message ever sent (see header)
    puts,        \* every PUT ever sent to object storage
    segments,    \* segment objects in the archive
    snapshots,   \* snapshot objects in the archive
    now,         \* wall clock
    nextWrite,   \* id of the next client write
    diskLost,    \* disk losses so far
    fork,        \* fork[br] = [parent, at]: branch br starts as branch parent's state at seq at
                 \* (parent 0: not created; the archive's branch record, written with the fork snapshot)
    \* ---- history variables: read only by WalRelayProperties ----
    committed,   \* committed[br]: the longest log prefix of branch br any primary has seen durable
    acked,       \* every reply the output gate released: [seq, entry, epoch, branch]
    lateDurable  \* <<e, s>>: entry s of e became durable although a later recovered primary lacks it

replicaVars == <<promised, logEpoch, logLen, truncated, rlog, voter>>
primaryVars == <<epochAlloc, pstate, elog, commit, lag, archived, upload, acks, branchOf, restoring>>
envVars == <<msgs, puts, segments, snapshots, now, nextWrite, diskLost, fork>>
historyVars == <<committed, acked, lateDurable>>
vars == <<replicaVars, primaryVars, envVars, historyVars>>

Epochs == 1..MaxEpoch
\* Branch ids: 1 is the genesis branch; a restore by epoch f creates branch f.
Branches == Epochs
Max(a, b) == IF a >= b THEN a ELSE b
Min(a, b) == IF a <= b THEN a ELSE b
MaxOf(S) == CHOOSE x \in S : \A y \in S : y <= x
DbOf(log, n) == {log[i].w : i \in 1..n}
Live(e) == pstate[e] \in {"syncing", "serving"}
\* The branch of the log a replica holds (epoch 0: the empty log of branch 1).
BranchOfLog(ep) == IF ep = 0 THEN 1 ELSE branchOf[ep]
\* t: the time a restore "to a time" asked for (-1: asked for a bookmark).
NoRestore == [from |-> 0, branch |-> 0, k |-> 0, t |-> -1, undoBranch |-> 0, undoEnd |-> 0, newBranch |-> 0]
IsRestore(f) == restoring[f].from /= 0
Restores == {f \in Epochs : IsRestore(f)}

\* Archive objects share one record shape (kind "seg" | "snap" | "none"), keyed
\* by branch. A snapshot at seq `at` has first = last = at and holds the database `db`.
NoUpload == [kind |-> "none", branch |-> 0, first |-> 0, last |-> 0, ents |-> <<>>, db |-> {}]
Segment(e, f, l) == [kind |-> "seg", branch |-> branchOf[e], first |-> f, last |-> l,
                     ents |-> SubSeq(elog[e], f, l), db |-> {}]
Snapshot(e, a) == [kind |-> "snap", branch |-> branchOf[e], first |-> a, last |-> a, ents |-> <<>>,
                   db |-> DbOf(elog[e], a)]
\* A new branch's archive begins with its fork snapshot (state at the fork point).
ForkSnapshot(br, a, db) == [kind |-> "snap", branch |-> br, first |-> a, last |-> a, ents |-> <<>>, db |-> db]
\* An APPEND carries the sender's log (the implementation sends the entries the
\* replica lacks, each chained to the one before: the content is the chain).
Append_(e, log) == [type |-> "append", epoch |-> e, to |-> Len(log), ents |-> log]
Genesis == [kind |-> "snap", branch |-> 1, first |-> 0, last |-> 0, ents |-> <<>>, db |-> {}]

-----------------------------------------------------------------------------
(* Reading the archive (what restore and recovery do).                      *)

SegCovers(br, i) == \E g \in segments : g.branch = br /\ g.first <= i /\ i <= g.last
SegEntry(br, i) == LET g == CHOOSE g \in segments : g.branch = br /\ g.first <= i /\ i <= g.last
                   IN g.ents[i - g.first + 1]
\* The archive of branch br alone can rebuild the database right after entry n.
ArchiveHolds(br, n) == \E s \in snapshots : s.branch = br /\ s.last <= n /\ \A i \in s.last + 1..n : SegCovers(br, i)
ArchiveEnd(br) == MaxOf({n \in 0..MaxWrites : ArchiveHolds(br, n)} \cup {0})
\* An archived entry; one older than every snapshot kept survives only in the
\* snapshot's database (header: abstraction of retention).
Filler == [w |-> 0, ts |-> 0]
\* A replica's entries once 1..t were truncated (dropped: the archive holds them).
Dropped(log, t) == [i \in 1..Len(log) |-> IF i <= t THEN Filler ELSE log[i]]
ArchivedEntry(br, i) == IF SegCovers(br, i) THEN SegEntry(br, i)
                        ELSE IF i <= Len(committed[br]) THEN committed[br][i] ELSE Filler
BestSnap(br, n) == CHOOSE s \in snapshots : /\ s.branch = br /\ s.last <= n
                                           /\ \A o \in snapshots : (o.branch = br /\ o.last <= n) => o.last <= s.last
\* What restoring (br, n) from the archive alone gives (defined where ArchiveHolds(br, n)).
ArchiveDb(br, n) == BestSnap(br, n).db \cup {SegEntry(br, i).w : i \in BestSnap(br, n).last + 1..n}

\* PITR as served by primary e on its branch: archive, then e's own log for
\* what is not uploaded yet (the replicas' suffix, which e holds after recovery).
RestorableEnd(e) == commit[e]
EntryFor(e, i) == IF SegCovers(branchOf[e], i) THEN SegEntry(branchOf[e], i) ELSE elog[e][i]
CanRestore(e, n) == /\ \E s \in snapshots : s.branch = branchOf[e] /\ s.last <= n
                    /\ \A i \in BestSnap(branchOf[e], n).last + 1..n : SegCovers(branchOf[e], i) \/ i <= Len(elog[e])
RestorePoints(e) == {n \in 0..RestorableEnd(e) : CanRestore(e, n)}
RestoreDb(e, n) == BestSnap(branchOf[e], n).db \cup {EntryFor(e, i).w : i \in BestSnap(branchOf[e], n).last + 1..n}
\* bookmark_for_time(t): the last entry with timestamp <= t (0 = before the first).
BookmarkForTime(log, n, t) == MaxOf({i \in 1..n : log[i].ts <= t} \cup {0})
\* Branch br's log as its archive alone gives it back, through ArchiveEnd(br).
ArchivedLog(br) == [i \in 1..ArchiveEnd(br) |-> ArchivedEntry(br, i)]

-----------------------------------------------------------------------------
(* Decision points (each one is replaced by a mutant).                      *)

\* Fencing: a replica takes entries only from its promised epoch or above.
MayAccept(r, e) == e >= promised[r]
\* Adopt the sender's log prefix if it is another epoch's log, or longer.
Adopts(r, m) == m.epoch /= logEpoch[r] \/ m.to > logLen[r]
\* What an adopting replica stores: the sender's entries, replacing any of its own
\* that differ (the chain check at the first new entry finds where they diverge).
AdoptedLog(r, m) == m.ents
\* A promise counts toward the fence quorum only from a replica that has not
\* lost its disk since it last caught up.
MayVote(p) == p.voter
\* After a disk loss the replica promises the highest epoch ever issued, so no
\* stale primary can use it (it cannot remember what it promised before).
RejoinPromise == epochAlloc
WipedVoter == FALSE
\* The allocator is the only source of epochs, so a REJECT naming a promise above
\* every epoch it issued is not evidence of a newer primary: it comes from a
\* replica whose state is corrupt (or from a peer that is not a replica). The
\* primary counts that replica as down instead of stopping (docs/protocol.md, R-7.3-3).
\* The implementation compares the promise with the allocator's highest issued
\* epoch, read when the REJECT arrives. A REJECT here carries only the outcome of
\* that comparison made when it is sent (`issued`): the allocator only grows, so
\* an issued promise stays issued, and a corrupt one (MaxEpoch + 1) is never
\* issued. Carrying the promise itself made REJECTs differ by promise and the
\* state space of longest_log_ignoring_epochs 1.5 times larger, for nothing.
Believable(m) == m.issued
\* The most recent log: by log epoch, then by length.
Better(p, q) == \/ p.logEpoch > q.logEpoch
                \/ p.logEpoch = q.logEpoch /\ p.logLen > q.logLen
\* A replica ACKs what it stored: its log through len (of the ACKed epoch's log).
AckedThrough(r, len, e) == len
\* Retention deletes a segment only if the snapshot it keeps covers all of it.
RetainDeletes(g, keep) == g.last <= keep.last
\* Only durable entries are archived.
ArchivableEnd(e) == commit[e]
\* Replicas are told to truncate only after the upload is confirmed.
EagerTruncate == FALSE
\* A primary never goes back in time: max(own clock, last timestamp).
Clock(e) == Max(0, now - lag[e])
TsAfter(e, log) == IF log = <<>> THEN Clock(e) ELSE Max(Clock(e), log[Len(log)].ts)
NextTs(e) == TsAfter(e, elog[e])
\* Restore: only a quiesced primary (everything in its log committed) may
\* begin one, to its own branch's committed points or to any point another
\* branch's archive can rebuild ...
MayRestore(e, b, k) == /\ commit[e] = Len(elog[e])
                       /\ \/ b = branchOf[e] /\ k <= commit[e]
                          \/ b /= branchOf[e] /\ ArchiveHolds(b, k)
\* ... and only once everything is archived (no upload in flight), so the
\* undo point is in the archive before the old branch stops.
RestoreArchived(e) == archived[e] = commit[e] /\ upload[e].kind = "none"
\* Restore to a time (Durable Objects' getBookmarkForTime, then onNextSessionRestoreBookmark):
\* the point for time t on branch b is the last entry at or before t, read from
\* e's own database for its own branch and from b's archive for another (the
\* implementation: ArchiveReader.point_for_time, proved by the entry after it).
PointForTime(e, b, t) == IF b = branchOf[e] THEN BookmarkForTime(elog[e], commit[e], t)
                         ELSE BookmarkForTime(ArchivedLog(b), ArchiveEnd(b), t)
\* The new branch is numbered by the restoring primary's (unique) epoch.
NewBranch(e, b, f) == f
\* A fence quorum of promises (voters), or the promises of every replica.
PromiseQuorum(S) == \/ Cardinality(S) = FenceQuorum /\ \A p \in S : MayVote(p)
                    \/ Cardinality(S) = Cardinality(Replicas)
Promises(e) == {m \in msgs : m.type = "promise" /\ m.epoch = e}
Best(S, best) == best \in S /\ \A q \in S : ~Better(q, best)
\* The log e archived: e's whole log (an empty log is every epoch's: a primary
\* that recovered nothing sent no APPEND, so replicas still report epoch 0).
IsRestoredLog(f, best) == /\ best.logLen = restoring[f].undoEnd
                          /\ best.logEpoch = restoring[f].from \/ restoring[f].undoEnd = 0
\* A restore installs its branch only after a promise quorum whose most recent
\* log is exactly the restoring primary's whole log (so the object did not
\* change meanwhile, and every older primary is fenced).
RestoreFenced(f) == \E S \in SUBSET Promises(f) :
                       /\ PromiseQuorum(S)
                       /\ \E best \in S : /\ Best(S, best)
                                         /\ IsRestoredLog(f, best)

\* Stored by Quorum replicas, as far as primary e's ACK table A knows.
Durable(e, s, A) == Cardinality({r \in Replicas : A[e][r] >= s}) >= Quorum
\* Entry s of e would be lost behind the back of a later primary that already
\* recovered without it. The promise quorum must prevent e from making such an
\* entry durable (an entry accepted before the promise is reported by it, so
\* "durable after a quorum promised" alone is not the bug; this is).
\* A restoring primary f accounts for the entries of the log it forked from,
\* through its undo point (they stay on the old branch, in the archive).
Accounts(f, s, x) == \/ Len(elog[f]) >= s /\ elog[f][s] = x
                     \/ IsRestore(f) /\ s <= restoring[f].undoEnd /\ elog[restoring[f].from][s] = x
Behind(e, s) == \E f \in Epochs : /\ f > e
                                  /\ pstate[f] \in {"syncing", "serving", "fenced"}
                                  /\ ~Accounts(f, s, elog[e][s])

\* What a disk loss does to the connection-scoped state of the primaries.
AcksAfterLoss(r) == [e \in Epochs |-> [acks[e] EXCEPT ![r] = 0]]
MsgsAfterLoss(r) == {m \in msgs : ~(m.type = "admit" /\ m.dest = r)}

-----------------------------------------------------------------------------
Init ==
    /\ promised = [r \in Replicas |-> 0]
    /\ logEpoch = [r \in Replicas |-> 0]
    /\ logLen = [r \in Replicas |-> 0]
    /\ truncated = [r \in Replicas |-> 0]
    /\ rlog = [r \in Replicas |-> <<>>]
    /\ voter = [r \in Replicas |-> TRUE]
    /\ epochAlloc = 0
    /\ pstate = [e \in Epochs |-> "idle"]
    /\ elog = [e \in Epochs |-> <<>>]
    /\ commit = [e \in Epochs |-> 0]
    /\ lag = [e \in Epochs |-> 0]
    /\ archived = [e \in Epochs |-> 0]
    /\ upload = [e \in Epochs |-> NoUpload]
    /\ acks = [e \in Epochs |-> [r \in Replicas |-> 0]]
    /\ branchOf = [e \in Epochs |-> 1]
    /\ restoring = [e \in Epochs |-> NoRestore]
    /\ msgs = {}
    /\ puts = {}
    /\ segments = {}
    /\ snapshots = {Genesis}
    /\ now = 0
    /\ nextWrite = 1
    /\ diskLost = 0
    /\ fork = [br \in Branches |-> [parent |-> 0, at |-> 0]]
    /\ committed = [br \in Branches |-> <<>>]
    /\ acked = {}
    /\ lateDurable = {}

-----------------------------------------------------------------------------
(* Failover.                                                                *)

\* Placement starts a primary with a fresh epoch (on a host with some lag).
\* It asks every replica to promise that epoch (PREPARE).
StartPrimary ==
    /\ epochAlloc < MaxEpoch
    /\ LET e == epochAlloc + 1 IN
       /\ epochAlloc' = e
       /\ pstate' = [pstate EXCEPT ![e] = "recovering"]
       /\ \E k \in Lags : lag' = [lag EXCEPT ![e] = k]
       /\ msgs' = msgs \cup {[type |-> "prepare", epoch |-> e]}
    /\ UNCHANGED <<replicaVars, elog, commit, archived, upload, acks, branchOf, restoring, puts, segments,
                   snapshots, now, nextWrite, diskLost, fork, historyVars>>

\* A replica promises a higher epoch and reports its log (PROMISE), or tells a
\* primary whose epoch is below its promise that it is fenced (REJECT).
ReceivePrepare(r, m) ==
    /\ m.type = "prepare"
    /\ m.epoch /= promised[r]
    /\ IF m.epoch > promised[r]
       THEN /\ promised' = [promised EXCEPT ![r] = m.epoch]
            /\ msgs' = msgs \cup {[type |-> "promise", epoch |-> m.epoch, from |-> r, logEpoch |-> logEpoch[r],
                                   logLen |-> logLen[r], truncated |-> truncated[r], voter |-> voter[r],
                                   log |-> rlog[r]]}
       ELSE /\ msgs' = msgs \cup {[type |-> "reject", epoch |-> m.epoch, issued |-> promised[r] <= epochAlloc]}
            /\ UNCHANGED promised
    /\ UNCHANGED <<logEpoch, logLen, truncated, rlog, voter, primaryVars, puts, segments, snapshots,
                   now, nextWrite, diskLost, fork, historyVars>>

\* With FenceQuorum promises from voters (or from all replicas), take the most recent log, rebuilt
\* from the archive where the replica already truncated it, and from the entries the
\* replica reported (its PROMISE) above that. Then re-replicate
\* it under e (one APPEND of the whole log) and serve once a quorum holds it (AdvanceCommit).
\* The branch follows the log (the implementation reads it from the replayed database).
Recover(e) ==
    /\ pstate[e] = "recovering"
    /\ ~IsRestore(e)
    /\ \E S \in SUBSET Promises(e) :
        \* A fence quorum of voters, or every replica: with all N promises in hand no
        \* holder of a committed entry can be missed, voter or not (this is how an
        \* object whose first primary admitted too few voters before it died recovers).
        /\ PromiseQuorum(S)
        /\ \E best \in S :
            /\ Best(S, best)
            /\ LET br == BranchOfLog(best.logEpoch)
                   ks == {k \in best.truncated..best.logLen : ArchiveHolds(br, k)}
                   base == IF ks = {} THEN 0 ELSE MaxOf(ks)
                   log == [i \in 1..best.logLen |->
                              IF i <= base THEN ArchivedEntry(br, i) ELSE best.log[i]]
               IN /\ best.truncated = 0 \/ ks /= {}   \* else: archive gap, recovery stops
                  /\ elog' = [elog EXCEPT ![e] = log]
                  /\ pstate' = [pstate EXCEPT ![e] = IF log = <<>> THEN "serving" ELSE "syncing"]
                  /\ archived' = [archived EXCEPT ![e] = Min(ArchiveEnd(br), Len(log))]
                  /\ branchOf' = [branchOf EXCEPT ![e] = br]
                  /\ msgs' = IF log = <<>> THEN msgs ELSE msgs \cup {Append_(e, log)}
    /\ UNCHANGED <<replicaVars, epochAlloc, commit, lag, upload, acks, restoring,
                   puts, segments, snapshots, now, nextWrite, diskLost, fork, historyVars>>

\* A primary crashes: its volatile state is gone; it takes no further step.
CrashPrimary(e) ==
    /\ pstate[e] \in {"recovering", "syncing", "serving"}
    /\ pstate' = [pstate EXCEPT ![e] = "crashed"]
    /\ UNCHANGED <<replicaVars, epochAlloc, elog, commit, lag, archived, upload, acks, branchOf, restoring,
                   envVars, historyVars>>

\* A replica's disk is gone for good; it rejoins empty, as a non-voter, and
\* promises the highest epoch issued (it cannot remember its old promise).
LoseDisk(r) ==
    /\ diskLost < MaxDiskLoss
    /\ promised' = [promised EXCEPT ![r] = RejoinPromise]
    /\ logEpoch' = [logEpoch EXCEPT ![r] = 0]
    /\ logLen' = [logLen EXCEPT ![r] = 0]
    /\ truncated' = [truncated EXCEPT ![r] = 0]
    /\ rlog' = [rlog EXCEPT ![r] = <<>>]
    /\ voter' = [voter EXCEPT ![r] = WipedVoter]
    /\ diskLost' = diskLost + 1
    \* ACKs and ADMITs travel on the replica's connection, which dies with it:
    \* the lost disk's ACKs stop counting (replies already released stay) and
    \* an ADMIT meant for the old disk never reaches the new one.
    /\ acks' = AcksAfterLoss(r)
    /\ msgs' = MsgsAfterLoss(r)
    /\ UNCHANGED <<epochAlloc, pstate, elog, commit, lag, archived, upload, branchOf, restoring,
                   puts, segments, snapshots, now, nextWrite, fork, historyVars>>

\* A serving primary re-admits a rejoined replica as a voter once it holds the
\* log through the commit point (which counted no ACK from its lost disk).
Admit(e, r) ==
    /\ pstate[e] = "serving"
    /\ ~voter[r] /\ acks[e][r] >= commit[e]
    /\ msgs' = msgs \cup {[type |-> "admit", epoch |-> e, dest |-> r, upto |-> commit[e]]}
    /\ UNCHANGED <<replicaVars, primaryVars, puts, segments, snapshots, now, nextWrite, diskLost, fork, historyVars>>

ReceiveAdmit(r, m) ==
    /\ m.type = "admit" /\ m.dest = r
    /\ ~voter[r]
    \* not a stale ADMIT from before another loss; an empty log is a prefix of any
    \* log (how the first primary admits its fresh replicas: docs/failover.md)
    /\ logEpoch[r] = m.epoch \/ logLen[r] = 0
    /\ logLen[r] >= m.upto
    /\ voter' = [voter EXCEPT ![r] = TRUE]
    /\ UNCHANGED <<promised, logEpoch, logLen, truncated, rlog, primaryVars, envVars, historyVars>>

-----------------------------------------------------------------------------
(* Restore to a bookmark (b, k): a new branch, numbered by a new epoch.     *)

\* A quiesced serving primary e begins a restore: it takes a new epoch f from
\* placement and steps down (the same process continues as f; e never acks
\* again). The undo point is (e's branch, e's log end). t: the time asked for
\* (-1: a bookmark was asked for).
BeginRestoreAt(e, b, k, t) ==
    /\ Cardinality(Restores) < MaxRestores
    /\ epochAlloc < MaxEpoch
    /\ pstate[e] = "serving"
    /\ MayRestore(e, b, k)
    /\ RestoreArchived(e)
    /\ LET f == epochAlloc + 1 IN
       /\ epochAlloc' = f
       /\ pstate' = [pstate EXCEPT ![e] = "fenced", ![f] = "recovering"]
       /\ lag' = [lag EXCEPT ![f] = lag[e]]
       /\ restoring' = [restoring EXCEPT ![f] = [from |-> e, branch |-> b, k |-> k, t |-> t, undoBranch |-> branchOf[e],
                                                 undoEnd |-> Len(elog[e]), newBranch |-> NewBranch(e, b, f)]]
       /\ msgs' = msgs \cup {[type |-> "prepare", epoch |-> f]}
    /\ UNCHANGED <<replicaVars, elog, commit, archived, upload, acks, branchOf, puts, segments, snapshots,
                   now, nextWrite, diskLost, fork, historyVars>>

BeginRestore(e, b, k) == BeginRestoreAt(e, b, k, -1)
\* To a time that has passed: the point for it, then as above. (With MaxTime = 0 every
\* timestamp is 0, so the point for time 0 is the log's end, which BeginRestore already
\* restores to: the action is left out there, to keep such models' state spaces as they were.)
BeginRestoreToTime(e, b, t) == MaxTime > 0 /\ t <= now /\ BeginRestoreAt(e, b, PointForTime(e, b, t), t)

\* f installs the new branch once RestoreFenced: its log is branch b's committed
\* log through k (from e's own database, or rebuilt from b's archive) plus ONE
\* marker entry (a real transaction recording the branch). The fork snapshot
\* is written and confirmed BEFORE f serves; then re-replicate as in Recover.
RecoverRestore(f) ==
    LET rec == restoring[f]
        nb == rec.newBranch
        base == IF rec.branch = rec.undoBranch THEN SubSeq(elog[rec.from], 1, rec.k)
                ELSE [i \in 1..rec.k |-> ArchivedEntry(rec.branch, i)]
        db == IF rec.branch = rec.undoBranch THEN DbOf(elog[rec.from], rec.k) ELSE ArchiveDb(rec.branch, rec.k)
        log == Append(base, [w |-> nextWrite, ts |-> TsAfter(f, base)])
    IN
    /\ pstate[f] = "recovering"
    /\ IsRestore(f)
    /\ nextWrite <= MaxWrites
    /\ rec.branch = rec.undoBranch \/ ArchiveHolds(rec.branch, rec.k)   \* else: retention won the race
    /\ RestoreFenced(f)
    /\ elog' = [elog EXCEPT ![f] = log]
    /\ nextWrite' = nextWrite + 1
    /\ snapshots' = snapshots \cup {ForkSnapshot(nb, rec.k, db)}
    /\ fork' = [fork EXCEPT ![nb] = [parent |-> rec.branch, at |-> rec.k]]
    /\ archived' = [archived EXCEPT ![f] = rec.k]
    /\ branchOf' = [branchOf EXCEPT ![f] = nb]
    /\ pstate' = [pstate EXCEPT ![f] = "syncing"]
    /\ msgs' = msgs \cup {Append_(f, log)}
    \* history: the new branch starts as the state f installed at k
    /\ committed' = [committed EXCEPT ![nb] = base]
    /\ UNCHANGED <<replicaVars, epochAlloc, commit, lag, upload, acks, restoring,
                   puts, segments, now, diskLost, acked, lateDurable>>

\* The most recent log of a promise quorum is not e's whole log: the object
\* changed while restoring; f gives up (its process exits). "gaveup", not
\* "crashed": liveness tells a refused restore from a lost process.
GiveUpRestore(f) ==
    /\ pstate[f] = "recovering"
    /\ IsRestore(f)
    /\ \E S \in SUBSET Promises(f) :
        /\ PromiseQuorum(S)
        /\ \E best \in S : /\ Best(S, best)
                           /\ ~IsRestoredLog(f, best)
    /\ pstate' = [pstate EXCEPT ![f] = "gaveup"]
    /\ UNCHANGED <<replicaVars, epochAlloc, elog, commit, lag, archived, upload, acks, branchOf, restoring,
                   envVars, historyVars>>

-----------------------------------------------------------------------------
(* Write path.                                                              *)

\* A client write runs as one transaction: one new entry in the log.
ClientWrite(e) ==
    /\ pstate[e] = "serving"
    /\ nextWrite <= MaxWrites
    /\ LET log == Append(elog[e], [w |-> nextWrite, ts |-> NextTs(e)]) IN
       /\ elog' = [elog EXCEPT ![e] = log]
       /\ msgs' = msgs \cup {Append_(e, log)}
    /\ nextWrite' = nextWrite + 1
    /\ UNCHANGED <<replicaVars, epochAlloc, pstate, commit, lag, archived, upload, acks, branchOf, restoring,
                   puts, segments, snapshots, now, diskLost, fork, historyVars>>

\* A replica stores (fsync) then ACKs, or refuses a fenced epoch (REJECT).
\* The ACK lands in the primary's ACK table at once; a delayed or lost ACK is
\* a primary that runs AdvanceCommit later or never.
\* Adopting another branch's log keeps at most the new branch's fork point
\* truncated (the implementation resets its log to the branch's base: the
\* fork snapshot holds everything up to there).
ReceiveAppend(r, m) ==
    /\ m.type = "append"
    /\ IF MayAccept(r, m.epoch)
       THEN LET adopt == Adopts(r, m)
                len == IF adopt THEN m.to ELSE logLen[r]
                ep == IF adopt THEN m.epoch ELSE logEpoch[r]
                keep == IF BranchOfLog(ep) = BranchOfLog(logEpoch[r]) THEN len
                        ELSE Min(len, fork[BranchOfLog(ep)].at)
                trunc == Min(truncated[r], keep)
                acks2 == IF ep = m.epoch THEN [acks EXCEPT ![m.epoch][r] = Max(@, AckedThrough(r, len, m.epoch))]
                         ELSE acks
            IN /\ promised' = [promised EXCEPT ![r] = Max(@, m.epoch)]
               /\ logEpoch' = [logEpoch EXCEPT ![r] = ep]
               /\ logLen' = [logLen EXCEPT ![r] = len]
               /\ truncated' = [truncated EXCEPT ![r] = trunc]
               /\ rlog' = [rlog EXCEPT ![r] = IF adopt THEN Dropped(AdoptedLog(r, m), trunc) ELSE @]
               /\ acks' = acks2
               /\ lateDurable' = lateDurable \cup
                      {<<m.epoch, s>> : s \in {s \in 1..len : /\ Behind(m.epoch, s)
                                                             /\ ~Durable(m.epoch, s, acks)
                                                             /\ Durable(m.epoch, s, acks2)}}
               /\ UNCHANGED <<voter, msgs>>
       ELSE /\ msgs' = msgs \cup {[type |-> "reject", epoch |-> m.epoch, issued |-> promised[r] <= epochAlloc]}
            /\ UNCHANGED <<replicaVars, acks, lateDurable>>
    /\ UNCHANGED <<epochAlloc, pstate, elog, commit, lag, archived, upload, branchOf, restoring,
                   puts, segments, snapshots, now, nextWrite, diskLost, fork, committed, acked>>

\* The output gate: advance to the highest entry stored by Quorum replicas and
\* release the held replies. Serve once the recovered log is durable.
AdvanceCommit(e) ==
    /\ Live(e)
    /\ \E c \in commit[e] + 1..Len(elog[e]) :
        LET br == branchOf[e] IN
        /\ Durable(e, c, acks)
        /\ \A d \in c + 1..Len(elog[e]) : ~Durable(e, d, acks)
        /\ commit' = [commit EXCEPT ![e] = c]
        /\ pstate' = IF c = Len(elog[e]) THEN [pstate EXCEPT ![e] = "serving"] ELSE pstate
        /\ acked' = acked \cup {[seq |-> i, entry |-> elog[e][i], epoch |-> e, branch |-> br] : i \in commit[e] + 1..c}
        /\ committed' = IF Len(committed[br]) < c THEN [committed EXCEPT ![br] = SubSeq(elog[e], 1, c)] ELSE committed
    /\ UNCHANGED <<replicaVars, epochAlloc, elog, lag, archived, upload, acks, branchOf, restoring, envVars, lateDurable>>

\* A REJECT tells a stale primary it is fenced: it resets (held replies fail
\* as errors) and never acknowledges again. "fenced" means it had recovered.
\* Only a REJECT naming a promise some primary was issued fences (Believable);
\* any other is ignored: that replica just never ACKs, like one that is down.
ReceiveReject(e) ==
    /\ pstate[e] \in {"recovering", "syncing", "serving"}
    /\ \E m \in msgs : m.type = "reject" /\ m.epoch = e /\ Believable(m)
    \* One that never recovered gives up (its process exits): like a crash.
    /\ pstate' = [pstate EXCEPT ![e] = IF @ = "recovering" THEN "crashed" ELSE "fenced"]
    /\ UNCHANGED <<replicaVars, epochAlloc, elog, commit, lag, archived, upload, acks, branchOf, restoring,
                   envVars, historyVars>>

-----------------------------------------------------------------------------
(* Archive (each primary writes its own branch's objects).                   *)

\* Cut a segment of durable entries at any boundary (16 MB or 10 s) and PUT it.
CutSegment(e) ==
    /\ pstate[e] = "serving"
    /\ upload[e].kind = "none"
    /\ Cardinality(puts) < MaxPuts
    /\ \E k \in archived[e] + 1..ArchivableEnd(e) :
        LET g == Segment(e, archived[e] + 1, k) IN
        /\ upload' = [upload EXCEPT ![e] = g]
        /\ puts' = puts \cup {g}
        /\ msgs' = IF EagerTruncate THEN msgs \cup {[type |-> "truncate", branch |-> branchOf[e], upto |-> k]}
                   ELSE msgs
    /\ UNCHANGED <<replicaVars, epochAlloc, pstate, elog, commit, lag, archived, acks, branchOf, restoring,
                   segments, snapshots, now, nextWrite, diskLost, fork, historyVars>>

\* Object storage applies a PUT (maybe late, maybe again: same key, same bytes).
S3Apply(o) ==
    /\ o \in puts
    /\ IF o.kind = "seg"
       THEN o \notin segments /\ segments' = segments \cup {o} /\ UNCHANGED snapshots
       ELSE o \notin snapshots /\ snapshots' = snapshots \cup {o} /\ UNCHANGED segments
    /\ UNCHANGED <<replicaVars, primaryVars, msgs, puts, now, nextWrite, diskLost, fork, historyVars>>

\* The PUT is confirmed (the object is there): only now may replicas truncate.
ConfirmUpload(e) ==
    /\ pstate[e] = "serving"
    /\ upload[e].kind = "seg"
    /\ upload[e] \in segments
    /\ archived' = [archived EXCEPT ![e] = upload[e].last]
    /\ upload' = [upload EXCEPT ![e] = NoUpload]
    /\ msgs' = msgs \cup {[type |-> "truncate", branch |-> branchOf[e], upto |-> upload[e].last]}
    /\ UNCHANGED <<replicaVars, epochAlloc, pstate, elog, commit, lag, acks, branchOf, restoring,
                   puts, segments, snapshots, now, nextWrite, diskLost, fork, historyVars>>

\* A replica truncates only a log of the TRUNCATE's branch (the implementation
\* checks the chain at the archived seq).
ReceiveTruncate(r, m) ==
    /\ m.type = "truncate"
    /\ m.branch = BranchOfLog(logEpoch[r])
    /\ Min(m.upto, logLen[r]) > truncated[r]
    /\ truncated' = [truncated EXCEPT ![r] = Min(m.upto, logLen[r])]
    /\ rlog' = [rlog EXCEPT ![r] = Dropped(@, Min(m.upto, logLen[r]))]
    /\ UNCHANGED <<promised, logEpoch, logLen, voter, primaryVars, envVars, historyVars>>

\* A snapshot of the database at the confirmed archive boundary.
TakeSnapshot(e) ==
    /\ pstate[e] = "serving"
    /\ archived[e] > 0
    /\ Cardinality(puts) < MaxPuts
    /\ \A o \in puts \cup snapshots : (o.kind = "snap" /\ o.branch = branchOf[e]) => o.last /= archived[e]
    /\ puts' = puts \cup {Snapshot(e, archived[e])}
    /\ UNCHANGED <<replicaVars, primaryVars, msgs, segments, snapshots, now, nextWrite, diskLost, fork, historyVars>>

\* Retention of the primary's own branch: keep the newest snapshot at or before
\* the state at the window's start, and everything after it; delete what is older.
Retain(e) ==
    /\ pstate[e] = "serving"
    /\ LET br == branchOf[e]
           bw == BookmarkForTime(elog[e], archived[e], now - Window)
           keep == BestSnap(br, bw)
           dsegs == {g \in segments : g.branch = br /\ RetainDeletes(g, keep)}
           dsnaps == {s \in snapshots : s.branch = br /\ s.last < keep.last}
       IN /\ \E s \in snapshots : s.branch = br /\ s.last <= bw
          /\ dsegs \cup dsnaps /= {}
          /\ segments' = segments \ dsegs
          /\ snapshots' = snapshots \ dsnaps
    /\ UNCHANGED <<replicaVars, primaryVars, msgs, puts, now, nextWrite, diskLost, fork, historyVars>>

\* A replica's promise becomes one no allocator issued: a bit flip its state
\* file's checksum missed, or a forged PREPARE (both refused by the
\* implementation: checksummed state, mutual TLS; this models what gets past
\* them). The replica then refuses every primary. A lost disk repairs it.
CorruptPromise(r) ==
    /\ Cardinality({q \in Replicas : promised[q] > MaxEpoch}) < MaxCorruptPromises
    /\ promised[r] <= MaxEpoch
    /\ promised' = [promised EXCEPT ![r] = MaxEpoch + 1]
    /\ UNCHANGED <<logEpoch, logLen, truncated, rlog, voter, primaryVars, envVars, historyVars>>

Tick ==
    /\ now < MaxTime
    /\ now' = now + 1
    /\ UNCHANGED <<replicaVars, primaryVars, msgs, puts, segments, snapshots, nextWrite, diskLost, fork, historyVars>>

-----------------------------------------------------------------------------
Next ==
    \/ StartPrimary
    \/ Tick
    \/ \E e \in Epochs : \/ Recover(e) \/ CrashPrimary(e) \/ ClientWrite(e)
                         \/ AdvanceCommit(e) \/ ReceiveReject(e) \/ \E r \in Replicas : Admit(e, r)
                         \/ CutSegment(e) \/ ConfirmUpload(e) \/ TakeSnapshot(e) \/ Retain(e)
                         \/ RecoverRestore(e) \/ GiveUpRestore(e)
                         \/ \E b \in Branches, k \in 0..MaxWrites : BeginRestore(e, b, k)
                         \/ \E b \in Branches, t \in 0..MaxTime : BeginRestoreToTime(e, b, t)
    \/ \E r \in Replicas : \/ LoseDisk(r) \/ CorruptPromise(r)
                           \/ \E m \in msgs : \/ ReceivePrepare(r, m) \/ ReceiveAppend(r, m)
                                             \/ ReceiveTruncate(r, m) \/ ReceiveAdmit(r, m)
    \/ \E o \in puts : S3Apply(o)

Spec == Init /\ [][Next]_vars

=============================================================================
