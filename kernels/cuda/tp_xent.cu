// Vocabulary-parallel cross-entropy on CUDA: the kernels between the collectives of
// parallel/tp_ops.c's tp_xent (twins of kernels/cpu/tp_xent.c). This rank holds logits
// [N,Vl] for vocabulary columns [v0, v0+Vl), the first nreal real. Parameter gradients
// accumulate (+=); activation gradients are written (=): there are no parameters,
// tp_xent_backward writes dlogits.
//
// One block per row for the three forward phases (max; exp with its double sum and the
// target's logit; normalise and loss), each a fixed shuffle tree: bitwise reproducible.
// Every column is read and written by one thread, so ex may alias the logits and dlogits
// the probabilities. The backward is elementwise.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define XENT_THREADS 256

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

// M[row] = max over the real columns of logits[row, :]
template <typename T>
__global__ void tp_xent_max_kernel(float *__restrict__ M /* [N] */, const T *__restrict__ logits /* [N,Vl] */,
                                   int Vl, int nreal) {
  __shared__ float s_m[32];
  const T *x = logits + (size_t)blockIdx.x * Vl;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < nreal; j += blockDim.x) m = fmaxf(m, to_f(x[j]));
  m = warp_max(m);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) s_m[warp] = m;
  __syncthreads();
  if (warp == 0) {
    float y = lane < nw ? s_m[lane] : -INFINITY;
    y = warp_max(y);
    if (lane == 0) M[blockIdx.x] = y;
  }
}

// ex = exp(logits - M) (0 past nreal), S[row] = {sum of ex in double, target logit or 0}
template <typename T>
__global__ void tp_xent_exp_kernel(double *__restrict__ S /* [N,2] */, T *ex /* [N,Vl] */,
                                   const T *logits /* [N,Vl] */, const float *__restrict__ M /* [N] */,
                                   const int32_t *__restrict__ targets /* [N] */, int Vl, int nreal,
                                   int v0) {
  __shared__ double s_buf[32];
  const int row = blockIdx.x, tg = targets[row], t = tg - v0;
  const bool local = tg >= 0 && t >= 0 && t < nreal;
  const T *x = logits + (size_t)row * Vl;
  T *e = ex + (size_t)row * Vl;
  const float m = M[row];
  double s = 0;
  for (int j = threadIdx.x; j < Vl; j += blockDim.x) {
    float v = 0.0f;
    if (j < nreal) {
      float xj = to_f(x[j]);  // read before e (maybe x) is written, by the same thread
      if (local && j == t) S[2 * row + 1] = (double)xj;
      v = expf(xj - m);
      s += v;
    }
    e[j] = from_f<T>(v);
  }
  s = block_sum(s, s_buf);
  if (threadIdx.x == 0) {
    S[2 * row] = s;
    if (!local) S[2 * row + 1] = 0.0;
  }
}

// probs = ex / S (in place), losses[row] = log S + M - target logit (0 for target -1)
template <typename T>
__global__ void tp_xent_finish_kernel(float *__restrict__ losses /* [N] */, T *probs /* [N,Vl] */,
                                      const double *__restrict__ S /* [N,2] */,
                                      const float *__restrict__ M /* [N] */,
                                      const int32_t *__restrict__ targets /* [N] */, int Vl, int nreal) {
  const int row = blockIdx.x;
  T *p = probs + (size_t)row * Vl;
  const float inv = (float)(1.0 / S[2 * row]);
  for (int j = threadIdx.x; j < nreal; j += blockDim.x) p[j] = from_f<T>(to_f(p[j]) * inv);
  if (threadIdx.x == 0)
    losses[row] = targets[row] >= 0 ? (float)(log(S[2 * row]) + (double)M[row] - S[2 * row + 1]) : 0.0f;
}

