/* GPT inference with a KV cache: each new token runs through the blocks once and
 * attends to the cached keys/values, so a prompt is never re-run per generated token.
 * Forward only: kernels are called straight from the backend table on arena buffers. */
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "trainers/gpt.h"

mf_status mf_gpt_kv_create(mf_gpt_kv *kv, const mf_gpt *g, int B, int Tmax) {
  memset(kv, 0, sizeof *kv);
  kv->B = B;
  kv->Tmax = Tmax;
  kv->L = g->L;
  kv->NH = g->NH;
  kv->hs = g->C / g->NH;
  size_t n = (size_t)g->L * B * g->NH * Tmax * kv->hs;
  kv->k = malloc(n * sizeof(float));
  kv->v = malloc(n * sizeof(float));
  if (!kv->k || !kv->v) {
    mf_gpt_kv_free(kv);
    return MF_ERR(MF_ERR_NOMEM, "out of memory for a KV cache of %d x %d positions", B, Tmax);
  }
  return MF_OK;
}

void mf_gpt_kv_free(mf_gpt_kv *kv) {
  free(kv->k);
  free(kv->v);
  kv->k = kv->v = NULL;
}

#define ALLOC(ptr, count)                                          \
  do {                                                             \
    (ptr) = mf_ctx_alloc(c, (size_t)(count) * sizeof *(ptr));      \
    if (!(ptr)) return mf_ctx_status(c);                           \
  } while (0)

mf_status mf_gpt_step(mf_gpt *g, mf_ctx *c, mf_gpt_kv *kv, const int32_t *tokens, int B, int Tq,
                      const int *pos0, float *logits) {
  const mf_backend *be = mf_ctx_backend(c);
  int C = g->C, NH = g->NH, hs = C / NH, N = B * Tq, Tmax = kv->Tmax;
  if (B > kv->B) return MF_ERR(MF_ERR_INTERNAL, "batch %d exceeds the KV cache's %d", B, kv->B);
  for (int b = 0; b < B; b++) {
    if (pos0[b] < 0 || pos0[b] + Tq > g->maxT || pos0[b] + Tq > Tmax)
      return MF_ERR(MF_ERR_INPUT, "sequence of %d tokens exceeds the model's context of %d",
                    pos0[b] + Tq, g->maxT < Tmax ? g->maxT : Tmax);
    for (int t = 0; t < Tq; t++)
      if (tokens[b * Tq + t] < 0 || tokens[b * Tq + t] >= g->V)
        return MF_ERR(MF_ERR_INPUT, "token id %d is out of range [0, %d)", tokens[b * Tq + t], g->V);
  }
  float *x, *y, *h, *ln, *mean, *rstd, *qkv, *att, *fc, *fc2;
  ALLOC(x, N * C); /* [N,C] residual stream */
  ALLOC(y, N * C);
  ALLOC(h, N * C);
  ALLOC(ln, N * C); /* [N,C] layernorm outputs */
  ALLOC(mean, N);
  ALLOC(rstd, N);
  ALLOC(qkv, N * 3 * C);
  ALLOC(att, N * C);
  ALLOC(fc, N * 4 * C);
  ALLOC(fc2, N * 4 * C);
  const float *wte = g->wte->data, *wpe = g->wpe->data;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < Tq; t++) {
      const float *te = wte + (size_t)tokens[b * Tq + t] * C, *pe = wpe + (size_t)(pos0[b] + t) * C;
      float *o = x + ((size_t)b * Tq + t) * C;
      for (int i = 0; i < C; i++) o[i] = te[i] + pe[i];
    }
  size_t layer = (size_t)kv->B * NH * Tmax * hs;
  /* each residual add is fused with the layernorm after it (residual_layernorm_forward),
   * the MLP's up-projection with its GELU, as in mf_gpt_forward; the last block's sum is
   * added alone: ln_f runs on the last positions only */
  if (g->L > 0) be->layernorm_forward(ln, mean, rstd, x, g->h[0].ln_1_w->data, g->h[0].ln_1_b->data, N, C);
  for (int l = 0; l < g->L; l++) {
    mf_gpt_block *bl = &g->h[l];
    be->matmul_forward(qkv, ln, bl->c_attn_w->data, bl->c_attn_b->data, N, C, 3 * C, 0);
    float *kc = kv->k + l * layer, *vc = kv->v + l * layer;
    for (int b = 0; b < B; b++) /* append this step's keys and values: [B,NH,Tmax,hs] */
      for (int t = 0; t < Tq; t++) {
        const float *row = qkv + ((size_t)b * Tq + t) * 3 * C;
        for (int hd = 0; hd < NH; hd++) {
          size_t at = (((size_t)b * NH + hd) * Tmax + pos0[b] + t) * hs;
          memcpy(kc + at, row + C + hd * hs, (size_t)hs * sizeof(float));
          memcpy(vc + at, row + 2 * C + hd * hs, (size_t)hs * sizeof(float));
        }
      }
    be->attention_kv_forward(att, qkv, kc, vc, pos0, 3 * C, B, Tq, C, NH, Tmax);
    be->matmul_forward(h, att, bl->attn_proj_w->data, bl->attn_proj_b->data, N, C, C, 0);
    be->residual_layernorm_forward(ln, y, mean, rstd, x, h, bl->ln_2_w->data, bl->ln_2_b->data, N, C);
    be->matmul_gelu_forward(fc2, fc, ln, bl->c_fc_w->data, bl->c_fc_b->data, N, C, 4 * C, 0);
    be->matmul_forward(h, fc2, bl->mlp_proj_w->data, bl->mlp_proj_b->data, N, 4 * C, C, 0);
    if (l + 1 < g->L)
      be->residual_layernorm_forward(ln, x, mean, rstd, y, h, g->h[l + 1].ln_1_w->data, g->h[l + 1].ln_1_b->data,
                                     N, C);
    else
      be->residual_forward(x, y, h, (size_t)N * C);
  }
  /* only each sequence's last position needs logits */
  for (int b = 0; b < B; b++)
    memcpy(y + (size_t)b * C, x + ((size_t)b * Tq + Tq - 1) * C, (size_t)C * sizeof(float));
  be->layernorm_forward(h, mean, rstd, y, g->ln_f_w->data, g->ln_f_b->data, B, C);
  be->matmul_forward(logits, h, wte, NULL, B, C, g->Vp, 1);
  return MF_OK;
}
