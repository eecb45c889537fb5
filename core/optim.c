#include "core/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"

mf_status mf_adamw_init(mf_adamw *o, size_t n) {
  o->n = n;
  if (posix_memalign((void **)&o->m, 64, n * sizeof(float) + 64) ||
      posix_memalign((void **)&o->v, 64, n * sizeof(float) + 64))
    return MF_ERR(MF_ERR_NOMEM, "out of memory for optimizer state (%zu parameters)", n);
  memset(o->m, 0, n * sizeof(float));
  memset(o->v, 0, n * sizeof(float));
  return MF_OK;
}

void mf_adamw_free(mf_adamw *o) {
  free(o->m);
  free(o->v);
  o->m = o->v = NULL;
}

void mf_adamw_step(mf_adamw *o, mf_params *ps, const mf_backend *be, const mf_train_cfg *tc,
                   float lr, float grad_scale, int t) {
  /* runs of neighbouring parameters with the same decay flag go in one call */
  int i = 0;
  while (i < ps->n) {
    mf_param *p = &ps->p[i];
    if (p->frozen) {
      i++;
      continue;
    }
    int j = i + 1;
    while (j < ps->n && !ps->p[j].frozen && ps->p[j].decay == p->decay) j++;
    size_t start = p->offset;
    size_t end = ps->p[j - 1].offset + (size_t)mf_numel(&ps->p[j - 1].t);
    be->adamw_update(ps->data + start, o->m + start, o->v + start, ps->grad + start, end - start, lr,
                     tc->beta1, tc->beta2, tc->eps, p->decay ? tc->weight_decay : 0.0f, grad_scale, t);
    i = j;
  }
}

float mf_lr_at(const mf_train_cfg *tc, int step) {
  if (tc->warmup_steps > 0 && step <= tc->warmup_steps)
    return tc->lr * (float)step / (float)tc->warmup_steps;
  int span = tc->steps - tc->warmup_steps;
  double p = span > 0 ? (double)(step - tc->warmup_steps) / span : 1.0;
  if (p > 1) p = 1;
  return (float)(tc->min_lr + 0.5 * (tc->lr - tc->min_lr) * (1.0 + cos(M_PI * p)));
}

double mf_grad_norm(const mf_params *ps, const mf_backend *be) {
  return sqrt(be->sumsq(ps->grad, ps->numel));
}
