/* Generation with the KV cache equals generation without it: for a random GPT, the
 * logits of mf_gpt_step (prompt prefill, then one token at a time against the cache)
 * match a full forward over the whole sequence at every position, greedy decoding picks
 * the same tokens, and batched sequences at different positions match single ones. */
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "kernels/backend.h"
#include "tests/test.h"
#include "trainers/gpt.h"
#include "trainers/sample.h"

enum { L = 2, NH = 3, C = 48, V = 500, MAXT = 40, PROMPT = 7, NEW = 20 };

/* logits of the last position after a full forward over seq[0..n) */
static void full_logits(mf_gpt *g, mf_ctx *c, const int32_t *seq, int n, float *out) {
  mf_ctx_reset(c);
  mf_tensor idx = mf_view((void *)seq, MF_I32, 2, (int64_t[]){1, n});
  mf_tensor *lg = mf_gpt_forward(g, c, &idx, NULL);
  memcpy(out, (float *)lg->data + (size_t)(n - 1) * g->Vp, sizeof(float) * g->Vp);
}

int main(void) {
  mf_set_threads(2);
  mf_model_cfg mc = {.family = "gpt", .n_layer = L, .n_head = NH, .n_embd = C, .block_size = MAXT, .vocab_size = V};
  mf_gpt *g;
  CHECK(mf_gpt_create(&g, &mc) == MF_OK);
  mf_params_init(&g->params, 11);
  /* larger weights than GPT-2 init so the logits are far from uniform */
  for (size_t i = 0; i < g->params.numel; i++) g->params.data[i] *= 4.0f;
  mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 1 << 20);
  mf_ctx_set_record(c, 0);
  int Vp = g->Vp;
  float *a = malloc(sizeof(float) * Vp), *b = malloc(sizeof(float) * Vp);
  int32_t seq[MAXT];
  mf_rng r;
  mf_rng_seed(&r, 3, 0);
  for (int i = 0; i < PROMPT; i++) seq[i] = (int32_t)mf_rng_below(&r, V);

  mf_gpt_kv kv;
  CHECK(mf_gpt_kv_create(&kv, g, 2, MAXT) == MF_OK);
  mf_sampler greedy;
  mf_sampler_init(&greedy, V, 0.0f, 0, 1.0f, 1);
  int n = PROMPT, pos = 0;
  double worst = 0;
  /* prefill, then decode one token at a time */
  mf_ctx_reset(c);
  CHECK(mf_gpt_step(g, c, &kv, seq, 1, PROMPT, &pos, a) == MF_OK);
  pos = PROMPT;
  for (int s = 0; s < NEW; s++) {
    full_logits(g, c, seq, n, b);
    double e = mf_test_nerr_f(a, b, V);
    if (e > worst) worst = e;
    int ta = mf_sample(&greedy, a), tb = mf_sample(&greedy, b);
    CHECKF(ta == tb, "step %d: cached greedy %d vs full %d", s, ta, tb);
    seq[n++] = ta;
    mf_ctx_reset(c);
    CHECK(mf_gpt_step(g, c, &kv, &seq[n - 1], 1, 1, &pos, a) == MF_OK);
    pos++;
  }
  CHECKF(worst < 1e-5, "cached vs full logits: normalised error %.3g", worst);
  printf("kv-cache vs full forward over %d steps: worst normalised error %.2e\n", NEW, worst);

  /* two sequences in one batch at different positions: each equals its single run */
  int32_t s2[MAXT];
  for (int i = 0; i < MAXT; i++) s2[i] = (int32_t)mf_rng_below(&r, V);
  mf_gpt_kv kv2;
  CHECK(mf_gpt_kv_create(&kv2, g, 2, MAXT) == MF_OK);
  /* fill slot 0 with 9 tokens of seq and slot 1 with 4 tokens of s2 (two separate prefills) */
  float *lb = malloc(sizeof(float) * 2 * Vp);
  mf_gpt_kv single;
  CHECK(mf_gpt_kv_create(&single, g, 1, MAXT) == MF_OK);
  /* prefill both slots to the same length 5, then step both with one token each */
  int32_t pre[2 * 5];
  for (int i = 0; i < 5; i++) pre[i] = seq[i], pre[5 + i] = s2[i];
  int p0[2] = {0, 0};
  mf_ctx_reset(c);
  CHECK(mf_gpt_step(g, c, &kv2, pre, 2, 5, p0, lb) == MF_OK);
  int p1[2] = {5, 5};
  int32_t nxt[2] = {seq[5], s2[5]};
  mf_ctx_reset(c);
  CHECK(mf_gpt_step(g, c, &kv2, nxt, 2, 1, p1, lb) == MF_OK);
  full_logits(g, c, seq, 6, a);
  full_logits(g, c, s2, 6, b);
  double e0 = mf_test_nerr_f(lb, a, V), e1 = mf_test_nerr_f(lb + Vp, b, V);
  CHECKF(e0 < 1e-5 && e1 < 1e-5, "batched decode vs single: %.3g %.3g", e0, e1);

  /* out of range: a token id or a position past the context is an input error */
  int32_t badtok = V;
  int p = 0;
  mf_ctx_reset(c);
  CHECK(mf_gpt_step(g, c, &single, &badtok, 1, 1, &p, a) == MF_ERR_INPUT);
  p = MAXT;
  CHECK(mf_gpt_step(g, c, &single, seq, 1, 1, &p, a) == MF_ERR_INPUT);

  free(lb);
  free(a);
  free(b);
  mf_sampler_free(&greedy);
  mf_gpt_kv_free(&kv);
  mf_gpt_kv_free(&kv2);
  mf_gpt_kv_free(&single);
  mf_ctx_destroy(c);
  mf_gpt_free(g);
  return mf_test_report("test_generate");
}
