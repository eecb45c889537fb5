/* Token + position embedding: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:].
 * Parameter gradients accumulate (+=) into dwte and dwpe; there are no activation
 * gradients (token ids are integers).
 *
 * Backward is deterministic without atomics: the channels are split among threads, and
 * each thread walks all B*T positions in order for its own channel slice. Every element
 * of dwte/dwpe therefore receives its terms in the same order whatever the thread count,
 * and repeated tokens never race. One pass over dout in total.
 *
 * tp_embed_* are the vocabulary-parallel form (parallel/tp_ops.c): this rank holds rows
 * [v0, v0+nv) of the vocabulary; other tokens give zero rows (their rank adds them in the
 * all-reduce) and no gradient here. */
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define PAR_MIN (1 << 15)
#define SLICE_ALIGN 16 /* channel slices start on a cache line of dwte rows: no false sharing */

void encoder_forward(float *out /* [B,T,C] */, const int32_t *inp /* [B,T] */,
                     const float *wte /* [Vp,C] */, const float *wpe /* [maxT,C] */, int B, int T,
                     int C) {
  long BT = (long)B * T;
#pragma omp parallel for schedule(static) if (BT * C > PAR_MIN)
  for (long bt = 0; bt < BT; bt++) {
    const float *e = wte + (size_t)inp[bt] * C, *p = wpe + (size_t)(bt % T) * C;
    float *o = out + (size_t)bt * C;
#pragma omp simd
    for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
  }
}

void tp_embed_forward(float *out /* [B,T,C] */, const int32_t *inp /* [B,T] */,
                      const float *wte /* [nv,C] */, const float *wpe /* [maxT,C] */, int B, int T,
                      int C, int v0, int nv, int add_pos) {
  long BT = (long)B * T;
#pragma omp parallel for schedule(static) if (BT * C > PAR_MIN)
  for (long bt = 0; bt < BT; bt++) {
    int l = inp[bt] - v0;
    const float *p = wpe + (size_t)(bt % T) * C;
    float *o = out + (size_t)bt * C;
    if (l >= 0 && l < nv) {
      const float *e = wte + (size_t)l * C;
      if (add_pos) {
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
      } else {
        memcpy(o, e, (size_t)C * sizeof(float));
      }
    } else if (add_pos) {
      memcpy(o, p, (size_t)C * sizeof(float));
    } else {
      memset(o, 0, (size_t)C * sizeof(float));
    }
  }
}

void tp_embed_backward(float *dwte /* [nv,C] or NULL */, float *dwpe /* [maxT,C] or NULL */,
                       const float *dout /* [B,T,C] */, const int32_t *inp /* [B,T] */, int B,
                       int T, int C, int v0, int nv) {
  if (!dwte && !dwpe) return;
  long BT = (long)B * T;
  int nblk = (C + SLICE_ALIGN - 1) / SLICE_ALIGN;
#pragma omp parallel if (BT * C > PAR_MIN)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int c0 = (int)((long)nblk * tid / nt) * SLICE_ALIGN;
    int c1 = (int)((long)nblk * (tid + 1) / nt) * SLICE_ALIGN;
    if (c1 > C) c1 = C;
    for (long bt = 0; bt < BT && c0 < c1; bt++) {
      const float *d = dout + (size_t)bt * C;
      int l = inp[bt] - v0;
      if (dwte && l >= 0 && l < nv) {
        float *g = dwte + (size_t)l * C;
#pragma omp simd
        for (int c = c0; c < c1; c++) g[c] += d[c];
      }
      if (dwpe) {
        float *g = dwpe + (size_t)(bt % T) * C;
#pragma omp simd
        for (int c = c0; c < c1; c++) g[c] += d[c];
      }
    }
  }
}

void encoder_backward(float *dwte /* [Vp,C] or NULL */, float *dwpe /* [maxT,C] or NULL */,
                      const float *dout /* [B,T,C] */, const int32_t *inp /* [B,T] */, int B,
                      int T, int C) {
  tp_embed_backward(dwte, dwpe, dout, inp, B, T, C, 0, INT_MAX);
}
