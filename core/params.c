#include "core/params.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "core/hostmem.h"
#include "kernels/backend.h"

mf_status mf_params_add(mf_params *ps, const char *name, int ndim, const int64_t *shape,
                        int64_t ckpt_rows, mf_init init, float std, int decay, mf_split split) {
  if (ps->data) return MF_ERR(MF_ERR_INTERNAL, "param %s registered after allocation", name);
  if (strlen(name) >= MF_PARAM_NAME) return MF_ERR(MF_ERR_INTERNAL, "param name too long: %s", name);
  if (mf_params_find(ps, name)) return MF_ERR(MF_ERR_INTERNAL, "param %s registered twice", name);
  if (ps->n == ps->cap) {
    int cap = ps->cap ? 2 * ps->cap : 64;
    mf_param *np = realloc(ps->p, (size_t)cap * sizeof *np);
    if (!np) return MF_ERR(MF_ERR_NOMEM, "out of memory registering params");
    ps->p = np;
    ps->cap = cap;
  }
  mf_param *p = &ps->p[ps->n++];
  memset(p, 0, sizeof *p);
  strcpy(p->name, name);
  p->t = mf_view(NULL, MF_F32, ndim, shape);
  p->t.is_param = 1;
  p->t.requires_grad = 1;
  p->ckpt_rows = ckpt_rows ? ckpt_rows : shape[0];
  p->init = init;
  p->init_std = std;
  p->decay = decay;
  p->split = split;
  /* 16-float alignment keeps every view on a 64-byte boundary for vector loads */
  p->offset = ps->numel;
  ps->numel += ((size_t)mf_numel(&p->t) + 15) & ~(size_t)15;
  return MF_OK;
}

mf_status mf_params_alloc(mf_params *ps) {
  size_t bytes = ps->numel * sizeof(float);
  ps->data = mf_host_alloc(bytes);
  ps->grad = mf_host_alloc(bytes);
  if (!ps->data || !ps->grad)
    return MF_ERR(MF_ERR_NOMEM, "out of memory allocating %zu parameters", ps->numel);
  memset(ps->data, 0, bytes);
  memset(ps->grad, 0, bytes);
  for (int i = 0; i < ps->n; i++) {
    ps->p[i].t.data = ps->data + ps->p[i].offset;
    ps->p[i].t.grad = ps->grad + ps->p[i].offset;
  }
  return MF_OK;
}

void mf_params_init(mf_params *ps, uint64_t seed) {
  for (int i = 0; i < ps->n; i++) {
    mf_param *p = &ps->p[i];
    float *d = p->t.data;
    int64_t cols = mf_numel(&p->t) / p->t.shape[0];
    int64_t n = p->ckpt_rows * cols, total = mf_numel(&p->t);
    /* one stream per parameter: adding a parameter does not reshuffle the others */
    mf_rng r;
    mf_rng_seed(&r, seed, 1000 + (uint64_t)i);
    for (int64_t j = 0; j < n; j++)
      d[j] = p->init == MF_INIT_NORMAL ? p->init_std * mf_rng_normal(&r)
             : p->init == MF_INIT_ONES ? 1.0f : 0.0f;
    for (int64_t j = n; j < total; j++) d[j] = 0.0f;
  }
}

mf_param *mf_params_find(const mf_params *ps, const char *name) {
  for (int i = 0; i < ps->n; i++)
    if (strcmp(ps->p[i].name, name) == 0) return &ps->p[i];
  return NULL;
}

static size_t act_size(const mf_params *ps) { return ps->be ? mf_dtype_size(ps->be->act) : sizeof(float); }

void mf_params_zero_grad(mf_params *ps) {
  if (ps->dev_grad) ps->be->memset0(ps->dev_grad, ps->numel * act_size(ps));
  else memset(ps->grad, 0, ps->numel * sizeof(float));
}

float *mf_params_compute_data(const mf_params *ps) { return ps->dev_data ? ps->dev_data : ps->data; }
float *mf_params_compute_grad(const mf_params *ps, size_t i) {
  if (!ps->dev_grad) return ps->grad + i;
  return (float *)((char *)ps->dev_grad + i * act_size(ps)); /* typed float *, stores act */
}

