/* The tensor-parallel ops (parallel/tp_ops.h). Parameter gradients accumulate (+=) into
 * the grads buffer; activation gradients are written (=), or added when the activation
 * already has one, as kernels/ops.c does. Every reduction here runs in a fixed order, so
 * each rank gets bitwise the same replicated values and gradients. */
#include "parallel/tp_ops.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/backend.h"
#include "parallel/comm.h"

#define PAR_MIN (1 << 15)
#define SLICE 16

static int64_t rows_of(const mf_tensor *t) { return mf_numel(t) / t->shape[t->ndim - 1]; }

static int on_host(mf_ctx *c, const mf_tensor *t, const char *op) {
  if (t->device == MF_CPU) return 1;
  mf_ctx_fail(c, MF_ERR(MF_ERR_CONFIG, "%s: tensor parallelism runs on the CPU backend only in this "
                        "version (set parallel.tp: 1 on %s)", op, mf_ctx_backend(c)->name));
  return 0;
}

static int comm_ok(mf_ctx *c, mf_status st) {
  if (st == MF_OK) return 1;
  mf_ctx_fail(c, st);
  return 0;
}

static mf_node *record(mf_ctx *c, mf_op_id op, mf_tensor *out, mf_tensor *a, mf_tensor *b, mf_tensor *d) {
  out->requires_grad = (a && a->requires_grad) || (b && b->requires_grad) || (d && d->requires_grad);
  if (!out->requires_grad) return NULL;
  mf_node *nd = mf_ctx_record(c, op);
  if (!nd) return NULL;
  nd->out = out;
  nd->in[0] = a;
  nd->in[1] = b;
  nd->in[2] = d;
  return nd;
}

/* an activation's gradient: written into a fresh buffer, or into scratch and added */
static float *grad_begin(mf_ctx *c, mf_tensor *t) {
  if (!t || !t->requires_grad) return NULL;
  size_t bytes = (size_t)mf_numel(t) * sizeof(float);
  if (!t->grad) return t->grad = mf_ctx_grad_alloc(c, bytes);
  return mf_ctx_grad_alloc(c, bytes);
}

static void grad_end(mf_ctx *c, mf_tensor *t, float *dst) {
  if (dst && dst != t->grad) {
    mf_ctx_backend(c)->accumulate(t->grad, dst, (size_t)mf_numel(t));
    mf_ctx_grad_release(c, dst);
  }
}

/* ---- f: tp_copy ---- */

mf_tensor *mf_tp_copy(mf_ctx *c, mf_tensor *x, struct mf_comm *tp) {
  if (!x || !on_host(c, x, "tp_copy")) return NULL;
  mf_tensor *out = mf_ctx_alloc(c, sizeof *out);
  if (!out) return NULL;
  *out = *x; /* same data: nothing writes it in place */
  out->grad = NULL;
  out->is_param = 0;
  mf_node *nd = record(c, MF_OP_tp_copy, out, x, NULL, NULL);
  if (nd) nd->p.tp_copy = (mf_tp_copy_params){.comm = tp, .N = mf_numel(x)};
  return out;
}

void mf_tp_copy_backward(mf_ctx *c, const mf_node *nd) {
  mf_tensor *x = nd->in[0];
  float *dx = grad_begin(c, x);
  if (!dx) return;
  if (!comm_ok(c, mf_comm_allreduce(nd->p.tp_copy.comm, nd->out->grad, dx, (size_t)nd->p.tp_copy.N, MF_C_F32,
                                    MF_RED_SUM)))
    return;
  grad_end(c, x, dx);
}

/* ---- g: tp_reduce ---- */

mf_tensor *mf_tp_reduce(mf_ctx *c, mf_tensor *x, mf_tensor *bias, struct mf_comm *tp) {
  if (!x || !on_host(c, x, "tp_reduce")) return NULL;
  int C = (int)x->shape[x->ndim - 1], N = (int)rows_of(x);
  mf_tensor *out = mf_ctx_tensor(c, MF_F32, x->ndim, x->shape);
  if (!out) return NULL;
  if (!comm_ok(c, mf_comm_allreduce(tp, x->data, out->data, (size_t)N * C, MF_C_F32, MF_RED_SUM))) return NULL;
  if (bias) {
    float *o = out->data;
    const float *b = bias->data;
#pragma omp parallel for schedule(static) if ((long)N * C > PAR_MIN)
    for (int i = 0; i < N; i++)
#pragma omp simd
      for (int j = 0; j < C; j++) o[(size_t)i * C + j] += b[j];
  }
  mf_node *nd = record(c, MF_OP_tp_reduce, out, x, bias, NULL);
  if (nd) nd->p.tp_reduce = (mf_tp_reduce_params){.comm = tp, .N = N, .C = C};
  return out;
}

