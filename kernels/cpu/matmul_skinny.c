/* Few-row matmuls on [OC, C] weights (see skinny.h), forward only: no parameters to
 * accumulate into and no backward. Threads split the outputs into groups of 4; each
 * group's 4 weight rows are read from memory once and reused from L1 for every input row
 * (dot products, 2 input rows at a time: 8 AVX accumulators). */
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/skinny.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SK_AVX 1
#endif

#define PAR_MIN (1 << 16)

int skinny_rows_max(void) { return 16; }

#ifdef SK_AVX
static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

/* out[m, v0..v0+3] for every m: 4 weight rows against each input row */
static void quad_rows(float *out, const float *inp, const float *w, const float *bias, int M, int C, int OC, int v0, int nv) {
#ifdef SK_AVX
  if (nv == 4 && C % 8 == 0) {
    const float zero[4] = {0}, *b = bias ? bias + v0 : zero;
    const float *w0 = w + (size_t)v0 * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
    int m = 0;
    for (; m + 2 <= M; m += 2) {
      const float *x0 = inp + (size_t)m * C, *x1 = x0 + C;
      __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
      for (int c = 0; c < C; c += 8) {
        __m256 p = _mm256_loadu_ps(x0 + c), q = _mm256_loadu_ps(x1 + c);
        __m256 k0 = _mm256_loadu_ps(w0 + c), k1 = _mm256_loadu_ps(w1 + c), k2 = _mm256_loadu_ps(w2 + c),
               k3 = _mm256_loadu_ps(w3 + c);
        a00 = _mm256_fmadd_ps(p, k0, a00);
        a01 = _mm256_fmadd_ps(p, k1, a01);
        a02 = _mm256_fmadd_ps(p, k2, a02);
        a03 = _mm256_fmadd_ps(p, k3, a03);
        a10 = _mm256_fmadd_ps(q, k0, a10);
        a11 = _mm256_fmadd_ps(q, k1, a11);
        a12 = _mm256_fmadd_ps(q, k2, a12);
        a13 = _mm256_fmadd_ps(q, k3, a13);
      }
      float *o0 = out + (size_t)m * OC + v0, *o1 = o0 + OC;
      o0[0] = hsum(a00) + b[0], o0[1] = hsum(a01) + b[1], o0[2] = hsum(a02) + b[2], o0[3] = hsum(a03) + b[3];
      o1[0] = hsum(a10) + b[0], o1[1] = hsum(a11) + b[1], o1[2] = hsum(a12) + b[2], o1[3] = hsum(a13) + b[3];
    }
    for (; m < M; m++) {
      const float *x0 = inp + (size_t)m * C;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int c = 0; c < C; c += 8) {
        __m256 p = _mm256_loadu_ps(x0 + c);
        a0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w0 + c), a0);
        a1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w1 + c), a1);
        a2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w2 + c), a2);
        a3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(w3 + c), a3);
      }
      float *o0 = out + (size_t)m * OC + v0;
      o0[0] = hsum(a0) + b[0], o0[1] = hsum(a1) + b[1], o0[2] = hsum(a2) + b[2], o0[3] = hsum(a3) + b[3];
    }
    return;
  }
#endif
  for (int m = 0; m < M; m++)
    for (int v = v0; v < v0 + nv; v++) {
      const float *x = inp + (size_t)m * C, *wr = w + (size_t)v * C;
      float d = 0;
#pragma omp simd reduction(+ : d)
      for (int c = 0; c < C; c++) d += x[c] * wr[c];
      out[(size_t)m * OC + v] = d + (bias ? bias[v] : 0.0f);
    }
}

void matmul_skinny_t_forward(float *out /* [M,OC] */, const float *inp /* [M,C] */, const float *weight /* [OC,C] */,
                             const float *bias /* [OC] or NULL */, int M, int C, int OC) {
  int nq = (OC + 3) / 4;
#pragma omp parallel for schedule(static) if ((long)M * C * OC > PAR_MIN)
  for (int q = 0; q < nq; q++) {
    int v0 = q * 4;
    quad_rows(out, inp, weight, bias, M, C, OC, v0, OC - v0 < 4 ? OC - v0 : 4);
  }
}
