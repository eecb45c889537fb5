// Residual add, its backward, and gradient accumulation for the tape, on CUDA.
// Parameter gradients accumulate (+=); activation gradients are written (=). These ops
// have no parameters: residual_backward writes da and db; accumulate is the tape's
// explicit += when an activation feeds several ops.
//
// Pure streaming: one thread per 16-byte pack, fp32 arithmetic, element by element for
// the last pack of a ragged N. (The GPT block uses residual_layernorm_forward, which
// fuses the add into the LayerNorm; these serve the unfused op and the last residual.)
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

// out[i] = a[i] + b[i]; out may alias a or b (each element is read, then written, by one thread)
template <typename T>
__global__ void residual_forward_kernel(T *out /* [N] */, const T *a /* [N] */, const T *b /* [N] */,
                                        size_t N) {
  constexpr int X = V16<T>::N;
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * X;
  if (i >= N) return;
  if (i + X <= N) {
    V16<T> x = ld16(a + i), y = ld16(b + i), o;
    MF_UNROLL
    for (int k = 0; k < X; k++) o.v[k] = from_f<T>(to_f(x.v[k]) + to_f(y.v[k]));
    st16(out + i, o);
  } else {
    for (; i < N; i++) out[i] = from_f<T>(to_f(a[i]) + to_f(b[i]));
  }
}

// da[i] = dout[i] and/or db[i] = dout[i] (either may be NULL)
template <typename T>
__global__ void residual_backward_kernel(T *da /* [N] or NULL */, T *db /* [N] or NULL */,
                                         const T *dout /* [N] */, size_t N) {
  constexpr int X = V16<T>::N;
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * X;
  if (i >= N) return;
  if (i + X <= N) {
    V16<T> g = ld16(dout + i);
    if (da) st16(da + i, g);
    if (db) st16(db + i, g);
  } else {
    for (; i < N; i++) {
      T g = dout[i];
      if (da) da[i] = g;
      if (db) db[i] = g;
    }
  }
}

// acc[i] += x[i]
template <typename T>
__global__ void accumulate_kernel(T *acc /* [N] */, const T *x /* [N] */, size_t N) {
  constexpr int X = V16<T>::N;
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * X;
  if (i >= N) return;
  if (i + X <= N) {
    V16<T> s = ld16(acc + i), y = ld16(x + i);
    MF_UNROLL
    for (int k = 0; k < X; k++) s.v[k] = from_f<T>(to_f(s.v[k]) + to_f(y.v[k]));
    st16(acc + i, s);
  } else {
    for (; i < N; i++) acc[i] = from_f<T>(to_f(acc[i]) + to_f(x[i]));
  }
}

// ---------------------------------------------------------------- launchers

static inline unsigned pack_blocks(size_t N, int X, int threads) {
  return (unsigned)CEIL_DIV(CEIL_DIV(N, (size_t)X), (size_t)threads);
}

template <typename T>
void residual_forward(T *out /* [N] */, const T *a /* [N] */, const T *b /* [N] */, size_t N,
                      cudaStream_t stream) {
  MF_REQUIRE(aligned16(out) && aligned16(a) && aligned16(b), "16-byte aligned arrays");
  if (N == 0) return;
  MF_LAUNCH(residual_forward_kernel<T>, pack_blocks(N, V16<T>::N, 256), 256, 0, stream, out, a, b,
            N);
  MF_CHECK_LAUNCH();
}

template <typename T>
void residual_backward(T *da /* [N] or NULL */, T *db /* [N] or NULL */, const T *dout /* [N] */,
                       size_t N, cudaStream_t stream) {
  MF_REQUIRE(aligned16(dout) && (!da || aligned16(da)) && (!db || aligned16(db)),
             "16-byte aligned arrays");
  if (da == dout) da = nullptr;  // already holds the gradient
  if (db == dout) db = nullptr;
  if (N == 0 || (!da && !db)) return;
  MF_LAUNCH(residual_backward_kernel<T>, pack_blocks(N, V16<T>::N, 256), 256, 0, stream, da, db,
            dout, N);
  MF_CHECK_LAUNCH();
}

template <typename T>
void accumulate(T *acc /* [N] */, const T *x /* [N] */, size_t N, cudaStream_t stream) {
  MF_REQUIRE(aligned16(acc) && aligned16(x), "16-byte aligned arrays");
  if (N == 0) return;
  MF_LAUNCH(accumulate_kernel<T>, pack_blocks(N, V16<T>::N, 256), 256, 0, stream, acc, x, N);
  MF_CHECK_LAUNCH();
}

#define INST(T)                                                                        \
  template void residual_forward<T>(T *, const T *, const T *, size_t, cudaStream_t); \
  template void residual_backward<T>(T *, T *, const T *, size_t, cudaStream_t);      \
  template void accumulate<T>(T *, const T *, size_t, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
