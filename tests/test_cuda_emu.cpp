/* The CUDA emulator's own tests (kernels/cuda/emu): barriers, warp shuffles/ballots/votes,
 * shared memory (static, dynamic, limits), atomics, bf16/half conversions against the exact
 * rounding rule, the seeded random thread order, launch limits, the emulated device, and the
 * checkers: planted bugs (a missing __syncthreads, an out-of-bounds write, ...) must be
 * caught with a report naming kernel, block and thread; the clean kernels must produce none.
 * Kernels here are test-only (emu_t_*), not kernels/cuda ones.
 * Out of scope for the emulator, so not tested here: library calls (cuBLASLt, cuDNN, NCCL),
 * inline PTX and Hopper-only instructions (wgmma, TMA), timing; they keep GPU-only checks
 * in tests/gpu/. */
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <set>

#include "kernels/cuda/device.h"
#include "tests/cuda_emu_test.h"
#include <cooperative_groups.h>

namespace cg = cooperative_groups;
using namespace mf_emu_test;

/* runs fn with reports kept off stderr; CHECKs that the emulator reported something whose text
 * has every needle; prints the report's first lines as evidence */
static std::string expect_report(const char *what, const std::function<void()> &fn,
                                 std::initializer_list<const char *> needles) {
  mf_emu::clear_errors();
  mf_emu::set_quiet(true);
  fn();
  mf_emu::set_quiet(false);
  std::string r = mf_emu::last_report();
  bool ok = mf_emu::error_count() > 0;
  for (const char *n : needles) ok = ok && r.find(n) != std::string::npos;
  CHECKF(ok, "%s: expected a report with the given words; got:\n%s", what, r.c_str());
  if (ok) printf("caught (%s): %s\n", what, r.substr(0, r.find('\n')).c_str());
  mf_emu::clear_errors();
  (void)cudaGetLastError();
  return r;
}

/* ------------------------------------------------------------------ barriers, indices */
__global__ void emu_t_barrier(int *out, int rounds) {
  __shared__ int buf[256];
  int t = threadIdx.x, n = blockDim.x, v = t + (int)blockIdx.x * 1000;
  for (int r = 0; r < rounds; r++) {
    buf[t] = v;
    __syncthreads();
    v = buf[(t + 1) % n] + 1;
    __syncthreads();
  }
  out[blockIdx.x * n + t] = v;
}

__global__ void emu_t_syncops(int *out) {
  int t = threadIdx.x;
  int c = __syncthreads_count(t % 3 == 0), a = __syncthreads_and(t < 1000), o = __syncthreads_or(t == 5);
  int a2 = __syncthreads_and(t != 7);
  if (t == 0) out[0] = c, out[1] = a, out[2] = o, out[3] = a2;
}

__global__ void emu_t_index(int *out) {
  int bt = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  int b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  int nt = blockDim.x * blockDim.y * blockDim.z;
  out[b * nt + bt] = threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z + 1000 * blockIdx.x +
                     10000 * blockIdx.y + 100000 * blockIdx.z;
}

static void test_barriers() {
  const int B = 3, N = 96, R = 5;
  DevBuf<int> out(B * N, "out");
  MF_LAUNCH(emu_t_barrier, B, N, 0, 0, out.ptr(), R);
  CHECK(cudaGetLastError() == cudaSuccess);
  std::vector<int> h = out.download();
  bool ok = true;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < N; t++) ok &= h[b * N + t] == (t + R) % N + b * 1000 + R;
  CHECK(ok);

  DevBuf<int> so(4, "so");
  MF_LAUNCH(emu_t_syncops, 1, 100, 0, 0, so.ptr());
  std::vector<int> s = so.download();
  CHECKF(s[0] == 34 && s[1] == 1 && s[2] == 1 && s[3] == 0, "%d %d %d %d", s[0], s[1], s[2], s[3]);

  dim3 grid(2, 3, 2), block(4, 3, 2);
  DevBuf<int> idx(12 * 24, "idx");
  MF_LAUNCH(emu_t_index, grid, block, 0, 0, idx.ptr());
  std::vector<int> ih = idx.download();
  ok = true;
  for (int bz = 0; bz < 2; bz++) for (int by = 0; by < 3; by++) for (int bx = 0; bx < 2; bx++)
    for (int z = 0; z < 2; z++) for (int y = 0; y < 3; y++) for (int x = 0; x < 4; x++) {
      int b = (bz * 3 + by) * 2 + bx, t = (z * 3 + y) * 4 + x;
      ok &= ih[b * 24 + t] == x + 10 * y + 100 * z + 1000 * bx + 10000 * by + 100000 * bz;
    }
  CHECK(ok);
  check_emu_clean("barriers");
}

