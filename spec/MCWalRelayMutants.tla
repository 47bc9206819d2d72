--------------------------- MODULE MCWalRelayMutants ---------------------------
(***************************************************************************)
(* Planted bugs. Each config in mutants/ replaces one decision point of    *)
(* WalRelay with one of these (TLC's `Op <- MutOp` override) or picks bad  *)
(* constants, and expects TLC to refute it with a NAMED invariant. If a    *)
(* mutant ever passes, the spec or its invariants have gone blind.         *)
(***************************************************************************)
EXTENDS MCWalRelay

\* No fencing: a replica takes APPENDs from any epoch.
MutMayAcceptAnyEpoch(r, e) == TRUE

\* Failover picks the longest log and ignores the epoch it was accepted in.
MutBetterLongest(p, q) == p.logLen > q.logLen

\* A replica ACKs one entry more than it stored (the outside replica's planted
\* bug in issue 15's table): without a failover nothing is lost, so only
\* AckConsistency sees it; with one, the gate released a reply one copy short.
MutAckedThroughOneMore(r, len, e) == Min(len + 1, Len(elog[e]))

\* A replica appends an APPEND's entries after its own last entry without checking
\* that the first one chains onto it (issue 15's planted outside-replica bug): a
\* replica that holds a stale epoch's divergent entries keeps them and names the
\* result as the sender's log. Inexpressible before replicas held explicit logs.
MutAdoptedLogNoChainCheck(r, m) ==
    IF m.to > Len(rlog[r]) THEN rlog[r] \o SubSeq(m.ents, Len(rlog[r]) + 1, m.to)
    ELSE SubSeq(rlog[r], 1, m.to)

\* Retention also deletes the branch's newest segment: the archive shrinks below
\* what was confirmed. RetentionKeepsWindow measured against the archive as it is
\* now (before issue 14) could not see it: the end it checked shrank with it.
MutRetainDeletesTail(g, keep) == g.last <= keep.last \/ g.last = ArchiveEnd(g.branch)

\* A replica takes APPENDs only from ABOVE its promise: a primary is fenced by
\* the very replicas that promised it, and never acknowledges a write. Every
\* invariant holds, and WriteEventuallyAcked too (the writer is gone).
MutMayAcceptAbovePromise(r, e) == e > promised[r]

\* A primary believes every REJECT, even one naming a promise no allocator issued:
\* one replica with a corrupt promise (or one forged PREPARE) stops every primary.
\* Issue 17 measured it on the implementation (epoch 2^64 - 1).
MutBelievableAny(m) == TRUE

\* Every restore gives up, as if the object had always changed meanwhile.
MutIsRestoredLogNever(f, best) == FALSE

\* The archiver ships entries before they are durable.
MutArchivableEndUndurable(e) == Len(elog[e])

\* The archiver never cuts past what it already confirmed (liveness bug).
MutArchivableEndStalled(e) == archived[e]

\* Replicas are told to truncate when the segment is cut, not when the PUT
\* is confirmed.
MutEagerTruncate == TRUE

\* PITR offers the primary's whole log, uncommitted tail included.
MutRestorableEndUncommitted(e) == Len(elog[e])

\* The lag applied the wrong way round (a sign error in the skew correction): a
\* write is stamped after the moment it becomes durable. Timestamps still never
\* decrease, so every invariant of WalRelay holds; DurableLog's "no entry from the
\* future" does not (a restore to a time just after the reply would miss the write).
MutClockAheadByLag(e) == now + lag[e]

\* Timestamps straight from the host clock, without max(clock, last ts).
MutNextTsClockOnly(e) == Clock(e)

\* A replica that lost its disk votes at once (its empty log counts).
MutWipedVoter == TRUE
MutMayVoteAlways(p) == TRUE

\* Regression of the first counterexample TLC found in this spec: the primary
\* keeps counting the ACKs a replica sent before it lost its disk.
MutAcksAfterLossKept(r) == acks

\* ... and an ADMIT addressed to the lost disk still admits the empty one.
MutMsgsAfterLossKept(r) == msgs

\* A replica that lost its disk forgets its promise (starts at epoch 0).
MutRejoinPromiseZero == 0

\* A restore may begin from a primary with uncommitted entries, and to a point
\* of its own branch beyond the commit point.
MutMayRestoreUncommitted(e, b, k) == \/ b = branchOf[e] /\ k <= Len(elog[e])
                                     \/ b /= branchOf[e] /\ ArchiveHolds(b, k)

\* A restore installs its branch without a promise quorum (nothing fences the
\* primaries older than the restoring one, and nothing checks that the object
\* did not change meanwhile).
MutRestoreFencedAlways(f) == TRUE

\* The new branch is numbered after the branch it restores from (parent + 1)
\* instead of by the new epoch: an undo (a restore to the old branch) reuses
\* the current branch's number. ("Current branch + 1" collides too, but only
\* for two restores from the same branch, which needs an abandoned restore and
\* a failover: 4 epochs, too big for CI.)
MutNewBranchAfterParent(e, b, f) == b + 1

\* The point for a time counts only entries strictly before it: a restore to the
\* very tick of a write leaves that write out (the archive reader's off-by-one).
MutPointForTimeStrict(e, b, t) ==
    LET log == IF b = branchOf[e] THEN elog[e] ELSE ArchivedLog(b)
        n == IF b = branchOf[e] THEN commit[e] ELSE ArchiveEnd(b)
    IN MaxOf({i \in 1..n : log[i].ts < t} \cup {0})

\* A restore may begin before everything committed is archived.
MutRestoreArchivedAlways(e) == TRUE

=============================================================================
