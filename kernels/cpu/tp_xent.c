/* Vocabulary-parallel cross-entropy (Megatron-LM style), the kernels of parallel/tp_ops.c's
 * tp_xent: each rank holds logits [N,Vl] for vocabulary columns [v0, v0+Vl), of which the
 * first nreal are real (the rest is padding). The forward runs in three phases with an
 * all-reduce between each (the op does those): the row max (all-reduced with max), the
 * exps with their sum and the target's logit (all-reduced with sum, in double), then the
 * normalisation and the loss. Parameter gradients accumulate (+=); activation gradients
 * are written (=): there are no parameters, tp_xent_backward writes dlogits. Rows run in
 * parallel; each row's sums run in order, so they are the same for any thread count. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define PAR_MIN (1 << 15)

void tp_xent_max(float *M /* [N] */, const float *logits /* [N,Vl] */, int N, int Vl, int nreal) {
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    const float *r = logits + (size_t)i * Vl;
    float m = -INFINITY;
    for (int j = 0; j < nreal; j++) m = r[j] > m ? r[j] : m;
    M[i] = m;
  }
}

void tp_xent_exp(double *S /* [N,2] */, float *ex /* [N,Vl], may alias logits */,
                 const float *logits /* [N,Vl] */, const float *M /* [N] */,
                 const int32_t *targets /* [N] */, int N, int Vl, int nreal, int v0) {
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    const float *x = logits + (size_t)i * Vl;
    float *r = ex + (size_t)i * Vl;
    int tg = targets[i], t = tg - v0;
    S[2 * i + 1] = tg >= 0 && t >= 0 && t < nreal ? (double)x[t] : 0.0; /* before r overwrites x */
    float m = M[i];
    for (int j = 0; j < nreal; j++) r[j] = x[j] - m;
    vexpf(r, r, (size_t)nreal);
    double s = 0;
    for (int j = 0; j < nreal; j++) s += r[j];
    S[2 * i] = s;
    if (Vl > nreal) memset(r + nreal, 0, (size_t)(Vl - nreal) * sizeof(float));
  }
}

void tp_xent_finish(float *losses /* [N] */, float *probs /* [N,Vl], in place over ex */,
                    const double *S /* [N,2] */, const float *M /* [N] */,
                    const int32_t *targets /* [N] */, int N, int Vl, int nreal) {
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    float *r = probs + (size_t)i * Vl;
    float inv = (float)(1.0 / S[2 * i]);
    for (int j = 0; j < nreal; j++) r[j] *= inv;
    losses[i] = targets[i] >= 0 ? (float)(log(S[2 * i]) + (double)M[i] - S[2 * i + 1]) : 0.0f;
  }
}

void tp_xent_backward(float *dlogits /* [N,Vl], may alias probs */, const float *dlosses /* [N] */,
                      const float *probs /* [N,Vl] */, const int32_t *targets /* [N] */, int N,
                      int Vl, int v0) {
#pragma omp parallel for schedule(static) if ((long)N * Vl > PAR_MIN)
  for (int i = 0; i < N; i++) {
    float *d = dlogits + (size_t)i * Vl;
    const float *pr = probs + (size_t)i * Vl;
    if (targets[i] < 0) {
      memset(d, 0, (size_t)Vl * sizeof(float));
      continue;
    }
    int t = targets[i] - v0;
    float g = dlosses[i], pt = t >= 0 && t < Vl ? pr[t] : 0.0f; /* before an aliased d overwrites it */
#pragma omp simd
    for (int j = 0; j < Vl; j++) d[j] = pr[j] * g;
    if (t >= 0 && t < Vl) d[t] = (pt - 1.0f) * g;
  }
}
