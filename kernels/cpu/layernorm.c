/* LayerNorm over the last dimension, as torch.nn.LayerNorm: eps 1e-5, biased variance.
 * Parameter gradients accumulate (+=) into dweight/dbias; the activation gradient dinp is
 * written (=).
 *
 * Forward is two-pass per row (mean, then the mean of squared deviations), summed in
 * double: as accurate as torch's Welford/cascade sums or better, and still memory-bound.
 * Backward: rows are split into one contiguous range per thread; each thread sums its
 * rows' dweight/dbias terms into a private partial on its own stack, then the partials
 * are added in thread order, so the result is bitwise reproducible for a fixed thread
 * count (no atomics). Rows wider than STACK_PART_MAX use a column-split second pass.
 * residual_layernorm_forward is the residual add fused into the forward (one pass over the
 * rows); its backward is residual_backward and layernorm_backward on the stored sum. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define LN_EPS 1e-5f
#define PAR_MIN (1 << 14)       /* elements; smaller problems run on one thread */
#define STACK_PART_MAX 8192     /* widest C whose per-thread partials live on the stack */
#define WIDE_BLK 256            /* column block of the wide-row parameter pass */

/* one row of the forward. Not inlined: layernorm_forward and residual_layernorm_forward
 * run the very same code, so their outputs agree bit for bit (the tape's recompute and the
 * fused forward rely on it; two inlined copies could be vectorised differently). */
__attribute__((noinline)) static void ln_forward_row(float *o /* [C] */, float *mean, float *rstd,
                                                     const float *x /* [C] */,
                                                     const float *weight /* [C] */,
                                                     const float *bias /* [C] */, int C) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int c = 0; c < C; c++) s += x[c];
  float m = (float)(s / C);
  double v = 0;
#pragma omp simd reduction(+ : v)
  for (int c = 0; c < C; c++) {
    float d = x[c] - m;
    v += (double)d * d;
  }
  float r = (float)(1.0 / sqrt(v / C + (double)LN_EPS));
#pragma omp simd
  for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
  if (mean) *mean = m;
  if (rstd) *rstd = r;
}

void layernorm_forward(float *out /* [N,C] */, float *mean /* [N] */, float *rstd /* [N] */,
                       const float *inp /* [N,C] */, const float *weight /* [C] */,
                       const float *bias /* [C] */, int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C > PAR_MIN)
  for (int i = 0; i < N; i++)
    ln_forward_row(out + (size_t)i * C, mean ? mean + i : NULL, rstd ? rstd + i : NULL,
                   inp + (size_t)i * C, weight, bias, C);
}

/* row by row: the sum is still in cache when the row is normalised */
void residual_layernorm_forward(float *out /* [N,C] */, float *resid /* [N,C] */,
                                float *mean /* [N] */, float *rstd /* [N] */,
                                const float *a /* [N,C] */, const float *b /* [N,C] */,
                                const float *weight /* [C] */, const float *bias /* [C] */, int N,
                                int C) {
#pragma omp parallel for schedule(static) if ((long)N * C > PAR_MIN)
  for (int i = 0; i < N; i++) {
    size_t o = (size_t)i * C;
#pragma omp simd
    for (int c = 0; c < C; c++) resid[o + c] = a[o + c] + b[o + c];
    ln_forward_row(out + o, mean ? mean + i : NULL, rstd ? rstd + i : NULL, resid + o, weight,
                   bias, C);
  }
}

/* dinp for one row, and this row's terms of dweight/dbias added to part (if not NULL):
 * dxhat = w dout; dinp = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
 * dout is read before dinp is written, so dinp may alias dout. */
