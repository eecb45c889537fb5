#include "trainers/gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "parallel/comm.h"
#include "parallel/tp_ops.h"

#define VOCAB_PAD 128

/* registers one parameter: local shape from the whole one and the split */
static mf_status add(mf_gpt *g, const char *name, int nd, const int64_t *whole, int64_t rows, mf_init init,
                     float std, int decay, mf_split split, int groups) {
  int tp = g->tp, i = g->params.n;
  int64_t local[MF_MAX_DIMS];
  for (int d = 0; d < nd; d++) local[d] = whole[d];
  if (tp > 1 && split == MF_SPLIT_COL) local[nd - 1] /= tp;
  if (tp > 1 && (split == MF_SPLIT_ROW || split == MF_SPLIT_VOCAB)) local[0] /= tp;
  /* a vocabulary slice keeps its real rows in checkpoints: [v0, min(V, v0 + Vl)) */
  int64_t lrows = local[0];
  if (split == MF_SPLIT_VOCAB) {
    lrows = rows - (int64_t)g->tp_rank * local[0];
    lrows = lrows < 0 ? 0 : lrows > local[0] ? local[0] : lrows;
  }
  MF_TRY(mf_params_add(&g->params, name, nd, local, lrows > 0 ? lrows : 0, init, std, decay, split));
  g->params.p[i].ckpt_rows = lrows; /* 0 real rows is possible on the last slices of a tiny vocabulary */
  mf_tp_param *w = &g->whole[i];
  w->split = split;
  w->groups = groups;
  w->ndim = nd;
  for (int d = 0; d < nd; d++) w->shape[d] = whole[d];
  w->rows = rows;
  return MF_OK;
}

mf_status mf_gpt_create(mf_gpt **out, const mf_model_cfg *cfg) { return mf_gpt_create_tp(out, cfg, NULL); }

mf_status mf_gpt_create_tp(mf_gpt **out, const mf_model_cfg *cfg, mf_comm *tpc) {
  int tp = tpc ? mf_comm_size(tpc) : 1;
  if (cfg->n_head % tp != 0)
    return MF_ERR(MF_ERR_CONFIG, "model.n_head (%d) must be a multiple of parallel.tp (%d): each rank "
                  "holds whole heads", cfg->n_head, tp);
  mf_gpt *g = calloc(1, sizeof *g);
  if (!g) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  g->L = cfg->n_layer;
  g->NH = cfg->n_head;
  g->C = cfg->n_embd;
  g->V = cfg->vocab_size;
  g->tp = tp;
  g->tp_rank = tpc ? mf_comm_rank(tpc) : 0;
  g->tp_comm = tp > 1 ? tpc : NULL;
  g->NHl = g->NH / tp;
  g->Vp = (g->V + VOCAB_PAD * tp - 1) / (VOCAB_PAD * tp) * (VOCAB_PAD * tp);
  g->Vl = g->Vp / tp;
  g->v0 = g->tp_rank * g->Vl;
  g->maxT = cfg->block_size;
  g->h = calloc((size_t)g->L, sizeof *g->h);
  g->whole = calloc((size_t)(4 + 12 * g->L), sizeof *g->whole);
  if (!g->h || !g->whole) {
    mf_gpt_free(g);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  int64_t C = g->C;
  float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)g->L);
  mf_status st = MF_OK;
  char n[MF_PARAM_NAME];
  /* P(name, init, std, decay, split, groups, whole shape...) */
