// Shared helpers for kernels/cuda/*.cu: error checks, launcher preconditions, the
// device scratch area, fp32 <-> storage-type conversion, 16-byte vector loads and stores,
// warp and block reductions. Device code here compiles under nvcc and, with
// MF_CUDA_EMULATION, as plain C++ against kernels/cuda/emu (launch.h picks which).
//
// House rules for the kernel files (kernels/cuda/<op>.cu):
//   - launchers live in namespace mf_cuda, carry the CPU kernel's name and argument order
//     (outputs, saved values, inputs, params, sizes) plus a trailing cudaStream_t;
//   - templated on the storage type T (float or __nv_bfloat16), fp32 arithmetic inside,
//     explicitly instantiated for both;
//   - each launcher checks its preconditions (MF_REQUIRE), launches with MF_LAUNCH and
//     checks the launch (MF_CHECK_LAUNCH);
//   - reductions into parameter gradients are deterministic (no float atomics).
#ifndef MF_CUDA_COMMON_CUH
#define MF_CUDA_COMMON_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/launch.h"
#if !defined(MF_CUDA_EMULATION)
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

// `#pragma unroll` is nvcc's; g++ (emulation) would warn about an unknown pragma.
#if defined(__CUDACC__) && !defined(MF_CUDA_EMULATION)
#define MF_UNROLL _Pragma("unroll")
#define MF_NO_UNROLL _Pragma("unroll 1")
#define MF_LAUNCH_BOUNDS(threads) __launch_bounds__(threads)
#else
#define MF_UNROLL
#define MF_NO_UNROLL
#define MF_LAUNCH_BOUNDS(threads)
#endif

namespace mf_cuda {

typedef __nv_bfloat16 bf16;

// ---- errors ----

// The MPI rank from the launcher's environment (-1 when not under MPI): CUDA failures
// print the call, file:line and rank, as every check in mforge does.
inline int env_rank() {
  const char *names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"};
  for (const char *n : names) {
    const char *v = getenv(n);
    if (v && *v) return atoi(v);
  }
  return -1;
}

[[noreturn]] inline void die(const char *file, int line, const char *what, const char *why) {
  int rank = env_rank();
  if (rank >= 0)
    fprintf(stderr, "rank %d: %s:%d: %s: %s\n", rank, file, line, what, why);
  else
    fprintf(stderr, "%s:%d: %s: %s\n", file, line, what, why);
  fflush(stderr);
  abort();
}

}  // namespace mf_cuda

#define MF_CUDA_CHECK(call)                                                         \
  do {                                                                              \
    cudaError_t mf_e_ = (call);                                                     \
    if (mf_e_ != cudaSuccess) mf_cuda::die(__FILE__, __LINE__, #call, cudaGetErrorString(mf_e_)); \
  } while (0)

// launch.h is the home of MF_CHECK_LAUNCH (the emulator engineer adds it there); this is
// the same check for as long as it is not.
#ifndef MF_CHECK_LAUNCH
#define MF_CHECK_LAUNCH() MF_CUDA_CHECK(cudaGetLastError())
#endif

// A launcher's precondition: a programming error (wrong shape, misaligned pointer), so it
// aborts with the condition, file:line and a note; user mistakes are caught long before.
#define MF_REQUIRE(cond, ...)                                                       \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      char mf_msg_[256];                                                            \
      snprintf(mf_msg_, sizeof mf_msg_, __VA_ARGS__);                               \
      mf_cuda::die(__FILE__, __LINE__, "precondition failed: " #cond, mf_msg_);     \
    }                                                                               \
  } while (0)

