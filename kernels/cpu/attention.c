/* Causal multi-head self-attention, flash-style on the CPU.
 * Parameter gradients accumulate (+=); activation gradients are written (=): attention
 * has no parameters, attention_backward writes all of dqkv.
 *
 * Per head: out = softmax(q k^T / sqrt(hs) + causal mask) v. No T x T matrix is ever
 * formed; a thread holds one score tile [BQ x BK] (plus a few tiles of the same size).
 *
 * Forward, per (batch, head, block of BQ query rows): walk the key tiles up to the
 * diagonal with an online softmax (running row max m and sum l; the partial output is
 * rescaled by exp(m_old - m_new) when the max grows). Saves lse = m + log(l) per row so
 * that backward rebuilds P without a second softmax.
 *
 * Backward, per (batch, head) (each task owns its head's slices of dqkv: no races, no
 * atomics): for each key tile j, and each query block i on or below the diagonal:
 * P = exp(S - lse), dV_j += P^T dO_i, dP = dO_i V_j^T, dS = P (dP - D_i) with
 * D_i = rowsum(dO_i O_i), dQ_i += scale dS K_j, dK_j += scale dS^T Q_i.
 *
 * Tile products run on our own small GEMM (tile_gemm below), not on OpenBLAS: the tiles
 * are 64 wide and already in cache, where a library call spends much of its time packing
 * and scaling; here the operands are read in place (a transposed A is just other
 * strides), and only K^T and V^T tiles are copied, once per key tile. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define BQ 64        /* query rows per block */
#define BK 64        /* keys per tile (a multiple of 16: packed K^T/V^T tiles are padded) */
#define PAR_MIN 4096 /* (score elements * hs) / 64 below which one thread does it all */

static inline int imin(int a, int b) { return a < b ? a : b; }

/* ---- tile GEMM: C[M,N] = alpha A B (acc = 0) or C += alpha A B (acc = 1) ----
 * A element (i,p) is A[i*rsa + p*csa], so A^T costs nothing; B rows are contiguous
 * (row p at B + p*ldb), C rows at C + i*ldc. */

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define MR 6  /* micro-tile: 6 rows x 16 columns = 12 accumulators in registers */
#define NR 16

/* mr (rows) and full (16 valid columns, else masked) are constants at each call site,
 * so every instance keeps its accumulators in registers */
static inline __attribute__((always_inline)) void ukernel(
    const int mr, const int full, int K, const float *A /* [mr,K] */, long rsa, long csa,
    const float *B /* [K,16] */, long ldb, float *C /* [mr,16] */, long ldc, float alpha,
    int acc, __m256i m0, __m256i m1) {
  __m256 c0[MR], c1[MR];
  for (int r = 0; r < mr; r++) c0[r] = c1[r] = _mm256_setzero_ps();
  for (int p = 0; p < K; p++) {
    const float *b = B + p * ldb, *a = A + p * csa;
    __m256 b0 = full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
    __m256 b1 = full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
    for (int r = 0; r < mr; r++) {
      __m256 av = _mm256_broadcast_ss(a + r * rsa);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
  __m256 al = _mm256_set1_ps(alpha);
  for (int r = 0; r < mr; r++) {
    float *c = C + r * ldc;
    if (full) {
      __m256 v0 = acc ? _mm256_fmadd_ps(al, c0[r], _mm256_loadu_ps(c)) : _mm256_mul_ps(al, c0[r]);
      __m256 v1 = acc ? _mm256_fmadd_ps(al, c1[r], _mm256_loadu_ps(c + 8)) : _mm256_mul_ps(al, c1[r]);
      _mm256_storeu_ps(c, v0);
      _mm256_storeu_ps(c + 8, v1);
    } else {
      __m256 v0 = acc ? _mm256_fmadd_ps(al, c0[r], _mm256_maskload_ps(c, m0)) : _mm256_mul_ps(al, c0[r]);
      __m256 v1 = acc ? _mm256_fmadd_ps(al, c1[r], _mm256_maskload_ps(c + 8, m1)) : _mm256_mul_ps(al, c1[r]);
      _mm256_maskstore_ps(c, m0, v0);
      _mm256_maskstore_ps(c + 8, m1, v1);
    }
  }
}

#define UK(mr, full) \
  ukernel(mr, full, K, a, rsa, csa, b, ldb, c, ldc, alpha, acc, m0, m1)

static void tile_gemm(int M, int N, int K, const float *A, long rsa, long csa,
                      const float *B /* [K, ldb] */, long ldb, float *C /* [M, ldc] */, long ldc,
                      float alpha, int acc) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int j = 0; j < N; j += NR) {
    int nn = imin(NR, N - j);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn - 8), lane);
    const float *b = B + j;
    for (int i = 0; i < M; i += MR) {
      const float *a = A + i * rsa;
      float *c = C + i * ldc + j;
      int mr = imin(MR, M - i);
      if (nn == NR) {
        switch (mr) {
          case 6: UK(6, 1); break;
          case 5: UK(5, 1); break;
          case 4: UK(4, 1); break;
          case 3: UK(3, 1); break;
          case 2: UK(2, 1); break;
          default: UK(1, 1); break;
        }
      } else {
        switch (mr) {
          case 6: UK(6, 0); break;
          case 5: UK(5, 0); break;
          case 4: UK(4, 0); break;
          case 3: UK(3, 0); break;
          case 2: UK(2, 0); break;
          default: UK(1, 0); break;
        }
      }
    }
  }
}
#undef UK

