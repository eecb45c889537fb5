/* CUDA emulator: what kernels/cuda sources see when they are compiled as C++ with the host
 * compiler (MF_CUDA_EMULATION; CI has no GPU). It provides the CUDA names our kernels and
 * launchers use - qualifiers, builtin variables, vector/bf16/half types, barriers, warp
 * intrinsics, atomics, math intrinsics and the runtime API - and mf_emu_launch, which
 * MF_LAUNCH (kernels/cuda/launch.h) calls instead of <<<>>>.
 *
 * How a launch runs (kernels/cuda/emu/emu_sched.cpp): blocks one after another in a seeded
 * random order; each thread of a block is a cooperatively scheduled fiber, and between
 * barriers the runnable threads run in a seeded random order. Barriers and warp collectives
 * are meeting points: __syncthreads waits for every live thread of the block, __shfl_sync
 * and friends for every lane named in the mask. Device memory, shared memory and all accesses
 * to them are checked (emu_check.cpp): the kernels are compiled with ThreadSanitizer's
 * instrumentation (-fsanitize=thread) but linked against our own hooks, which find data races
 * between threads of a block, out-of-bounds and use-after-free accesses to cudaMalloc memory
 * (guard zones), reads of uninitialized memory, misaligned vector accesses, and host pointers
 * dereferenced by kernels. Reports name the kernel, block, thread and source line.
 *
 * The one source change the emulator needs, __shared__ declarations, is made on a copy at
 * build time by mf_emu_prep (emu_scan.h); no kernel source is edited by hand.
 *
 * Not emulated: library calls (cuBLASLt, cuDNN, NCCL), inline PTX, Hopper-only instructions
 * (wgmma, TMA), timing, grid-wide sync, dynamic parallelism; blocks never run concurrently,
 * so a block spinning on another block's progress is reported as an endless wait.
 * Environment: MF_EMU_SEED (thread/block order, default 1), MF_EMU_CHECKS (bit mask of Check
 * below, default all), MF_EMU_SYMBOLIZE=0 (no addr2line), MF_EMU_STACK_KB (per thread, 256),
 * MF_EMU_LAUNCH_LOG (file to append launched kernel names to), MF_EMU_STATS=1, MF_EMU_MEM_MB
 * (the device memory; cudaMalloc beyond it fails as out of memory, default 80 GiB). */
#ifndef MF_CUDA_EMU_H
#define MF_CUDA_EMU_H

#ifndef MF_CUDA_EMULATION
#define MF_CUDA_EMULATION 1
#endif

/* standard headers first: some use __noinline__ etc. as attribute names */
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

/* ---- qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ __inline__
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))
#define __builtin_align__(n) __attribute__((aligned(n)))
/* mf_emu_prep rewrites every __shared__ declaration of the files it copies; one that reaches
 * the compiler comes from elsewhere (e.g. a macro) and is an error. */
#define __shared__ mf_emu_error_shared_declaration_not_rewritten_by_mf_emu_prep

/* ---- vector types (CUDA's sizes and alignments) ---- */
#define MF_EMU_V1(T, N) \
  struct N##1 { T x; }; \
  inline N##1 make_##N##1(T x) { return {x}; }
#define MF_EMU_V2(T, N, A) \
  struct alignas(A) N##2 { T x, y; }; \
  inline N##2 make_##N##2(T x, T y) { return {x, y}; }
#define MF_EMU_V3(T, N) \
  struct N##3 { T x, y, z; }; \
  inline N##3 make_##N##3(T x, T y, T z) { return {x, y, z}; }
#define MF_EMU_V4(T, N, A) \
  struct alignas(A) N##4 { T x, y, z, w; }; \
  inline N##4 make_##N##4(T x, T y, T z, T w) { return {x, y, z, w}; }