// dlogits[i, j] = (probs[i, j] - [j == target - v0]) * dlosses[i]; 0 for target -1
template <typename T>
__global__ void tp_xent_backward_kernel(T *dlogits /* [N,Vl] */, const float *__restrict__ dlosses /* [N] */,
                                        const T *probs /* [N,Vl] */,
                                        const int32_t *__restrict__ targets /* [N] */, long n, int Vl,
                                        int v0) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int row = (int)(i / Vl), j = (int)(i % Vl), tg = targets[row];
  if (tg < 0) {
    dlogits[i] = from_f<T>(0.0f);
    return;
  }
  float p = to_f(probs[i]), g = dlosses[row];
  dlogits[i] = from_f<T>(j == tg - v0 ? (p - 1.0f) * g : p * g);
}

// ---------------------------------------------------------------- launchers

template <typename T>
void tp_xent_max(float *M /* [N] */, const T *logits /* [N,Vl] */, int N, int Vl, int nreal, cudaStream_t stream) {
  MF_REQUIRE(N >= 0 && Vl >= 0 && nreal >= 0 && nreal <= Vl, "N=%d Vl=%d nreal=%d", N, Vl, nreal);
  if (N == 0) return;
  MF_LAUNCH(tp_xent_max_kernel<T>, N, XENT_THREADS, 0, stream, M, logits, Vl, nreal);
  MF_CHECK_LAUNCH();
}

template <typename T>
void tp_xent_exp(double *S /* [N,2] */, T *ex /* [N,Vl] */, const T *logits /* [N,Vl] */, const float *M /* [N] */,
                 const int32_t *targets /* [N] */, int N, int Vl, int nreal, int v0, cudaStream_t stream) {
  MF_REQUIRE(N >= 0 && Vl >= 0 && nreal >= 0 && nreal <= Vl, "N=%d Vl=%d nreal=%d", N, Vl, nreal);
  if (N == 0) return;
  MF_LAUNCH(tp_xent_exp_kernel<T>, N, XENT_THREADS, 0, stream, S, ex, logits, M, targets, Vl, nreal, v0);
  MF_CHECK_LAUNCH();
}

template <typename T>
void tp_xent_finish(float *losses /* [N] */, T *probs /* [N,Vl] */, const double *S /* [N,2] */,
                    const float *M /* [N] */, const int32_t *targets /* [N] */, int N, int Vl, int nreal,
                    cudaStream_t stream) {
  MF_REQUIRE(N >= 0 && Vl >= 0 && nreal >= 0 && nreal <= Vl, "N=%d Vl=%d nreal=%d", N, Vl, nreal);
  if (N == 0) return;
  MF_LAUNCH(tp_xent_finish_kernel<T>, N, XENT_THREADS, 0, stream, losses, probs, S, M, targets, Vl, nreal);
  MF_CHECK_LAUNCH();
}

template <typename T>
void tp_xent_backward(T *dlogits /* [N,Vl] */, const float *dlosses /* [N] */, const T *probs /* [N,Vl] */,
                      const int32_t *targets /* [N] */, int N, int Vl, int v0, cudaStream_t stream) {
  MF_REQUIRE(N >= 0 && Vl >= 0, "N=%d Vl=%d", N, Vl);
  long n = (long)N * Vl;
  if (n == 0) return;
  const int threads = 256;
  MF_LAUNCH(tp_xent_backward_kernel<T>, (unsigned)CEIL_DIV(n, threads), threads, 0, stream, dlogits, dlosses,
            probs, targets, n, Vl, v0);
  MF_CHECK_LAUNCH();
}

#define INST(T)                                                                                        \
  template void tp_xent_max<T>(float *, const T *, int, int, int, cudaStream_t);                     \
  template void tp_xent_exp<T>(double *, T *, const T *, const float *, const int32_t *, int, int, int, \
                               int, cudaStream_t);                                                   \
  template void tp_xent_finish<T>(float *, T *, const double *, const float *, const int32_t *, int,  \
                                  int, int, cudaStream_t);                                           \
  template void tp_xent_backward<T>(T *, const float *, const T *, const int32_t *, int, int, int,    \
                                    cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
