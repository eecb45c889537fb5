// Fused softmax + cross-entropy over a padded vocabulary, on CUDA.
// Parameter gradients accumulate (+=); activation gradients are written (=): there are no
// parameters; softmax_xent_backward / _forward_backward write dlogits.
//
// One block per row (GPT-2: Vp = 50304, 100 KB in bf16). Pass structure of the kernel:
//   1. read sweep: each thread streams its 16-byte packs of the row from global memory
//      once, keeps a running (max, sum of exp) pair with online rescaling (one exp per
//      element; the sum is rescaled only when a pack raises the max), remembers the
//      target's logit, and parks the pack in shared memory when the row fits there
//      (bf16 rows up to ~110K columns on an H100, fp32 up to ~55K);
//   2. the (max, sum) pairs are merged by a warp shuffle tree and then across warps;
//      thread 0 writes the loss = log(sum) + max - logit[target] (0 for target -1);
//   3. write sweep from the shared-memory copy: probs = exp(x - max) / sum (forward), or
//      in the fused training kernel dlogits = (probs - onehot) * dloss directly, so the
//      probabilities never reach memory. Padded columns (>= V) get 0; a target of -1 gives
//      a zero gradient row.
// So the logits are read from DRAM once and the output written once: the op costs one
// read and one write of the logits, the minimum. When a row does not fit in shared memory
// the write sweep re-reads it (from L2 in practice). The output may alias the logits: every
// pack is read and written by the same thread, and the target logit is read in sweep 1.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define LOG2E 1.4426950408889634f

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

// merge (m2, s2) into (m, s): both are (max, sum of exp(x - max)) over disjoint sets
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
  float M = fmaxf(m, m2);
  if (M == -INFINITY) return;  // both empty
  s = (m == -INFINITY ? 0.0f : s * exp2f((m - M) * LOG2E)) +
      (m2 == -INFINITY ? 0.0f : s2 * exp2f((m2 - M) * LOG2E));
  m = M;
}

// MODE 0: out = probs; MODE 1: out = dlogits = (probs - onehot) * dlosses[row]
template <typename T, int MODE>
__global__ void softmax_xent_kernel(float *__restrict__ losses /* [N] */, T *out /* [N,Vp] */,
                                    const T *logits /* [N,Vp] */,
                                    const int32_t *__restrict__ targets /* [N] */,
                                    const float *__restrict__ dlosses /* [N], MODE 1 */, int V,
                                    int Vp, int cached) {
  constexpr int X = V16<T>::N;
  extern __shared__ __align__(16) unsigned char xent_smem[];
  T *cache = reinterpret_cast<T *>(xent_smem);  // [Vp] when cached
  __shared__ float s_m[32], s_s[32], s_xt;
  const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int nw = blockDim.x >> 5, packs = Vp / X, t = targets[row];
  const T *x = logits + (size_t)row * Vp;
  T *o = out + (size_t)row * Vp;

  // 1. read sweep
  float m = -INFINITY, s = 0.0f;
  for (int p = tid; p < packs; p += blockDim.x) {
    V16<T> u = ld16(x + p * X);
    if (cached) st16(cache + p * X, u);
    float y[X], mx = -INFINITY;
    MF_UNROLL
    for (int k = 0; k < X; k++) {
      y[k] = p * X + k < V ? to_f(u.v[k]) : -INFINITY;
      mx = fmaxf(mx, y[k]);
    }
    if (mx > m) {
      s = m == -INFINITY ? 0.0f : s * exp2f((m - mx) * LOG2E);
      m = mx;
    }
    if (m != -INFINITY) {
      MF_UNROLL
      for (int k = 0; k < X; k++) s += exp2f((y[k] - m) * LOG2E);
    }
    if (t >= p * X && t < p * X + X) s_xt = to_f(u.v[t - p * X]);
  }
  // 2. merge the (max, sum) pairs
  MF_UNROLL
  for (int off = 16; off > 0; off >>= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
    lse_merge(m, s, m2, s2);
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_s[warp] = s;
  }
  __syncthreads();  // also completes the shared-memory copy of the row and s_xt
  m = -INFINITY;
  s = 0.0f;
  for (int w = 0; w < nw; w++) lse_merge(m, s, s_m[w], s_s[w]);  // same order in every thread
  if (tid == 0) losses[row] = t >= 0 ? logf(s) + m - s_xt : 0.0f;

  // 3. write sweep
  const float inv = 1.0f / s;
  const float dl = MODE == 1 && t >= 0 ? dlosses[row] : 0.0f;
  for (int p = tid; p < packs; p += blockDim.x) {
    V16<T> u = cached ? ld16(cache + p * X) : ld16(x + p * X), r;
    MF_UNROLL
    for (int k = 0; k < X; k++) {
      int j = p * X + k;
      float prob = j < V ? exp2f((to_f(u.v[k]) - m) * LOG2E) * inv : 0.0f;
      float val = MODE == 0 ? prob : (t < 0 ? 0.0f : (prob - (j == t ? 1.0f : 0.0f)) * dl);
      r.v[k] = from_f<T>(val);
    }
    st16(o + p * X, r);
  }
}

