/* cblas_sgemm for tests/gpu/run.sh's direct build when the GPU machine has no BLAS: row-major
 * C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C. Rows in parallel (OpenMP), a packed copy of
 * op(B) so the inner loop is contiguous and vectorises; a CPU reference, not a fast GEMM. */
#include <stdlib.h>
#include <string.h>

#include "cblas.h"

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc) {
  (void)order; /* row-major only: all matmul.c uses */
  float *Bp = malloc((size_t)K * N * sizeof(float) + 1); /* op(B) as [K,N] */
  for (int k = 0; k < K; k++)
    for (int n = 0; n < N; n++)
      Bp[(size_t)k * N + n] = tb == CblasTrans ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) {
    float *c = C + (size_t)m * ldc;
    float *acc = malloc((size_t)N * sizeof(float) + 1);
    memset(acc, 0, (size_t)N * sizeof(float));
    for (int k = 0; k < K; k++) {
      float a = ta == CblasTrans ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
      const float *b = Bp + (size_t)k * N;
#pragma omp simd
      for (int n = 0; n < N; n++) acc[n] += a * b[n];
    }
    for (int n = 0; n < N; n++) c[n] = alpha * acc[n] + (beta == 0.0f ? 0.0f : beta * c[n]);
    free(acc);
  }
  free(Bp);
}
