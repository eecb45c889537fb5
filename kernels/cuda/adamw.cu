// Fused AdamW over a flat fp32 master buffer, and the sum of squares / global norm, on CUDA.
// Parameter gradients accumulate (+=) and activation gradients are written (=) elsewhere;
// here grads are only read, and params, m, v (and the T copy of params) are updated.
//
// PyTorch's AdamW (single-tensor path), step t counted from 1, as kernels/cpu/adamw.c:
//   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2 v + (1-b2) g^2
//   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
// The scalar factors are formed in double on the host, then used in float. One pass: read
// p, m, v, g; write p, m, v and the bf16 copy the next forward reads (so no separate cast).
// One thread per 4 parameters (16-byte fp32 accesses).
//
// sumsq: deterministic two-stage reduction in double. Stage 1 has a grid that depends only
// on n; each thread sums a strided set in order, each block reduces by a fixed tree into one
// partial; stage 2 (one block) sums the partials in a fixed order. Bitwise reproducible.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define SUMSQ_THREADS 256
#define SUMSQ_MAX_BLOCKS 1024

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

struct AdamwScalars {
  float step_size, bc2_sqrt, decay, w1, w2, beta2, eps, grad_scale;
};

__device__ __forceinline__ float adamw_one(float &p, float &m, float &v, float g,
                                           const AdamwScalars &s) {
  g *= s.grad_scale;
  m = m + s.w1 * (g - m);  // torch's lerp for weights < 0.5
  v = s.beta2 * v + s.w2 * (g * g);
  float denom = sqrtf(v) / s.bc2_sqrt + s.eps;
  p = p * s.decay - s.step_size * (m / denom);
  return p;
}

template <typename T>
__global__ void adamw_kernel(float *__restrict__ params /* [n] */, float *__restrict__ m /* [n] */,
                             float *__restrict__ v /* [n] */, T *__restrict__ copy /* [n] or NULL */,
                             const T *__restrict__ grads /* [n] */, size_t n, AdamwScalars s) {
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
  if (i >= n) return;
  if (i + 4 <= n) {
    V16<float> p = ld16(params + i), mm = ld16(m + i), vv = ld16(v + i);
    float out[4];
    MF_UNROLL
    for (int k = 0; k < 4; k++) out[k] = adamw_one(p.v[k], mm.v[k], vv.v[k], to_f(grads[i + k]), s);
    st16(params + i, p);
    st16(m + i, mm);
    st16(v + i, vv);
    if (copy) {
      MF_UNROLL
      for (int k = 0; k < 4; k++) copy[i + k] = from_f<T>(out[k]);
    }
  } else {
    for (; i < n; i++) {
      float p = params[i], mm = m[i], vv = v[i];
      adamw_one(p, mm, vv, to_f(grads[i]), s);
      params[i] = p;
      m[i] = mm;
      v[i] = vv;
      if (copy) copy[i] = from_f<T>(p);
    }
  }
}

// part[blockIdx.x] = sum of x[i]^2 over this block's strided share of x
template <typename T>
__global__ void sumsq_partial_kernel(double *__restrict__ part /* [gridDim.x] */,
                                     const T *__restrict__ x /* [n] */, size_t n) {
  constexpr int X = V16<T>::N;
  __shared__ double buf[32];
  size_t gid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  size_t stride = (size_t)gridDim.x * blockDim.x, packs = n / X;
  double acc = 0.0;
  for (size_t p = gid; p < packs; p += stride) {
    V16<T> u = ld16(x + p * X);
    MF_UNROLL
    for (int k = 0; k < X; k++) {
      double d = (double)to_f(u.v[k]);
      acc += d * d;
    }
  }
  for (size_t i = packs * X + gid; i < n; i += stride) {
    double d = (double)to_f(x[i]);
    acc += d * d;
  }
  double tot = block_sum(acc, buf);
  if (threadIdx.x == 0) part[blockIdx.x] = tot;
}

// *out = sum of part[0..G) (fixed order); *norm = sqrt of it (either may be NULL)
__global__ void sumsq_finish_kernel(double *out, float *norm, const double *__restrict__ part,
                                    int G) {
  __shared__ double buf[32];
  double acc = 0.0;
  for (int g = threadIdx.x; g < G; g += blockDim.x) acc += part[g];
  double tot = block_sum(acc, buf);
  if (threadIdx.x == 0) {
    if (out) *out = tot;
    if (norm) *norm = (float)sqrt(tot);
  }
}

// ---------------------------------------------------------------- launchers

template <typename T>
void adamw_update(float *params /* [n] */, float *m /* [n] */, float *v /* [n] */,
                  T *params_copy /* [n] or NULL */, const T *grads /* [n] */, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t,
                  cudaStream_t stream) {
  MF_REQUIRE(t >= 1, "step t=%d counts from 1", t);
  MF_REQUIRE(aligned16(params) && aligned16(m) && aligned16(v), "16-byte aligned fp32 arrays");
  if (n == 0) return;
  AdamwScalars s;
  s.step_size = (float)((double)lr / (1.0 - pow((double)beta1, t)));
  s.bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, t));
  s.decay = (float)(1.0 - (double)lr * weight_decay);
  s.w1 = (float)(1.0 - (double)beta1);
  s.w2 = (float)(1.0 - (double)beta2);
  s.beta2 = beta2;
  s.eps = eps;
  s.grad_scale = grad_scale;
  const int threads = 256;
  MF_LAUNCH(adamw_kernel<T>, (unsigned)CEIL_DIV(CEIL_DIV(n, (size_t)4), (size_t)threads), threads,
            0, stream, params, m, v, params_copy, grads, n, s);
  MF_CHECK_LAUNCH();
}

template <typename T>
static void sumsq_impl(double *out, float *norm, const T *x, size_t n, cudaStream_t stream) {
  MF_REQUIRE(aligned16(x), "16-byte aligned x");
  size_t packs = n / V16<T>::N;
  int G = (int)CEIL_DIV(packs > 0 ? packs : 1, (size_t)SUMSQ_THREADS * 4);  // depends on n only
  if (G > SUMSQ_MAX_BLOCKS) G = SUMSQ_MAX_BLOCKS;
  double *part = (double *)scratch((size_t)G * sizeof(double));
  MF_LAUNCH(sumsq_partial_kernel<T>, G, SUMSQ_THREADS, 0, stream, part, x, n);
  MF_CHECK_LAUNCH();
  MF_LAUNCH(sumsq_finish_kernel, 1, SUMSQ_THREADS, 0, stream, out, norm, (const double *)part, G);
  MF_CHECK_LAUNCH();
}

template <typename T> void sumsq(double *out /* [1] */, const T *x /* [n] */, size_t n, cudaStream_t stream) {
  sumsq_impl(out, (float *)nullptr, x, n, stream);
}

template <typename T>
void global_norm(float *norm /* [1] */, const T *x /* [n] */, size_t n, cudaStream_t stream) {
  sumsq_impl((double *)nullptr, norm, x, n, stream);
}

#define INST(T)                                                                              \
  template void adamw_update<T>(float *, float *, float *, T *, const T *, size_t, float, float, \
                                float, float, float, float, int, cudaStream_t);              \
  template void sumsq<T>(double *, const T *, size_t, cudaStream_t);                         \
  template void global_norm<T>(float *, const T *, size_t, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