namespace mf_cuda {

inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// ---- device scratch ----
// One device buffer shared by the launchers that need temporary space (per-block partial
// sums of the deterministic reductions). It only grows, and growing waits for the device
// first, so it happens in the first step and never in the steady state (nor inside a CUDA
// graph capture, since the shapes of a captured step were seen before). Launchers use it
// on one stream at a time: kernels of one stream run in order, so consecutive users never
// overlap. Not for concurrent use from several streams.
inline void *&scratch_ptr() {
  static void *p = nullptr;
  return p;
}
inline size_t &scratch_size() {
  static size_t n = 0;
  return n;
}
// bumped whenever the area moves: a CUDA graph captured before holds a stale address
inline unsigned long &scratch_generation() {
  static unsigned long g = 0;
  return g;
}
inline void *scratch(size_t bytes) {
  if (bytes > scratch_size()) {
    scratch_generation()++;
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes + bytes / 4;
    if (scratch_ptr()) {
      MF_CUDA_CHECK(cudaDeviceSynchronize());  // earlier kernels may still use it
      MF_CUDA_CHECK(cudaFree(scratch_ptr()));
      scratch_ptr() = nullptr;
    }
    MF_CUDA_CHECK(cudaMalloc(&scratch_ptr(), want));
    scratch_size() = want;
  }
  return scratch_ptr();
}
inline void scratch_release() {
  scratch_generation()++;
  if (scratch_ptr()) {
    MF_CUDA_CHECK(cudaDeviceSynchronize());
    MF_CUDA_CHECK(cudaFree(scratch_ptr()));
  }
  scratch_ptr() = nullptr;
  scratch_size() = 0;
}

// ---- storage type <-> fp32 ----

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16(x); }
// x with its mantissa rounded to TF32's 10 bits (to nearest, ties away from zero, as
// cvt.rna.tf32.f32; a library may truncate instead: errors of the same size); infinities
// and NaN unchanged. bf16 values are exact in TF32.
__device__ __forceinline__ float tf32_round(float x) {
  unsigned int u = __float_as_uint(x);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  return __uint_as_float(u);
}

// ---- 16-byte vectors ----
// V16<T>: the 16 bytes one thread moves per access (4 floats or 8 bf16). ld16/st16 need
// 16-byte aligned addresses; launchers check the base pointers and the row lengths.
template <typename T> struct alignas(16) V16 {
  static constexpr int N = 16 / (int)sizeof(T);
  T v[N];
};

template <typename T> __device__ __forceinline__ V16<T> ld16(const T *p) {
  V16<T> r;
#if defined(MF_CUDA_EMULATION)
  memcpy(&r, p, 16);
#else
  int4 bits = *reinterpret_cast<const int4 *>(p);
  memcpy(&r, &bits, 16);
#endif
  return r;
}

template <typename T> __device__ __forceinline__ void st16(T *p, const V16<T> &r) {
#if defined(MF_CUDA_EMULATION)
  memcpy(p, &r, 16);
#else
  int4 bits;
  memcpy(&bits, &r, 16);
  *reinterpret_cast<int4 *>(p) = bits;
#endif
}

// ---- warp and block reductions (fixed shuffle trees: bitwise reproducible) ----

__device__ __forceinline__ float warp_sum(float x) {
  MF_UNROLL
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ double warp_sum(double x) {
  MF_UNROLL
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  MF_UNROLL
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over the block; every thread gets the result. buf: __shared__ scratch of 32
// elements. blockDim.x must be a multiple of 32. Ends with a barrier-free read, so a
// second call needs a __syncthreads() before it reuses buf (block_sum does it itself).
template <typename A> __device__ __forceinline__ A block_sum(A x, A *buf) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  x = warp_sum(x);
  __syncthreads();  // buf may still be read by a previous call
  if (lane == 0) buf[warp] = x;
  __syncthreads();
  A y = lane < nw ? buf[lane] : (A)0;
  return warp_sum(y);
}

// ---- launch helpers ----

// Dynamic shared memory above 48 KB must be allowed per kernel (the emulator enforces the
// same limit). Cheap; launchers call it before every launch that may need it.
template <typename K> inline void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    MF_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)bytes));
}

// The most dynamic shared memory one block of the current device may have (opt-in).
inline size_t max_smem_optin() {
  int dev = 0, v = 0;
  MF_CUDA_CHECK(cudaGetDevice(&dev));
  MF_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return (size_t)v;
}

// ---- the ordered second pass of the deterministic column reductions ----
// out[c] += sum over g = 0..G-1 (in order) of part[g*ld + c]; one thread per column
template <typename T>
__global__ void partials_add_kernel(T *__restrict__ out /* [C] */,
                                    const float *__restrict__ part /* [G, ld] */, int G, int C,
                                    int ld) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int g = 0; g < G; g++) s += part[(size_t)g * ld + c];
  out[c] = from_f<T>(to_f(out[c]) + s);
}

template <typename T>
inline void partials_add(T *out, const float *part, int G, int C, int ld, cudaStream_t stream) {
  const int threads = 256;
  MF_LAUNCH(partials_add_kernel<T>, CEIL_DIV(C, threads), threads, 0, stream, out, part, G, C,
            ld);
  MF_CHECK_LAUNCH();
}

}  // namespace mf_cuda

#endif
