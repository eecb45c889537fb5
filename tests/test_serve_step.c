/* The server's batched, paged GPT step (trainers/gpt_serve.c) against mf_gpt_step, the
 * path `mforge generate` takes: random-init models, one or several sequences at once,
 * prompts prefilled whole or in chunks, then decode steps; block sizes that split key
 * tiles and ones that do not. The logits agree to float rounding (sgemm rounds a row
 * differently with the rows beside it, and few-row steps use the skinny matmuls); the
 * paged attention kernel itself equals attention_kv_forward bit for bit, and the skinny
 * matmuls match sgemm to rounding. The KV pool's accounting is checked on the way. */
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "kernels/backend.h"
#include "kernels/cpu/paged.h"
#include "kernels/cpu/skinny.h"
#include "serving/sched.h"
#include "trainers/sample.h"
#include "test.h"
#include "trainers/gpt.h"
#include "trainers/gpt_serve.h"

static mf_gpt *model(int L, int NH, int C, int T, uint64_t seed) {
  mf_model_cfg cfg = {.n_layer = L, .n_head = NH, .n_embd = C, .block_size = T, .vocab_size = 300};
  strcpy(cfg.family, "gpt");
  mf_gpt *g = NULL;
  if (mf_gpt_create(&g, &cfg) != MF_OK) return NULL;
  mf_params_init(&g->params, seed);
  /* random biases and norms too, so every term of the step matters */
  uint64_t st = seed * 7 + 1;
  for (int i = 0; i < g->params.n; i++) {
    mf_param *p = &g->params.p[i];
    if (p->t.ndim == 1) mf_test_fill(p->t.data, (size_t)mf_numel(&p->t), -0.5f, 0.5f, &st);
  }
  return g;
}

/* reference: each sequence alone through mf_gpt_step, prompt in one step then one token
 * at a time (as cmd_generate does); logits of every step kept */
typedef struct seqdef {
  int plen, ngen;
  int32_t tok[512];
} seqdef;

static int run_case(int L, int NH, int C, int T, int bs, int chunk, int nseq, const int *plens,
                    int ngen) {
  mf_gpt *g = model(L, NH, C, T, 1234 + L + C);
  if (!g) return 0;
  int Vp = g->Vp, fails = 0;
  mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 1 << 20);
  mf_ctx_set_record(c, 0);
  seqdef *sd = calloc(nseq, sizeof *sd);
  float *ref = malloc((size_t)nseq * (ngen + 1) * Vp * sizeof(float)); /* [s][step][Vp] */
  uint64_t st = 99;
  for (int s = 0; s < nseq; s++) {
    sd[s].plen = plens[s];
    sd[s].ngen = ngen;
    for (int t = 0; t < plens[s]; t++) sd[s].tok[t] = (int32_t)(mf_rng_u64((mf_rng *)&(mf_rng){{st++, 3, 5, 7}}) % 300);
    /* the generated tokens are fixed up front (not sampled): only the logits matter */
    for (int t = 0; t < ngen; t++) sd[s].tok[plens[s] + t] = (int32_t)((s * 31 + t * 17) % 300);
    mf_gpt_kv kv;
    CHECK(mf_gpt_kv_create(&kv, g, 1, T) == MF_OK);
    int pos = 0;
    for (int k = 0; k <= ngen; k++) {
      int n = k == 0 ? plens[s] : 1;
      mf_ctx_reset(c);
      CHECK(mf_gpt_step(g, c, &kv, sd[s].tok + pos, 1, n, &pos, ref + ((size_t)s * (ngen + 1) + k) * Vp) == MF_OK);
      pos += n;
    }
    mf_gpt_kv_free(&kv);
  }
  /* served: all sequences together; prompts in chunks of `chunk` tokens */
  mf_serve_weights sw;
  CHECK(mf_serve_weights_create(&sw, g) == MF_OK);
  mf_kv_pool pool;
  int per = (T + bs - 1) / bs;
  CHECK(mf_kv_pool_create(&pool, g, bs, nseq * per) == MF_OK);
  int32_t *bt = malloc((size_t)nseq * per * sizeof *bt);
  for (int s = 0; s < nseq; s++) CHECK(mf_kv_pool_alloc(&pool, mf_kv_blocks_for(&pool, plens[s] + ngen), bt + s * per));
  CHECK(!mf_kv_pool_alloc(&pool, pool.nfree + 1, bt)); /* too many: refused, nothing taken */
  int *pos = calloc(nseq, sizeof *pos), *k = calloc(nseq, sizeof *k);
  mf_serve_seq *q = calloc(nseq, sizeof *q);
  float *lg = malloc((size_t)nseq * Vp * sizeof(float));
  int *who = malloc(nseq * sizeof *who);
  for (int guard = 0; guard < 10000; guard++) {
    int nq = 0, m = 0;
    for (int s = 0; s < nseq; s++) {
      if (k[s] > ngen) continue;
      int prefill = pos[s] < plens[s];
      int n = prefill ? plens[s] - pos[s] : 1;
      if (prefill && n > chunk) n = chunk;
      int done_prompt = !prefill || pos[s] + n == plens[s];
      q[nq] = (mf_serve_seq){.tokens = sd[s].tok + pos[s], .n = n, .pos0 = pos[s],
                             .tiled = prefill && plens[s] > MF_PAGED_DECODE_MAX,
                             .blocks = bt + s * per, .want_logits = done_prompt};
      if (done_prompt) who[m++] = s;
      nq++;
    }
    if (!nq) break;
    CHECK(mf_gpt_serve_step(g, c, &pool, &sw, q, nq, lg) == MF_OK);
    for (int i = 0, j = 0; i < nq; i++) {
      int s = (int)((q[i].blocks - bt) / per);
      pos[s] += q[i].n;
      if (!q[i].want_logits) continue;
      const float *r = ref + ((size_t)s * (ngen + 1) + k[s]) * Vp;
      double e = mf_test_nerr_f(lg + (size_t)j * Vp, r, g->V);
      if (!(e < 2e-6)) {
        if (fails++ < 5)
          fprintf(stderr, "L%d C%d bs%d chunk%d: seq %d step %d logits differ (nerr %.3g)\n", L, C, bs, chunk, s, k[s], e);
      }
      j++;
      k[s]++;
    }
    (void)who;
  }
  for (int s = 0; s < nseq; s++) CHECK(k[s] == ngen + 1);
  for (int s = 0; s < nseq; s++) mf_kv_pool_release(&pool, mf_kv_blocks_for(&pool, plens[s] + ngen), bt + s * per);
  CHECK(pool.nfree == pool.nblocks);
  free(who);
  free(lg);
  free(q);
  free(k);
  free(pos);
  free(bt);
  mf_kv_pool_free(&pool);
  mf_serve_weights_free(&sw);
  free(ref);
  free(sd);
  mf_ctx_destroy(c);
  mf_gpt_free(g);
  CHECKF(fails == 0, "%d logit rows differ from mf_gpt_step (L%d NH%d C%d bs%d chunk%d)", fails, L, NH, C, bs, chunk);
  return 1;
}

