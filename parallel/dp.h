/* Data parallelism: the gradient sync of one data-parallel group.
 *
 * The flat grads buffer is cut into buckets of parallel.bucket_mb, from its end down
 * (parameters are laid out in registration order and backward finishes them roughly in
 * reverse). mf_dp_arm, called before the backward pass that completes the gradients (the
 * last micro-batch), counts the tape nodes that use each parameter and hooks mf_backward:
 * after each node it marks parameters whose gradient is final, launches the next
 * bucket's non-blocking reduction as soon as all of its parameters are final (buckets go
 * in a fixed order, the same on every rank; at most two in flight, so each is reduced
 * while it is in cache), and tests the ones in flight. MPI moves data only inside MPI
 * calls, so a progress thread pokes it every MF_DP_PROGRESS_US (200 us; 0: no thread)
 * while buckets are in flight, during long kernels too (MPI_THREAD_SERIALIZED). Tied
 * weights (wte, used by the LM head and the embedding) would be final only when the
 * embedding's node has run, at the very end, and they are most of a small GPT's gradient:
 * mf_dp_tie_early puts their buckets first and makes the embedding defer its rows, so they
 * are reduced during the rest of backward, and the rows (each rank's B*T x C, all-gathered)
 * are added to the reduced sum (ZeRO-1: to this rank's pieces) afterwards. mf_dp_finish
 * launches what is left and waits.
 *
 * Reductions sum: the loss seed already divides by the global batch, so the sum is the
 * mean gradient over all ranks, the same on every rank.
 *   plain:  all-reduce each bucket into a second buffer (Open MPI's non-blocking in-place
 *           all-reduce runs at half speed here), which AdamW and the norm read in place of
 *           the grads buffer (mf_dp_reduced_grads; no copy back); every rank holds the whole sum.
 *   ZeRO-1: reduce-scatter each bucket; rank r holds piece r of it (mf_dp_reduced_grads),
 *           updates only those parameters with optimizer state for them alone
 *           (mf_dp_ranges), then mf_dp_gather_params all-gathers the updated pieces.
 * bucket_mb <= 0: one bucket, reduced after backward (no overlap; the baseline). */
#ifndef MF_DP_H
#define MF_DP_H

#include "core/optim.h"
#include "core/params.h"
#include "core/tape.h"
#include "parallel/comm.h"

struct mf_backend;
typedef struct mf_dp mf_dp;

mf_status mf_dp_create(mf_dp **out, mf_params *ps, mf_comm *dp, float bucket_mb, int zero,
                       const struct mf_backend *be);
void mf_dp_free(mf_dp *d);
/* Overlapped DP (plain or ZeRO-1) with more than one rank (else a no-op): param, a weight
 * [V, C] the LM head and the embedding share (MF_OP_encoder; with tensor parallelism
 * MF_OP_tp_embed and this rank's V rows of the vocabulary), gets buckets of its own
 * (under ZeRO-1 each rank's piece of it is whole rows), which go first, as soon as the LM
 * head's backward has run; the embedding's contribution is added after the reduction,
 * the same on every rank. Each step whose B*T*ranks is at most V (ZeRO-1: V/2; the
 * all-gathered rows at most half the weight's reduction); other steps keep the plain
 * order. MF_DP_TIE_EARLY=N sets that bound to N rows (0: off, to measure it). Right after
 * mf_dp_create: it sets the buckets (mf_dp_buckets, mf_dp_ranges). */
mf_status mf_dp_tie_early(mf_dp *d, const mf_tensor *param);
/* Steps whose embedding rows were added after the reduction (tests). */
long mf_dp_tied_steps(const mf_dp *d);
/* Before the backward pass that completes the gradients. */
mf_status mf_dp_arm(mf_dp *d, mf_ctx *c);
/* After it (c: the context armed, or NULL). */
mf_status mf_dp_finish(mf_dp *d, mf_ctx *c);

/* Seconds this rank spent in mf_dp_finish (communication backward did not hide) and in
 * the hook (launching and testing), summed over steps, and the number of steps. */
void mf_dp_stats(const mf_dp *d, double *exposed_s, double *hook_s, long *steps);

int mf_dp_zero(const mf_dp *d);
int mf_dp_buckets(const mf_dp *d);
/* The pieces of the flat buffer this rank updates, and their reduced gradients (at the
 * ranges' state offsets; the backend's act dtype). ZeRO-1: this rank's pieces. Plain: one
 * range, the whole buffer. AdamW reads these, not the grads buffer (mf_adamw.grads). */
int mf_dp_ranges(const mf_dp *d, const mf_adamw_range **r);
const float *mf_dp_reduced_grads(const mf_dp *d);
/* ZeRO-1, after the update of this rank's pieces: every rank gets every piece. */
mf_status mf_dp_gather_params(mf_dp *d);
/* Sum of squares of the reduced gradients this rank holds, parameter i weighted by w[i]
 * (w NULL: 1). Plain: the whole sum (the same on every rank). ZeRO-1: this rank's
 * pieces (add them up over the group). */
double mf_dp_grad_sumsq(const mf_dp *d, const double *w);

#endif