/* ------------------------------------------------------------------ warp intrinsics */
__global__ void emu_t_warp(int *out, int width) {
  int t = threadIdx.x, lane = t % 32, *o = out + t * 16;
  o[0] = __shfl_sync(0xffffffffu, t * 3, 5, width);
  o[1] = __shfl_up_sync(0xffffffffu, t, 3, width);
  o[2] = __shfl_down_sync(0xffffffffu, t, 3, width);
  o[3] = __shfl_xor_sync(0xffffffffu, t, 6, width);
  o[4] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
  o[5] = __any_sync(0xffffffffu, lane == 7);
  o[6] = __all_sync(0xffffffffu, lane < 31);
  o[7] = (int)__match_any_sync(0xffffffffu, lane / 4);
  o[8] = (int)__reduce_add_sync(0xffffffffu, (unsigned)lane);
  o[9] = __reduce_max_sync(0xffffffffu, lane % 2 ? -lane : lane);
  o[10] = (int)(2.0f * __shfl_xor_sync(0xffffffffu, 0.5f * (float)lane, 1));
  o[11] = (int)(4.0 * __shfl_sync(0xffffffffu, (double)lane + 0.25, 31 - lane));
  unsigned m = lane < 16 ? 0x0000ffffu : 0xffff0000u; /* two independent half-warp groups */
  o[12] = __shfl_sync(m, t, lane < 16 ? 0 : 16);
  o[13] = (int)__ballot_sync(m, 1);
  o[14] = (int)__bfloat162float(__shfl_down_sync(0xffffffffu, __float2bfloat16((float)lane), 1));
  int pred = 0;
  __match_all_sync(0xffffffffu, 7, &pred);
  o[15] = pred;
}

static int shfl_src(int op, int lane, int arg, int w) {
  int seg = lane & ~(w - 1);
  if (op == 0) return seg + (arg & (w - 1));
  if (op == 1) return lane - seg >= arg ? lane - arg : lane;
  if (op == 2) return lane - seg + arg < w ? lane + arg : lane;
  int s = lane ^ arg;
  return s >= seg + w ? lane : s;
}

__global__ void emu_t_partial(int *out) { /* 40 threads: warp 1 has 8 lanes */
  int t = threadIdx.x;
  out[t * 3 + 0] = (int)__ballot_sync(0xffffffffu, 1);
  out[t * 3 + 1] = (int)__reduce_add_sync(0xffffffffu, 1u);
  out[t * 3 + 2] = __shfl_down_sync(0xffffffffu, t, 4); /* lanes 36..39 read absent lanes */
}

__global__ void emu_t_cg(int *out) {
  cg::thread_block block = cg::this_thread_block();
  cg::thread_block_tile<32> w = cg::tiled_partition<32>(block);
  cg::thread_block_tile<8> q = cg::tiled_partition<8>(block);
  int t = block.thread_rank();
  out[t * 4 + 0] = cg::reduce(w, (int)w.thread_rank(), cg::plus<int>());
  out[t * 4 + 1] = cg::reduce(q, t, cg::greater<int>());
  out[t * 4 + 2] = (int)w.meta_group_rank() * 100 + (int)q.meta_group_rank();
  out[t * 4 + 3] = (int)q.ballot(t % 2);
  block.sync();
}

__global__ void emu_t_syncwarp(int *out, bool sync) { /* lane 0 publishes, the warp reads */
  __shared__ int s[4];
  int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  if (lane == 0) s[w] = 10 + w;
  if (sync) __syncwarp();
  out[threadIdx.x] = s[w];
}

static void test_warps() {
  for (int width : {32, 8}) {
    const int N = 64;
    DevBuf<int> out(N * 16, "warp_out");
    MF_LAUNCH(emu_t_warp, 1, N, 0, 0, out.ptr(), width);
    std::vector<int> h = out.download();
    int bad = 0;
    for (int t = 0; t < N; t++) {
      int lane = t % 32, wb = t - lane, *o = &h[t * 16];
      bad += o[0] != (wb + shfl_src(0, lane, 5, width)) * 3;
      bad += o[1] != wb + shfl_src(1, lane, 3, width);
      bad += o[2] != wb + shfl_src(2, lane, 3, width);
      bad += o[3] != wb + shfl_src(3, lane, 6, width);
      bad += (unsigned)o[4] != 0x49249249u;
      bad += o[5] != 1 || o[6] != 0;
      bad += (unsigned)o[7] != 0xfu << (lane / 4 * 4);
      bad += o[8] != 496 || o[9] != 30;
      bad += o[10] != (lane ^ 1) || o[11] != (31 - lane) * 4 + 1;
      bad += o[12] != wb + (lane < 16 ? 0 : 16);
      bad += (unsigned)o[13] != (lane < 16 ? 0xffffu : 0xffff0000u);
      bad += o[14] != (lane < 31 ? lane + 1 : 31) || o[15] != 1;
    }
    CHECKF(bad == 0, "width %d: %d wrong warp results", width, bad);
  }
  DevBuf<int> p(40 * 3, "partial");
  MF_LAUNCH(emu_t_partial, 1, 40, 0, 0, p.ptr());
  std::vector<int> ph = p.download();
  CHECK((unsigned)ph[0] == 0xffffffffu && ph[1] == 32 && ph[2] == 4);
  CHECK(ph[32 * 3] == 0xff && ph[32 * 3 + 1] == 8 && ph[32 * 3 + 2] == 36);
  CHECKF(ph[36 * 3 + 2] == -1, "shuffle from an absent lane reads poison, got %d", ph[36 * 3 + 2]);

  DevBuf<int> c(64 * 4, "cg");
  MF_LAUNCH(emu_t_cg, 1, 64, 0, 0, c.ptr());
  std::vector<int> ch = c.download();
  int bad = 0;
  for (int t = 0; t < 64; t++) {
    bad += ch[t * 4] != 496 || ch[t * 4 + 1] != (t | 7);
    bad += ch[t * 4 + 2] != (t / 32) * 100 + t / 8 || ch[t * 4 + 3] != 0xaa;
  }
  CHECKF(bad == 0, "%d wrong cooperative-groups results", bad);

  DevBuf<int> sw(64, "syncwarp_out");
  MF_LAUNCH(emu_t_syncwarp, 1, 64, 0, 0, sw.ptr(), true);
  std::vector<int> swh = sw.download();
  CHECK(swh[5] == 10 && swh[40] == 11);
  check_emu_clean("warps");
  expect_report("read after lane 0's write without __syncwarp",
                [&] { MF_LAUNCH(emu_t_syncwarp, 1, 64, 0, 0, sw.ptr(), false); },
                {"data race", "emu_t_syncwarp", "thread ("});
}