// dlogits[i,j] = (probs[i,j] - [j == t_i]) * dlosses[i]; 0 for padded columns and t_i = -1
template <typename T>
__global__ void softmax_xent_backward_kernel(T *dlogits /* [N,Vp] */, const float *__restrict__ dlosses /* [N] */,
                                             const T *probs /* [N,Vp] */,
                                             const int32_t *__restrict__ targets /* [N] */, int N,
                                             int V, int Vp) {
  constexpr int X = V16<T>::N;
  const int packs = Vp / X;
  size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (size_t)N * packs) return;
  int row = (int)(idx / packs), c0 = (int)(idx % packs) * X, t = targets[row];
  size_t off = (size_t)row * Vp + c0;
  V16<T> p = ld16(probs + off), r;
  float d = t >= 0 ? dlosses[row] : 0.0f;
  MF_UNROLL
  for (int k = 0; k < X; k++) {
    int j = c0 + k;
    float g = (t < 0 || j >= V) ? 0.0f : (to_f(p.v[k]) - (j == t ? 1.0f : 0.0f)) * d;
    r.v[k] = from_f<T>(g);
  }
  st16(dlogits + off, r);
}

// ---------------------------------------------------------------- launchers

template <typename T>
static void xent_check(int N, int V, int Vp, const void *a, const void *b) {
  constexpr int X = V16<T>::N;
  MF_REQUIRE(N >= 0 && V > 0 && V <= Vp, "N=%d V=%d Vp=%d", N, V, Vp);
  MF_REQUIRE(Vp % X == 0, "Vp=%d must be a multiple of %d (16-byte rows)", Vp, X);
  MF_REQUIRE(aligned16(a) && aligned16(b), "16-byte aligned arrays");
}

template <typename T, int MODE>
static void xent_launch(float *losses, T *out, const T *logits, const int32_t *targets,
                        const float *dlosses, int N, int V, int Vp, cudaStream_t stream) {
  constexpr int X = V16<T>::N;
  int packs = Vp / X;
  int threads = CEIL_DIV(packs, 32) * 32;  // depends on Vp only: a fixed summation order
  if (threads > 512) threads = 512;
  size_t bytes = (size_t)Vp * sizeof(T);
  int cached = bytes + 2048 <= max_smem_optin();
  size_t smem = cached ? bytes : 0;
  allow_smem(softmax_xent_kernel<T, MODE>, smem);
  MF_LAUNCH((softmax_xent_kernel<T, MODE>), N, threads, smem, stream, losses, out, logits, targets,
            dlosses, V, Vp, cached);
  MF_CHECK_LAUNCH();
}

template <typename T>
void softmax_xent_forward(float *losses /* [N] */, T *probs /* [N,Vp] */, const T *logits /* [N,Vp] */,
                          const int32_t *targets /* [N] */, int N, int V, int Vp,
                          cudaStream_t stream) {
  xent_check<T>(N, V, Vp, probs, logits);
  if (N == 0) return;
  xent_launch<T, 0>(losses, probs, logits, targets, nullptr, N, V, Vp, stream);
}

template <typename T>
void softmax_xent_forward_backward(float *losses /* [N] */, T *dlogits /* [N,Vp] */,
                                   const T *logits /* [N,Vp] */, const int32_t *targets /* [N] */,
                                   const float *dlosses /* [N] */, int N, int V, int Vp,
                                   cudaStream_t stream) {
  xent_check<T>(N, V, Vp, dlogits, logits);
  if (N == 0) return;
  xent_launch<T, 1>(losses, dlogits, logits, targets, dlosses, N, V, Vp, stream);
}

template <typename T>
void softmax_xent_backward(T *dlogits /* [N,Vp] */, const float *dlosses /* [N] */,
                           const T *probs /* [N,Vp] */, const int32_t *targets /* [N] */, int N,
                           int V, int Vp, cudaStream_t stream) {
  xent_check<T>(N, V, Vp, dlogits, probs);
  if (N == 0) return;
  size_t total = (size_t)N * (Vp / V16<T>::N);
  const int threads = 256;
  MF_LAUNCH(softmax_xent_backward_kernel<T>, (unsigned)CEIL_DIV(total, (size_t)threads), threads, 0,
            stream, dlogits, dlosses, probs, targets, N, V, Vp);
  MF_CHECK_LAUNCH();
}

#define INST(T)                                                                              \
  template void softmax_xent_forward<T>(float *, T *, const T *, const int32_t *, int, int, int, \
                                        cudaStream_t);                                       \
  template void softmax_xent_backward<T>(T *, const float *, const T *, const int32_t *, int,   \
                                         int, int, cudaStream_t);                            \
  template void softmax_xent_forward_backward<T>(float *, T *, const T *, const int32_t *,      \
                                                 const float *, int, int, int, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