#else /* portable form */

static void tile_gemm(int M, int N, int K, const float *A, long rsa, long csa,
                      const float *B /* [K, ldb] */, long ldb, float *C /* [M, ldc] */, long ldc,
                      float alpha, int acc) {
  for (int i = 0; i < M; i++) {
    float *c = C + i * ldc;
    if (!acc) memset(c, 0, (size_t)N * sizeof(float));
    for (int p = 0; p < K; p++) {
      float a = alpha * A[i * rsa + p * csa];
      const float *b = B + p * ldb;
      for (int j = 0; j < N; j++) c[j] += a * b[j];
    }
  }
}
#endif

/* dst[hs, BK] = src[jn rows of stride ld, hs]^T, columns jn .. jnp-1 zeroed */
static void pack_t(float *dst, const float *src, int ld, int jn, int jnp, int hs) {
  for (int d = 0; d < hs; d++) {
    float *o = dst + (size_t)d * BK;
    for (int c = 0; c < jn; c++) o[c] = src[(size_t)c * ld + d];
    for (int c = jn; c < jnp; c++) o[c] = 0.0f;
  }
}

/* ---- forward ---- */

/* One block of qn query rows at positions pos .. pos+qn-1 of one head; they see keys
 * 0 .. pos+qn-1 (row r sees keys <= pos + r). q, k, v: strided views (row stride ld).
 * S, Kt, O, m, l are this thread's scratch. */