void mf_tp_reduce_backward(mf_ctx *c, const mf_node *nd) {
  const mf_tp_reduce_params *p = &nd->p.tp_reduce;
  mf_tensor *x = nd->in[0], *bias = nd->in[1];
  const float *dout = nd->out->grad;
  int shared = 0;
  if (x->requires_grad) {
    if (!x->grad) x->grad = nd->out->grad, shared = 1; /* identity: share the buffer */
    else mf_ctx_backend(c)->accumulate(x->grad, dout, (size_t)p->N * p->C);
  }
  if (bias && bias->requires_grad) {
    /* column sums in double, rows in order: the same on every rank, as matmul's dbias */
    float *db = bias->grad;
    int N = p->N, C = p->C;
#pragma omp parallel for schedule(static) if ((long)N * C > PAR_MIN)
    for (int j = 0; j < C; j++) {
      double acc = 0;
      for (int i = 0; i < N; i++) acc += dout[(size_t)i * C + j];
      db[j] += (float)acc;
    }
  }
  if (shared) nd->out->grad = NULL; /* x's now: mf_backward must not hand it back after this node */
}

/* ---- vocabulary-parallel embedding ---- */

mf_tensor *mf_tp_embed(mf_ctx *c, mf_tensor *idx, mf_tensor *wte, mf_tensor *wpe, int v0, struct mf_comm *tp) {
  if (!idx || !wte || !wpe || !on_host(c, wte, "tp_embed")) return NULL;
  int B = (int)idx->shape[0], T = (int)idx->shape[1], C = (int)wte->shape[1], nv = (int)wte->shape[0];
  mf_tensor *out = mf_ctx_tensor(c, MF_F32, 3, (int64_t[]){B, T, C});
  if (!out) return NULL;
  const int32_t *id = idx->data;
  const float *e = wte->data, *pe = wpe->data;
  float *o = out->data;
  long BT = (long)B * T;
#pragma omp parallel for schedule(static) if (BT * C > PAR_MIN)
  for (long bt = 0; bt < BT; bt++) {
    int l = id[bt] - v0;
    if (l >= 0 && l < nv) memcpy(o + bt * C, e + (size_t)l * C, (size_t)C * sizeof(float));
    else memset(o + bt * C, 0, (size_t)C * sizeof(float));
  }
  /* exactly one rank holds each row: the sum is that row, bit for bit */
  if (!comm_ok(c, mf_comm_allreduce(tp, o, o, (size_t)BT * C, MF_C_F32, MF_RED_SUM))) return NULL;
#pragma omp parallel for schedule(static) if (BT * C > PAR_MIN)
  for (long bt = 0; bt < BT; bt++) {
    const float *p = pe + (size_t)(bt % T) * C;
#pragma omp simd
    for (int j = 0; j < C; j++) o[bt * C + j] += p[j];
  }
  mf_node *nd = record(c, MF_OP_tp_embed, out, idx, wte, wpe);
  if (nd) nd->p.tp_embed = (mf_tp_embed_params){.comm = tp, .B = B, .T = T, .C = C, .v0 = v0, .nv = nv};
  return out;
}

void mf_tp_embed_backward(mf_ctx *c, const mf_node *nd) {
  const mf_tp_embed_params *p = &nd->p.tp_embed;
  mf_tensor *wte = nd->in[1], *wpe = nd->in[2];
  float *dwte = wte->requires_grad ? wte->grad : NULL, *dwpe = wpe->requires_grad ? wpe->grad : NULL;
  if (!dwte && !dwpe) return;
  const float *dout = nd->out->grad;
  const int32_t *id = nd->in[0]->data;
  long BT = (long)p->B * p->T;
  int C = p->C, T = p->T, v0 = p->v0, nv = p->nv, nblk = (C + SLICE - 1) / SLICE;
  /* channel slices per thread, positions in order: deterministic, as encoder_backward */
#pragma omp parallel if (BT * C > PAR_MIN)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int c0 = (int)((long)nblk * tid / nt) * SLICE, c1 = (int)((long)nblk * (tid + 1) / nt) * SLICE;
    if (c1 > C) c1 = C;
    for (long bt = 0; bt < BT && c0 < c1; bt++) {
      const float *d = dout + (size_t)bt * C;
      int l = id[bt] - v0;
      if (dwte && l >= 0 && l < nv) {
        float *g = dwte + (size_t)l * C;
#pragma omp simd
        for (int j = c0; j < c1; j++) g[j] += d[j];
      }
      if (dwpe) {
        float *g = dwpe + (size_t)(bt % T) * C;
#pragma omp simd
        for (int j = c0; j < c1; j++) g[j] += d[j];
      }
    }
  }
}

