/* Matmul with optional bias, on OpenBLAS sgemm.
 *   wt == 0: weight[C,OC] (Conv1D layout),  out = inp @ weight + bias
 *   wt == 1: weight[OC,C] (nn.Linear),      out = inp @ weight^T + bias
 * Parameter gradients accumulate (+=) into dweight/dbias (sgemm with beta = 1); the
 * activation gradient dinp is written (=, beta = 0).
 *
 * Every sgemm here is called outside any parallel region, so OpenBLAS (OpenMP build)
 * spreads it over all threads. The bias is written into out first and sgemm adds onto
 * it (beta = 1), like torch's addmm: OpenBLAS would spend a pass zeroing out anyway.
 * dbias is a column sum; each column is summed over rows in order by one thread, so it
 * is deterministic whatever the thread count. */
#include <cblas.h>
#include <string.h>
#include <omp.h>

#include "kernels/cpu/cpu.h"

#define PAR_MIN (1 << 15)
#define COLBLK 256 /* dbias columns summed together: a row piece of 1 KB, accumulators in L1 */

void matmul_forward(float *out /* [N,OC] */, const float *inp /* [N,C] */,
                    const float *weight /* wt ? [OC,C] : [C,OC] */, const float *bias /* [OC] or NULL */,
                    int N, int C, int OC, int wt) {
  if (N <= 0 || OC <= 0) return;
  if (bias) {
#pragma omp parallel for schedule(static) if ((long)N * OC > PAR_MIN)
    for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, bias, (size_t)OC * sizeof(float));
  }
  float beta = bias ? 1.0f : 0.0f;
  if (C <= 0) {
    if (!bias) memset(out, 0, (size_t)N * OC * sizeof(float));
    return;
  }
  if (wt)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C,
                beta, out, OC);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, inp, C, weight, OC,
                beta, out, OC);
}

/* out[N,OC] += bias[OC] on every row (a bias added after a reduction: tensor parallelism) */
void bias_forward(float *out /* [N,OC] */, const float *bias /* [OC] */, int N, int OC) {
#pragma omp parallel for schedule(static) if ((long)N * OC > PAR_MIN)
  for (int i = 0; i < N; i++)
#pragma omp simd
    for (int j = 0; j < OC; j++) out[(size_t)i * OC + j] += bias[j];
}

/* dbias[OC] += sum over rows of dout[N,OC]; double accumulators per column block */
void bias_backward(float *dbias /* [OC] */, const float *dout /* [N,OC] */, int N, int OC) {
#pragma omp parallel if ((long)N * OC > PAR_MIN)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int c0 = (int)((long)OC * tid / nt), c1 = (int)((long)OC * (tid + 1) / nt);
    for (int cb = c0; cb < c1; cb += COLBLK) {
      int n = c1 - cb < COLBLK ? c1 - cb : COLBLK;
      double acc[COLBLK] = {0};
      for (int i = 0; i < N; i++) {
        const float *d = dout + (size_t)i * OC + cb;
#pragma omp simd
        for (int c = 0; c < n; c++) acc[c] += d[c];
      }
      for (int c = 0; c < n; c++) dbias[cb + c] += (float)acc[c];
    }
  }
}

void matmul_backward(float *dinp /* [N,C] or NULL */,
                     float *dweight /* wt ? [OC,C] : [C,OC], or NULL */,
                     float *dbias /* [OC] or NULL */, const float *dout /* [N,OC] */,
                     const float *inp /* [N,C] */, const float *weight /* wt ? [OC,C] : [C,OC] */,
                     int N, int C, int OC, int wt) {
  if (N <= 0) return;
  if (dinp && C > 0) {
    if (OC <= 0)
      memset(dinp, 0, (size_t)N * C * sizeof(float));
    else if (wt) /* dinp = dout @ W[OC,C] */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight,
                  C, 0.0f, dinp, C);
    else /* dinp = dout @ W[C,OC]^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, C, OC, 1.0f, dout, OC, weight, OC,
                  0.0f, dinp, C);
  }
  if (dweight && C > 0 && OC > 0) {
    if (wt) /* dW[OC,C] += dout^T @ inp */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                  1.0f, dweight, C);
    else /* dW[C,OC] += inp^T @ dout */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, OC, N, 1.0f, inp, C, dout, OC,
                  1.0f, dweight, OC);
  }
  if (dbias && OC > 0) bias_backward(dbias, dout, N, OC);
}
