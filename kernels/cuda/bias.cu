// The bias gradient of a matmul on CUDA: dbias[OC] += sum over rows of dout[N,OC].
// Parameter gradients accumulate (+=) into dbias; there is no activation gradient here
// (matmul.cu computes dinp and dweight with cuBLASLt and calls this for dbias).
//
// Deterministic without atomics, in two passes: each block owns BIAS_RPB consecutive rows
// and a slice of 32 lanes x one 16-byte pack of columns; its 8 warps sum interleaved rows
// in fp32 registers, the block adds the 8 warp sums in warp order and writes one partial
// row to the scratch area; partials_add (common.cuh) then adds the partials in block order.
// Kept apart from matmul.cu so that it runs (and is checked) under the emulator.
// bias_forward (out += bias, any shape) is the bias of a row-parallel layer, added after
// the tensor-parallel all-reduce (parallel/tp_ops.c).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define BIAS_THREADS 256  // 8 warps
#define BIAS_RPB 64       // rows per block

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

// part[blockIdx.y, cols] = sum of dout[rows of block y, cols]; cols = the block's slice
template <typename T>
__global__ void bias_partial_kernel(float *__restrict__ part /* [G,OC] */,
                                    const T *__restrict__ dout /* [N,OC] */, int N, int OC) {
  constexpr int X = V16<T>::N;
  constexpr int NW = BIAS_THREADS / 32;
  __shared__ float s_acc[NW][32 * X];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int c = (blockIdx.x * 32 + lane) * X;  // this lane's first column
  const int r0 = blockIdx.y * BIAS_RPB, r1 = min(N, r0 + BIAS_RPB);
  float acc[X];
  MF_UNROLL
  for (int k = 0; k < X; k++) acc[k] = 0.0f;
  if (c < OC) {
    for (int r = r0 + warp; r < r1; r += NW) {
      V16<T> d = ld16(dout + (size_t)r * OC + c);
      MF_UNROLL
      for (int k = 0; k < X; k++) acc[k] += to_f(d.v[k]);
    }
  }
  MF_UNROLL
  for (int k = 0; k < X; k++) s_acc[warp][lane * X + k] = acc[k];
  __syncthreads();
  for (int i = threadIdx.x; i < 32 * X; i += BIAS_THREADS) {
    int col = blockIdx.x * 32 * X + i;
    if (col >= OC) continue;
    float s = 0.0f;
    for (int w = 0; w < NW; w++) s += s_acc[w][i];
    part[(size_t)blockIdx.y * OC + col] = s;
  }
}

// out[i, j] += bias[j]; one thread per element (memory-bound: one read and write of out)
template <typename T>
__global__ void bias_forward_kernel(T *__restrict__ out /* [N,OC] */,
                                    const T *__restrict__ bias /* [OC] */, long n, int OC) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = from_f<T>(to_f(out[i]) + to_f(bias[i % OC]));
}

// ---------------------------------------------------------------- launchers

template <typename T>
void bias_forward(T *out /* [N,OC] */, const T *bias /* [OC] */, int N, int OC, cudaStream_t stream) {
  MF_REQUIRE(N >= 0 && OC >= 0, "N=%d OC=%d", N, OC);
  long n = (long)N * OC;
  if (n == 0) return;
  const int threads = 256;
  MF_LAUNCH(bias_forward_kernel<T>, (unsigned)CEIL_DIV(n, threads), threads, 0, stream, out, bias, n, OC);
  MF_CHECK_LAUNCH();
}

template <typename T>
void bias_backward(T *dbias /* [OC] */, const T *dout /* [N,OC] */, int N, int OC,
                   cudaStream_t stream) {
  constexpr int X = V16<T>::N;
  MF_REQUIRE(N >= 0 && OC >= 0, "N=%d OC=%d", N, OC);
  MF_REQUIRE(OC % X == 0, "OC=%d must be a multiple of %d (16-byte rows)", OC, X);
  MF_REQUIRE(aligned16(dout), "16-byte aligned dout");
  if (N == 0 || OC == 0) return;
  int G = CEIL_DIV(N, BIAS_RPB);
  float *part = (float *)scratch((size_t)G * OC * sizeof(float));
  dim3 grid(CEIL_DIV(OC, 32 * X), G);
  MF_LAUNCH(bias_partial_kernel<T>, grid, BIAS_THREADS, 0, stream, part, dout, N, OC);
  MF_CHECK_LAUNCH();
  partials_add(dbias, part, G, OC, OC, stream);
}

template void bias_forward<float>(float *, const float *, int, int, cudaStream_t);
template void bias_forward<bf16>(bf16 *, const bf16 *, int, int, cudaStream_t);
template void bias_backward<float>(float *, const float *, int, int, cudaStream_t);
template void bias_backward<bf16>(bf16 *, const bf16 *, int, int, cudaStream_t);

}  // namespace mf_cuda