/* ------------------------------------------------------------------ shared memory */
template <class T> __global__ void emu_t_smem(T *out) {
  __shared__ T a[64];
  __shared__ T b[4][16];
  __shared__ T scalar;
  int t = threadIdx.x;
  a[t] = T(t);
  b[t / 16][t % 16] = T(2 * t);
  if (t == 0) scalar = T(7);
  __syncthreads();
  int u = 63 - t;
  out[blockIdx.x * 64 + t] = a[u] + b[u / 16][u % 16] + scalar;
}

__global__ void emu_t_dyn(float *out, int n) {
  extern __shared__ float dsm[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) dsm[i] = (float)i;
  __syncthreads();
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += dsm[n - 1 - i];
  out[threadIdx.x] = s;
}

__global__ void emu_t_bigstatic(float *out) {
  __shared__ float big[13 * 1024]; /* 52 KB > 48 KB of static shared memory */
  big[threadIdx.x] = 1;
  out[0] = big[0];
}

__global__ void emu_t_uninit_smem(float *out) {
  __shared__ float s[32];
  if (threadIdx.x != 3) s[threadIdx.x] = 1.0f; /* s[3] is never written */
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 32];
}

__global__ void emu_t_smem_oob(float *out) {
  __shared__ float s[32];
  s[threadIdx.x] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 31) s[threadIdx.x + 1] = 2.0f; /* s[32] */
  out[threadIdx.x] = s[threadIdx.x];
}

static void test_shared() {
  DevBuf<float> of(128, "of");
  DevBuf<double> od(128, "od");
  MF_LAUNCH(emu_t_smem<float>, 2, 64, 0, 0, of.ptr());
  MF_LAUNCH(emu_t_smem<double>, 2, 64, 0, 0, od.ptr());
  std::vector<float> hf = of.download();
  std::vector<double> hd = od.download();
  bool ok = true;
  for (int i = 0; i < 128; i++) ok &= hf[i] == (float)((63 - i % 64) * 3 + 7) && hd[i] == hf[i];
  CHECK(ok);

  const int n = 100 * 1024 / 4; /* 100 KB of dynamic shared memory */
  DevBuf<float> dy(128, "dyn_out");
  MF_LAUNCH(emu_t_dyn, 1, 128, n * 4, 0, dy.ptr(), n);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue); /* above 48 KB needs the attribute */
  CHECK(cudaFuncSetAttribute(emu_t_dyn, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) ==
        cudaErrorInvalidValue);
  (void)cudaGetLastError();
  CHECK(cudaFuncSetAttribute(emu_t_dyn, cudaFuncAttributeMaxDynamicSharedMemorySize, n * 4) == cudaSuccess);
  MF_LAUNCH(emu_t_dyn, 1, 128, n * 4, 0, dy.ptr(), n);
  CHECK(cudaGetLastError() == cudaSuccess);
  std::vector<float> dh = dy.download();
  double want0 = 0;
  for (int i = 0; i < n; i += 128) want0 += n - 1 - i;
  CHECKF(dh[0] == (float)want0, "dyn smem sum %g want %g", dh[0], want0);
  check_emu_clean("shared memory");

  DevBuf<float> o(32, "o");
  expect_report("static shared memory over 48 KB", [&] {
    MF_LAUNCH(emu_t_bigstatic, 1, 32, 0, 0, o.ptr());
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  }, {"too much shared memory", "emu_t_bigstatic"});
  expect_report("read of never-written shared memory", [&] {
    MF_LAUNCH(emu_t_uninit_smem, 1, 32, 0, 0, o.ptr());
    CHECK(std::isnan(o.download_floats()[2])); /* shared memory starts as garbage (NaN) */
  }, {"uninitialized shared memory", "emu_t_uninit_smem", "thread (2,0,0)"});
  expect_report("shared array written one past its end", [&] {
    MF_LAUNCH(emu_t_smem_oob, 1, 32, 0, 0, o.ptr());
  }, {"out-of-bounds shared memory", "thread (31,0,0)", "past the end of the __shared__ declared at",
      "test_cuda_emu.cpp"});
}

