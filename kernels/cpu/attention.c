/* Causal multi-head self-attention, flash-style on the CPU.
 * Parameter gradients accumulate (+=); activation gradients are written (=): attention
 * has no parameters, attention_backward writes all of dqkv.
 *
 * Per head: out = softmax(q k^T / sqrt(hs) + causal mask) v. No T x T matrix is ever
 * formed: a thread holds one score tile [BQ x BK], a few tiles of that size and O(T)
 * floats of row statistics. Work is split by (batch, head); each task owns its head's
 * slices of out, lse and dqkv, so there are no races and no atomics.
 *
 * Forward: for each key tile j and each query block i on or below the diagonal, an
 * online softmax (running row max m and sum l; the partial output is rescaled by
 * exp(m_old - m_new) when the max grows). Saves lse = m + log(l) per row so that
 * backward rebuilds P without a second softmax.
 *
 * Backward: for each key tile j, and each query block i on or below the diagonal:
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

#if defined(__AVX2__) && defined(__FMA__)
#define ATT_AVX2 1
#include <immintrin.h>
#endif

#define BQ 64              /* query rows per block */
#define BK 64              /* keys per tile (a multiple of 16: K^T/V^T tiles are padded) */
#define PAR_MIN (1 << 18)  /* causal scores * hs below which one thread does it all */

static inline int imin(int a, int b) { return a < b ? a : b; }

/* ---- tile GEMM: C[M,N] = alpha A B (acc = 0) or C += alpha A B (acc = 1) ----
 * A element (i,p) is A[i*rsa + p*csa], so A^T costs nothing; B rows are contiguous
 * (row p at B + p*ldb), C rows at C + i*ldc.
 * On tiles that cross the diagonal, work on entries the causal mask zeroes is skipped
 * (query row r sees key c when c <= r + off):
 *   CZ_NLIM   C is [rows, keys]: blocks wholly right of the diagonal are not computed
 *             (they keep stale values; callers mask them)
 *   CZ_KLIM   K runs over keys: a row block stops at its last visible key (A is 0 after)
 *   CZ_KSTART M runs over keys, K over rows: a key block starts at its first row that
 *             sees it (A is 0 before) */
enum { CZ_NONE, CZ_NLIM, CZ_KLIM, CZ_KSTART };

#ifdef ATT_AVX2

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
  ukernel(mr, full, kk, a + p0 * csa, rsa, csa, b + p0 * ldb, ldb, c, ldc, alpha, acc, m0, m1)

static void tile_gemm(int M, int N, int K, const float *A, long rsa, long csa,
                      const float *B /* [K, ldb] */, long ldb, float *C /* [M, ldc] */, long ldc,
                      float alpha, int acc, int causal, int off) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int j = 0; j < N; j += NR) {
    int nn = imin(NR, N - j);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nn - 8), lane);
    const float *b = B + j;
    for (int i = 0; i < M; i += MR) {
      const float *a = A + i * rsa;
      float *c = C + i * ldc + j;
      int mr = imin(MR, M - i), p0 = 0, kk = K;
      if (causal == CZ_NLIM && j >= i + mr + off) continue; /* no row here sees them */
      if (causal == CZ_KLIM) kk = imin(K, i + mr + off);
      if (causal == CZ_KSTART) p0 = imin(K, i - off > 0 ? i - off : 0), kk = K - p0;
      if (kk < 0) kk = 0;
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
                      float alpha, int acc, int causal, int off) {
  for (int i = 0; i < M; i++) {
    float *c = C + i * ldc;
    int p0 = 0, kk = K, n = N;
    if (causal == CZ_NLIM) n = imin(N, i + 1 + off > 0 ? i + 1 + off : 0);
    if (causal == CZ_KLIM) kk = imin(K, i + 1 + off > 0 ? i + 1 + off : 0);
    if (causal == CZ_KSTART) p0 = imin(K, i - off > 0 ? i - off : 0);
    if (!acc) memset(c, 0, (size_t)n * sizeof(float));
    for (int p = p0; p < kk; p++) {
      float a = alpha * A[i * rsa + p * csa];
      const float *b = B + p * ldb;
      for (int j = 0; j < n; j++) c[j] += a * b[j];
    }
  }
}
#endif

