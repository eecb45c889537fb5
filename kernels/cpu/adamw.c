/* Fused AdamW over a flat parameter range, and the sum of squares for gradient norms.
 * Parameter gradients accumulate (+=) and activation gradients are written (=) elsewhere;
 * here grads are only read, and params, m, v (and the copy of params, if asked) are updated.
 *
 * PyTorch's AdamW (single-tensor path), step t counted from 1:
 *   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2 v + (1-b2) g^2
 *   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 * The scalar factors are formed in double as Python does, then used in float. One pass:
 * read p, m, v, g; write p, m, v and, if params_copy is given, the new p there too (the
 * CUDA twin writes its bf16 weight copy that way, so no separate cast pass follows). */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu.h"

#define PAR_MIN (1 << 15)

void adamw_update(float *params /* [n] */, float *m /* [n] */, float *v /* [n] */,
                  float *params_copy /* [n] or NULL */, const float *grads /* [n] */, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t) {
  float step_size = (float)((double)lr / (1.0 - pow((double)beta1, t)));
  float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, t));
  float decay = (float)(1.0 - (double)lr * weight_decay);
  float w1 = (float)(1.0 - (double)beta1), w2 = (float)(1.0 - (double)beta2);
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (size_t i = 0; i < n; i++) {
    float g = grads[i] * grad_scale;
    float mi = m[i] + w1 * (g - m[i]); /* torch's lerp for weights < 0.5 */
    float vi = beta2 * v[i] + w2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    params[i] = params[i] * decay - step_size * (mi / denom);
  }
  if (params_copy)
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) params_copy[i] = params[i];
}

/* Deterministic for a fixed thread count: one contiguous range per thread, each summed by
 * a fixed vector schedule, partials added in thread order (no reduction clause, whose
 * combining order OpenMP leaves open). */
double sumsq(const float *x /* [n] */, size_t n) {
  int maxt = n > PAR_MIN ? omp_get_max_threads() : 1;
  double part[maxt];
  int used = 1;
#pragma omp parallel if (maxt > 1)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    size_t i0 = n * tid / nt, i1 = n * (tid + 1) / nt;
    /* 16 lanes = four independent vector accumulators: one would be bound by the
     * latency of its add chain, not by memory */
    double acc[16] = {0};
    size_t i = i0;
    for (; i + 16 <= i1; i += 16)
#pragma omp simd
      for (int j = 0; j < 16; j++) acc[j] += (double)x[i + j] * x[i + j];
    double s = 0;
    for (; i < i1; i++) s += (double)x[i] * x[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    part[tid] = s;
    if (tid == 0) used = nt;
  }
  double s = 0;
  for (int t = 0; t < used; t++) s += part[t];
  return s;
}
