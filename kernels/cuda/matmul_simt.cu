// Matmul without a library: a shared-memory tiled SIMT GEMM in plain CUDA C (no cuBLASLt,
// no tensor cores, no inline PTX), with the semantics and argument order of matmul.cu's
// matmul_forward / matmul_backward. It lets the emulation build (which cannot run cuBLASLt)
// run whole training steps on the CUDA backend, and gives the GPU tests a second, independent
// GEMM to cross-check cuBLASLt against. Correctness over speed: far slower than cuBLASLt.
// Parameter gradients accumulate (+=) into dweight and dbias; the activation gradient dinp
// is written (=).
//
//   wt == 0: weight[C,OC] (Conv1D layout, out = inp @ weight)
//   wt == 1: weight[OC,C] (nn.Linear / tied embedding layout, out = inp @ weight^T)
//
// One kernel does every product: c[M,Nc] (row-major) = (acc ? c : 0) + A @ B (+ bias[Nc]),
// where the operands are read through element strides, A(i,k) = a[i*sai + k*sak] and
// B(k,j) = b[k*sbk + j*sbj], so a transposed operand is just other strides. A block of
// 16 x 16 threads owns a 32 x 32 tile of c (each thread the 2 x 2 outputs at rows ty, ty+16
// and columns tx, tx+16 of the tile) and steps through K in slices of 16: both operand
// slices are staged in shared memory as fp32 (zero past the edges), then every thread adds
// its 16 products per output. Each output is summed by one thread in K order, in fp32, and
// written once (rounded to T): deterministic, no atomics, any M, Nc, K >= 1. The bias
// gradient comes from bias.cu (deterministic, +=).
// matmul_simt_set_tf32(1) rounds both operands to TF32 (10-bit mantissa) as they are staged,
// fp32 sums as before: what cuBLASLt's TF32 mode computes, up to summation order, so the
// emulation build trains with `tf32: true` as a GPU would.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define SIMT_TILE 32      // output tile edge (rows and columns of c per block)
#define SIMT_K 16         // K slice staged in shared memory per step
#define SIMT_THREADS 256  // 16 x 16 threads, 2 x 2 outputs each

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

