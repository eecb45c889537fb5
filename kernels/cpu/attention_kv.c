/* Inference attention against a KV cache (prefill and decode), forward only.
 * Parameter gradients accumulate (+=) and activation gradients are written (=) in the
 * training kernels; this one has no backward.
 *
 * Query t of sequence b sits at position pos0[b] + t and attends cached keys
 * 0 .. pos0[b] + t (the caller has written them). Same online-softmax tiling as
 * attention.c's forward (whose block routine is static there, hence the copy): per
 * (b, head, block of up to BQ query rows), key tiles of BK from the cache, tile
 * products on sgemm. Decode (Tq = 1) is the qn = 1 case: one row against the cache. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define BQ 64
#define BK 128
#define PAR_MIN (1 << 16) /* score elements times hs below which one thread does it all */

static inline int imin(int a, int b) { return a < b ? a : b; }

/* qn query rows at positions pos .. pos+qn-1 against keys 0 .. pos+qn-1 (causal). */
static void kv_block(float *out /* [qn, ldo] */, int ldo, const float *q /* [qn, ldq] */,
                     int ldq, const float *k /* [pos+qn, hs] */, const float *v /* [pos+qn, hs] */,
                     int qn, int pos, int hs, float scale, float *S /* [BQ,BK] */,
                     float *O /* [BQ,hs] */, float *m /* [BQ] */, float *l /* [BQ] */) {
  int nkeys = pos + qn;
  for (int j0 = 0; j0 < nkeys; j0 += BK) {
    int jn = imin(BK, nkeys - j0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qn, jn, hs, scale, q, ldq,
                k + (size_t)j0 * hs, hs, 0.0f, S, BK);
    for (int r = 0; r < qn; r++) {
      float *s = S + (size_t)r * BK;
      int nv = imin(pos + r - j0 + 1, jn);
      if (nv <= 0) {
        memset(s, 0, (size_t)jn * sizeof(float));
        continue;
      }
      float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
      for (int c = 0; c < nv; c++) mx = s[c] > mx ? s[c] : mx;
      float mold = j0 == 0 ? -INFINITY : m[r];
      float mnew = mx > mold ? mx : mold;
#pragma omp simd
      for (int c = 0; c < nv; c++) s[c] -= mnew;
      vexpf(s, s, (size_t)nv);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int c = 0; c < nv; c++) sum += s[c];
      if (nv < jn) memset(s + nv, 0, (size_t)(jn - nv) * sizeof(float));
      if (j0 == 0) {
        l[r] = sum;
      } else {
        float alpha = expf(mold - mnew);
        l[r] = l[r] * alpha + sum;
        if (alpha != 1.0f) {
          float *o = O + (size_t)r * hs;
#pragma omp simd
          for (int d = 0; d < hs; d++) o[d] *= alpha;
        }
      }
      m[r] = mnew;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, qn, hs, jn, 1.0f, S, BK,
                v + (size_t)j0 * hs, hs, j0 == 0 ? 0.0f : 1.0f, O, hs);
  }
  for (int r = 0; r < qn; r++) {
    float inv = 1.0f / l[r];
    const float *o = O + (size_t)r * hs;
    float *dst = out + (size_t)r * ldo;
#pragma omp simd
    for (int d = 0; d < hs; d++) dst[d] = o[d] * inv;
  }
}

void attention_kv_forward(float *out /* [B,Tq,C] */, const float *q /* [B,Tq,q_stride] */,
                          const float *kcache /* [B,NH,Tmax,hs] */,
                          const float *vcache /* [B,NH,Tmax,hs] */, const int *pos0 /* [B] */,
                          int q_stride, int B, int Tq, int C, int NH, int Tmax) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  int nqb = (Tq + BQ - 1) / BQ;
  long nbh = (long)B * NH, ntask = nbh * nqb;
  double work = 0;
  for (int b = 0; b < B; b++) work += (double)NH * Tq * (pos0[b] + Tq) * hs;
#pragma omp parallel if (ntask > 1 && work > PAR_MIN)
  {
    float S[BQ * BK], O[BQ * hs], m[BQ], l[BQ];
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < ntask; task++) {
      int qb = nqb - 1 - (int)(task / nbh);
      long bh = task % nbh;
      int b = (int)(bh / NH), h = (int)(bh % NH);
      int t0 = qb * BQ, qn = imin(BQ, Tq - t0);
      size_t cache0 = (size_t)bh * Tmax * hs;
      kv_block(out + ((size_t)b * Tq + t0) * C + (size_t)h * hs, C,
               q + ((size_t)b * Tq + t0) * q_stride + (size_t)h * hs, q_stride, kcache + cache0,
               vcache + cache0, qn, pos0[b] + t0, hs, scale, S, O, m, l);
    }
  }
}
