/* CUDA emulator stand-in for <cooperative_groups.h>: thread blocks and warp tiles (tiles of
 * 1..32 threads), built on the emulator's barriers and warp collectives. Grid groups and
 * cooperative launches are not emulated. */
#ifndef MF_CUDA_EMU_CG_H
#define MF_CUDA_EMU_CG_H
#include "kernels/cuda/emu/emu.h"

namespace cooperative_groups {
inline unsigned mf_emu_block_rank() {
  return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
}
struct thread_block {
  void sync() const { __syncthreads(); }
  unsigned thread_rank() const { return mf_emu_block_rank(); }
  unsigned size() const { return blockDim.x * blockDim.y * blockDim.z; }
  unsigned num_threads() const { return size(); }
  dim3 group_index() const { return dim3(blockIdx); }
  dim3 thread_index() const { return dim3(threadIdx); }
  dim3 dim_threads() const { return blockDim; }
  dim3 group_dim() const { return blockDim; }
};
inline thread_block this_thread_block() { return {}; }
inline void sync(const thread_block &b) { b.sync(); }

template <unsigned N> struct thread_block_tile {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tile size must be a power of two <= 32");
  unsigned mask() const {
    unsigned lane = mf_emu_block_rank() % 32;
    return N == 32 ? 0xffffffffu : ((1u << N) - 1u) << (lane & ~(N - 1u));
  }
  void sync() const { __syncwarp(mask()); }
  unsigned thread_rank() const { return mf_emu_block_rank() % N; }
  unsigned size() const { return N; }
  unsigned num_threads() const { return N; }
  unsigned meta_group_rank() const { return mf_emu_block_rank() / N; }
  unsigned meta_group_size() const { return (blockDim.x * blockDim.y * blockDim.z + N - 1) / N; }
  template <class T> T shfl(T v, int src) const { return __shfl_sync(mask(), v, src, (int)N); }
  template <class T> T shfl_up(T v, unsigned d) const { return __shfl_up_sync(mask(), v, d, (int)N); }
  template <class T> T shfl_down(T v, unsigned d) const { return __shfl_down_sync(mask(), v, d, (int)N); }
  template <class T> T shfl_xor(T v, int m) const { return __shfl_xor_sync(mask(), v, m, (int)N); }
  int any(int p) const { return __any_sync(mask(), p); }
  int all(int p) const { return __all_sync(mask(), p); }
  unsigned ballot(int p) const {
    unsigned m = mask();
    return (__ballot_sync(m, p) & m) >> __builtin_ctz(m);
  }
};
template <unsigned N, class Parent> thread_block_tile<N> tiled_partition(const Parent &) { return {}; }
template <unsigned N> inline void sync(const thread_block_tile<N> &t) { t.sync(); }

template <class T> struct plus { T operator()(T a, T b) const { return a + b; } };
template <class T> struct less { T operator()(T a, T b) const { return b < a ? b : a; } };
template <class T> struct greater { T operator()(T a, T b) const { return a < b ? b : a; } };
template <class T> struct bit_and { T operator()(T a, T b) const { return a & b; } };
template <class T> struct bit_or { T operator()(T a, T b) const { return a | b; } };
template <class T> struct bit_xor { T operator()(T a, T b) const { return a ^ b; } };
template <unsigned N, class T, class Op> T reduce(const thread_block_tile<N> &g, T v, Op op) {
  for (unsigned o = N / 2; o > 0; o /= 2) v = op(v, g.shfl_xor(v, (int)o));
  return v;
}
}  // namespace cooperative_groups
#endif