#define MF_EMU_VALL(T, N, A2, A4) MF_EMU_V1(T, N) MF_EMU_V2(T, N, A2) MF_EMU_V3(T, N) MF_EMU_V4(T, N, A4)
MF_EMU_VALL(signed char, char, 2, 4)
MF_EMU_VALL(unsigned char, uchar, 2, 4)
MF_EMU_VALL(short, short, 4, 8)
MF_EMU_VALL(unsigned short, ushort, 4, 8)
MF_EMU_VALL(int, int, 8, 16)
MF_EMU_VALL(unsigned int, uint, 8, 16)
MF_EMU_VALL(long, long, 16, 16)
MF_EMU_VALL(unsigned long, ulong, 16, 16)
MF_EMU_VALL(long long, longlong, 16, 16)
MF_EMU_VALL(unsigned long long, ulonglong, 16, 16)
MF_EMU_VALL(float, float, 8, 16)
MF_EMU_VALL(double, double, 16, 16)
#undef MF_EMU_VALL
#undef MF_EMU_V1
#undef MF_EMU_V2
#undef MF_EMU_V3
#undef MF_EMU_V4

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};

/* ---- builtin variables: the running thread's, set by the scheduler at every switch ---- */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

#include "kernels/cuda/emu/emu_fp16.h"

/* ---- runtime API types ---- */
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidSymbol = 13,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorAssert = 710,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorUnknown = 999
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxBlockDimX = 2,
  cudaDevAttrMaxBlockDimY = 3,
  cudaDevAttrMaxBlockDimZ = 4,
  cudaDevAttrMaxGridDimX = 5,
  cudaDevAttrMaxGridDimY = 6,
  cudaDevAttrMaxGridDimZ = 7,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrTotalConstantMemory = 9,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMaxRegistersPerBlock = 12,
  cudaDevAttrClockRate = 13,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMemoryClockRate = 36,
  cudaDevAttrGlobalMemoryBusWidth = 37,
  cudaDevAttrL2CacheSize = 38,
  cudaDevAttrMaxThreadsPerMultiProcessor = 39,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
  cudaDevAttrMaxRegistersPerMultiprocessor = 82,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
  cudaDevAttrMaxBlocksPerMultiprocessor = 106
};
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2, cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void *devicePointer;
  void *hostPointer;
};
struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
typedef CUstream_st *cudaStream_t;
typedef CUevent_st *cudaEvent_t;
typedef CUgraph_st *cudaGraph_t;
typedef CUgraphExec_st *cudaGraphExec_t;
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2
};
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01
#define cudaHostAllocMapped 0x02
#define cudaMemAttachGlobal 0x01

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem, sharedMemPerBlock;
  int regsPerBlock, warpSize;
  size_t memPitch;
  int maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3], clockRate;
  size_t totalConstMem;
  int major, minor;
  size_t textureAlignment, texturePitchAlignment;
  int deviceOverlap, multiProcessorCount, kernelExecTimeoutEnabled, integrated, canMapHostMemory;
  int computeMode, concurrentKernels, ECCEnabled, pciBusID, pciDeviceID, pciDomainID;
  int asyncEngineCount, unifiedAddressing, memoryClockRate, memoryBusWidth, l2CacheSize;
  int persistingL2CacheMaxSize, maxThreadsPerMultiProcessor, streamPrioritiesSupported;
  int globalL1CacheSupported, localL1CacheSupported;
  size_t sharedMemPerMultiprocessor;
  int regsPerMultiprocessor, managedMemory, isMultiGpuBoard, multiGpuBoardGroupID;
  int pageableMemoryAccess, concurrentManagedAccess, cooperativeLaunch;
  size_t sharedMemPerBlockOptin, reservedSharedMemPerBlock;
  int maxBlocksPerMultiProcessor, accessPolicyMaxWindowSize;
};
struct cudaFuncAttributes {
  size_t sharedSizeBytes, constSizeBytes, localSizeBytes;
  int maxThreadsPerBlock, numRegs, ptxVersion, binaryVersion, cacheModeCA;
  int maxDynamicSharedSizeBytes, preferredShmemCarveout;
};

