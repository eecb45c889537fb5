/* Glue between the op table and the backends: shapes, outputs, tape nodes, and the
 * gradient bookkeeping of backward. Kernels accumulate (+=) into parameter gradients
 * and write (=) activation gradients; when an activation feeds several ops, the second
 * gradient goes to scratch and is added in (accumulate), so kernels stay simple. */
#include "kernels/ops.h"

#include <assert.h>
#include <string.h>

#include "kernels/backend.h"
#include "parallel/tp_ops.h" /* backward of the tensor-parallel ops (MF_TP_OP) */

#define BE(c) mf_ctx_backend(c)

static int64_t rows_of(const mf_tensor *t) { return mf_numel(t) / t->shape[t->ndim - 1]; }

static mf_tensor *like(mf_ctx *c, const mf_tensor *x, int64_t last) {
  int64_t shape[MF_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = last;
  return mf_ctx_tensor(c, BE(c)->act, x->ndim, shape);
}

static mf_node *record(mf_ctx *c, mf_op_id op, mf_tensor *out, mf_tensor *a, mf_tensor *b,
                       mf_tensor *d) {
  out->requires_grad = (a && a->requires_grad) || (b && b->requires_grad) ||
                       (d && d->requires_grad);
  if (!out->requires_grad) return NULL;
  mf_node *nd = mf_ctx_record(c, op);
  if (!nd) return NULL;
  nd->out = out;
  nd->in[0] = a;
  nd->in[1] = b;
  nd->in[2] = d;
  return nd;
}

/* ---- forward ---- */

mf_tensor *mf_encoder(mf_ctx *c, mf_tensor *idx, mf_tensor *wte, mf_tensor *wpe) {
  if (!idx || !wte || !wpe) return NULL;
  assert(idx->dtype == MF_I32 && idx->ndim == 2);
  int B = (int)idx->shape[0], T = (int)idx->shape[1], C = (int)wte->shape[1];
  assert(wpe->shape[1] == C && T <= wpe->shape[0]);
  mf_tensor *out = mf_ctx_tensor(c, BE(c)->act, 3, (int64_t[]){B, T, C});
  if (!out) return NULL;
  BE(c)->encoder_forward(out->data, idx->data, wte->data, wpe->data, B, T, C);
  mf_node *nd = record(c, MF_OP_encoder, out, idx, wte, wpe);
  if (nd) nd->p.encoder = (mf_encoder_params){.B = B, .T = T, .C = C};
  return out;
}

/* a layernorm's output (recomputable, MF_REMAT_LAYERNORM) and its saved statistics */
static mf_tensor *ln_outputs(mf_ctx *c, const mf_tensor *x, int N, float **mean, float **rstd) {
  mf_tensor *out = mf_ctx_remat_tensor(c, MF_REMAT_LAYERNORM, BE(c)->act, x->ndim, x->shape);
  *mean = mf_ctx_alloc(c, (size_t)N * 4);
  *rstd = mf_ctx_alloc(c, (size_t)N * 4);
  return out && *mean && *rstd ? out : NULL;
}

/* the layernorm node x -> out, whoever ran the forward kernel */
static void ln_record(mf_ctx *c, mf_tensor *out, mf_tensor *x, mf_tensor *w, mf_tensor *b, float *mean,
                      float *rstd, int N, int C) {
  mf_node *nd = record(c, MF_OP_layernorm, out, x, w, b);
  if (nd) {
    nd->p.layernorm = (mf_layernorm_params){.N = N, .C = C};
    nd->saved[0] = mean;
    nd->saved[1] = rstd;
  }
  mf_ctx_remat_made(c, out, nd);
}

mf_tensor *mf_layernorm(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b) {
  if (!x) return NULL;
  int C = (int)x->shape[x->ndim - 1], N = (int)rows_of(x);
  assert(mf_numel(w) == C && mf_numel(b) == C);
  float *mean, *rstd;
  mf_tensor *out = ln_outputs(c, x, N, &mean, &rstd);
  if (!out) return NULL;
  BE(c)->layernorm_forward(out->data, mean, rstd, x->data, w->data, b->data, N, C);
  ln_record(c, out, x, w, b, mean, rstd, N, C);
  return out;
}

mf_tensor *mf_matmul(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b, int wt) {
  if (!x) return NULL;
  int C = (int)x->shape[x->ndim - 1], N = (int)rows_of(x);
  int OC = (int)(wt ? w->shape[0] : w->shape[1]);
  assert((wt ? w->shape[1] : w->shape[0]) == C);
  assert(!b || mf_numel(b) == OC);
  mf_tensor *out = like(c, x, OC);
  if (!out) return NULL;
  BE(c)->matmul_forward(out->data, x->data, w->data, b ? b->data : NULL, N, C, OC, wt);
  mf_node *nd = record(c, MF_OP_matmul, out, x, w, b);
  if (nd) nd->p.matmul = (mf_matmul_params){.N = N, .C = C, .OC = OC, .wt = wt};
  return out;
}

mf_tensor *mf_matmul_gelu(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b, int wt) {
  if (!x) return NULL;
  if (!b) { /* the GPU's fused epilogue adds a bias; there is no bias-free variant */
    mf_ctx_fail(c, MF_ERR(MF_ERR_INTERNAL, "matmul_gelu needs a bias"));
    return NULL;
  }
  int C = (int)x->shape[x->ndim - 1], N = (int)rows_of(x);
  int OC = (int)(wt ? w->shape[0] : w->shape[1]);
  assert((wt ? w->shape[1] : w->shape[0]) == C && mf_numel(b) == OC);
  /* allocated in mf_matmul + mf_gelu's order, so the arena is laid out as theirs */
  mf_tensor *pre = like(c, x, OC);
  if (!pre) return NULL;
  mf_tensor *out = mf_ctx_remat_tensor(c, MF_REMAT_GELU, BE(c)->act, x->ndim, pre->shape);
  if (!out) return NULL;
  BE(c)->matmul_gelu_forward(out->data, pre->data, x->data, w->data, b->data, N, C, OC, wt);
  mf_node *nd = record(c, MF_OP_matmul_gelu, out, x, w, b);
  if (nd) {
    nd->p.matmul_gelu = (mf_matmul_gelu_params){.N = N, .C = C, .OC = OC, .wt = wt};
    nd->saved[0] = pre->data;
  }
  mf_ctx_remat_made(c, out, nd);
  return out;
}

/* act (recomputable, MF_REMAT_GELU) and out = act @ w + b of a gelu_matmul node on x */
static mf_node *gm_record(mf_ctx *c, mf_tensor *out, mf_tensor *act, mf_tensor *x, mf_tensor *w, mf_tensor *b,
                          int N, int C, int OC, int wt) {
  mf_node *nd = record(c, MF_OP_gelu_matmul, out, x, w, b);
  if (nd) nd->p.gelu_matmul = (mf_gelu_matmul_params){.N = N, .C = C, .OC = OC, .wt = wt, .act = act};
  mf_ctx_remat_made(c, act, nd);
  return nd;
}

mf_tensor *mf_gelu_matmul(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b, int wt) {
  if (!x) return NULL;
  int C = (int)x->shape[x->ndim - 1], N = (int)rows_of(x);
  int OC = (int)(wt ? w->shape[0] : w->shape[1]);
  assert((wt ? w->shape[1] : w->shape[0]) == C && (!b || mf_numel(b) == OC));
  mf_tensor *act = mf_ctx_remat_tensor(c, MF_REMAT_GELU, BE(c)->act, x->ndim, x->shape);
  mf_tensor *out = act ? like(c, x, OC) : NULL;
  if (!out) return NULL;
  BE(c)->gelu_matmul_forward(out->data, act->data, x->data, w->data, b ? b->data : NULL, N, C, OC, wt);
  gm_record(c, out, act, x, w, b, N, C, OC, wt);
  return out;
}

mf_tensor *mf_mlp(mf_ctx *c, mf_tensor *x, mf_tensor *w1, mf_tensor *b1, mf_tensor *w2, mf_tensor *b2,
                  mf_tensor **act_out) {
  if (act_out) *act_out = NULL;
  if (!x) return NULL;
  int C = (int)x->shape[x->ndim - 1], N = (int)rows_of(x), H = (int)w1->shape[1], OC = (int)w2->shape[1];
  assert(w1->shape[0] == C && mf_numel(b1) == H && w2->shape[0] == H && (!b2 || mf_numel(b2) == OC));
  mf_tensor *pre = like(c, x, H);
  mf_tensor *act = pre ? mf_ctx_remat_tensor(c, MF_REMAT_GELU, BE(c)->act, x->ndim, pre->shape) : NULL;
  mf_tensor *out = act ? like(c, x, OC) : NULL;
  if (!out) return NULL;
  /* the up-projection's GEMM makes pre and act (its epilogue's GELU on the GPU) */
  BE(c)->matmul_gelu_forward(act->data, pre->data, x->data, w1->data, b1->data, N, C, H, 0);
  BE(c)->matmul_forward(out->data, act->data, w2->data, b2 ? b2->data : NULL, N, H, OC, 0);
  mf_node *nd = record(c, MF_OP_matmul, pre, x, w1, b1);
  if (nd) nd->p.matmul = (mf_matmul_params){.N = N, .C = C, .OC = H, .wt = 0};
  gm_record(c, out, act, pre, w2, b2, N, H, OC, 0);
  if (act_out) *act_out = act;
  return out;
}

mf_tensor *mf_gelu(mf_ctx *c, mf_tensor *x) {
  if (!x) return NULL;
  mf_tensor *out = mf_ctx_remat_tensor(c, MF_REMAT_GELU, BE(c)->act, x->ndim, x->shape);
  if (!out) return NULL;
  int64_t N = mf_numel(x);
  BE(c)->gelu_forward(out->data, x->data, (size_t)N);
  mf_node *nd = record(c, MF_OP_gelu, out, x, NULL, NULL);
  if (nd) nd->p.gelu = (mf_gelu_params){.N = N};
  mf_ctx_remat_made(c, out, nd);
  return out;
}

mf_tensor *mf_residual(mf_ctx *c, mf_tensor *a, mf_tensor *b) {
  if (!a || !b) return NULL;
  assert(mf_numel(a) == mf_numel(b));
  mf_tensor *out = like(c, a, a->shape[a->ndim - 1]);
  if (!out) return NULL;
  int64_t N = mf_numel(a);
  BE(c)->residual_forward(out->data, a->data, b->data, (size_t)N);
  mf_node *nd = record(c, MF_OP_residual, out, a, b, NULL);
  if (nd) nd->p.residual = (mf_residual_params){.N = N};
  return out;
}

mf_tensor *mf_residual_layernorm(mf_ctx *c, mf_tensor *a, mf_tensor *b, mf_tensor *w, mf_tensor *bias,
                                 mf_tensor **resid_out) {
  *resid_out = NULL;
  if (!a || !b) return NULL;
  assert(mf_numel(a) == mf_numel(b));
  int C = (int)a->shape[a->ndim - 1], N = (int)rows_of(a);
  assert(mf_numel(w) == C && mf_numel(bias) == C);
  /* allocated in mf_residual + mf_layernorm's order (the same arena layout) */
  mf_tensor *resid = like(c, a, C);
  if (!resid) return NULL;
  float *mean, *rstd;
  mf_tensor *out = ln_outputs(c, a, N, &mean, &rstd);
  if (!out) return NULL;
  BE(c)->residual_layernorm_forward(out->data, resid->data, mean, rstd, a->data, b->data, w->data,
                                    bias->data, N, C);
  /* the unfused pair's nodes: residual (-> resid), then layernorm (resid -> out) */
  mf_node *nd = record(c, MF_OP_residual, resid, a, b, NULL);
  if (nd) nd->p.residual = (mf_residual_params){.N = mf_numel(a)};
  ln_record(c, out, resid, w, bias, mean, rstd, N, C);
  *resid_out = resid;
  return out;
}

mf_tensor *mf_attention(mf_ctx *c, mf_tensor *qkv, int n_head) {
  if (!qkv) return NULL;
  assert(qkv->ndim == 3 && qkv->shape[2] % 3 == 0);
  int B = (int)qkv->shape[0], T = (int)qkv->shape[1], C = (int)(qkv->shape[2] / 3);
  assert(C % n_head == 0);
  mf_tensor *out = mf_ctx_tensor(c, BE(c)->act, 3, (int64_t[]){B, T, C});
  float *lse = mf_ctx_alloc(c, (size_t)B * n_head * T * sizeof(float));
  if (!out || !lse) return NULL;
  BE(c)->attention_forward(out->data, lse, qkv->data, B, T, C, n_head);
  mf_node *nd = record(c, MF_OP_attention, out, qkv, NULL, NULL);
  if (nd) {
    nd->p.attention = (mf_attention_params){.B = B, .T = T, .C = C, .NH = n_head};
    nd->saved[0] = lse;
  }
  return out;
}

mf_tensor *mf_softmax_xent(mf_ctx *c, mf_tensor *logits, mf_tensor *targets, int V) {
  if (!logits || !targets) return NULL;
  int Vp = (int)logits->shape[logits->ndim - 1], N = (int)rows_of(logits);
  assert(targets->dtype == MF_I32 && mf_numel(targets) == N && V <= Vp);
  mf_tensor *losses = mf_ctx_tensor(c, MF_F32, 1, (int64_t[]){N}); /* fp32 on every backend */
  if (!losses) return NULL;
  /* the probabilities overwrite the logits: one exp pass, no second N x Vp buffer */
  BE(c)->softmax_xent_forward(losses->data, logits->data, logits->data, targets->data, N, V, Vp);
  mf_node *nd = record(c, MF_OP_softmax_xent, losses, logits, targets, NULL);
  if (nd) {
    nd->p.softmax_xent = (mf_softmax_xent_params){.N = N, .V = V, .Vp = Vp};
    nd->saved[0] = logits->data;
  }
  return losses;
}

/* ---- backward ---- */

/* Where an input's gradient goes: params -> their grads buffer (kernels +=);
 * activations -> a fresh buffer (=), or scratch when a gradient is already there. */
static float *grad_dst(mf_ctx *c, mf_tensor *t) {
  if (!t || !t->requires_grad) return NULL;
  if (t->is_param) return t->grad;
  size_t bytes = mf_nbytes(t); /* gradients have their tensor's dtype */
  if (!t->grad) return t->grad = mf_ctx_grad_alloc(c, bytes);
  return mf_ctx_grad_alloc(c, bytes);
}

static void grad_done(mf_ctx *c, mf_tensor *t, float *dst) {
  if (dst && !t->is_param && dst != t->grad) {
    BE(c)->accumulate(t->grad, dst, (size_t)mf_numel(t));
    mf_ctx_grad_release(c, dst);
  }
}

static void encoder_bwd(mf_ctx *c, const mf_node *nd) {
  const mf_encoder_params *p = &nd->p.encoder;
  mf_tensor *wte = nd->in[1], *wpe = nd->in[2];
  assert(wte->is_param && wpe->is_param);
  void *rows = mf_ctx_deferred_rows(c, wte); /* data parallelism adds them after its reduction */
  if (rows) BE(c)->copy(rows, nd->out->grad, (size_t)p->B * p->T * p->C * mf_dtype_size(BE(c)->act));
  BE(c)->encoder_backward(wte->requires_grad && !rows ? wte->grad : NULL,
                          wpe->requires_grad ? wpe->grad : NULL, nd->out->grad,
                          nd->in[0]->data, p->B, p->T, p->C);
}

static void layernorm_bwd(mf_ctx *c, const mf_node *nd) {
  const mf_layernorm_params *p = &nd->p.layernorm;
  mf_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
  float *dx = grad_dst(c, x), *dw = grad_dst(c, w), *db = grad_dst(c, b);
  if (mf_ctx_status(c) != MF_OK) return;
  BE(c)->layernorm_backward(dx, dw, db, nd->out->grad, x->data, w->data, nd->saved[0],
                            nd->saved[1], p->N, p->C);
  grad_done(c, x, dx);
}

static void matmul_bwd(mf_ctx *c, const mf_node *nd) {
  const mf_matmul_params *p = &nd->p.matmul;
  mf_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
  float *dx = grad_dst(c, x), *dw = grad_dst(c, w), *db = grad_dst(c, b);
  if (mf_ctx_status(c) != MF_OK) return;
  BE(c)->matmul_backward(dx, dw, db, nd->out->grad, x->data, w->data, p->N, p->C, p->OC, p->wt);
  grad_done(c, x, dx);
}

/* the gradient of pre_gelu is scratch from the gradient pool: the same buffer the unfused
 * gelu node's dx would take, handed back at once */
static void matmul_gelu_bwd(mf_ctx *c, const mf_node *nd) {
  const mf_matmul_gelu_params *p = &nd->p.matmul_gelu;
  mf_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
  float *dpre = mf_ctx_grad_alloc(c, mf_nbytes(nd->out));
  float *dx = grad_dst(c, x), *dw = grad_dst(c, w), *db = grad_dst(c, b);
  if (mf_ctx_status(c) != MF_OK) return;
  BE(c)->matmul_gelu_backward(dx, dw, db, dpre, nd->out->grad, x->data, w->data, nd->saved[0], p->N,
                              p->C, p->OC, p->wt);
  mf_ctx_grad_release(c, dpre);
  grad_done(c, x, dx);
}

static void gelu_matmul_bwd(mf_ctx *c, const mf_node *nd) {
  const mf_gelu_matmul_params *p = &nd->p.gelu_matmul;
  mf_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
  mf_ctx_remat_ready(c, p->act); /* the weight gradient reads it */
  float *dx = grad_dst(c, x), *dw = grad_dst(c, w), *db = grad_dst(c, b);
  if (mf_ctx_status(c) != MF_OK) return;
  BE(c)->gelu_matmul_backward(dx, dw, db, nd->out->grad, x->data, w->data, p->act->data, p->N, p->C, p->OC,
                              p->wt);
  grad_done(c, x, dx);
}

static void gelu_bwd(mf_ctx *c, const mf_node *nd) {
  mf_tensor *x = nd->in[0];
  float *dx = grad_dst(c, x);
  if (!dx) return;
  BE(c)->gelu_backward(dx, x->data, nd->out->grad, (size_t)nd->p.gelu.N);
  grad_done(c, x, dx);
}

static void residual_bwd(mf_ctx *c, const mf_node *nd) {
  mf_tensor *a = nd->in[0], *b = nd->in[1];
  float *da = grad_dst(c, a), *db = grad_dst(c, b);
  if (mf_ctx_status(c) != MF_OK) return;
  BE(c)->residual_backward(da, db, nd->out->grad, (size_t)nd->p.residual.N);
  grad_done(c, a, da);
  grad_done(c, b, db);
}

static void attention_bwd(mf_ctx *c, const mf_node *nd) {
  const mf_attention_params *p = &nd->p.attention;
  mf_tensor *qkv = nd->in[0];
  float *dqkv = grad_dst(c, qkv);
  if (!dqkv) return;
  BE(c)->attention_backward(dqkv, nd->out->grad, qkv->data, nd->out->data, nd->saved[0], p->B,
                            p->T, p->C, p->NH);
  grad_done(c, qkv, dqkv);
}

static void softmax_xent_bwd(mf_ctx *c, const mf_node *nd) {
  const mf_softmax_xent_params *p = &nd->p.softmax_xent;
  mf_tensor *logits = nd->in[0];
  if (!logits->requires_grad) return;
  float *dlogits;
  if (!logits->grad && !logits->is_param)
    dlogits = logits->grad = nd->saved[0]; /* in place over the probabilities */
  else
    dlogits = grad_dst(c, logits);
  if (!dlogits) return;
  BE(c)->softmax_xent_backward(dlogits, nd->out->grad, nd->saved[0], nd->in[1]->data, p->N,
                               p->V, p->Vp);
  grad_done(c, logits, dlogits);
}

void mf_op_recompute(mf_ctx *c, const mf_node *nd) {
  switch (nd->op) {
  case MF_OP_gelu:
    BE(c)->gelu_forward(nd->out->data, nd->in[0]->data, (size_t)nd->p.gelu.N);
    break;
  case MF_OP_matmul_gelu: /* from the saved matmul output, as mf_gelu's from its input */
    BE(c)->gelu_forward(nd->out->data, nd->saved[0], (size_t)nd->p.matmul_gelu.N * nd->p.matmul_gelu.OC);
    break;
  case MF_OP_gelu_matmul: /* its saved GELU output, from its input */
    BE(c)->gelu_forward(nd->p.gelu_matmul.act->data, nd->in[0]->data,
                        (size_t)nd->p.gelu_matmul.N * nd->p.gelu_matmul.C);
    break;
  case MF_OP_layernorm: /* mean and rstd come out as stored: the same kernel on the same input */
    BE(c)->layernorm_forward(nd->out->data, nd->saved[0], nd->saved[1], nd->in[0]->data, nd->in[1]->data,
                             nd->in[2]->data, nd->p.layernorm.N, nd->p.layernorm.C);
    break;
  default:
    mf_ctx_fail(c, MF_ERR(MF_ERR_INTERNAL, "recompute: %s cannot be recomputed", mf_op_name(nd->op)));
  }
}

void mf_op_backward(mf_ctx *c, const mf_node *nd) {
  static void (*const table[MF_OP_COUNT])(mf_ctx *, const mf_node *) = {
#define MF_OP(name, fields) [MF_OP_##name] = name##_bwd,
#define MF_TP_OP(name, fields) [MF_OP_##name] = mf_##name##_backward,
#include "kernels/ops.def"
#undef MF_TP_OP
#undef MF_OP
  };
  table[nd->op](c, nd);
}