static void fwd_block(float *out /* [qn, ldo] */, int ldo, float *lse /* [qn] */,
                      const float *q /* [qn, ld] */, const float *k /* [pos+qn, ld] */,
                      const float *v /* [pos+qn, ld] */, int ld, int qn, int pos, int hs,
                      float scale, float *S /* [BQ,BK] */, float *Kt /* [hs,BK] */,
                      float *O /* [BQ,hs] */, float *m /* [BQ] */, float *l /* [BQ] */) {
  int nkeys = pos + qn;
  for (int j0 = 0; j0 < nkeys; j0 += BK) {
    int jn = imin(BK, nkeys - j0), jnp = (jn + 15) & ~15;
    pack_t(Kt, k + (size_t)j0 * ld, ld, jn, jnp, hs);
    tile_gemm(qn, jnp, hs, q, ld, 1, Kt, BK, S, BK, scale, 0); /* S = scale q k^T */
    for (int r = 0; r < qn; r++) {
      float *s = S + (size_t)r * BK;
      int nv = imin(pos + r - j0 + 1, jn); /* causal: later keys are masked */
      if (nv <= 0) {                        /* the whole tile is in this row's future */
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
        l[r] = sum; /* O is written, not accumulated, on the first tile */
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
    tile_gemm(qn, hs, jn, S, BK, 1, v + (size_t)j0 * ld, ld, O, hs, 1.0f, j0 > 0); /* O += P v */
  }
  for (int r = 0; r < qn; r++) {
    float inv = 1.0f / l[r];
    const float *o = O + (size_t)r * hs;
    float *dst = out + (size_t)r * ldo;
#pragma omp simd
    for (int d = 0; d < hs; d++) dst[d] = o[d] * inv;
    lse[r] = m[r] + logf(l[r]);
  }
}

void attention_forward(float *out /* [B,T,C] */, float *lse /* [B,NH,T] */,
                       const float *qkv /* [B,T,3C] */, int B, int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  int nqb = (T + BQ - 1) / BQ;
  long nbh = (long)B * NH, ntask = nbh * nqb;
  double work = (double)nbh * T * T * 0.5 * hs;
#pragma omp parallel if (ntask > 1 && work > PAR_MIN * 64.0)
  {
    float S[BQ * BK], Kt[hs * BK], O[BQ * hs], m[BQ], l[BQ];
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < ntask; task++) {
      int qb = nqb - 1 - (int)(task / nbh); /* the longest blocks (last rows) go first */
      long bh = task % nbh;
      int b = (int)(bh / NH), h = (int)(bh % NH);
      int i0 = qb * BQ, qn = imin(BQ, T - i0);
      const float *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
      fwd_block(out + ((size_t)b * T + i0) * C + (size_t)h * hs, C, lse + bh * T + i0,
                base + (size_t)i0 * C3, base + C, base + 2 * C, C3, qn, i0, hs, scale, S, Kt, O,
                m, l);
    }
  }
}

/* ---- backward ---- */

/* scratch of one thread for bwd_head */
typedef struct {
  float *S, *dP;   /* [BQ,BK]: P, then dS */
  float *Kt, *Vt;  /* [hs,BK]: the key tile's K^T and V^T */
  float *dK, *dV;  /* [BK,hs]: the key tile's gradients, stored to dqkv when complete */
} bwd_scratch;

/* One (batch, head). q/k/v and dq/dk/dv are strided views (row stride ld) of qkv and
 * dqkv; dO and O have row stride ldo. Every element of dq/dk/dv is written: dq by the
 * first key tile (all rows see key 0), dk/dv per key tile from the local sums. */
static void bwd_head(float *dq, float *dk, float *dv /* [T, ld] each */, int ld,
                     const float *q, const float *k, const float *v /* [T, ld] each */,
                     const float *dO, const float *O /* [T, ldo] each */, int ldo,
                     const float *lse /* [T] */, int T, int hs, float scale, bwd_scratch *w) {
  for (int j0 = 0; j0 < T; j0 += BK) {
    int jn = imin(BK, T - j0), jnp = (jn + 15) & ~15;
    const float *kj = k + (size_t)j0 * ld;
    pack_t(w->Kt, kj, ld, jn, jnp, hs);
    pack_t(w->Vt, v + (size_t)j0 * ld, ld, jn, jnp, hs);
    int first = 1;
    for (int i0 = (j0 / BQ) * BQ; i0 < T; i0 += BQ) {
      int qn = imin(BQ, T - i0);
      const float *qi = q + (size_t)i0 * ld, *dOi = dO + (size_t)i0 * ldo;
      /* P = exp(scale q k^T - lse) on the causal entries, 0 elsewhere */
      tile_gemm(qn, jnp, hs, qi, ld, 1, w->Kt, BK, w->S, BK, scale, 0);
      for (int r = 0; r < qn; r++) {
        float *s = w->S + (size_t)r * BK;
        int nv = i0 + r - j0 + 1;
        nv = nv < 0 ? 0 : nv > jn ? jn : nv;
        float L = lse[i0 + r];
#pragma omp simd
        for (int c = 0; c < nv; c++) s[c] -= L;
        vexpf(s, s, (size_t)nv);
        if (nv < jn) memset(s + nv, 0, (size_t)(jn - nv) * sizeof(float));
      }
      /* dV_j += P^T dO_i */
      tile_gemm(jn, hs, qn, w->S, 1, BK, dOi, ldo, w->dV, hs, 1.0f, !first);
      /* dP = dO_i V_j^T; dS = P (dP - D) in place, D_i = rowsum(dO_i O_i) */
      tile_gemm(qn, jnp, hs, dOi, ldo, 1, w->Vt, BK, w->dP, BK, 1.0f, 0);
      for (int r = 0; r < qn; r++) {
        const float *a = dOi + (size_t)r * ldo, *o = O + (size_t)(i0 + r) * ldo;
        float D = 0;
#pragma omp simd reduction(+ : D)
        for (int d = 0; d < hs; d++) D += a[d] * o[d];
        const float *p = w->S + (size_t)r * BK;
        float *g = w->dP + (size_t)r * BK;
#pragma omp simd
        for (int c = 0; c < jn; c++) g[c] = p[c] * (g[c] - D);
      }
      /* dQ_i += scale dS K_j (written by the first key tile); dK_j += scale dS^T Q_i */
      tile_gemm(qn, hs, jn, w->dP, BK, 1, kj, ld, dq + (size_t)i0 * ld, ld, scale, j0 > 0);
      tile_gemm(jn, hs, qn, w->dP, 1, BK, qi, ld, w->dK, hs, scale, !first);
      first = 0;
    }
    for (int c = 0; c < jn; c++) {
      memcpy(dk + (size_t)(j0 + c) * ld, w->dK + (size_t)c * hs, (size_t)hs * sizeof(float));
      memcpy(dv + (size_t)(j0 + c) * ld, w->dV + (size_t)c * hs, (size_t)hs * sizeof(float));
    }
  }
}

void attention_backward(float *dqkv /* [B,T,3C] */, const float *dout /* [B,T,C] */,
                        const float *qkv /* [B,T,3C] */, const float *out /* [B,T,C] */,
                        const float *lse /* [B,NH,T] */, int B, int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  long nbh = (long)B * NH;
  double work = (double)nbh * T * T * 0.5 * hs;
#pragma omp parallel if (nbh > 1 && work > PAR_MIN * 64.0)
  {
    float S[BQ * BK], dP[BQ * BK], Kt[hs * BK], Vt[hs * BK], dK[BK * hs], dV[BK * hs];
    bwd_scratch w = {S, dP, Kt, Vt, dK, dV};
#pragma omp for schedule(dynamic, 1)
    for (long bh = 0; bh < nbh; bh++) {
      int b = (int)(bh / NH), h = (int)(bh % NH);
      size_t row0 = (size_t)b * T;
      const float *base = qkv + row0 * C3 + (size_t)h * hs;
      float *dbase = dqkv + row0 * C3 + (size_t)h * hs;
      bwd_head(dbase, dbase + C, dbase + 2 * C, C3, base, base + C, base + 2 * C,
               dout + row0 * C + (size_t)h * hs, out + row0 * C + (size_t)h * hs, C,
               lse + bh * T, T, hs, scale, &w);
    }
  }
}