/* ------------------------------------------------------------------ atomics */
__global__ void emu_t_atomics(float *fsum, int *isum, unsigned *umax, unsigned long long *cas,
                              __nv_bfloat16 *bsum, int *per_block) {
  __shared__ int cnt;
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(fsum, 0.5f);
  atomicAdd(isum, t);
  atomicMax(umax, (unsigned)(t * 7 % 1000));
  unsigned long long old = *cas, assumed; /* the CAS-loop idiom: plain read first */
  do {
    assumed = old;
    old = atomicCAS(cas, assumed, assumed + (unsigned long long)t);
  } while (old != assumed);
  atomicAdd(bsum, __float2bfloat16(1.0f));
  if (threadIdx.x == 0) cnt = 0;
  __syncthreads();
  atomicAdd(&cnt, 1);
  __syncthreads();
  if (threadIdx.x == 0) per_block[blockIdx.x] = cnt;
}

__global__ void emu_t_atomic_vs_store(int *x) {
  if (threadIdx.x == 0) *x = 5; /* a plain store next to other threads' atomics */
  else atomicAdd(x, 1);
}

static void test_atomics() {
  DevBuf<float> f(1, "fsum");
  DevBuf<int> i(1, "isum"), pb(4, "per_block");
  DevBuf<unsigned> u(1, "umax");
  DevBuf<unsigned long long> c(1, "cas");
  DevBuf<__nv_bfloat16> b(1, "bsum");
  cudaMemset(f.ptr(), 0, 4), cudaMemset(i.ptr(), 0, 4), cudaMemset(u.ptr(), 0, 4);
  cudaMemset(c.ptr(), 0, 8), cudaMemset(b.ptr(), 0, 2);
  MF_LAUNCH(emu_t_atomics, 4, 64, 0, 0, f.ptr(), i.ptr(), u.ptr(), c.ptr(), b.ptr(), pb.ptr());
  unsigned umax = 0;
  for (int t = 0; t < 256; t++) umax = std::max(umax, (unsigned)(t * 7 % 1000));
  CHECK(f.download()[0] == 128.0f && i.download()[0] == 32640 && u.download()[0] == umax);
  CHECK(c.download()[0] == 32640ull && __bfloat162float(b.download()[0]) == 256.0f);
  std::vector<int> ph = pb.download();
  CHECK(ph[0] == 64 && ph[3] == 64);
  check_emu_clean("atomics");
  DevBuf<int> x(1, "x");
  cudaMemset(x.ptr(), 0, 4);
  expect_report("plain store racing with atomics", [&] { MF_LAUNCH(emu_t_atomic_vs_store, 1, 8, 0, 0, x.ptr()); },
                {"data race", "emu_t_atomic_vs_store"});
}

/* ------------------------------------------------------------------ bf16 / half */
/* the rounding rule, independently: the nearest of the two neighbours, ties to even; beyond
 * the largest finite value the next "value" is 2^128 (bf16) / 2^16 (half), i.e. infinity */
static double bf_val(uint32_t mag) { return mag >= 0x7f80u ? std::ldexp(1.0, 128) : (double)mf_emu::u2f(mag << 16); }
static double h_val(uint32_t mag) {
  if (mag >= 0x7c00u) return 65536.0;
  uint32_t e = mag >> 10, m = mag & 0x3ffu;
  return e ? std::ldexp(1.0 + m / 1024.0, (int)e - 15) : std::ldexp((double)m, -24);
}
static std::vector<double> g_bf_vals, g_h_vals; /* value of each magnitude, up to "infinity" */
static uint16_t ref_round(double x, bool is_bf) {
  if (std::isnan(x)) return 0x7fff;
  if (g_bf_vals.empty()) {
    for (uint32_t m = 0; m <= 0x7f80u; m++) g_bf_vals.push_back(bf_val(m));
    for (uint32_t m = 0; m <= 0x7c00u; m++) g_h_vals.push_back(h_val(m));
  }
  const std::vector<double> &v = is_bf ? g_bf_vals : g_h_vals;
  uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  double a = std::fabs(x);
  uint32_t top = (uint32_t)v.size() - 1; /* largest magnitude with value <= a: */
  uint32_t lo = (uint32_t)(std::upper_bound(v.begin(), v.end(), a) - v.begin()) - 1;
  if (lo >= top) return (uint16_t)(sign | top);
  double dl = a - v[lo], dh = v[lo + 1] - a;
  uint32_t r = dl < dh ? lo : dh < dl ? lo + 1 : (lo & 1 ? lo + 1 : lo);
  return (uint16_t)(sign | r);
}

