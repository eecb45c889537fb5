#include "trainers/gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/ops.h"

#define VOCAB_PAD 128

mf_status mf_gpt_create(mf_gpt **out, const mf_model_cfg *cfg) {
  mf_gpt *g = calloc(1, sizeof *g);
  if (!g) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  g->L = cfg->n_layer;
  g->NH = cfg->n_head;
  g->C = cfg->n_embd;
  g->V = cfg->vocab_size;
  g->Vp = (g->V + VOCAB_PAD - 1) / VOCAB_PAD * VOCAB_PAD;
  g->maxT = cfg->block_size;
  g->h = calloc((size_t)g->L, sizeof *g->h);
  if (!g->h) {
    free(g);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  int64_t C = g->C;
  float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)g->L);
  mf_status st = MF_OK;
  char n[MF_PARAM_NAME];
#define P(name, nd, init, s, decay, split, ...) \
  if (st == MF_OK) st = mf_params_add(&g->params, name, nd, (int64_t[]){__VA_ARGS__}, 0, init, s, decay, split)
  if (st == MF_OK)
    st = mf_params_add(&g->params, "wte.weight", 2, (int64_t[]){g->Vp, C}, g->V, MF_INIT_NORMAL, std, 1, MF_SPLIT_VOCAB);
  P("wpe.weight", 2, MF_INIT_NORMAL, std, 1, MF_SPLIT_NONE, g->maxT, C);
  for (int l = 0; l < g->L; l++) {
#define PN(suffix, nd, init, s, decay, split, ...) \
  snprintf(n, sizeof n, "h.%d.%s", l, suffix);     \
  P(n, nd, init, s, decay, split, __VA_ARGS__)
    PN("ln_1.weight", 1, MF_INIT_ONES, 0, 0, MF_SPLIT_NONE, C);
    PN("ln_1.bias", 1, MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, C);
    PN("attn.c_attn.weight", 2, MF_INIT_NORMAL, std, 1, MF_SPLIT_COL, C, 3 * C);
    PN("attn.c_attn.bias", 1, MF_INIT_ZEROS, 0, 0, MF_SPLIT_COL, 3 * C);
    PN("attn.c_proj.weight", 2, MF_INIT_NORMAL, proj_std, 1, MF_SPLIT_ROW, C, C);
    PN("attn.c_proj.bias", 1, MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, C);
    PN("ln_2.weight", 1, MF_INIT_ONES, 0, 0, MF_SPLIT_NONE, C);
    PN("ln_2.bias", 1, MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, C);
    PN("mlp.c_fc.weight", 2, MF_INIT_NORMAL, std, 1, MF_SPLIT_COL, C, 4 * C);
    PN("mlp.c_fc.bias", 1, MF_INIT_ZEROS, 0, 0, MF_SPLIT_COL, 4 * C);
    PN("mlp.c_proj.weight", 2, MF_INIT_NORMAL, proj_std, 1, MF_SPLIT_ROW, 4 * C, C);
    PN("mlp.c_proj.bias", 1, MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, C);
#undef PN
  }
  P("ln_f.weight", 1, MF_INIT_ONES, 0, 0, MF_SPLIT_NONE, C);
  P("ln_f.bias", 1, MF_INIT_ZEROS, 0, 0, MF_SPLIT_NONE, C);
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

void mf_gpt_free(mf_gpt *g) {
  if (!g) return;
  mf_params_free(&g->params);
  free(g->h);
  free(g);
}

mf_tensor *mf_gpt_forward(mf_gpt *g, mf_ctx *c, mf_tensor *idx, mf_tensor *targets) {
  mf_tensor *x = mf_encoder(c, idx, g->wte, g->wpe);
  for (int l = 0; l < g->L; l++) {
    mf_gpt_block *b = &g->h[l];
    mf_tensor *h = mf_layernorm(c, x, b->ln_1_w, b->ln_1_b);
    mf_tensor *qkv = mf_matmul(c, h, b->c_attn_w, b->c_attn_b, 0);
    mf_tensor *a = mf_attention(c, qkv, g->NH);
    x = mf_residual(c, x, mf_matmul(c, a, b->attn_proj_w, b->attn_proj_b, 0));
    h = mf_layernorm(c, x, b->ln_2_w, b->ln_2_b);
    mf_tensor *f = mf_gelu(c, mf_matmul(c, h, b->c_fc_w, b->c_fc_b, 0));
    x = mf_residual(c, x, mf_matmul(c, f, b->mlp_proj_w, b->mlp_proj_b, 0));
  }
  mf_tensor *h = mf_layernorm(c, x, g->ln_f_w, g->ln_f_b);
  mf_tensor *logits = mf_matmul(c, h, g->wte, NULL, 1); /* tied: wte^T */
  if (!targets) return logits;
  return mf_softmax_xent(c, logits, targets, g->V);
}

double mf_gpt_flops_per_token(const mf_gpt *g, int T) {
  double C = g->C, L = g->L;
  double per_layer = 2 * (C * 3 * C + C * C + 2 * C * 4 * C) + 2 * 2 * C * T / 2.0; /* causal: half */
  return L * per_layer + 2 * C * g->Vp;
}