mf_status mf_params_place(mf_params *ps, const mf_backend *be) {
  if (be->device == MF_CPU || ps->dev_data) return MF_OK;
  ps->be = be;
  size_t es = act_size(ps), n = ps->numel;
  ps->dev_data = be->alloc(n * sizeof(float));
  ps->dev_grad = be->alloc(n * es);
  ps->dev_copy = be->act != MF_F32 ? be->alloc(n * es) : NULL;
  if (!ps->dev_data || !ps->dev_grad || (be->act != MF_F32 && !ps->dev_copy))
    return MF_ERR(MF_ERR_NOMEM, "out of %s memory for %zu parameters and their gradients (%.1f MiB)", be->name, n,
                  (double)n * (sizeof(float) + 2 * es) / (1 << 20));
  be->memset0(ps->dev_grad, n * es);
  char *w = be->act != MF_F32 ? ps->dev_copy : (char *)ps->dev_data, *g = ps->dev_grad;
  for (int i = 0; i < ps->n; i++) {
    mf_tensor *t = &ps->p[i].t;
    t->data = w + ps->p[i].offset * es;
    t->grad = g + ps->p[i].offset * es;
    t->device = be->device;
    t->dtype = be->act;
  }
  mf_params_push(ps);
  return MF_OK;
}

void mf_params_push(mf_params *ps) {
  if (!ps->dev_data) return;
  ps->be->to_device(ps->dev_data, ps->data, ps->numel * sizeof(float));
  mf_params_refresh_copy(ps);
}

void mf_params_refresh_copy(mf_params *ps) {
  if (ps->dev_copy) ps->be->cast_copy(ps->dev_copy, ps->dev_data, ps->numel);
}

void mf_params_refresh_copy_range(mf_params *ps, size_t lo, size_t hi) {
  if (!ps->dev_copy) return;
  lo &= ~(size_t)7; /* 8 elements: 16 bytes of bf16, 32 of fp32 (the cast's vector width) */
  hi = (hi + 7) & ~(size_t)7;
  if (hi > ps->numel) hi = ps->numel;
  if (lo < hi) ps->be->cast_copy(mf_params_copy_at(ps, lo), ps->dev_data + lo, hi - lo);
}

float *mf_params_copy_at(const mf_params *ps, size_t i) {
  return ps->dev_copy ? (float *)((char *)ps->dev_copy + i * act_size(ps)) : NULL; /* stores act */
}

void mf_params_pull(mf_params *ps) {
  if (ps->dev_data) ps->be->to_host(ps->data, ps->dev_data, ps->numel * sizeof(float));
}

mf_status mf_params_freeze(mf_params *ps, char (*patterns)[MF_PARAM_NAME], int n, int *count) {
  int total = 0;
  for (int k = 0; k < n; k++) {
    int hits = 0;
    for (int i = 0; i < ps->n; i++) {
      if (fnmatch(patterns[k], ps->p[i].name, 0) == 0) {
        ps->p[i].frozen = 1;
        ps->p[i].t.requires_grad = 0;
        hits++;
      }
    }
    if (!hits)
      return MF_ERR(MF_ERR_CONFIG, "freeze: pattern '%s' matches no parameter (names look like "
                                   "'wte.weight', 'h.0.attn.c_attn.weight', 'h.*.mlp.*')", patterns[k]);
    total += hits;
  }
  if (count) *count = total;
  return MF_OK;
}

size_t mf_params_count_trainable(const mf_params *ps) {
  size_t n = 0;
  for (int i = 0; i < ps->n; i++)
    if (!ps->p[i].frozen) n += (size_t)(ps->p[i].ckpt_rows * (mf_numel(&ps->p[i].t) / ps->p[i].t.shape[0]));
  return n;
}

void mf_params_free(mf_params *ps) {
  if (ps->be) {
    ps->be->free(ps->dev_data);
    ps->be->free(ps->dev_grad);
    ps->be->free(ps->dev_copy);
  }
  free(ps->p);
  mf_host_free(ps->data);
  mf_host_free(ps->grad);
  memset(ps, 0, sizeof *ps);
}
