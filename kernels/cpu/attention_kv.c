/* Inference attention against a KV cache (prefill and decode), forward only.
 * Parameter gradients accumulate (+=) and activation gradients are written (=) in the
 * training kernels; this one has no backward.
 *
 * Query t of sequence b sits at position pos0[b] + t and attends cached keys
 * 0 .. pos0[b] + t (the caller has written them).
 * Decode (up to DECODE_MAX query rows): each row directly against the cache, read in its
 * own layout: scores by dot products, one vexpf, then out = sum_j p_j v_j. A GEMM would
 * first copy (pack) the cached keys, doubling the memory traffic of a step that is all
 * memory traffic.
 * Prefill (many rows): online-softmax tiling as in attention.c's forward, per (b, head,
 * block of up to BQ query rows) with key tiles of BK, tile products on sgemm (OpenBLAS
 * runs single-threaded inside our parallel region). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define BQ 64
#define BK 128
#define PAR_MIN (1 << 16) /* score elements times hs below which one thread does it all */
#define DECODE_MAX 8      /* Tq up to this takes the direct per-row path */

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

/* One query row at position pos against keys 0 .. pos of one head's cache.
 * S: [pos+1] scratch; acc: [hs] scratch. (attention_paged.c repeats these steps
 * operation for operation, so that served and generated tokens agree bit for bit.) */
static void kv_row(float *out /* [hs] */, const float *q /* [hs] */,
                   const float *k /* [pos+1, hs] */, const float *v /* [pos+1, hs] */, int pos,
                   int hs, float scale, float *S, float *acc) {
  int n = pos + 1;
  float mx = -INFINITY;
  for (int j = 0; j < n; j++) {
    const float *kj = k + (size_t)j * hs;
    float d = 0;
#pragma omp simd reduction(+ : d)
    for (int c = 0; c < hs; c++) d += q[c] * kj[c];
    S[j] = d * scale;
    mx = S[j] > mx ? S[j] : mx;
  }
#pragma omp simd
  for (int j = 0; j < n; j++) S[j] -= mx;
  vexpf(S, S, (size_t)n);
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; j++) sum += S[j];
  memset(acc, 0, (size_t)hs * sizeof(float));
  for (int j = 0; j < n; j++) {
    const float *vj = v + (size_t)j * hs;
    float p = S[j];
#pragma omp simd
    for (int c = 0; c < hs; c++) acc[c] += p * vj[c];
  }
  float inv = 1.0f / sum;
#pragma omp simd
  for (int c = 0; c < hs; c++) out[c] = acc[c] * inv;
}

void attention_kv_forward(float *out /* [B,Tq,C] */, const float *q /* [B,Tq,q_stride] */,
                          const float *kcache /* [B,NH,Tmax,hs] */,
                          const float *vcache /* [B,NH,Tmax,hs] */, const int *pos0 /* [B] */,
                          int q_stride, int B, int Tq, int C, int NH, int Tmax) {
  if (B <= 0 || Tq <= 0 || C <= 0) return;
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  int nqb = (Tq + BQ - 1) / BQ;
  long nbh = (long)B * NH, ntask = nbh * nqb;
  double work = 0;
  int maxpos = 0;
  for (int b = 0; b < B; b++) {
    work += (double)NH * Tq * (pos0[b] + Tq) * hs;
    if (pos0[b] + Tq > maxpos) maxpos = pos0[b] + Tq;
  }
  if (Tq <= DECODE_MAX) {
#pragma omp parallel if (nbh > 1 && work > PAR_MIN)
    {
      float S[maxpos], acc[hs];
#pragma omp for schedule(dynamic, 1)
      for (long bh = 0; bh < nbh; bh++) {
        int b = (int)(bh / NH), h = (int)(bh % NH);
        size_t cache0 = (size_t)bh * Tmax * hs;
        for (int t = 0; t < Tq; t++)
          kv_row(out + ((size_t)b * Tq + t) * C + (size_t)h * hs,
                 q + ((size_t)b * Tq + t) * q_stride + (size_t)h * hs, kcache + cache0,
                 vcache + cache0, pos0[b] + t, hs, scale, S, acc);
      }
    }
    return;
  }
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
