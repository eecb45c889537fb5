/* Fused softmax + cross-entropy over a padded vocabulary.
 * Parameter gradients accumulate (+=); activation gradients are written (=): there are
 * no parameters, softmax_xent_backward writes dlogits.
 *
 * A row (Vp = 50304 floats, 200 KB) is read from memory once and written once. The exp
 * pass runs over L1-sized chunks with an online max: each chunk takes its max, the
 * running max M grows if needed (the double sum so far is rescaled), and the chunk's
 * exp(x - M) is stored with M remembered per chunk. A final pass (the row is still in
 * L2) multiplies each chunk by exp(M_chunk - M_final) / sum. exp runs once per element,
 * on vexpf. Sums are float within a chunk and double across chunks. probs may alias
 * logits (the target's logit is read first); dlogits may alias probs. Rows run in
 * parallel. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define CHUNK 2048 /* 8 KB: the chunk stays in L1 between its max, exp and sum loops */
#define PAR_MIN (1 << 15)

static void xent_row(float *loss, float *p /* [Vp] */, const float *x /* [Vp] */, int target,
                     int V, int Vp) {
  float xt = target >= 0 ? x[target] : 0.0f; /* before p (maybe x) is overwritten */
  int nch = (V + CHUNK - 1) / CHUNK;
  float ref[nch > 0 ? nch : 1]; /* the max each chunk's exps are relative to */
  float M = -INFINITY;
  double sum = 0;
  for (int k = 0; k < nch; k++) {
    int j0 = k * CHUNK, n = V - j0 < CHUNK ? V - j0 : CHUNK;
    const float *xc = x + j0;
    float *pc = p + j0;
    float mc = -INFINITY;
#pragma omp simd reduction(max : mc)
    for (int j = 0; j < n; j++) mc = xc[j] > mc ? xc[j] : mc;
    if (mc > M) {
      if (M != -INFINITY) sum *= exp((double)M - mc);
      M = mc;
    }
    ref[k] = M;
    if (M == -INFINITY) { /* every logit so far is -inf: nothing to add yet */
      memset(pc, 0, (size_t)n * sizeof(float));
      continue;
    }
#pragma omp simd
    for (int j = 0; j < n; j++) pc[j] = xc[j] - M;
    vexpf(pc, pc, (size_t)n);
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++) s += pc[j];
    sum += s;
  }
  double inv = 1.0 / sum;
  for (int k = 0; k < nch; k++) {
    int j0 = k * CHUNK, n = V - j0 < CHUNK ? V - j0 : CHUNK;
    float f = (float)(ref[k] == M ? inv : exp((double)ref[k] - M) * inv);
    float *pc = p + j0;
#pragma omp simd
    for (int j = 0; j < n; j++) pc[j] *= f;
  }
  if (Vp > V) memset(p + V, 0, (size_t)(Vp - V) * sizeof(float));
  *loss = target >= 0 ? (float)(log(sum) + (double)M - (double)xt) : 0.0f;
}

void softmax_xent_forward(float *losses /* [N] */, float *probs /* [N,Vp], may alias logits */,
                          const float *logits /* [N,Vp] */, const int32_t *targets /* [N] */,
                          int N, int V, int Vp) {
#pragma omp parallel for schedule(static) if ((long)N * Vp > PAR_MIN)
  for (int i = 0; i < N; i++)
    xent_row(&losses[i], probs + (size_t)i * Vp, logits + (size_t)i * Vp, targets[i], V, Vp);
}

void softmax_xent_backward(float *dlogits /* [N,Vp], may alias probs */,
                           const float *dlosses /* [N] */, const float *probs /* [N,Vp] */,
                           const int32_t *targets /* [N] */, int N, int V, int Vp) {
#pragma omp parallel for schedule(static) if ((long)N * Vp > PAR_MIN)
  for (int i = 0; i < N; i++) {
    float *dl = dlogits + (size_t)i * Vp;
    const float *p = probs + (size_t)i * Vp;
    int t = targets[i];
    if (t < 0) { /* ignored row: no gradient at all */
      memset(dl, 0, (size_t)Vp * sizeof(float));
      continue;
    }
    float d = dlosses[i], pt = p[t]; /* p[t] read before an aliased dl overwrites it */
#pragma omp simd
    for (int j = 0; j < V; j++) dl[j] = p[j] * d;
    dl[t] = (pt - 1.0f) * d;
    if (Vp > V) memset(dl + V, 0, (size_t)(Vp - V) * sizeof(float));
  }
}