/* dst[hs, BK] = src[jn rows of stride ld, hs]^T, columns jn .. jnp-1 zeroed */
static void pack_t(float *dst, const float *src, int ld, int jn, int jnp, int hs) {
  int c8 = 0, d8 = 0;
#ifdef ATT_AVX2
  c8 = jn & ~7, d8 = hs & ~7;
  for (int c = 0; c < c8; c += 8) /* 8 x 8 blocks through registers */
    for (int d = 0; d < d8; d += 8) {
      const float *s0 = src + (size_t)c * ld + d;
      __m256 r0 = _mm256_loadu_ps(s0), r1 = _mm256_loadu_ps(s0 + ld);
      __m256 r2 = _mm256_loadu_ps(s0 + 2 * ld), r3 = _mm256_loadu_ps(s0 + 3 * ld);
      __m256 r4 = _mm256_loadu_ps(s0 + 4 * ld), r5 = _mm256_loadu_ps(s0 + 5 * ld);
      __m256 r6 = _mm256_loadu_ps(s0 + 6 * ld), r7 = _mm256_loadu_ps(s0 + 7 * ld);
      __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
      __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float *o = dst + (size_t)d * BK + c;
      _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(o + BK, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(o + 2 * BK, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(o + 3 * BK, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(o + 4 * BK, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(o + 5 * BK, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(o + 6 * BK, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(o + 7 * BK, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
#endif
  for (int d = 0; d < hs; d++) { /* the edges (all of it without AVX2) */
    float *o = dst + (size_t)d * BK;
    for (int c = d < d8 ? c8 : 0; c < jn; c++) o[c] = src[(size_t)c * ld + d];
    for (int c = jn; c < jnp; c++) o[c] = 0.0f;
  }
}

/* ---- forward ---- */

/* One (batch, head). Key tiles are the outer loop, so each K^T tile is packed once and
 * its V rows stay in cache while every query block on or below the diagonal visits it.
 * The rows of out are the accumulators (unnormalised until the end); the running max m
 * lives in lse until it becomes lse. q, k, v: strided views (row stride ld). */
static void fwd_head(float *out /* [T, ldo] */, int ldo, float *lse /* [T] */,
                     const float *q, const float *k, const float *v /* [T, ld] each */, int ld,
                     int T, int hs, float scale, float *S /* [BQ,BK] */,
                     float *Kt /* [hs,BK] */, float *l /* [T] */) {
  float sc[BQ];
  for (int j0 = 0; j0 < T; j0 += BK) {
    int jn = imin(BK, T - j0), jnp = (jn + 15) & ~15;
    pack_t(Kt, k + (size_t)j0 * ld, ld, jn, jnp, hs);
    for (int i0 = (j0 / BQ) * BQ; i0 < T; i0 += BQ) {
      int qn = imin(BQ, T - i0), off = i0 - j0; /* row r sees key c when c <= r + off */
      float *o = out + (size_t)i0 * ldo, *m = lse + i0, *li = l + i0;
      tile_gemm(qn, jnp, hs, q + (size_t)i0 * ld, ld, 1, Kt, BK, S, BK, scale, 0, CZ_NLIM,
                off); /* S = scale q k^T */
      /* row max, s - max (masked entries -inf), one exp over the tile, row sums */
      for (int r = 0; r < qn; r++) {
        float *s = S + (size_t)r * BK;
        int nv = imin(r + off + 1, jn);
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int c = 0; c < nv; c++) mx = s[c] > mx ? s[c] : mx;
        float mold = j0 == 0 ? -INFINITY : m[r];
        float mnew = mx > mold ? mx : mold; /* -inf only if the row sees nothing yet */
        float sub = mnew == -INFINITY ? 0.0f : mnew;
#pragma omp simd
        for (int c = 0; c < jn; c++) s[c] = c < nv ? s[c] - sub : -INFINITY;
        m[r] = mnew;
        sc[r] = j0 == 0 || mold == mnew ? 1.0f : expf(mold - mnew); /* rescales o and l */
      }
      vexpf(S, S, (size_t)(qn - 1) * BK + jn);
      for (int r = 0; r < qn; r++) {
        const float *s = S + (size_t)r * BK;
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < jn; c++) sum += s[c];
        if (j0 == 0) {
          li[r] = sum; /* o is written, not accumulated, by the first key tile */
        } else {
          li[r] = li[r] * sc[r] + sum;
          if (sc[r] != 1.0f) {
            float *orow = o + (size_t)r * ldo;
#pragma omp simd
            for (int d = 0; d < hs; d++) orow[d] *= sc[r];
          }
        }
      }
      tile_gemm(qn, hs, jn, S, BK, 1, v + (size_t)j0 * ld, ld, o, ldo, 1.0f, j0 > 0, CZ_KLIM,
                off); /* o += P v */
    }
  }
  for (int t = 0; t < T; t++) {
    float inv = 1.0f / l[t], *orow = out + (size_t)t * ldo;
#pragma omp simd
    for (int d = 0; d < hs; d++) orow[d] *= inv;
    lse[t] += logf(l[t]);
  }
}

void attention_forward(float *out /* [B,T,C] */, float *lse /* [B,NH,T] */,
                       const float *qkv /* [B,T,3C] */, int B, int T, int C, int NH) {
  if (B <= 0 || T <= 0 || C <= 0) return;
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  long nbh = (long)B * NH;
  double work = (double)nbh * T * T * 0.5 * hs;
#pragma omp parallel if (nbh > 1 && work > PAR_MIN)
  {
    float S[BQ * BK], Kt[hs * BK], l[T];
#pragma omp for schedule(dynamic, 1)
    for (long bh = 0; bh < nbh; bh++) {
      int b = (int)(bh / NH), h = (int)(bh % NH);
      const float *base = qkv + (size_t)b * T * C3 + (size_t)h * hs;
      fwd_head(out + (size_t)b * T * C + (size_t)h * hs, C, lse + bh * T, base, base + C,
               base + 2 * C, C3, T, hs, scale, S, Kt, l);
    }
  }
}

/* ---- backward ---- */

/* scratch of one thread for bwd_head */
typedef struct {
  float *S, *dP;   /* [BQ,BK]: P, then dS */
  float *Kt, *Vt;  /* [hs,BK]: the key tile's K^T and V^T */
  float *dK, *dV;  /* [BK,hs]: the key tile's gradients, stored to dqkv when complete */
  float *D;        /* [T]: rowsum(dO O) of the head (T floats, not T x T) */
} bwd_scratch;

/* One (batch, head). q/k/v and dq/dk/dv are strided views (row stride ld) of qkv and
 * dqkv; dO and O have row stride ldo. Every element of dq/dk/dv is written: dq by the
 * first key tile (all rows see key 0), dk/dv per key tile from the local sums. */
static void bwd_head(float *dq, float *dk, float *dv /* [T, ld] each */, int ld,
                     const float *q, const float *k, const float *v /* [T, ld] each */,
                     const float *dO, const float *O /* [T, ldo] each */, int ldo,
                     const float *lse /* [T] */, int T, int hs, float scale, bwd_scratch *w) {
  for (int t = 0; t < T; t++) { /* D_t = rowsum(dO_t O_t), used by every key tile */
    const float *a = dO + (size_t)t * ldo, *o = O + (size_t)t * ldo;
    float D = 0;
#pragma omp simd reduction(+ : D)
    for (int d = 0; d < hs; d++) D += a[d] * o[d];
    w->D[t] = D;
  }
  for (int j0 = 0; j0 < T; j0 += BK) {
    int jn = imin(BK, T - j0), jnp = (jn + 15) & ~15;
    const float *kj = k + (size_t)j0 * ld;
    pack_t(w->Kt, kj, ld, jn, jnp, hs);
    pack_t(w->Vt, v + (size_t)j0 * ld, ld, jn, jnp, hs);
    int first = 1;
    for (int i0 = (j0 / BQ) * BQ; i0 < T; i0 += BQ) {
      int qn = imin(BQ, T - i0), off = i0 - j0;
      const float *qi = q + (size_t)i0 * ld, *dOi = dO + (size_t)i0 * ldo;
      /* P = exp(scale q k^T - lse) on the causal entries, 0 on the rest of the tile */
      tile_gemm(qn, jnp, hs, qi, ld, 1, w->Kt, BK, w->S, BK, scale, 0, CZ_NLIM, off);
      for (int r = 0; r < qn; r++) {
        float *s = w->S + (size_t)r * BK;
        int nv = r + off + 1;
        float L = lse[i0 + r];
#pragma omp simd
        for (int c = 0; c < jn; c++) s[c] = c < nv ? s[c] - L : -INFINITY;
      }
      vexpf(w->S, w->S, (size_t)(qn - 1) * BK + jn);
      /* dV_j += P^T dO_i */
      tile_gemm(jn, hs, qn, w->S, 1, BK, dOi, ldo, w->dV, hs, 1.0f, !first, CZ_KSTART, off);
      /* dP = dO_i V_j^T; dS = P (dP - D) in place, 0 on masked entries (dP may be stale) */
      tile_gemm(qn, jnp, hs, dOi, ldo, 1, w->Vt, BK, w->dP, BK, 1.0f, 0, CZ_NLIM, off);
      for (int r = 0; r < qn; r++) {
        int nv = r + off + 1;
        nv = nv < 0 ? 0 : nv > jn ? jn : nv;
        const float *p = w->S + (size_t)r * BK;
        float *g = w->dP + (size_t)r * BK, D = w->D[i0 + r];
#pragma omp simd
        for (int c = 0; c < nv; c++) g[c] = p[c] * (g[c] - D);
        if (nv < jn) memset(g + nv, 0, (size_t)(jn - nv) * sizeof(float));
      }
      /* dQ_i += scale dS K_j (written by the first key tile); dK_j += scale dS^T Q_i */
      tile_gemm(qn, hs, jn, w->dP, BK, 1, kj, ld, dq + (size_t)i0 * ld, ld, scale, j0 > 0,
                CZ_KLIM, off);
      tile_gemm(jn, hs, qn, w->dP, 1, BK, qi, ld, w->dK, hs, scale, !first, CZ_KSTART, off);
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
  if (B <= 0 || T <= 0 || C <= 0) return;
  int hs = C / NH, C3 = 3 * C;
  float scale = 1.0f / sqrtf((float)hs);
  long nbh = (long)B * NH;
  double work = (double)nbh * T * T * 0.5 * hs;
#pragma omp parallel if (nbh > 1 && work > PAR_MIN)
  {
    float S[BQ * BK], dP[BQ * BK], Kt[hs * BK], Vt[hs * BK], dK[BK * hs], dV[BK * hs], D[T];
    bwd_scratch w = {S, dP, Kt, Vt, dK, dV, D};
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
