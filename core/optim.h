/* AdamW over the flat parameter buffer, the warmup + cosine LR schedule and global-norm
 * gradient clipping. The moments m, v share the params' flat layout. */
#ifndef MF_OPTIM_H
#define MF_OPTIM_H

#include "core/config.h"
#include "core/params.h"

struct mf_backend;

typedef struct mf_adamw {
  float *m, *v; /* [numel] each, fp32 */
  size_t n;
} mf_adamw;

mf_status mf_adamw_init(mf_adamw *o, size_t numel);
void mf_adamw_free(mf_adamw *o);
/* One update of every trainable parameter at step t (1-based); weight decay only where
 * the parameter asks for it; grads are multiplied by grad_scale (clipping) on the fly. */
void mf_adamw_step(mf_adamw *o, mf_params *ps, const struct mf_backend *be, const mf_train_cfg *tc,
                   float lr, float grad_scale, int t);
/* Linear warmup to train.lr over warmup_steps, then cosine to train.min_lr at train.steps. */
float mf_lr_at(const mf_train_cfg *tc, int step);
/* L2 norm of all gradients (frozen ones are zero). */
double mf_grad_norm(const mf_params *ps, const struct mf_backend *be);

#endif