static void test_fp16() {
  long bad_bf = 0, bad_h = 0, n = 0;
  auto check1 = [&](float f) {
    n++;
    bad_bf += __bfloat16_as_ushort(__float2bfloat16(f)) != ref_round(f, true);
    bad_h += __half_as_ushort(__float2half(f)) != ref_round(f, false);
    bad_h += __half_as_ushort(__float2half_rn(f)) != ref_round(f, false);
  };
  /* every sign/exponent/top-mantissa pattern with the low bits at and around the rounding
   * points of both formats */
  const uint32_t lows[] = {0x0, 0x1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x7fff, 0x8000, 0x8001, 0xffff};
  for (uint32_t top = 0; top < (1u << 16); top++)
    for (uint32_t lw : lows) check1(mf_emu::u2f((top << 16) | lw));
  for (uint32_t top = 0; top < (1u << 19); top++) /* the half rounding point is bit 13 */
    for (uint32_t lw : {0x0u, 0x1u, 0xfffu, 0x1000u, 0x1001u}) check1(mf_emu::u2f((top << 13) | lw));
  /* exhaustively through the half-subnormal range and its borders: |x| in [2^-26, 2^-13) */
  for (uint32_t u = 0x32800000u; u < 0x39000000u; u += 29) check1(mf_emu::u2f(u)), check1(-mf_emu::u2f(u));
  /* every midpoint between neighbours, and the floats next to it */
  for (uint32_t m = 0; m < 0x7f80u; m++) {
    float mid = (float)((bf_val(m) + bf_val(m + 1)) / 2);
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) check1(f), check1(-f);
  }
  for (uint32_t m = 0; m < 0x7c00u; m++) {
    float mid = (float)((h_val(m) + h_val(m + 1)) / 2);
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) check1(f), check1(-f);
  }
  for (float f : {0.0f, -0.0f, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f, 65504.0f,
                  65519.996f, 65520.0f, 1e30f}) check1(f);
  CHECKF(bad_bf == 0 && bad_h == 0, "%ld bf16 and %ld half conversions of %ld differ from the rule",
         bad_bf, bad_h, n);
  /* NaN: canonical 0x7FFF, whatever the payload or sign */
  CHECK(__bfloat16_as_ushort(__float2bfloat16(mf_emu::u2f(0xffc00001u))) == 0x7fff);
  CHECK(__half_as_ushort(__float2half(mf_emu::u2f(0x7f800001u))) == 0x7fff);
  /* back to float is exact, and float -> type -> float -> type is the identity */
  long bad_rt = 0;
  for (uint32_t b = 0; b < 65536; b++) {
    __nv_bfloat16 x = __ushort_as_bfloat16((unsigned short)b);
    __half y = __ushort_as_half((unsigned short)b);
    float fx = __bfloat162float(x), fy = __half2float(y);
    bool nx = std::isnan(fx), ny = std::isnan(fy);
    bad_rt += !nx && __bfloat16_as_ushort(__float2bfloat16(fx)) != b;
    bad_rt += !ny && __half_as_ushort(__float2half(fy)) != b;
    bad_rt += !ny && !std::isinf(fy) && (double)fy != (std::signbit(fy) ? -1 : 1) * h_val(b & 0x7fffu);
    bad_rt += nx != ((b & 0x7fffu) > 0x7f80u) || ny != ((b & 0x7fffu) > 0x7c00u);
  }
  CHECKF(bad_rt == 0, "%ld round trips wrong", bad_rt);
  /* arithmetic is correctly rounded */
  std::vector<float> r = rand_floats(200000, -4, 4, 7);
  long bad_ar = 0;
  for (size_t k = 0; k + 1 < r.size(); k += 2) {
    __nv_bfloat16 a = __float2bfloat16(r[k]), b = __float2bfloat16(r[k + 1]);
    __half c = __float2half(r[k]), d = __float2half(r[k + 1]);
    double da = __bfloat162float(a), db = __bfloat162float(b), dc = __half2float(c), dd = __half2float(d);
    bad_ar += __bfloat16_as_ushort(a + b) != ref_round(da + db, true);
    bad_ar += __bfloat16_as_ushort(a * b) != ref_round(da * db, true);
    bad_ar += __half_as_ushort(c + d) != ref_round(dc + dd, false);
    bad_ar += __half_as_ushort(__hmul(c, d)) != ref_round(dc * dd, false);
    bad_ar += __half_as_ushort(__hfma(c, d, c)) != ref_round(dc * dd + dc, false);
  }
  CHECKF(bad_ar == 0, "%ld bf16/half operations not correctly rounded", bad_ar);
  printf("bf16/half: %ld conversions, 65536 round trips, 500000 operations checked\n", n);
}

/* ------------------------------------------------------------------ random thread order */
__global__ void emu_t_order(int *flag, int *seen) {
  if (threadIdx.x == 0) *flag = 1; /* planted: nothing orders this before the reads */
  seen[threadIdx.x] = *flag;
}

static void test_order() {
  DevBuf<int> flag(1, "flag"), seen(64, "seen");
  std::set<std::vector<int>> patterns;
  std::vector<int> first;
  mf_emu::set_quiet(true);
  for (uint64_t s = 1; s <= 8; s++) {
    mf_emu::set_seed(s);
    cudaMemset(flag.ptr(), 0, 4);
    MF_LAUNCH(emu_t_order, 1, 64, 0, 0, flag.ptr(), seen.ptr());
    patterns.insert(seen.download());
    if (s == 1) first = seen.download();
  }
  mf_emu::set_seed(1);
  cudaMemset(flag.ptr(), 0, 4);
  MF_LAUNCH(emu_t_order, 1, 64, 0, 0, flag.ptr(), seen.ptr());
  mf_emu::set_quiet(false);
  CHECKF(patterns.size() >= 4, "8 seeds gave only %zu thread orders", patterns.size());
  CHECK(seen.download() == first); /* the same seed, the same order */
  std::string r = mf_emu::last_report();
  CHECKF(r.find("data race") != std::string::npos && r.find("emu_t_order") != std::string::npos,
         "the race checker missed the planted race: %s", r.c_str());
  mf_emu::clear_errors();
  printf("random order: 8 seeds gave %zu different results of a kernel relying on thread order\n",
         patterns.size());
}