/* paged attention == attention_kv_forward, bitwise, on the same keys and values */
static void attention_exact(int NH, int hs, int bs, int Tq, int pos0) {
  int C = NH * hs, T = pos0 + Tq, nb = (T + bs - 1) / bs;
  uint64_t st = 1234 + Tq;
  float *qkv = malloc((size_t)Tq * 3 * C * sizeof(float));
  float *kc = malloc((size_t)NH * T * hs * sizeof(float)), *vc = malloc((size_t)NH * T * hs * sizeof(float));
  float *kp = calloc((size_t)(nb + 3) * NH * bs * hs, sizeof(float)), *vp = calloc((size_t)(nb + 3) * NH * bs * hs, sizeof(float));
  float *o1 = malloc((size_t)Tq * C * sizeof(float)), *o2 = malloc((size_t)Tq * C * sizeof(float));
  mf_test_fill(qkv, (size_t)Tq * 3 * C, -1, 1, &st);
  mf_test_fill(kc, (size_t)NH * T * hs, -1, 1, &st);
  mf_test_fill(vc, (size_t)NH * T * hs, -1, 1, &st);
  int32_t *blocks = malloc((size_t)nb * sizeof *blocks);
  for (int j = 0; j < nb; j++) blocks[j] = nb + 2 - j; /* distinct, not in order */
  for (int h = 0; h < NH; h++) /* the same keys, in pool layout */
    for (int p = 0; p < T; p++) {
      size_t o = (((size_t)blocks[p / bs] * NH + h) * bs + p % bs) * hs;
      memcpy(kp + o, kc + ((size_t)h * T + p) * hs, (size_t)hs * sizeof(float));
      memcpy(vp + o, vc + ((size_t)h * T + p) * hs, (size_t)hs * sizeof(float));
    }
  attention_kv_forward(o1, qkv, kc, vc, &pos0, 3 * C, 1, Tq, C, NH, T);
  mf_paged_seq sq = {.row0 = 0, .nq = Tq, .pos0 = pos0, .tiled = Tq > MF_PAGED_DECODE_MAX, .blocks = blocks};
  attention_paged_forward(o2, qkv, kp, vp, &sq, 1, 3 * C, C, NH, bs);
  CHECKF(memcmp(o1, o2, (size_t)Tq * C * sizeof(float)) == 0, "paged attention differs (NH%d hs%d bs%d Tq%d pos%d)", NH, hs,
         bs, Tq, pos0);
  free(qkv), free(kc), free(vc), free(kp), free(vp), free(o1), free(o2), free(blocks);
}

