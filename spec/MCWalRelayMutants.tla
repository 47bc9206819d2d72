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

\* The archiver ships entries before they are durable.
MutArchivableEndUndurable(e) == Len(elog[e])

\* The archiver never cuts past what it already confirmed (liveness bug).
MutArchivableEndStalled(e) == archived[e]

\* Replicas are told to truncate when the segment is cut, not when the PUT
\* is confirmed.
MutEagerTruncate == TRUE

\* PITR offers the primary's whole log, uncommitted tail included.
MutRestorableEndUncommitted(e) == Len(elog[e])

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

=============================================================================