/* ---- vocabulary-parallel cross-entropy ---- */

mf_tensor *mf_tp_xent(mf_ctx *c, mf_tensor *logits, mf_tensor *targets, int V, int v0, struct mf_comm *tp) {
  if (!logits || !targets || !on_host(c, logits, "tp_xent")) return NULL;
  int Vl = (int)logits->shape[logits->ndim - 1], N = (int)rows_of(logits);
  mf_tensor *losses = mf_ctx_tensor(c, MF_F32, 1, (int64_t[]){N});
  float *M = mf_ctx_alloc(c, (size_t)N * sizeof(float));
  double *S = mf_ctx_alloc(c, (size_t)N * 2 * sizeof(double));
  if (!losses || !M || !S) return NULL;
  float *x = logits->data; /* becomes the probabilities */
  const int32_t *tg = targets->data;
  int nreal = V - v0 < Vl ? V - v0 : Vl; /* real vocabulary columns on this rank */
  if (nreal < 0) nreal = 0;
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    const float *r = x + (size_t)i * Vl;
    float m = -INFINITY;
    for (int j = 0; j < nreal; j++) m = r[j] > m ? r[j] : m;
    M[i] = m;
  }
  if (!comm_ok(c, mf_comm_allreduce(tp, M, M, (size_t)N, MF_C_F32, MF_RED_MAX))) return NULL;
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    float *r = x + (size_t)i * Vl;
    int t = tg[i] - v0;
    S[2 * i + 1] = tg[i] >= 0 && t >= 0 && t < nreal ? (double)r[t] : 0.0; /* before r is overwritten */
    float m = M[i];
    for (int j = 0; j < nreal; j++) r[j] -= m;
    vexpf(r, r, (size_t)nreal);
    double s = 0;
    for (int j = 0; j < nreal; j++) s += r[j];
    S[2 * i] = s;
    if (Vl > nreal) memset(r + nreal, 0, (size_t)(Vl - nreal) * sizeof(float));
  }
  if (!comm_ok(c, mf_comm_allreduce(tp, S, S, (size_t)N * 2, MF_C_F64, MF_RED_SUM))) return NULL;
  float *lv = losses->data;
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    float *r = x + (size_t)i * Vl;
    float inv = (float)(1.0 / S[2 * i]);
    for (int j = 0; j < nreal; j++) r[j] *= inv;
    lv[i] = tg[i] >= 0 ? (float)(log(S[2 * i]) + (double)M[i] - S[2 * i + 1]) : 0.0f;
  }
  mf_node *nd = record(c, MF_OP_tp_xent, losses, logits, targets, NULL);
  if (nd) {
    nd->p.tp_xent = (mf_tp_xent_params){.comm = tp, .N = N, .V = V, .Vl = Vl, .v0 = v0};
    nd->saved[0] = x;
  }
  return losses;
}

void mf_tp_xent_backward(mf_ctx *c, const mf_node *nd) {
  const mf_tp_xent_params *p = &nd->p.tp_xent;
  mf_tensor *logits = nd->in[0];
  if (!logits->requires_grad) return;
  const float *probs = nd->saved[0];
  float *dl;
  if (!logits->grad && !logits->is_param) dl = logits->grad = nd->saved[0]; /* in place */
  else dl = grad_begin(c, logits);
  if (!dl) return;
  const float *dloss = nd->out->grad;
  const int32_t *tg = nd->in[1]->data;
  int N = p->N, Vl = p->Vl;
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    float *d = dl + (size_t)i * Vl;
    const float *pr = probs + (size_t)i * Vl;
    if (tg[i] < 0) {
      memset(d, 0, (size_t)Vl * sizeof(float));
      continue;
    }
    int t = tg[i] - p->v0;
    float g = dloss[i], pt = t >= 0 && t < Vl ? pr[t] : 0.0f;
#pragma omp simd
    for (int j = 0; j < Vl; j++) d[j] = pr[j] * g;
    if (t >= 0 && t < Vl) d[t] = (pt - 1.0f) * g;
  }
  if (dl != logits->grad) grad_end(c, logits, dl);
}