static void skinny_close(int M, int C, int OC) {
  uint64_t st = 77;
  float *x = malloc((size_t)M * C * sizeof(float)), *w = malloc((size_t)C * OC * sizeof(float)),
        *o1 = malloc((size_t)M * OC * sizeof(float)), *o2 = malloc((size_t)M * OC * sizeof(float));
  mf_test_fill(x, (size_t)M * C, -1, 1, &st);
  mf_test_fill(w, (size_t)C * OC, -1, 1, &st);
  matmul_forward(o1, x, w, NULL, M, C, OC, 1);
  matmul_skinny_t_forward(o2, x, w, NULL, M, C, OC);
  double e = mf_test_nerr_f(o2, o1, (size_t)M * OC);
  CHECKF(e < 1e-6, "skinny matmul M%d C%d OC%d: nerr %.3g", M, C, OC, e);
  free(x), free(w), free(o1), free(o2);
}

/* the server's sampler against mf_sample: the same token, draw after draw */
static void sampler_same(void) {
  int V = 5000, bad = 0;
  float *lg = malloc((size_t)V * sizeof(float));
  uint64_t st = 5;
  struct { float t; int k; float p; } cfg[] = {{0, 0, 1}, {1, 0, 1}, {0.8f, 40, 0.95f}, {1.2f, 1, 1}, {0.5f, 4998, 1},
                                               {0.7f, 0, 0.9f}, {1, 100, 1}, {2, 7, 0.5f}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    mf_sampler a, b;
    mf_sampler_init(&a, V, cfg[c].t, cfg[c].k, cfg[c].p, 42 + c);
    mf_sampler_init(&b, V, cfg[c].t, cfg[c].k, cfg[c].p, 42 + c);
    for (int it = 0; it < 200; it++) {
      mf_test_fill(lg, (size_t)V, -8, 8, &st);
      if (it % 3 == 0) /* ties, also at the top-k boundary */
        for (int i = 0; i < V; i++) lg[i] = (float)((int)(lg[i] * 2)) / 2;
      bad += mf_sample(&a, lg) != mf_sched_sample(&b, lg);
    }
    mf_sampler_free(&a);
    mf_sampler_free(&b);
  }
  CHECKF(bad == 0, "%d sampled tokens differ from mf_sample", bad);
  free(lg);
}

int main(void) {
  mf_set_threads(2);
  sampler_same();
  for (int bs = 1; bs <= 160; bs = bs * 3 + 1) /* 1, 4, 13, 40, 121: tiles split and not */
    for (int k = 0; k < 4; k++) {
      int tq[] = {1, 3, 9, 150}, p0[] = {0, 7, 130, 200};
      attention_exact(3, 32, bs, tq[k], p0[k]);
    }
  attention_exact(2, 64, 128, 300, 0);
  for (int M = 1; M <= 9; M += 2) {
    skinny_close(M, 96, 131); /* vocabulary rows not a multiple of 4 */
    skinny_close(M, 33, 40);  /* C not a multiple of 8: the plain path */
  }
  int a1[] = {5}, a2[] = {40}, a3[] = {200};
  CHECK(run_case(2, 2, 32, 64, 16, 1000, 1, a1, 10));
  CHECK(run_case(2, 2, 32, 64, 16, 1000, 1, a2, 10));
  CHECK(run_case(2, 4, 256, 320, 16, 1000, 1, a3, 10)); /* key tiles spanning blocks */
  CHECK(run_case(2, 4, 256, 320, 48, 1000, 1, a3, 4));  /* blocks not dividing tiles */
  int p1[] = {1, 5, 8, 9, 40, 3};
  CHECK(run_case(2, 2, 32, 64, 16, 1000, 6, p1, 10));
  CHECK(run_case(2, 2, 32, 64, 16, 7, 6, p1, 10)); /* chunked prefill */
  int p3[20]; /* more rows than the skinny kernels take: the transposed vocabulary path */
  for (int i = 0; i < 20; i++) p3[i] = 1 + (i * 7) % 23;
  CHECK(run_case(2, 2, 32, 64, 16, 1000, 20, p3, 4));
  int p2[] = {200, 7, 130, 129, 1, 64, 65, 300};
  CHECK(run_case(2, 4, 256, 320, 16, 1000, 8, p2, 6));
  CHECK(run_case(2, 4, 256, 320, 128, 50, 8, p2, 6)); /* tiles in one block */
  CHECK(run_case(1, 4, 256, 320, 48, 33, 8, p2, 6));
  return mf_test_report("test_serve_step");
}
