/* Residual add, its backward, and gradient accumulation for the tape.
 * Parameter gradients accumulate (+=); activation gradients are written (=). These ops
 * have no parameters: residual_backward writes da and db; accumulate is the tape's
 * explicit += when an activation feeds several ops. All three are pure streaming, so the
 * loops are plain elementwise code that GCC vectorises; threads only pay off on big N. */
#include <string.h>

#include "kernels/cpu/cpu.h"

#define PAR_MIN (1 << 16) /* below this, an OpenMP fork costs more than the loop */
#define CHUNK (1 << 14)   /* memcpy granule for the parallel copies */

void residual_forward(float *out /* [N] */, const float *a /* [N] */, const float *b /* [N] */,
                      size_t N) {
#pragma omp parallel for simd schedule(static) if (N > PAR_MIN)
  for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

/* dst = src in parallel chunks (the gradient of a sum is a copy) */
static void copy_par(float *dst /* [N] */, const float *src /* [N] */, size_t N) {
  if (dst == src) return;
  size_t nchunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (N > PAR_MIN)
  for (size_t c = 0; c < nchunks; c++) {
    size_t i0 = c * CHUNK, n = N - i0 < CHUNK ? N - i0 : CHUNK;
    memcpy(dst + i0, src + i0, n * sizeof(float));
  }
}

void residual_backward(float *da /* [N] or NULL */, float *db /* [N] or NULL */,
                       const float *dout /* [N] */, size_t N) {
  if (da) copy_par(da, dout, N);
  if (db) copy_par(db, dout, N);
}

void accumulate(float *acc /* [N] */, const float *x /* [N] */, size_t N) {
#pragma omp parallel for simd schedule(static) if (N > PAR_MIN)
  for (size_t i = 0; i < N; i++) acc[i] += x[i];
}
