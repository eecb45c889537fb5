/* GELU, tanh approximation (torch gelu(approximate="tanh")):
 *   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3).
 * Parameter gradients accumulate (+=); activation gradients are written (=) — GELU has
 * no parameters, gelu_backward writes dinp.
 *
 * 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)), so the whole op is one exp, which
 * vexpf computes vectorised; this form also has no cancellation near u = 0 or u -> -inf.
 * Work goes in chunks that stay in L1: fill a chunk with -2u, vexpf it in place, finish. */
#include <math.h>

#include "kernels/cpu/cpu.h"

#define K0 0.7978845608028654f /* sqrt(2/pi) */
#define K1 0.044715f
#define XCLAMP 9.5f
#define CHUNK 1024
#define PAR_MIN (1 << 15)

void gelu_forward(float *out /* [N] */, const float *inp /* [N] */, size_t N) {
  size_t nchunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (N > PAR_MIN)
  for (size_t c = 0; c < nchunks; c++) {
    size_t i0 = c * CHUNK, n = N - i0 < CHUNK ? N - i0 : CHUNK;
    const float *x = inp + i0;
    float e[CHUNK];
#pragma omp simd
    for (size_t i = 0; i < n; i++) e[i] = -2.0f * K0 * (x[i] + K1 * x[i] * x[i] * x[i]);
    vexpf(e, e, n);
    /* e = inf (x very negative) gives -0, as torch does; x^3 overflow gives x or -0 */
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i0 + i] = x[i] / (1.0f + e[i]);
  }
}

void gelu_backward(float *dinp /* [N] */, const float *inp /* [N] */, const float *dout /* [N] */,
                   size_t N) {
  size_t nchunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (N > PAR_MIN)
  for (size_t c = 0; c < nchunks; c++) {
    size_t i0 = c * CHUNK, n = N - i0 < CHUNK ? N - i0 : CHUNK;
    const float *x = inp + i0;
    float e[CHUNK];
    /* x is clamped to +-9.5 (one select on |x|: two chained clamps make GCC thread jumps
     * and give up vectorising). Then |2u| <= 77, so e, s = 1/(1+e) and 1-s = e*s are
     * all normal floats (no inf*0); past |x| = 9.5 the derivative is 0 or 1 to far below
     * float resolution, and huge x (x^3 = inf) cannot turn it into inf or NaN */
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
      float xc = fabsf(x[i]) > XCLAMP ? copysignf(XCLAMP, x[i]) : x[i];
      e[i] = -2.0f * K0 * (xc + K1 * xc * xc * xc);
    }
    vexpf(e, e, n);
    /* d/dx [x s(2u)] = s + 2 x s (1-s) u'(x),  u' = K0 (1 + 3 K1 x^2) */
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
      float xc = fabsf(x[i]) > XCLAMP ? copysignf(XCLAMP, x[i]) : x[i];
      float s = 1.0f / (1.0f + e[i]);
      float du = K0 * (1.0f + 3.0f * K1 * xc * xc);
      dinp[i0 + i] = dout[i0 + i] * (s + 2.0f * xc * s * (e[i] * s) * du);
    }
  }
}
