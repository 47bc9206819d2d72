------------------------------ MODULE MCWalRelay ------------------------------
(***************************************************************************)
(* Model bounds for TLC, plus what TLC needs that is not protocol:         *)
(* symmetry, the fair spec for liveness, and reachability witnesses.       *)
(* The configs in models/ and mutants/ pick the constants.                 *)
(***************************************************************************)
EXTENDS WalRelayProperties, TLC

CONSTANT LiveReplicas  \* the quorum that stays up and connected (liveness only)

ReplicaSymmetry == Permutations(Replicas)

\* Weak fairness for the primaries, the LiveReplicas and object storage;
\* not for clients, the clock, crashes or disk loss (those may stop or never
\* happen). Placement keeps starting primaries while epochs remain.
Fairness ==
    /\ WF_vars(StartPrimary)
    /\ \A e \in Epochs : /\ WF_vars(Recover(e)) /\ WF_vars(AdvanceCommit(e)) /\ WF_vars(RecoverRestore(e))
                         /\ WF_vars(GiveUpRestore(e))
                         /\ WF_vars(ReceiveReject(e)) /\ WF_vars(CutSegment(e)) /\ WF_vars(ConfirmUpload(e))
    /\ \A r \in LiveReplicas : /\ WF_vars(\E m \in msgs : ReceivePrepare(r, m))
                               /\ WF_vars(\E m \in msgs : ReceiveAppend(r, m))
    /\ WF_vars(\E o \in puts : S3Apply(o))

FairSpec == Spec /\ Fairness

\* State constraint for the restore-and-undo models: every primary after the
\* first is a restoring one (no plain failover), which keeps two restores and
\* their writes within a CI budget. Races with failovers: the other configs.
OnlyRestores == \A e \in Epochs : (e > 1 /\ pstate[e] /= "idle") => IsRestore(e)

-----------------------------------------------------------------------------
(* Reachability witnesses: each MUST be violated (models/*witness*.cfg).  *)
(* An invariant that no interesting state ever reaches proves nothing.      *)

\* A new primary serves after an earlier primary's write was acknowledged.
NoFailoverAfterAck == ~\E e \in Epochs : pstate[e] = "serving" /\ \E a \in acked : a.epoch < e

\* A stale primary learned it is fenced (REJECT) and stopped.
NoStalePrimaryFenced == \A e \in Epochs : pstate[e] /= "fenced"

\* A primary keeps serving, and acknowledges a write, with a REJECT from a
\* replica whose promise no allocator issued (CorruptPromise) waiting for it.
NoServingPastCorruptReject ==
    ~\E e \in Epochs : /\ pstate[e] = "serving" /\ \E a \in acked : a.epoch = e
                      /\ \E m \in msgs : m.type = "reject" /\ m.epoch = e /\ ~Believable(m)

\* A replica truncated entries the archive confirmed.
NoTruncationAfterArchival == \A r \in Replicas : truncated[r] = 0

\* A restore offered by a serving primary spans two segments and a snapshot.
NoRestoreAcrossSegments ==
    ~\E e \in Epochs : pstate[e] = "serving" /\
        \E b \in RestorePoints(e) : \E g1, g2 \in segments :
            /\ g1.branch = branchOf[e] /\ g2.branch = branchOf[e]
            /\ g1.last + 1 = g2.first /\ g2.first <= b /\ BestSnap(branchOf[e], b).last < g1.last

\* Retention deleted something and a restore inside the window still works.
NoRetention == Genesis \in snapshots

\* A replica lost its disk, caught up, and was admitted as a voter again.
NoRejoinedVoter == ~\E m \in msgs : m.type = "admit" /\ voter[m.dest]

\* An ambiguous PUT: the segment is stored, but its uploader crashed before
\* it saw the confirmation.
NoAmbiguousPut == ~\E e \in Epochs : pstate[e] = "crashed" /\ upload[e] \in segments

\* An entry acknowledged before a failover is restorable from the archive.
NoArchivedAckAfterFailover ==
    ~\E a \in acked : a.epoch = 1 /\ a.seq <= ArchiveEnd(a.branch) /\ epochAlloc > 1 /\ \E e \in Epochs : pstate[e] = "serving" /\ e > 1

\* A restore, then its undo (a restore to the first one's undo point, from the
\* first one's branch), each followed by an acknowledged client write (after
\* its marker) on its new branch.
NoRestoreThenUndo ==
    ~\E f1, f2 \in Epochs :
        /\ RestoreCompleted(f1) /\ RestoreCompleted(f2)
        /\ restoring[f2].undoBranch = restoring[f1].newBranch
        /\ restoring[f2].branch = restoring[f1].undoBranch /\ restoring[f2].k = restoring[f1].undoEnd
        /\ \E a \in acked : a.branch = restoring[f1].newBranch /\ a.seq > restoring[f1].k + 1
        /\ \E a \in acked : a.branch = restoring[f2].newBranch /\ a.seq > restoring[f2].k + 1

=============================================================================