#define P(name, init, s, decay, split, groups, ...)                                                   \
  if (st == MF_OK) {                                                                                   \
    int64_t sh_[] = {__VA_ARGS__};                                                                     \
    st = add(g, name, (int)(sizeof sh_ / sizeof *sh_), sh_, sh_[0], init, s, decay, split, groups);    \
  }
  if (st == MF_OK)
    st = add(g, "wte.weight", 2, (int64_t[]){g->Vp, C}, g->V, MF_INIT_NORMAL, std, 1, MF_SPLIT_VOCAB, 1);
  P("wpe.weight", MF_INIT_NORMAL, std, 1, MF_SPLIT_NONE, 1, g->maxT, C);
  for (int l = 0; l < g->L; l++) {
#define PN(suffix, ...)                         \
  snprintf(n, sizeof n, "h.%d.%s", l, suffix); \
  P(n, __VA_ARGS__)
    PN("ln_1.weight", MF_INIT_ONES, 0, 0, MF_SPLIT_NONE, 1, C);
    PN("ln_1.bias", MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, 1, C);
    PN("attn.c_attn.weight", MF_INIT_NORMAL, std, 1, MF_SPLIT_COL, 3, C, 3 * C);
    PN("attn.c_attn.bias", MF_INIT_ZEROS, 0, 0, MF_SPLIT_COL, 3, 3 * C);
    PN("attn.c_proj.weight", MF_INIT_NORMAL, proj_std, 1, MF_SPLIT_ROW, 1, C, C);
    PN("attn.c_proj.bias", MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, 1, C);
    PN("ln_2.weight", MF_INIT_ONES, 0, 0, MF_SPLIT_NONE, 1, C);
    PN("ln_2.bias", MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, 1, C);
    PN("mlp.c_fc.weight", MF_INIT_NORMAL, std, 1, MF_SPLIT_COL, 1, C, 4 * C);
    PN("mlp.c_fc.bias", MF_INIT_ZEROS, 0, 0, MF_SPLIT_COL, 1, 4 * C);
    PN("mlp.c_proj.weight", MF_INIT_NORMAL, proj_std, 1, MF_SPLIT_ROW, 1, 4 * C, C);
    PN("mlp.c_proj.bias", MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, 1, C);
#undef PN
  }
  P("ln_f.weight", MF_INIT_ONES, 0, 0, MF_SPLIT_NONE, 1, C);
  P("ln_f.bias", MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, 1, C);
#undef P
  if (st == MF_OK) st = mf_params_alloc(&g->params);
  if (st != MF_OK) {
    mf_gpt_free(g);
    return st;
  }
  /* named views, in registration order */
  mf_param *p = g->params.p;
  int i = 0;
  g->wte = &p[i++].t;
  g->wpe = &p[i++].t;
  for (int l = 0; l < g->L; l++) {
    mf_gpt_block *b = &g->h[l];
    mf_tensor **slots[] = {&b->ln_1_w, &b->ln_1_b, &b->c_attn_w, &b->c_attn_b, &b->attn_proj_w,
                           &b->attn_proj_b, &b->ln_2_w, &b->ln_2_b, &b->c_fc_w, &b->c_fc_b,
                           &b->mlp_proj_w, &b->mlp_proj_b};
    for (size_t s = 0; s < sizeof slots / sizeof *slots; s++) *slots[s] = &p[i++].t;
  }
  g->ln_f_w = &p[i++].t;
  g->ln_f_b = &p[i++].t;
  *out = g;
  return MF_OK;
}

mf_status mf_gpt_init_params(mf_gpt *g, uint64_t seed) {
  if (g->tp == 1) {
    mf_params_init(&g->params, seed);
    return MF_OK;
  }
  /* each whole tensor drawn as mf_params_init draws it (stream 1000 + i, the real rows in
   * row-major order), then this rank's slice taken */
  int64_t most = 0;
  for (int i = 0; i < g->params.n; i++)
    if (mf_tp_numel(&g->whole[i]) > most) most = mf_tp_numel(&g->whole[i]);
  float *w = malloc((size_t)most * sizeof *w);
  if (!w) return MF_ERR(MF_ERR_NOMEM, "out of memory initialising the parameters");
  for (int i = 0; i < g->params.n; i++) {
    mf_param *p = &g->params.p[i];
    const mf_tp_param *wp = &g->whole[i];
    int64_t total = mf_tp_numel(wp), n = wp->rows * (total / wp->shape[0]);
    mf_rng r;
    mf_rng_seed(&r, seed, 1000 + (uint64_t)i);
    for (int64_t j = 0; j < n; j++)
      w[j] = p->init == MF_INIT_NORMAL ? p->init_std * mf_rng_normal(&r) : p->init == MF_INIT_ONES ? 1.0f : 0.0f;
    for (int64_t j = n; j < total; j++) w[j] = 0.0f;
    mf_tp_extract(wp, p, g->tp, g->tp_rank, w, p->t.data);
  }
  free(w);
  return MF_OK;
}

void mf_gpt_free(mf_gpt *g) {
  if (!g) return;
  mf_params_free(&g->params);
  free(g->whole);
  free(g->h);
  free(g);
}

