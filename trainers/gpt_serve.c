/* GPT forward steps over a ragged batch with a paged KV cache (see gpt_serve.h).
 * The op sequence is gpt_infer.c's mf_gpt_step: the same kernels, except that attention
 * reads the paged pool (kernels/cpu/attention_paged.c, the same arithmetic) and that
 * matmuls of few rows run on the few-row kernel (kernels/cpu/skinny.h) over transposed
 * copies of the weights, and the vocabulary projection of many on a transposed
 * embedding. The logits therefore equal generate's to float
 * rounding (sgemm itself rounds a row differently with the number of rows beside it, so
 * batching alone already does that). */
#include "trainers/gpt_serve.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/paged.h"
#include "kernels/cpu/skinny.h"

size_t mf_kv_bytes_per_token(const mf_gpt *g) { return (size_t)2 * g->L * g->C * sizeof(float); }

mf_status mf_kv_pool_create(mf_kv_pool *p, const mf_gpt *g, int block_size, int nblocks) {
  memset(p, 0, sizeof *p);
  if (block_size < 1 || nblocks < 1)
    return MF_ERR(MF_ERR_INPUT, "a KV pool needs block size >= 1 and >= 1 block (got %d, %d)", block_size, nblocks);
  p->L = g->L;
  p->NH = g->NH;
  p->hs = g->C / g->NH;
  p->bs = block_size;
  p->nblocks = nblocks;
  p->layer = (size_t)nblocks * p->NH * block_size * p->hs;
  /* large allocations come straight from mmap: pages become resident when first written */
  p->k = malloc((size_t)p->L * p->layer * sizeof(float));
  p->v = malloc((size_t)p->L * p->layer * sizeof(float));
  p->free_ids = malloc((size_t)nblocks * sizeof *p->free_ids);
  if (!p->k || !p->v || !p->free_ids) {
    size_t mb = (size_t)p->L * p->layer * 2 * sizeof(float) >> 20;
    mf_kv_pool_free(p);
    return MF_ERR(MF_ERR_NOMEM, "out of memory for a KV cache of %d blocks x %d positions (%zu MiB)", nblocks,
                  block_size, mb);
  }
  /* block 0 on top: the first requests use the low blocks */
  for (int i = 0; i < nblocks; i++) p->free_ids[i] = nblocks - 1 - i;
  p->nfree = nblocks;
  return MF_OK;
}

void mf_kv_pool_free(mf_kv_pool *p) {
  free(p->k);
  free(p->v);
  free(p->free_ids);
  memset(p, 0, sizeof *p);
}

int mf_kv_blocks_for(const mf_kv_pool *p, int tokens) { return (tokens + p->bs - 1) / p->bs; }

int mf_kv_pool_alloc(mf_kv_pool *p, int n, int32_t *ids) {
  if (n > p->nfree) return 0;
  for (int i = 0; i < n; i++) ids[i] = p->free_ids[--p->nfree];
  return 1;
}

void mf_kv_pool_release(mf_kv_pool *p, int n, const int32_t *ids) {
  for (int i = n - 1; i >= 0; i--) p->free_ids[p->nfree++] = ids[i];
}

#define ALLOC(ptr, count)                                          \
  do {                                                             \
    (ptr) = mf_ctx_alloc(c, (size_t)(count) * sizeof *(ptr));      \
    if (!(ptr)) return mf_ctx_status(c);                           \
  } while (0)