// c[M,Nc] = (acc ? c : 0) + A[M,K] @ B[K,Nc] + bias[Nc] (bias may be NULL), fp32 sums.
// A(i,k) = a[i*sai + k*sak], B(k,j) = b[k*sbk + j*sbj]. grid: (M / 32, Nc / 32) rounded up.
template <typename T>
__global__ void MF_LAUNCH_BOUNDS(SIMT_THREADS)
    matmul_simt_kernel(T *__restrict__ c /* [M,Nc] */, const T *__restrict__ a /* A[M,K] */,
                       const T *__restrict__ b /* B[K,Nc] */,
                       const T *__restrict__ bias /* [Nc] or NULL */, int M, int Nc, int K,
                       size_t sai, size_t sak, size_t sbk, size_t sbj, int acc, int tf32) {
  __shared__ float s_a[SIMT_K][SIMT_TILE + 1];  // s_a[k][i] = A(i0 + i, k0 + k); +1: no bank
  __shared__ float s_b[SIMT_K][SIMT_TILE + 1];  // s_b[k][j] = B(k0 + k, j0 + j); conflicts
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int i0 = blockIdx.x * SIMT_TILE, j0 = blockIdx.y * SIMT_TILE;
  float sum[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
  for (int k0 = 0; k0 < K; k0 += SIMT_K) {
    // stage both slices (512 elements each, 2 per thread); consecutive threads walk the
    // operand's unit-stride dimension, so the global loads coalesce in all four layouts
    for (int e = threadIdx.x; e < SIMT_K * SIMT_TILE; e += SIMT_THREADS) {
      int k = sak == 1 ? e % SIMT_K : e / SIMT_TILE, i = sak == 1 ? e / SIMT_K : e % SIMT_TILE;
      int gi = i0 + i, gk = k0 + k;
      float va = gi < M && gk < K ? to_f(a[(size_t)gi * sai + (size_t)gk * sak]) : 0.0f;
      s_a[k][i] = tf32 ? tf32_round(va) : va;
      k = sbk == 1 ? e % SIMT_K : e / SIMT_TILE;
      int j = sbk == 1 ? e / SIMT_K : e % SIMT_TILE, gj = j0 + j;
      gk = k0 + k;
      float vb = gk < K && gj < Nc ? to_f(b[(size_t)gk * sbk + (size_t)gj * sbj]) : 0.0f;
      s_b[k][j] = tf32 ? tf32_round(vb) : vb;
    }
    __syncthreads();
    MF_UNROLL
    for (int k = 0; k < SIMT_K; k++) {  // zeros past K add nothing
      float a0 = s_a[k][ty], a1 = s_a[k][ty + 16], b0 = s_b[k][tx], b1 = s_b[k][tx + 16];
      sum[0][0] += a0 * b0;
      sum[0][1] += a0 * b1;
      sum[1][0] += a1 * b0;
      sum[1][1] += a1 * b1;
    }
    __syncthreads();  // the slices are overwritten by the next step
  }
  MF_UNROLL
  for (int r = 0; r < 2; r++) {
    const int i = i0 + ty + 16 * r;
    if (i >= M) continue;
    MF_UNROLL
    for (int q = 0; q < 2; q++) {
      const int j = j0 + tx + 16 * q;
      if (j >= Nc) continue;
      const size_t o = (size_t)i * Nc + j;
      float v = sum[r][q];
      if (bias) v += to_f(bias[j]);
      if (acc) v += to_f(c[o]);
      c[o] = from_f<T>(v);
    }
  }
}

// ---------------------------------------------------------------- launchers

namespace {

int g_simt_tf32 = 0;  // matmul_simt_set_tf32

void mm_simt_check(int N, int C, int OC, int wt) {
  MF_REQUIRE(N >= 0 && C > 0 && OC > 0 && (wt == 0 || wt == 1), "N=%d C=%d OC=%d wt=%d", N, C, OC,
             wt);
}

// c[M,Nc] (=, or += with acc) A @ B (+ bias): see matmul_simt_kernel; M, Nc, K >= 1
template <typename T>
void gemm_simt(T *c, const T *a, const T *b, const T *bias, int M, int Nc, int K, size_t sai,
               size_t sak, size_t sbk, size_t sbj, int acc, cudaStream_t stream) {
  MF_REQUIRE(CEIL_DIV(Nc, SIMT_TILE) <= 65535, "Nc=%d: too many column tiles for grid.y", Nc);
  dim3 grid(CEIL_DIV(M, SIMT_TILE), CEIL_DIV(Nc, SIMT_TILE));
  MF_LAUNCH(matmul_simt_kernel<T>, grid, SIMT_THREADS, 0, stream, c, a, b, bias, M, Nc, K, sai,
            sak, sbk, sbj, acc, g_simt_tf32);
  MF_CHECK_LAUNCH();
}

}  // namespace

void matmul_simt_set_tf32(int on) { g_simt_tf32 = on != 0; }

template <typename T>
void matmul_simt_forward(T *out /* [N,OC] */, const T *inp /* [N,C] */,
                         const T *weight /* wt ? [OC,C] : [C,OC] */,
                         const T *bias /* [OC] or NULL */, int N, int C, int OC, int wt,
                         cudaStream_t stream) {
  mm_simt_check(N, C, OC, wt);
  if (N == 0) return;
  // out[N,OC] = inp[N,C] @ W; W(k,j) = weight[k*OC + j] (wt 0) or weight[j*C + k] (wt 1)
  gemm_simt<T>(out, inp, weight, bias, N, OC, C, C, 1, wt ? 1 : OC, wt ? C : 1, 0, stream);
}

template <typename T>
void matmul_simt_backward(T *dinp /* [N,C] or NULL */,
                          T *dweight /* wt ? [OC,C] : [C,OC], or NULL */,
                          T *dbias /* [OC] or NULL */, const T *dout /* [N,OC] */,
                          const T *inp /* [N,C] */, const T *weight /* wt ? [OC,C] : [C,OC] */,
                          int N, int C, int OC, int wt, cudaStream_t stream) {
  mm_simt_check(N, C, OC, wt);
  if (N == 0) return;
  if (dinp)  // dinp[N,C] = dout[N,OC] @ W^T; W^T(o,c) = weight[c*OC + o] (wt 0), [o*C + c] (wt 1)
    gemm_simt<T>(dinp, dout, weight, nullptr, N, C, OC, OC, 1, wt ? C : 1, wt ? 1 : OC, 0, stream);
  if (dweight) {
    if (wt)  // dW[OC,C] += dout^T @ inp: A(o,n) = dout[n*OC + o], B(n,c) = inp[n*C + c]
      gemm_simt<T>(dweight, dout, inp, nullptr, OC, C, N, 1, OC, C, 1, 1, stream);
    else  // dW[C,OC] += inp^T @ dout: A(c,n) = inp[n*C + c], B(n,o) = dout[n*OC + o]
      gemm_simt<T>(dweight, inp, dout, nullptr, C, OC, N, 1, C, OC, 1, 1, stream);
  }
  if (dbias) bias_backward(dbias, dout, N, OC, stream);
}

#define INST(T)                                                                                  \
  template void matmul_simt_forward<T>(T *, const T *, const T *, const T *, int, int, int, int,   \
                                       cudaStream_t);                                            \
  template void matmul_simt_backward<T>(T *, T *, T *, const T *, const T *, const T *, int, int,  \
                                        int, int, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