/* the layernorm that follows block l's MLP residual: block l+1's ln_1, or ln_f after the
 * last block */
static void next_ln(const mf_gpt *g, int l, mf_tensor **w, mf_tensor **b) {
  *w = l + 1 < g->L ? g->h[l + 1].ln_1_w : g->ln_f_w;
  *b = l + 1 < g->L ? g->h[l + 1].ln_1_b : g->ln_f_b;
}

/* Both forwards fuse each residual add with the layernorm that reads the sum
 * (mf_residual_layernorm), so only the first block's ln_1 is a layernorm on its own, and
 * the MLP's GELU with both of its matmuls (mf_mlp: the up-projection's epilogue in the
 * forward, the down-projection's dinp GEMM in the backward); the gradients are the unfused
 * model's. */

/* Megatron-LM: f before each column-parallel layer, g after each row-parallel one */
static mf_tensor *forward_tp(mf_gpt *g, mf_ctx *c, mf_tensor *idx, mf_tensor *targets) {
  mf_comm *tp = g->tp_comm;
  mf_tensor *x = mf_tp_embed(c, idx, g->wte, g->wpe, g->v0, tp), *lw, *lb;
  next_ln(g, -1, &lw, &lb);
  mf_tensor *h = mf_tp_copy(c, mf_layernorm(c, x, lw, lb), tp);
  for (int l = 0; l < g->L; l++) {
    mf_gpt_block *b = &g->h[l];
    mf_tensor *a = mf_attention(c, mf_matmul(c, h, b->c_attn_w, b->c_attn_b, 0), g->NHl);
    mf_tensor *y = mf_tp_reduce(c, mf_matmul(c, a, b->attn_proj_w, NULL, 0), b->attn_proj_b, tp);
    h = mf_tp_copy(c, mf_residual_layernorm(c, x, y, b->ln_2_w, b->ln_2_b, &x), tp);
    /* this rank's c_fc columns and mlp_proj rows; the bias after the reduction */
    y = mf_tp_reduce(c, mf_mlp(c, h, b->c_fc_w, b->c_fc_b, b->mlp_proj_w, NULL, NULL), b->mlp_proj_b, tp);
    next_ln(g, l, &lw, &lb);
    h = mf_tp_copy(c, mf_residual_layernorm(c, x, y, lw, lb, &x), tp);
  }
  mf_tensor *logits = mf_matmul(c, h, g->wte, NULL, 1); /* tied: this rank's vocabulary rows */
  if (!targets) return logits;
  return mf_tp_xent(c, logits, targets, g->V, g->v0, tp);
}

mf_tensor *mf_gpt_forward(mf_gpt *g, mf_ctx *c, mf_tensor *idx, mf_tensor *targets) {
  if (g->tp > 1) return forward_tp(g, c, idx, targets);
  mf_tensor *x = mf_encoder(c, idx, g->wte, g->wpe), *lw, *lb;
  next_ln(g, -1, &lw, &lb);
  mf_tensor *h = mf_layernorm(c, x, lw, lb);
  for (int l = 0; l < g->L; l++) {
    mf_gpt_block *b = &g->h[l];
    mf_tensor *qkv = mf_matmul(c, h, b->c_attn_w, b->c_attn_b, 0);
    mf_tensor *a = mf_attention(c, qkv, g->NH);
    mf_tensor *y = mf_matmul(c, a, b->attn_proj_w, b->attn_proj_b, 0);
    h = mf_residual_layernorm(c, x, y, b->ln_2_w, b->ln_2_b, &x);
    y = mf_mlp(c, h, b->c_fc_w, b->c_fc_b, b->mlp_proj_w, b->mlp_proj_b, NULL);
    next_ln(g, l, &lw, &lb);
    h = mf_residual_layernorm(c, x, y, lw, lb, &x);
  }
  mf_tensor *logits = mf_matmul(c, h, g->wte, NULL, 1); /* tied: wte^T */
  if (!targets) return logits;
  return mf_softmax_xent(c, logits, targets, g->V);
}

double mf_gpt_flops_per_token(const mf_gpt *g, int T) {
  double C = g->C, L = g->L;
  double per_layer = 2 * (C * 3 * C + C * C + 2 * C * 4 * C) + 2 * 2 * C * T / 2.0; /* causal: half */
  return L * per_layer + 2 * C * g->Vp;
}