static void ln_backward_row(float *dinp /* [C] or NULL */, float *part /* [2C] or NULL */,
                            const float *dout /* [C] */, const float *x /* [C] */,
                            const float *weight /* [C] */, float m, float r, int C) {
  float *pw = part, *pb = part ? part + C : NULL;
  if (!dinp) {
#pragma omp simd
    for (int c = 0; c < C; c++) {
      pw[c] += (x[c] - m) * r * dout[c];
      pb[c] += dout[c];
    }
    return;
  }
  double a = 0, b = 0;
  if (part) {
#pragma omp simd reduction(+ : a, b)
    for (int c = 0; c < C; c++) {
      float xhat = (x[c] - m) * r, dn = weight[c] * dout[c];
      a += dn;
      b += (double)dn * xhat;
      pw[c] += xhat * dout[c];
      pb[c] += dout[c];
    }
  } else {
#pragma omp simd reduction(+ : a, b)
    for (int c = 0; c < C; c++) {
      float xhat = (x[c] - m) * r, dn = weight[c] * dout[c];
      a += dn;
      b += (double)dn * xhat;
    }
  }
  float ma = (float)(a / C), mb = (float)(b / C);
#pragma omp simd
  for (int c = 0; c < C; c++) {
    float xhat = (x[c] - m) * r, dn = weight[c] * dout[c];
    dinp[c] = (dn - ma - xhat * mb) * r;
  }
}

/* dweight/dbias for rows too wide for stack partials: a second pass in which each thread
 * owns a block of columns and sums it over all rows in order (deterministic, no heap) */
static void ln_param_grads_wide(float *dweight /* [C] or NULL */, float *dbias /* [C] or NULL */,
                                const float *dout /* [N,C] */, const float *inp /* [N,C] */,
                                const float *mean /* [N] */, const float *rstd /* [N] */, int N,
                                int C, int par) {
#pragma omp parallel for schedule(static) if (par)
  for (int c0 = 0; c0 < C; c0 += WIDE_BLK) {
    int n = C - c0 < WIDE_BLK ? C - c0 : WIDE_BLK;
    float w[WIDE_BLK] = {0}, b[WIDE_BLK] = {0};
    for (int i = 0; i < N; i++) {
      const float *d = dout + (size_t)i * C + c0, *x = inp + (size_t)i * C + c0;
      float m = mean[i], r = rstd[i];
#pragma omp simd
      for (int c = 0; c < n; c++) {
        w[c] += (x[c] - m) * r * d[c];
        b[c] += d[c];
      }
    }
    for (int c = 0; c < n; c++) {
      if (dweight) dweight[c0 + c] += w[c];
      if (dbias) dbias[c0 + c] += b[c];
    }
  }
}

void layernorm_backward(float *dinp /* [N,C] or NULL */, float *dweight /* [C] or NULL */,
                        float *dbias /* [C] or NULL */, const float *dout /* [N,C] */,
                        const float *inp /* [N,C] */, const float *weight /* [C] */,
                        const float *mean /* [N] */, const float *rstd /* [N] */, int N, int C) {
  int want_param = dweight || dbias;
  if ((!dinp && !want_param) || N <= 0 || C <= 0) return;
  int par = (long)N * C > PAR_MIN;
  int wide = C > STACK_PART_MAX, part_here = want_param && !wide;
  int maxt = par ? omp_get_max_threads() : 1;
  float *parts[maxt]; /* each thread's partial, published for the sum */
#pragma omp parallel if (par)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    float part[part_here ? 2 * C : 1];
    if (part_here) memset(part, 0, 2 * (size_t)C * sizeof(float));
    int r0 = (int)((long)N * tid / nt), r1 = (int)((long)N * (tid + 1) / nt);
    if (dinp || part_here)
      for (int i = r0; i < r1; i++)
        ln_backward_row(dinp ? dinp + (size_t)i * C : NULL, part_here ? part : NULL,
                        dout + (size_t)i * C, inp + (size_t)i * C, weight, mean[i], rstd[i], C);
    if (part_here) {
      parts[tid] = part;
#pragma omp barrier
      /* fixed thread order; the loop's implied barrier keeps the stack partials alive */
#pragma omp for schedule(static)
      for (int c = 0; c < C; c++) {
        float w = 0, b = 0;
        for (int t = 0; t < nt; t++) {
          w += parts[t][c];
          b += parts[t][C + c];
        }
        if (dweight) dweight[c] += w;
        if (dbias) dbias[c] += b;
      }
    }
  }
  if (want_param && wide) ln_param_grads_wide(dweight, dbias, dout, inp, mean, rstd, N, C, par);
}