/* dst[cols, rows] = src[rows, cols]^T, in tiles so both sides stay in cache */
static void transpose(float *dst, const float *src, int rows, int cols) {
  for (int r0 = 0; r0 < rows; r0 += 32)
    for (int c0 = 0; c0 < cols; c0 += 32)
      for (int r = r0; r < r0 + 32 && r < rows; r++)
        for (int c = c0; c < c0 + 32 && c < cols; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

mf_status mf_serve_weights_create(mf_serve_weights *w, const mf_gpt *g) {
  memset(w, 0, sizeof *w);
  int C = g->C;
  w->L = g->L;
  w->wte_t = malloc((size_t)C * g->Vp * sizeof(float));
  w->conv_t = calloc((size_t)g->L * 4, sizeof *w->conv_t);
  if (!w->wte_t || !w->conv_t) goto oom;
  transpose(w->wte_t, g->wte->data, g->Vp, C);
  for (int l = 0; l < g->L; l++) {
    const mf_gpt_block *b = &g->h[l];
    const mf_tensor *src[4] = {b->c_attn_w, b->attn_proj_w, b->c_fc_w, b->mlp_proj_w};
    for (int k = 0; k < 4; k++) {
      int rows = (int)src[k]->shape[0], cols = (int)src[k]->shape[1];
      float *t = malloc((size_t)rows * cols * sizeof(float));
      if (!t) goto oom;
      transpose(t, src[k]->data, rows, cols);
      w->conv_t[l * 4 + k] = t;
    }
  }
  return MF_OK;
oom:
  mf_serve_weights_free(w);
  return MF_ERR(MF_ERR_NOMEM, "out of memory for the serving copies of the weights");
}

void mf_serve_weights_free(mf_serve_weights *w) {
  free(w->wte_t);
  for (int i = 0; w->conv_t && i < w->L * 4; i++) free(w->conv_t[i]);
  free(w->conv_t);
  memset(w, 0, sizeof *w);
}

/* out[N,OC] = inp[N,C] @ W[C,OC] + bias: the few-row kernel on W^T, else sgemm on W */
static void mm(const mf_backend *be, float *out, const float *inp, const float *W, const float *Wt, const float *bias,
               int N, int C, int OC) {
  if (Wt && N <= skinny_rows_max()) matmul_skinny_t_forward(out, inp, Wt, bias, N, C, OC);
  else be->matmul_forward(out, inp, W, bias, N, C, OC, 0);
}

/* out[N,OC] = gelu(pre[N,OC] = inp @ W + bias): the fused kernel unless the few-row one runs */
static void mm_gelu(const mf_backend *be, float *out, float *pre, const float *inp, const float *W, const float *Wt,
                    const float *bias, int N, int C, int OC) {
  if (Wt && N <= skinny_rows_max()) {
    matmul_skinny_t_forward(pre, inp, Wt, bias, N, C, OC);
    be->gelu_forward(out, pre, (size_t)N * OC);
  } else {
    be->matmul_gelu_forward(out, pre, inp, W, bias, N, C, OC, 0);
  }
}

mf_status mf_gpt_serve_step(mf_gpt *g, mf_ctx *c, mf_kv_pool *kv, const mf_serve_weights *w,
                            const mf_serve_seq *seqs, int nseq, float *logits) {
  const mf_backend *be = mf_ctx_backend(c);
  int C = g->C, NH = g->NH;
  mf_ctx_reset(c);
  if (kv->L != g->L || kv->NH != NH || kv->hs != C / NH)
    return MF_ERR(MF_ERR_INTERNAL, "KV pool shape does not match the model");
  int N = 0, M = 0;
  for (int s = 0; s < nseq; s++) {
    const mf_serve_seq *q = &seqs[s];
    if (q->n < 0 || q->pos0 < 0 || q->pos0 + q->n > g->maxT)
      return MF_ERR(MF_ERR_INPUT, "sequence of %d tokens exceeds the model's context of %d", q->pos0 + q->n, g->maxT);
    for (int t = 0; t < q->n; t++)
      if (q->tokens[t] < 0 || q->tokens[t] >= g->V)
        return MF_ERR(MF_ERR_INPUT, "token id %d is out of range [0, %d)", q->tokens[t], g->V);
    if (q->want_logits && q->n == 0)
      return MF_ERR(MF_ERR_INTERNAL, "logits wanted from a sequence with no new token");
    N += q->n;
    M += q->want_logits;
  }
  if (N == 0) return MF_OK;
  mf_paged_seq *ps;
  float *x, *y, *h, *ln, *mean, *rstd, *qkv, *att, *fc, *fc2;
  ALLOC(ps, nseq);
  ALLOC(x, (size_t)N * C); /* [N,C] residual stream: all sequences' new rows, in order */
  ALLOC(y, (size_t)N * C);
  ALLOC(h, (size_t)N * C);
  ALLOC(ln, (size_t)N * C); /* [N,C] layernorm outputs */
  ALLOC(mean, N);
  ALLOC(rstd, N);
  ALLOC(qkv, (size_t)N * 3 * C);
  ALLOC(att, (size_t)N * C);
  ALLOC(fc, (size_t)N * 4 * C);
  ALLOC(fc2, (size_t)N * 4 * C);
  const float *wte = g->wte->data, *wpe = g->wpe->data;
  for (int s = 0, row = 0; s < nseq; s++) {
    const mf_serve_seq *q = &seqs[s];
    ps[s] = (mf_paged_seq){.row0 = row, .nq = q->n, .pos0 = q->pos0, .tiled = q->tiled, .blocks = q->blocks};
    for (int t = 0; t < q->n; t++, row++) {
      const float *te = wte + (size_t)q->tokens[t] * C, *pe = wpe + (size_t)(q->pos0 + t) * C;
      float *o = x + (size_t)row * C;
      for (int i = 0; i < C; i++) o[i] = te[i] + pe[i];
    }
  }
  /* residual adds fused with the layernorm after them, the up-projection with its GELU (as
   * mf_gpt_forward); the last block's sum alone: ln_f runs on the rows that want logits */
  if (g->L > 0) be->layernorm_forward(ln, mean, rstd, x, g->h[0].ln_1_w->data, g->h[0].ln_1_b->data, N, C);
  for (int l = 0; l < g->L; l++) {
    mf_gpt_block *bl = &g->h[l];
    float *kc = kv->k + (size_t)l * kv->layer, *vc = kv->v + (size_t)l * kv->layer;
    float *const *wt = w ? w->conv_t + (size_t)l * 4 : (float *const[4]){NULL, NULL, NULL, NULL};
    mm(be, qkv, ln, bl->c_attn_w->data, wt[0], bl->c_attn_b->data, N, C, 3 * C);
    kv_paged_append(kc, vc, qkv, ps, nseq, C, NH, kv->bs);
    attention_paged_forward(att, qkv, kc, vc, ps, nseq, 3 * C, C, NH, kv->bs);
    mm(be, h, att, bl->attn_proj_w->data, wt[1], bl->attn_proj_b->data, N, C, C);
    be->residual_layernorm_forward(ln, y, mean, rstd, x, h, bl->ln_2_w->data, bl->ln_2_b->data, N, C);
    mm_gelu(be, fc2, fc, ln, bl->c_fc_w->data, wt[2], bl->c_fc_b->data, N, C, 4 * C);
    mm(be, h, fc2, bl->mlp_proj_w->data, wt[3], bl->mlp_proj_b->data, N, 4 * C, C);
    if (l + 1 < g->L)
      be->residual_layernorm_forward(ln, x, mean, rstd, y, h, g->h[l + 1].ln_1_w->data, g->h[l + 1].ln_1_b->data,
                                     N, C);
    else
      be->residual_forward(x, y, h, (size_t)N * C);
  }
  if (M == 0) return MF_OK;
  /* the vocabulary projection is the largest matmul: only rows whose logits are wanted */
  for (int s = 0, m = 0; s < nseq; s++)
    if (seqs[s].want_logits)
      memcpy(y + (size_t)m++ * C, x + ((size_t)ps[s].row0 + seqs[s].n - 1) * C, (size_t)C * sizeof(float));
  be->layernorm_forward(h, mean, rstd, y, g->ln_f_w->data, g->ln_f_b->data, M, C);
  if (M <= skinny_rows_max()) matmul_skinny_t_forward(logits, h, wte, NULL, M, C, g->Vp);
  else if (w) be->matmul_forward(logits, h, w->wte_t, NULL, M, C, g->Vp, 0);
  else be->matmul_forward(logits, h, wte, NULL, M, C, g->Vp, 1);
  return MF_OK;
}
