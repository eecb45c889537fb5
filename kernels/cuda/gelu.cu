// GELU, tanh approximation (torch gelu(approximate="tanh")), on CUDA:
//   gelu(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
// Parameter gradients accumulate (+=); activation gradients are written (=): GELU has no
// parameters, gelu_backward writes dinp (which may alias dout).
//
// The same formulas as kernels/cpu/gelu.c (one exp, no cancellation near 0, the backward
// clamps x to +-9.5), in fp32. One thread per 16-byte pack; the last pack of a ragged N
// goes element by element. Pure streaming: 16-byte accesses keep it at memory bandwidth.
// (In the GPT MLP the forward GELU is fused into the fc GEMM's epilogue, see matmul.cu;
// these kernels serve the unfused op and the tests.)
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define K0 0.7978845608028654f /* sqrt(2/pi) */
#define K1 0.044715f
#define XCLAMP 9.5f

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

__device__ __forceinline__ float gelu_f(float x) {
  float e = expf(-2.0f * K0 * (x + K1 * x * x * x));
  return x / (1.0f + e);  // e = inf (x very negative) gives -0, as torch
}

__device__ __forceinline__ float gelu_grad_f(float x) {
  float xc = fabsf(x) > XCLAMP ? copysignf(XCLAMP, x) : x;
  float e = expf(-2.0f * K0 * (xc + K1 * xc * xc * xc));
  float s = 1.0f / (1.0f + e);
  float du = K0 * (1.0f + 3.0f * K1 * xc * xc);
  return s + 2.0f * xc * s * (e * s) * du;  // d/dx [x s(2u)] = s + 2 x s (1-s) u'
}

template <typename T>
__global__ void gelu_forward_kernel(T *__restrict__ out /* [N] */, const T *__restrict__ inp /* [N] */,
                                    size_t N) {
  constexpr int X = V16<T>::N;
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * X;
  if (i >= N) return;
  if (i + X <= N) {
    V16<T> x = ld16(inp + i), y;
    MF_UNROLL
    for (int k = 0; k < X; k++) y.v[k] = from_f<T>(gelu_f(to_f(x.v[k])));
    st16(out + i, y);
  } else {
    for (; i < N; i++) out[i] = from_f<T>(gelu_f(to_f(inp[i])));
  }
}

template <typename T>
__global__ void gelu_backward_kernel(T *dinp /* [N], may alias dout */, const T *__restrict__ inp /* [N] */,
                                     const T *dout /* [N] */, size_t N) {
  constexpr int X = V16<T>::N;
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * X;
  if (i >= N) return;
  if (i + X <= N) {
    V16<T> x = ld16(inp + i), g = ld16(dout + i), y;
    MF_UNROLL
    for (int k = 0; k < X; k++) y.v[k] = from_f<T>(to_f(g.v[k]) * gelu_grad_f(to_f(x.v[k])));
    st16(dinp + i, y);
  } else {
    for (; i < N; i++) dinp[i] = from_f<T>(to_f(dout[i]) * gelu_grad_f(to_f(inp[i])));
  }
}

// ---------------------------------------------------------------- launchers

template <typename T>
void gelu_forward(T *out /* [N] */, const T *inp /* [N] */, size_t N, cudaStream_t stream) {
  MF_REQUIRE(aligned16(out) && aligned16(inp), "16-byte aligned arrays");
  if (N == 0) return;
  const int threads = 256;
  size_t packs = CEIL_DIV(N, (size_t)V16<T>::N);
  MF_LAUNCH(gelu_forward_kernel<T>, (unsigned)CEIL_DIV(packs, (size_t)threads), threads, 0, stream,
            out, inp, N);
  MF_CHECK_LAUNCH();
}

template <typename T>
void gelu_backward(T *dinp /* [N] */, const T *inp /* [N] */, const T *dout /* [N] */, size_t N,
                   cudaStream_t stream) {
  MF_REQUIRE(aligned16(dinp) && aligned16(inp) && aligned16(dout), "16-byte aligned arrays");
  if (N == 0) return;
  const int threads = 256;
  size_t packs = CEIL_DIV(N, (size_t)V16<T>::N);
  MF_LAUNCH(gelu_backward_kernel<T>, (unsigned)CEIL_DIV(packs, (size_t)threads), threads, 0,
            stream, dinp, inp, dout, N);
  MF_CHECK_LAUNCH();
}

#define INST(T)                                                                  \
  template void gelu_forward<T>(T *, const T *, size_t, cudaStream_t);           \
  template void gelu_backward<T>(T *, const T *, const T *, size_t, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