/* ------------------------------------------------------------------ planted bugs */
template <bool SYNC> __global__ void emu_t_block_sum(const float *in, float *out) {
  __shared__ float s[128];
  int t = threadIdx.x;
  s[t] = in[blockIdx.x * 128 + t];
  __syncthreads();
  for (int stride = 64; stride > 0; stride /= 2) {
    if (t < stride) s[t] += s[t + stride];
    if (SYNC) __syncthreads(); /* planted bug when SYNC is false */
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

__global__ void emu_t_oob(float *out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[i] = 1.0f; /* planted bug: <= */
}

__global__ void emu_t_read_at(const float *p, long off, float *out) { out[threadIdx.x] = p[off]; }
__global__ void emu_t_vec4(const float *p, float *out) {
  float4 v = *reinterpret_cast<const float4 *>(p + 1); /* misaligned 16-byte load */
  out[0] = v.x + v.y + v.z + v.w;
}
__global__ void emu_t_every_block_writes(int *out) {
  if (threadIdx.x == 0) out[0] = (int)blockIdx.x;
}
__global__ void emu_t_deadlock(int *out) {
  if (threadIdx.x < 16) __syncthreads();
  else out[threadIdx.x] = __shfl_sync(0xffffffffu, (int)threadIdx.x, 0);
}
__global__ void emu_t_divergent(int *out) {
  if (threadIdx.x < 16) out[threadIdx.x] = (int)__ballot_sync(0xffffffffu, 1);
  else out[threadIdx.x] = __any_sync(0xffffffffu, 1);
}

static void test_checkers() {
  const int B = 6;
  std::vector<float> x = rand_floats(B * 128, -1, 1, 3);
  DevBuf<float> in(x, "in"), out(B, "sums");
  for (uint64_t s : {1, 2, 3}) {
    mf_emu::set_seed(s);
    out.poison();
    MF_LAUNCH(emu_t_block_sum<true>, B, 128, 0, 0, in.ptr(), out.ptr());
    std::vector<float> h = out.download(), want(B);
    for (int b = 0; b < B; b++) {
      double acc = 0;
      for (int t = 0; t < 128; t++) acc += x[b * 128 + t];
      want[b] = (float)acc;
    }
    check_close("block sum (with barriers)", h, want, 1e-6);
  }
  mf_emu::set_seed(1);
  check_emu_clean("clean kernels");

  std::string r = expect_report("missing __syncthreads in a block reduction", [&] {
    MF_LAUNCH(emu_t_block_sum<false>, B, 128, 0, 0, in.ptr(), out.ptr());
  }, {"data race", "in kernel emu_t_block_sum, block (", "thread (", "test_cuda_emu.cpp", "__shared__ declared at"});
  printf("---- report of the planted race ----\n%s------------------------------------\n", r.c_str());

  DevBuf<float> o(100, "oob_out");
  r = expect_report("write one past the end", [&] { MF_LAUNCH(emu_t_oob, 4, 32, 0, 0, o.ptr(), 100); },
                    {"out-of-bounds device memory access", "in kernel emu_t_oob, block (3,0,0), thread (4,0,0)",
                     "4 bytes past the end of 'oob_out' (400 bytes"});
  printf("---- report of the planted out-of-bounds write ----\n%s------------------------------------\n", r.c_str());

  DevBuf<float> small(8, "small"), res(32, "res");
  small.poison();
  expect_report("read before the start", [&] { MF_LAUNCH(emu_t_read_at, 1, 1, 0, 0, small.ptr(), -1L, res.ptr()); },
                {"out-of-bounds", "bytes before the start of 'small'"});
  float *freed;
  cudaMalloc(&freed, 64);
  cudaMemset(freed, 0, 64);
  cudaFree(freed);
  expect_report("use after cudaFree", [&] { MF_LAUNCH(emu_t_read_at, 1, 1, 0, 0, freed, 0L, res.ptr()); },
                {"use of freed device memory", "emu_t_read_at"});
  std::vector<float> host(8, 1.0f);
  expect_report("host pointer passed to a kernel",
                [&] { MF_LAUNCH(emu_t_read_at, 1, 1, 0, 0, host.data(), 0L, res.ptr()); },
                {"kernel accesses host memory", "emu_t_read_at"});
  DevBuf<float> fresh(8, "fresh");
  expect_report("read of never-initialized device memory",
                [&] { MF_LAUNCH(emu_t_read_at, 1, 1, 0, 0, fresh.ptr(), 2L, res.ptr()); },
                {"uninitialized device memory", "'fresh'"});
  expect_report("misaligned float4 load", [&] { MF_LAUNCH(emu_t_vec4, 1, 1, 0, 0, small.ptr(), res.ptr()); },
                {"misaligned access", "emu_t_vec4"});
  DevBuf<int> one(1, "one");
  expect_report("two blocks write one element",
                [&] { MF_LAUNCH(emu_t_every_block_writes, 4, 32, 0, 0, one.ptr()); },
                {"data race between blocks", "emu_t_every_block_writes"});
  expect_report("host code dereferences a device pointer", [&] {
    volatile float v = small.ptr()[0];
    (void)v;
  }, {"host code dereferences device memory", "'small'"});
  expect_report("cudaMemcpy past the end", [&] {
    std::vector<float> big(9, 0.0f);
    CHECK(cudaMemcpy(small.ptr(), big.data(), 9 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  }, {"bad memory range", "outside the allocation"});
  DevBuf<int> di(32, "di");
  expect_report("deadlock: barrier vs shuffle", [&] {
    MF_LAUNCH(emu_t_deadlock, 1, 32, 0, 0, di.ptr());
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  }, {"deadlock", "waits at __syncthreads", "waits at __shfl_sync"});
  expect_report("lanes at different collectives", [&] {
    MF_LAUNCH(emu_t_divergent, 1, 32, 0, 0, di.ptr());
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  }, {"divergent warp collective", "__ballot_sync", "__any_sync"});
}

/* ------------------------------------------------------------------ launches, device */
__global__ void emu_t_touch(int *out) {
  if (threadIdx.x == 0) out[0] = 1;
}

static void test_launch_and_device() {
  DevBuf<int> o(1, "touch");
  cudaMemset(o.ptr(), 0, 4);
  struct { dim3 g, b; } bad[] = {{1, 1025}, {1, dim3(32, 32, 2)}, {1, dim3(1, 1, 65)}, {dim3(1, 65536), 32},
                                 {0, 32}, {1, 0}};
  for (auto &c : bad) {
    MF_LAUNCH(emu_t_touch, c.g, c.b, 0, 0, o.ptr());
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  }
  CHECK(o.download()[0] == 0); /* nothing ran */
  MF_LAUNCH(emu_t_touch, dim3(1, 1, 1), dim3(1024), 0, 0, o.ptr());
  CHECK(cudaGetLastError() == cudaSuccess && o.download()[0] == 1);
  CHECK(cudaGetLastError() == cudaSuccess); /* not sticky */

  int n = 0, v = 0;
  cudaDeviceProp p;
  CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n == 1);
  CHECK(cudaGetDeviceProperties(&p, 0) == cudaSuccess);
  CHECK(p.major == 9 && p.minor == 0 && p.multiProcessorCount == 132 && p.warpSize == 32);
  CHECK(p.maxThreadsPerBlock == 1024 && p.sharedMemPerBlock == 48 * 1024);
  CHECK(p.sharedMemPerBlockOptin == 227 * 1024 && p.sharedMemPerMultiprocessor == 228 * 1024);
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess && v == 227 * 1024);
  char why[128] = "", name[256] = "";
  CHECK(mf_cuda_device_count(why, sizeof why) == 1); /* kernels/cuda/device.cu, emulated */
  CHECK(mf_cuda_device_name(0, name, sizeof name) == 0 && strstr(name, "sm_90"));

  cudaStream_t s = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  float ms = -1;
  CHECK(cudaStreamCreate(&s) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
        cudaEventCreate(&e1) == cudaSuccess);
  int one = 7;
  CHECK(cudaEventRecord(e0, s) == cudaSuccess);
  CHECK(cudaMemcpyAsync(o.ptr(), &one, 4, cudaMemcpyHostToDevice, s) == cudaSuccess);
  MF_LAUNCH(emu_t_touch, 1, 1, 0, s, o.ptr());
  CHECK(cudaEventRecord(e1, s) == cudaSuccess && cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms >= 0);
  CHECK(o.download()[0] == 1);
  CHECK(cudaStreamDestroy(s) == cudaSuccess && cudaEventDestroy(e0) == cudaSuccess &&
        cudaEventDestroy(e1) == cudaSuccess);
  CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
  check_emu_clean("launches and device");
}

/* ------------------------------------------------------------------ stream capture, graphs */
__global__ void emu_t_axpy(float *y, const float *x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += a * x[i];
}
__global__ void emu_t_racy_sum(float *out, const float *x, int n) { /* every thread: no atomics */
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[0] += x[i];
}

/* Recorded, not run: kernels and a memset captured on a stream change nothing until the
 * graph is launched; each launch replays them on the data there is then (the arguments are
 * the capture's, copied: a local changed after the capture does not matter); calls that
 * would wait for the device fail and spoil the capture; replayed kernels keep the checks. */
static void test_graphs() {
  const int n = 300;
  std::vector<float> x0(n), x1(n);
  for (int i = 0; i < n; i++) x0[i] = (float)i, x1[i] = (float)(2 * i + 1);
  DevBuf<float> x(x0, "x"), y(n, "y");
  cudaStream_t s = nullptr;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  CHECK(cudaMemset(y.ptr(), 0, n * sizeof(float)) == cudaSuccess);
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusActive;
  CHECK(cudaStreamIsCapturing(s, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusNone);

  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  CHECK(cudaStreamIsCapturing(s, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusActive);
  float a = 2.0f;
  CHECK(cudaMemsetAsync(y.ptr(), 0, n * sizeof(float), s) == cudaSuccess); /* y = 0 */
  MF_LAUNCH(emu_t_axpy, (n + 127) / 128, 128, 0, s, y.ptr(), x.ptr(), a, n);  /* y += 2x */
  a = 100.0f;                                                              /* not seen */
  MF_LAUNCH(emu_t_axpy, (n + 63) / 64, 64, 0, s, y.ptr(), x.ptr(), 1.0f, n); /* y += x */
  CHECK(cudaGetLastError() == cudaSuccess);
  MF_LAUNCH(emu_t_axpy, 1, 1025, 0, s, y.ptr(), x.ptr(), 1.0f, n); /* refused at capture, as on a GPU */
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  long launches = mf_emu::launch_count("emu_t_axpy");
  cudaGraph_t g = nullptr;
  CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && g);
  CHECK(mf_emu::launch_count("emu_t_axpy") == launches); /* nothing ran yet */
  CHECK(y.download()[5] == 0.0f);
  cudaGraphExec_t ge = nullptr;
  CHECK(cudaGraphInstantiate(&ge, g, 0) == cudaSuccess && ge);
  CHECK(cudaGraphDestroy(g) == cudaSuccess); /* the executable graph keeps its copy */
  for (int rep = 0; rep < 2; rep++) {        /* twice: the memset starts each replay afresh */
    const std::vector<float> &xin = rep ? x1 : x0;
    x.upload(xin);
    CHECK(cudaGraphLaunch(ge, s) == cudaSuccess && cudaStreamSynchronize(s) == cudaSuccess);
    std::vector<float> h = y.download();
    bool ok = true;
    for (int i = 0; i < n; i++) ok &= h[i] == 3.0f * xin[i];
    CHECKF(ok, "graph replay %d: y[7] = %g, want %g", rep, h[7], 3.0f * xin[7]);
  }
  CHECK(mf_emu::launch_count("emu_t_axpy") == launches + 4);
  CHECK(cudaGraphExecDestroy(ge) == cudaSuccess);
  check_emu_clean("graph capture and replay");

  /* waiting for the device inside a capture: refused, and the capture is lost */
  auto spoiled = [&](const char *what, const std::function<cudaError_t()> &call) {
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    MF_LAUNCH(emu_t_axpy, (n + 127) / 128, 128, 0, s, y.ptr(), x.ptr(), 1.0f, n);
    cudaError_t e = cudaSuccess;
    expect_report(what, [&] { e = call(); }, {"not allowed during stream capture"});
    CHECKF(e == cudaErrorStreamCaptureUnsupported, "%s: %s", what, cudaGetErrorName(e));
    CHECK(cudaStreamIsCapturing(s, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusInvalidated);
    cudaGraph_t bad = nullptr;
    CHECK(cudaStreamEndCapture(s, &bad) == cudaErrorStreamCaptureInvalidated && !bad);
    (void)cudaGetLastError();
  };
  float h1[4] = {0};
  void *tmp = nullptr;
  spoiled("cudaStreamSynchronize", [&] { return cudaStreamSynchronize(s); });
  spoiled("cudaDeviceSynchronize", [&] { return cudaDeviceSynchronize(); });
  spoiled("cudaMemcpy", [&] { return cudaMemcpy(h1, y.ptr(), sizeof h1, cudaMemcpyDeviceToHost); });
  spoiled("pageable cudaMemcpyAsync",
          [&] { return cudaMemcpyAsync(y.ptr(), h1, sizeof h1, cudaMemcpyHostToDevice, s); });
  spoiled("cudaMalloc", [&] { return cudaMalloc(&tmp, 64); });
  CHECK(cudaStreamEndCapture(s, &g) == cudaErrorIllegalState); /* no capture open */
  CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) == cudaErrorStreamCaptureUnsupported);
  (void)cudaGetLastError();

  /* a replayed launch is checked like any other: a race planted in a captured kernel */
  DevBuf<float> sum(1, "sum");
  CHECK(cudaMemset(sum.ptr(), 0, sizeof(float)) == cudaSuccess);
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  MF_LAUNCH(emu_t_racy_sum, 1, 64, 0, s, sum.ptr(), x.ptr(), 64);
  CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && cudaGraphInstantiate(&ge, g) == cudaSuccess);
  expect_report("race in a replayed kernel", [&] { cudaGraphLaunch(ge, s); }, {"data race", "emu_t_racy_sum"});
  CHECK(cudaGraphExecDestroy(ge) == cudaSuccess && cudaGraphDestroy(g) == cudaSuccess);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  check_emu_clean("graphs");
}

int main() {
  test_barriers();
  test_warps();
  test_shared();
  test_atomics();
  test_fp16();
  test_order();
  test_checkers();
  test_launch_and_device();
  test_graphs();
  return report("test_cuda_emu");
}