/* ---- runtime API (emu_runtime.cpp). C++ linkage, so the names never clash with libcudart.
 * Streams and events keep order trivially: every call, launches included, completes before
 * it returns (unless a capture records it: see below). ---- */
cudaError_t cudaMalloc(void **p, size_t size);
cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t s);
cudaError_t cudaMallocHost(void **p, size_t size);
cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int flags);
cudaError_t cudaMallocManaged(void **p, size_t size, unsigned int flags = cudaMemAttachGlobal);
cudaError_t cudaFree(void *p);
cudaError_t cudaFreeAsync(void *p, cudaStream_t s);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s = 0);
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int value, size_t n);
cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s = 0);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int dev);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int dev);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags);
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int flags, int priority);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags = 0);
/* Stream capture and graphs: while a stream captures, kernel launches, cudaMemsetAsync and
 * cudaMemcpyAsync on it are recorded (arguments copied), not run; cudaGraphLaunch runs the
 * records in order, each launch with the usual checks. As on a GPU (Global and ThreadLocal
 * modes; the emulator has one thread), synchronising calls, cudaMalloc/cudaFree, copies of
 * pageable host memory and work on the legacy stream fail during a capture with a report,
 * and invalidate it: cudaStreamEndCapture then returns cudaErrorStreamCaptureInvalidated. */
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaFuncSetAttribute(const void *fn, cudaFuncAttribute attr, int value);
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *fn);
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *fn, int block,
                                                          size_t smem);

template <class T> cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
template <class T> cudaError_t cudaMallocAsync(T **p, size_t n, cudaStream_t s) {
  return cudaMallocAsync((void **)p, n, s);
}
template <class T> cudaError_t cudaMallocHost(T **p, size_t n) { return cudaMallocHost((void **)p, n); }
template <class T> cudaError_t cudaHostAlloc(T **p, size_t n, unsigned int f) {
  return cudaHostAlloc((void **)p, n, f);
}
template <class T> cudaError_t cudaMallocManaged(T **p, size_t n, unsigned int f = cudaMemAttachGlobal) {
  return cudaMallocManaged((void **)p, n, f);
}
template <class T> cudaError_t cudaFuncSetAttribute(T *fn, cudaFuncAttribute a, int v) {
  return cudaFuncSetAttribute(reinterpret_cast<const void *>(fn), a, v);
}
template <class T> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, T *fn) {
  return cudaFuncGetAttributes(a, reinterpret_cast<const void *>(fn));
}
template <class T>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, T *fn, int block, size_t smem) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, reinterpret_cast<const void *>(fn), block, smem);
}
/* __device__/__constant__ variables are ordinary globals here */
template <class T>
cudaError_t cudaMemcpyToSymbol(T &sym, const void *src, size_t n, size_t off = 0,
                               cudaMemcpyKind k = cudaMemcpyHostToDevice) {
  if (off + n > sizeof(T)) return cudaErrorInvalidValue;
  return cudaMemcpy((char *)&sym + off, src, n, k == cudaMemcpyHostToDevice ? cudaMemcpyHostToHost : k);
}
template <class T>
cudaError_t cudaMemcpyFromSymbol(void *dst, const T &sym, size_t n, size_t off = 0,
                                 cudaMemcpyKind k = cudaMemcpyDeviceToHost) {
  if (off + n > sizeof(T)) return cudaErrorInvalidValue;
  return cudaMemcpy(dst, (const char *)&sym + off, n, k == cudaMemcpyDeviceToHost ? cudaMemcpyHostToHost : k);
}
template <class T> cudaError_t cudaGetSymbolAddress(void **p, T &sym) {
  *p = (void *)&sym;
  return cudaSuccess;
}

