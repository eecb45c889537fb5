#include "core/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/hostmem.h"
#include "kernels/backend.h"

static mf_status alloc_state(mf_adamw *o, size_t n) {
  o->n = n;
  o->m = mf_host_alloc(n * sizeof(float) + 64);
  o->v = mf_host_alloc(n * sizeof(float) + 64);
  if (!o->m || !o->v)
    return MF_ERR(MF_ERR_NOMEM, "out of memory for optimizer state (%zu parameters)", n);
  memset(o->m, 0, n * sizeof(float));
  memset(o->v, 0, n * sizeof(float));
  return MF_OK;
}

mf_status mf_adamw_init(mf_adamw *o, size_t n) {
  mf_adamw_range whole = {0, n, 0};
  return mf_adamw_init_ranges(o, &whole, 1);
}

mf_status mf_adamw_init_ranges(mf_adamw *o, const mf_adamw_range *r, int nr) {
  memset(o, 0, sizeof *o);
  size_t n = 0;
  o->r = malloc((size_t)(nr > 0 ? nr : 1) * sizeof *o->r);
  if (!o->r) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  for (int i = 0; i < nr; i++) {
    o->r[i] = r[i];
    n = r[i].state + (r[i].hi - r[i].lo) > n ? r[i].state + (r[i].hi - r[i].lo) : n;
  }
  o->nr = nr;
  return alloc_state(o, n);
}

mf_status mf_adamw_place(mf_adamw *o, const mf_backend *be) {
  if (be->device == MF_CPU || o->dm) return MF_OK;
  size_t bytes = o->n * sizeof(float);
  o->be = be;
  o->dm = be->alloc(bytes);
  o->dv = be->alloc(bytes);
  if (!o->dm || !o->dv)
    return MF_ERR(MF_ERR_NOMEM, "out of %s memory for the optimizer state (%.1f MiB)", be->name,
                  2.0 * (double)bytes / (1 << 20));
  mf_adamw_push(o);
  return MF_OK;
}

void mf_adamw_push(mf_adamw *o) {
  if (!o->dm) return;
  o->be->to_device(o->dm, o->m, o->n * sizeof(float));
  o->be->to_device(o->dv, o->v, o->n * sizeof(float));
}

void mf_adamw_pull(mf_adamw *o) {
  if (!o->dm) return;
  o->be->to_host(o->m, o->dm, o->n * sizeof(float));
  o->be->to_host(o->v, o->dv, o->n * sizeof(float));
}

void mf_adamw_free(mf_adamw *o) {
  if (o->be) {
    o->be->free(o->dm);
    o->be->free(o->dv);
    o->dm = o->dv = NULL;
    o->be = NULL;
  }
  mf_host_free(o->m);
  mf_host_free(o->v);
  free(o->r);
  o->m = o->v = NULL;
  o->r = NULL;
  o->nr = 0;
}

size_t mf_adamw_bytes(const mf_adamw *o) { return 2 * o->n * sizeof(float); }

void mf_adamw_step(mf_adamw *o, mf_params *ps, const mf_backend *be, const mf_train_cfg *tc,
                   float lr, float grad_scale, int t) {
  /* runs of neighbouring parameters with the same decay flag go in one call, cut to the
   * ranges this rank updates */
  for (int k = 0; k < o->nr; k++) {
    const mf_adamw_range *R = &o->r[k];
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
      if (start < R->lo) start = R->lo;
      if (end > R->hi) end = R->hi;
      if (start < end) {
        size_t so = R->state + (start - R->lo);
        /* o->grads (data parallelism's reduced gradients) holds be->act, as the grads buffer */
        const float *g = o->grads ? (const float *)((const char *)o->grads + so * mf_dtype_size(be->act))
                                  : mf_params_compute_grad(ps, start);
        float *m = o->dm ? o->dm : o->m, *v = o->dv ? o->dv : o->v;
        /* bf16: the weights the next forward reads, written in the same pass */
        be->adamw_update(mf_params_compute_data(ps) + start, m + so, v + so, mf_params_copy_at(ps, start), g,
                         end - start, lr, tc->beta1, tc->beta2, tc->eps, p->decay ? tc->weight_decay : 0.0f,
                         grad_scale, t);
      }
      i = j;
    }
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
  return sqrt(be->sumsq(mf_params_compute_grad(ps, 0), ps->numel));
}
