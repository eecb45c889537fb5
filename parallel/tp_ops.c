/* The tensor-parallel ops (parallel/tp_ops.h). Parameter gradients accumulate (+=) into
 * the grads buffer; activation gradients are written (=), or added when the activation
 * already has one, as kernels/ops.c does. The arithmetic is the backend's (kernels
 * tp_embed_*, bias_*, tp_xent_* of kernels/cpu and kernels/cuda), so they run on the CPU
 * and on a GPU alike; activations travel in the backend's storage type (bf16 or fp32).
 * Every reduction runs in a fixed order, so each rank gets bitwise the same replicated
 * values and gradients. */
#include "parallel/tp_ops.h"

#include <string.h>

#include "kernels/backend.h"
#include "parallel/comm.h"

#define BE(c) mf_ctx_backend(c)

static int64_t rows_of(const mf_tensor *t) { return mf_numel(t) / t->shape[t->ndim - 1]; }

/* activations and their gradients travel in the backend's storage type */
static mf_cdtype act_dt(mf_ctx *c) { return BE(c)->act == MF_BF16 ? MF_C_BF16 : MF_C_F32; }

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
  size_t bytes = mf_nbytes(t); /* gradients have their tensor's dtype */
  if (!t->grad) return t->grad = mf_ctx_grad_alloc(c, bytes);
  return mf_ctx_grad_alloc(c, bytes);
}

static void grad_end(mf_ctx *c, mf_tensor *t, float *dst) {
  if (dst && dst != t->grad) {
    BE(c)->accumulate(t->grad, dst, (size_t)mf_numel(t));
    mf_ctx_grad_release(c, dst);
  }
}

/* ---- f: tp_copy ---- */

mf_tensor *mf_tp_copy(mf_ctx *c, mf_tensor *x, struct mf_comm *tp) {
  if (!x) return NULL;
  mf_tensor *out = mf_ctx_view(c, x); /* same data: nothing writes it in place */
  if (!out) return NULL;
  mf_node *nd = record(c, MF_OP_tp_copy, out, x, NULL, NULL);
  if (nd) nd->p.tp_copy = (mf_tp_copy_params){.comm = tp, .N = mf_numel(x)};
  return out;
}

void mf_tp_copy_backward(mf_ctx *c, const mf_node *nd) {
  mf_tensor *x = nd->in[0];
  float *dx = grad_begin(c, x);
  if (!dx) return;
  if (!comm_ok(c, mf_comm_allreduce(nd->p.tp_copy.comm, nd->out->grad, dx, (size_t)nd->p.tp_copy.N, act_dt(c),
                                    MF_RED_SUM)))
    return;
  grad_end(c, x, dx);
}

/* ---- g: tp_reduce ---- */

mf_tensor *mf_tp_reduce(mf_ctx *c, mf_tensor *x, mf_tensor *bias, struct mf_comm *tp) {
  if (!x) return NULL;
  int C = (int)x->shape[x->ndim - 1], N = (int)rows_of(x);
  mf_tensor *out = mf_ctx_tensor(c, BE(c)->act, x->ndim, x->shape);
  if (!out) return NULL;
  if (!comm_ok(c, mf_comm_allreduce(tp, x->data, out->data, (size_t)N * C, act_dt(c), MF_RED_SUM))) return NULL;
  /* the bias once, after the sum (Megatron's row-parallel layer) */
  if (bias) BE(c)->bias_forward(out->data, bias->data, N, C);
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
    else BE(c)->accumulate(x->grad, dout, (size_t)p->N * p->C);
  }
  /* deterministic column sums: the same on every rank, so the replicated bias stays so */
  if (bias && bias->requires_grad) BE(c)->bias_backward(bias->grad, dout, p->N, p->C);
  if (shared) nd->out->grad = NULL; /* x's now: mf_backward must not hand it back after this node */
}

/* ---- vocabulary-parallel embedding ---- */