/* ---- the emulator's side of device code (emu_sched.cpp / emu_check.cpp) ---- */
namespace mf_emu {
struct SmemSite { /* one per __shared__ declaration (and template instance) */
  uint64_t launch;
  size_t off;
};
void *smem_site(SmemSite *site, size_t size, size_t align); /* this block's copy */
void *dyn_smem();                                           /* extern __shared__ */
void syncthreads();
int syncthreads_op(int op, int pred); /* op 0 count, 1 and, 2 or */
enum WarpOp {
  W_SYNC, W_SHFL, W_UP, W_DOWN, W_XOR, W_BALLOT, W_ANY, W_ALL, W_MATCH_ANY, W_MATCH_ALL,
  W_RADD, W_RMIN_U, W_RMAX_U, W_RMIN_S, W_RMAX_S, W_RAND, W_ROR, W_RXOR
};
uint64_t warp_op(int op, unsigned mask, uint64_t value, int arg, int width);
unsigned active_mask();
void yield(); /* let other threads run (spin-wait loops must call __nanosleep) */
void fence();
[[noreturn]] void trap();
long long clock_ticks();
bool is_shared(const void *p);
bool is_global(const void *p);

template <class T> inline T shfl(int op, unsigned mask, T v, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "warp shuffles move values of at most 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  u = warp_op(op, mask, u, arg, width);
  std::memcpy(&v, &u, sizeof(T));
  return v;
}
template <class T> inline uint64_t bits(T v) {
  static_assert(sizeof(T) <= 8, "value of at most 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
}  // namespace mf_emu

#define MF_EMU_SMEM_SITE(size, align) \
  (__extension__({ static ::mf_emu::SmemSite mf_emu_site_; ::mf_emu::smem_site(&mf_emu_site_, (size), (align)); }))

/* ---- barriers, fences, warp intrinsics ---- */
inline void __syncthreads() { mf_emu::syncthreads(); }
inline int __syncthreads_count(int p) { return mf_emu::syncthreads_op(0, p); }
inline int __syncthreads_and(int p) { return mf_emu::syncthreads_op(1, p); }
inline int __syncthreads_or(int p) { return mf_emu::syncthreads_op(2, p); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { mf_emu::warp_op(mf_emu::W_SYNC, mask, 0, 0, 32); }
inline void __threadfence() { mf_emu::fence(); }
inline void __threadfence_block() { mf_emu::fence(); }
inline void __threadfence_system() { mf_emu::fence(); }
template <class T> inline T __shfl_sync(unsigned m, T v, int src, int width = warpSize) {
  return mf_emu::shfl(mf_emu::W_SHFL, m, v, src, width);
}
template <class T> inline T __shfl_up_sync(unsigned m, T v, unsigned d, int width = warpSize) {
  return mf_emu::shfl(mf_emu::W_UP, m, v, (int)d, width);
}
template <class T> inline T __shfl_down_sync(unsigned m, T v, unsigned d, int width = warpSize) {
  return mf_emu::shfl(mf_emu::W_DOWN, m, v, (int)d, width);
}
template <class T> inline T __shfl_xor_sync(unsigned m, T v, int lm, int width = warpSize) {
  return mf_emu::shfl(mf_emu::W_XOR, m, v, lm, width);
}
inline unsigned __ballot_sync(unsigned m, int p) { return (unsigned)mf_emu::warp_op(mf_emu::W_BALLOT, m, p != 0, 0, 32); }
inline int __any_sync(unsigned m, int p) { return (int)mf_emu::warp_op(mf_emu::W_ANY, m, p != 0, 0, 32); }
inline int __all_sync(unsigned m, int p) { return (int)mf_emu::warp_op(mf_emu::W_ALL, m, p != 0, 0, 32); }
inline unsigned __activemask() { return mf_emu::active_mask(); }
template <class T> inline unsigned __match_any_sync(unsigned m, T v) {
  return (unsigned)mf_emu::warp_op(mf_emu::W_MATCH_ANY, m, mf_emu::bits(v), 0, 32);
}
template <class T> inline unsigned __match_all_sync(unsigned m, T v, int *pred) {
  uint64_t r = mf_emu::warp_op(mf_emu::W_MATCH_ALL, m, mf_emu::bits(v), 0, 32);
  *pred = (int)(r >> 32);
  return (unsigned)r;
}
inline unsigned __reduce_add_sync(unsigned m, unsigned v) { return (unsigned)mf_emu::warp_op(mf_emu::W_RADD, m, v, 0, 32); }
inline int __reduce_add_sync(unsigned m, int v) { return (int)mf_emu::warp_op(mf_emu::W_RADD, m, (unsigned)v, 0, 32); }
inline unsigned __reduce_min_sync(unsigned m, unsigned v) { return (unsigned)mf_emu::warp_op(mf_emu::W_RMIN_U, m, v, 0, 32); }
inline unsigned __reduce_max_sync(unsigned m, unsigned v) { return (unsigned)mf_emu::warp_op(mf_emu::W_RMAX_U, m, v, 0, 32); }
inline int __reduce_min_sync(unsigned m, int v) { return (int)mf_emu::warp_op(mf_emu::W_RMIN_S, m, (unsigned)v, 0, 32); }
inline int __reduce_max_sync(unsigned m, int v) { return (int)mf_emu::warp_op(mf_emu::W_RMAX_S, m, (unsigned)v, 0, 32); }
inline unsigned __reduce_and_sync(unsigned m, unsigned v) { return (unsigned)mf_emu::warp_op(mf_emu::W_RAND, m, v, 0, 32); }
inline unsigned __reduce_or_sync(unsigned m, unsigned v) { return (unsigned)mf_emu::warp_op(mf_emu::W_ROR, m, v, 0, 32); }
inline unsigned __reduce_xor_sync(unsigned m, unsigned v) { return (unsigned)mf_emu::warp_op(mf_emu::W_RXOR, m, v, 0, 32); }

/* ---- atomics (emu_check.cpp; checked as atomic accesses) ---- */
int atomicAdd(int *p, int v);
unsigned int atomicAdd(unsigned int *p, unsigned int v);
unsigned long long atomicAdd(unsigned long long *p, unsigned long long v);
float atomicAdd(float *p, float v);
double atomicAdd(double *p, double v);
__half atomicAdd(__half *p, __half v);
__nv_bfloat16 atomicAdd(__nv_bfloat16 *p, __nv_bfloat16 v);
__half2 atomicAdd(__half2 *p, __half2 v);
__nv_bfloat162 atomicAdd(__nv_bfloat162 *p, __nv_bfloat162 v);
float2 atomicAdd(float2 *p, float2 v);
float4 atomicAdd(float4 *p, float4 v);
int atomicSub(int *p, int v);
unsigned int atomicSub(unsigned int *p, unsigned int v);
int atomicExch(int *p, int v);
unsigned int atomicExch(unsigned int *p, unsigned int v);
unsigned long long atomicExch(unsigned long long *p, unsigned long long v);
float atomicExch(float *p, float v);
int atomicMin(int *p, int v);
unsigned int atomicMin(unsigned int *p, unsigned int v);
long long atomicMin(long long *p, long long v);
unsigned long long atomicMin(unsigned long long *p, unsigned long long v);
int atomicMax(int *p, int v);
unsigned int atomicMax(unsigned int *p, unsigned int v);
long long atomicMax(long long *p, long long v);
unsigned long long atomicMax(unsigned long long *p, unsigned long long v);
unsigned int atomicInc(unsigned int *p, unsigned int v);
unsigned int atomicDec(unsigned int *p, unsigned int v);
int atomicCAS(int *p, int cmp, int v);
unsigned int atomicCAS(unsigned int *p, unsigned int cmp, unsigned int v);
unsigned long long atomicCAS(unsigned long long *p, unsigned long long cmp, unsigned long long v);
unsigned short atomicCAS(unsigned short *p, unsigned short cmp, unsigned short v);
int atomicAnd(int *p, int v);
unsigned int atomicAnd(unsigned int *p, unsigned int v);
unsigned long long atomicAnd(unsigned long long *p, unsigned long long v);
int atomicOr(int *p, int v);
unsigned int atomicOr(unsigned int *p, unsigned int v);
unsigned long long atomicOr(unsigned long long *p, unsigned long long v);
int atomicXor(int *p, int v);
unsigned int atomicXor(unsigned int *p, unsigned int v);
unsigned long long atomicXor(unsigned long long *p, unsigned long long v);
#define MF_EMU_ATOMIC_SCOPES(f) \
  template <class... A> inline auto f##_block(A... a) { return f(a...); } \
  template <class... A> inline auto f##_system(A... a) { return f(a...); }
MF_EMU_ATOMIC_SCOPES(atomicAdd)
MF_EMU_ATOMIC_SCOPES(atomicSub)
MF_EMU_ATOMIC_SCOPES(atomicExch)
MF_EMU_ATOMIC_SCOPES(atomicMin)
MF_EMU_ATOMIC_SCOPES(atomicMax)
MF_EMU_ATOMIC_SCOPES(atomicCAS)
MF_EMU_ATOMIC_SCOPES(atomicAnd)
MF_EMU_ATOMIC_SCOPES(atomicOr)
MF_EMU_ATOMIC_SCOPES(atomicXor)
#undef MF_EMU_ATOMIC_SCOPES

/* ---- math: CUDA's global overloads and intrinsics (approximate ones are exact here) ---- */
#define MF_EMU_MINMAX(T)                                   \
  inline T min(T a, T b) { return a < b ? a : b; }         \
  inline T max(T a, T b) { return a > b ? a : b; }
MF_EMU_MINMAX(int)
MF_EMU_MINMAX(unsigned int)
MF_EMU_MINMAX(long)
MF_EMU_MINMAX(unsigned long)
MF_EMU_MINMAX(long long)
MF_EMU_MINMAX(unsigned long long)
#undef MF_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline unsigned int min(int a, unsigned int b) { return min((unsigned int)a, b); }
inline unsigned int max(int a, unsigned int b) { return max((unsigned int)a, b); }
inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned int)b); }
inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned int)b); }
inline unsigned int umin(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int umax(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }

inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) { *s = sinf(x); *c = cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float sinpif(float x) { return sinf((float)M_PI * x); }
inline float cospif(float x) { return cosf((float)M_PI * x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rz(float a, float b) { return a + b; }
inline float __fmul_rz(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline unsigned int __float2uint_rn(float x) { return (unsigned int)nearbyintf(x); }
inline unsigned int __float2uint_rz(float x) { return (unsigned int)x; }
inline long long __float2ll_rn(float x) { return (long long)nearbyintf(x); }
inline long long __float2ll_rz(float x) { return (long long)x; }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned int x) { return (float)x; }
inline float __ll2float_rn(long long x) { return (float)x; }
inline float __double2float_rn(double x) { return (float)x; }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
  uint64_t v = ((uint64_t)y << 32) | x;
  unsigned int r = 0;
  for (int i = 0; i < 4; i++) r |= (unsigned int)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline int __mul24(int a, int b) { return (int)((long long)((a << 8) >> 8) * ((b << 8) >> 8)); }
inline unsigned int __umul24(unsigned int a, unsigned int b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((unsigned long long)a * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int s) {
  return (unsigned int)(((((uint64_t)hi << 32) | lo) << (s & 31)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int s) {
  return (unsigned int)((((uint64_t)hi << 32) | lo) >> (s & 31));
}

/* cache-hinted loads and stores are plain accesses */
template <class T> inline T __ldg(const T *p) { return *p; }
template <class T> inline T __ldca(const T *p) { return *p; }
template <class T> inline T __ldcg(const T *p) { return *p; }
template <class T> inline T __ldcs(const T *p) { return *p; }
template <class T> inline T __ldlu(const T *p) { return *p; }
template <class T> inline T __ldcv(const T *p) { return *p; }
template <class T> inline void __stwb(T *p, T v) { *p = v; }
template <class T> inline void __stcg(T *p, T v) { *p = v; }
template <class T> inline void __stcs(T *p, T v) { *p = v; }
template <class T> inline void __stwt(T *p, T v) { *p = v; }

inline long long clock64() { return mf_emu::clock_ticks(); }
inline void __nanosleep(unsigned int) { mf_emu::yield(); }
[[noreturn]] inline void __trap() { mf_emu::trap(); }
inline unsigned int __isShared(const void *p) { return mf_emu::is_shared(p); }
inline unsigned int __isGlobal(const void *p) { return mf_emu::is_global(p); }

/* ---- launching (MF_LAUNCH in kernels/cuda/launch.h) ---- */
namespace mf_emu {
typedef void (*Invoker)(void *fn, const void *params);
void *param_space(size_t size, size_t align);
void launch(const char *expr, const void *fn, dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, Invoker invoke, const void *params);
/* where a launch on s goes: 0 it runs now; 1 into s's capture (record it); -1 refused
 * (bad configuration, invalidated capture, legacy stream during a capture: error set) */
int capture_launch(cudaStream_t s, const char *expr, const void *fn, dim3 grid, dim3 block,
                   size_t smem);
void record(cudaStream_t s, std::function<void()> work); /* appends to s's capture */
/* each thread calls the kernel with its own copies of the arguments */
template <class... P> void invoke(void *fn, const void *params) {
  std::apply(reinterpret_cast<void (*)(P...)>(fn), *static_cast<const std::tuple<P...> *>(params));
}
}  // namespace mf_emu

/* Name the kernel with its template arguments (MF_LAUNCH(k<T>, ...)); arguments are converted
 * to the kernel's parameter types at the launch, as with <<<>>>. */
template <class... P, class... A>
inline void mf_emu_launch(const char *expr, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, A &&...args) {
  static_assert(sizeof...(P) == sizeof...(A), "MF_LAUNCH: wrong number of kernel arguments");
  using Tup = std::tuple<std::decay_t<P>...>;
  const void *fn = reinterpret_cast<const void *>(kernel);
  int cap = mf_emu::capture_launch(stream, expr, fn, grid, block, smem);
  if (cap < 0) return;
  if (cap > 0) {
    /* replayed like a launch now: the arguments go to the parameter space first, so the
     * kernel never reads heap memory (the host-memory check would report it) */
    auto saved = std::make_shared<Tup>(std::forward<A>(args)...);
    mf_emu::record(stream, [=] {
      Tup *t = new (mf_emu::param_space(sizeof(Tup), alignof(Tup))) Tup(*saved);
      mf_emu::launch(expr, fn, grid, block, smem, stream, &mf_emu::invoke<std::decay_t<P>...>, t);
      t->~Tup();
    });
    return;
  }
  Tup *t = new (mf_emu::param_space(sizeof(Tup), alignof(Tup))) Tup(std::forward<A>(args)...);
  mf_emu::launch(expr, fn, grid, block, smem, stream, &mf_emu::invoke<std::decay_t<P>...>, t);
  t->~Tup();
}

/* ---- emulator controls, for tests ---- */
namespace mf_emu {
enum Check { CHECK_RACE = 1, CHECK_BOUNDS = 2, CHECK_INIT = 4, CHECK_HOST = 8, CHECK_ALL = 15 };
void set_seed(uint64_t seed); /* default: MF_EMU_SEED or 1 */
uint64_t seed();
void set_checks(unsigned mask); /* default CHECK_ALL */
unsigned checks();
long error_count();            /* errors reported since start / clear_errors() */
void clear_errors();
std::string last_report();     /* text of the latest error report */
void set_quiet(bool quiet);    /* keep reports off stderr (they are still counted) */
void name_alloc(const void *dev_ptr, const char *name); /* names a buffer in reports */
long launch_count(const char *kernel); /* launches of a kernel (base name) so far */
std::vector<std::string> launched_kernels();
}  // namespace mf_emu

#endif
