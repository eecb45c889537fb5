/* AdamW over the flat parameter buffer, the warmup + cosine LR schedule and global-norm
 * gradient clipping. The moments m, v cover the ranges of the flat buffer this rank
 * updates: all of it, or (ZeRO-1) this rank's shard, a list of pieces. */
#ifndef MF_OPTIM_H
#define MF_OPTIM_H

#include "core/config.h"
#include "core/params.h"

struct mf_backend;

/* flat parameters [lo, hi) have their m, v (and grads, when mf_adamw.grads is set) at
 * [state, state + hi - lo) */
typedef struct mf_adamw_range {
  size_t lo, hi, state;
} mf_adamw_range;

typedef struct mf_adamw {
  float *m, *v;          /* [n] each, fp32 */
  size_t n;
  mf_adamw_range *r;     /* [nr], by increasing lo */
  int nr;
  const float *grads;    /* NULL: the params' grads buffer; else reduced grads (be->act) at state offsets */
  /* on a device backend (mf_adamw_place) the update reads and writes these; m, v stay
   * the host copies that checkpoints see */
  const struct mf_backend *be;
  float *dm, *dv;        /* [n] each, device memory */
} mf_adamw;

/* State for the whole flat buffer. */
mf_status mf_adamw_init(mf_adamw *o, size_t numel);
/* State for the given pieces only (ZeRO-1); n = the sum of their lengths. */
mf_status mf_adamw_init_ranges(mf_adamw *o, const mf_adamw_range *r, int nr);
void mf_adamw_free(mf_adamw *o);
/* Device copies of m, v on be (no-op for the CPU backend); push/pull as mf_params_push/pull. */
mf_status mf_adamw_place(mf_adamw *o, const struct mf_backend *be);
void mf_adamw_push(mf_adamw *o);
void mf_adamw_pull(mf_adamw *o);
/* Bytes of optimizer state this rank holds (m and v). */
size_t mf_adamw_bytes(const mf_adamw *o);
/* One update of every trainable parameter in the ranges at step t (1-based); weight decay
 * only where the parameter asks for it; grads are multiplied by grad_scale (clipping).
 * bf16 backends: the same pass writes the weight copy of those ranges (ZeRO-1: the other
 * ranks' pieces are cast after the all-gather, mf_dp_gather_params). */
void mf_adamw_step(mf_adamw *o, mf_params *ps, const struct mf_backend *be, const mf_train_cfg *tc,
                   float lr, float grad_scale, int t);
/* Linear warmup to train.lr over warmup_steps, then cosine to train.min_lr at train.steps. */
float mf_lr_at(const mf_train_cfg *tc, int step);
/* L2 norm of all gradients (frozen ones are zero). */
double mf_grad_norm(const mf_params *ps, const struct mf_backend *be);

#endif