mf_tensor *mf_tp_embed(mf_ctx *c, mf_tensor *idx, mf_tensor *wte, mf_tensor *wpe, int v0, struct mf_comm *tp) {
  if (!idx || !wte || !wpe) return NULL;
  int B = (int)idx->shape[0], T = (int)idx->shape[1], C = (int)wte->shape[1], nv = (int)wte->shape[0];
  mf_tensor *out = mf_ctx_tensor(c, BE(c)->act, 3, (int64_t[]){B, T, C});
  if (!out) return NULL;
  /* exactly one rank holds each token's row and rank 0 adds the positions, so the sum is
   * row + position, bit for bit, on every rank (the other terms are zeros) */
  BE(c)->tp_embed_forward(out->data, idx->data, wte->data, wpe->data, B, T, C, v0, nv, mf_comm_rank(tp) == 0);
  if (!comm_ok(c, mf_comm_allreduce(tp, out->data, out->data, (size_t)B * T * C, act_dt(c), MF_RED_SUM)))
    return NULL;
  mf_node *nd = record(c, MF_OP_tp_embed, out, idx, wte, wpe);
  if (nd) nd->p.tp_embed = (mf_tp_embed_params){.comm = tp, .B = B, .T = T, .C = C, .v0 = v0, .nv = nv};
  return out;
}

void mf_tp_embed_backward(mf_ctx *c, const mf_node *nd) {
  const mf_tp_embed_params *p = &nd->p.tp_embed;
  mf_tensor *wte = nd->in[1], *wpe = nd->in[2];
  void *rows = mf_ctx_deferred_rows(c, wte); /* data parallelism adds them after its reduction */
  if (rows) BE(c)->copy(rows, nd->out->grad, (size_t)p->B * p->T * p->C * mf_dtype_size(BE(c)->act));
  float *dwte = wte->requires_grad && !rows ? wte->grad : NULL, *dwpe = wpe->requires_grad ? wpe->grad : NULL;
  if (!dwte && !dwpe) return;
  BE(c)->tp_embed_backward(dwte, dwpe, nd->out->grad, nd->in[0]->data, p->B, p->T, p->C, p->v0, p->nv);
}

/* ---- vocabulary-parallel cross-entropy ---- */

mf_tensor *mf_tp_xent(mf_ctx *c, mf_tensor *logits, mf_tensor *targets, int V, int v0, struct mf_comm *tp) {
  if (!logits || !targets) return NULL;
  int Vl = (int)logits->shape[logits->ndim - 1], N = (int)rows_of(logits);
  mf_tensor *losses = mf_ctx_tensor(c, MF_F32, 1, (int64_t[]){N}); /* fp32 on every backend */
  float *M = mf_ctx_alloc(c, (size_t)N * sizeof(float));
  double *S = mf_ctx_alloc(c, (size_t)N * 2 * sizeof(double));
  if (!losses || !M || !S) return NULL;
  float *x = logits->data; /* becomes the probabilities */
  const int32_t *tg = targets->data;
  int nreal = V - v0 < Vl ? V - v0 : Vl; /* real vocabulary columns on this rank */
  if (nreal < 0) nreal = 0;
  BE(c)->tp_xent_max(M, x, N, Vl, nreal);
  if (!comm_ok(c, mf_comm_allreduce(tp, M, M, (size_t)N, MF_C_F32, MF_RED_MAX))) return NULL;
  BE(c)->tp_xent_exp(S, x, x, M, tg, N, Vl, nreal, v0);
  if (!comm_ok(c, mf_comm_allreduce(tp, S, S, (size_t)N * 2, MF_C_F64, MF_RED_SUM))) return NULL;
  BE(c)->tp_xent_finish(losses->data, x, S, M, tg, N, Vl, nreal);
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
  float *dl;
  if (!logits->grad && !logits->is_param) dl = logits->grad = nd->saved[0]; /* in place */
  else dl = grad_begin(c, logits);
  if (!dl) return;
  BE(c)->tp_xent_backward(dl, nd->out->grad, nd->saved[0], nd->in[1]->data, p->N, p->Vl, p->v0);
  if (dl != logits->grad) grad_end(c, logits, dl);
}
