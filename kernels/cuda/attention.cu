// Causal multi-head self-attention on CUDA: our own fused flash attention, forward and
// backward. Parameter gradients accumulate (+=); activation gradients are written (=):
// attention has no parameters, attention_backward writes all of dqkv.
//
// Layout as the CPU twin (kernels/cpu/attention.c): qkv[B,T,3C] = q | k | v, head h owns
// columns h*hs .. h*hs+hs-1 of each; out[B,T,C]; saved lse[B,NH,T] (natural log-sum-exp of
// the scaled scores of each query row). Scale 1/sqrt(hs); hs % 16 == 0, hs <= 128.
//
// Tiling. A block is 4 warps and owns one (batch, head) and a 64-row tile; each warp owns
// 16 rows of it. Operand tiles live in shared memory as T (rows padded by 8 elements, so
// 16x16 fragment loads hit distinct banks); products are warp-level 16x16x16 steps with fp32
// accumulators: tensor cores through WMMA for bf16 (mma.sync on sm_80/sm_90), a CUDA-core
// implementation of the same interface for fp32 (and for everything under the emulator).
// Score tiles go through a per-warp fp32 shared-memory strip for the row-wise softmax
// (WMMA's register layout is opaque), and P / dS go back to shared memory in T for the
// next product. Nothing of size T x T ever exists: per block, a few 64 x hs tiles and 16 x 64
// strips per warp. Blocks are issued heaviest first (the last query tiles see the most
// keys), so the causal triangle does not leave a long tail.
//
// Forward (grid: query tiles x B*NH): for each key tile j <= i (online softmax): S = Q K^T,
// row max/sum with rescaling (exp2 with log2(e) folded into the scale), P (rounded to T)
// -> O += P V, where the running O of a row lives in the registers of its 2 lanes and is
// rescaled by exp(m_old - m_new) there. lse = m + log(l) is saved for the backward.
//
// Backward, deterministic (no atomics), as two kernels that both recompute P from lse:
//   dkv (grid: key tiles x B*NH): the block keeps K_j, V_j and accumulates dK_j, dV_j in
//     registers over query tiles i >= j: S^T = K Q^T, dP^T = V dO^T, P^T, dS^T = P^T (dP^T - D)
//     -> dV += P^T dO, dK += dS^T Q;
//   dq (grid: query tiles x B*NH): the block keeps Q_i, dO_i and accumulates dQ_i over key
//     tiles j <= i: S, dP, dS -> dQ += dS K.
// D = rowsum(dO * O) is recomputed per query tile (64 x hs multiply-adds, next to 64 x 64 x hs
// per product), so the backward needs no scratch. 7 tile products instead of FA2's 5, the
// price of exact reproducibility (FA2 accumulates dQ with float atomics).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#if !defined(MF_CUDA_EMULATION)
#include <mma.h>
#define MF_ATT_WMMA 1
#endif

#define ATT_TILE 64    // query rows and keys per tile
#define ATT_WARPS 4    // 16 rows each
#define ATT_THREADS 128
#define ATT_PAD 8      // elements of padding per shared-memory row of T
#define LOG2E 1.4426950408889634f

namespace mf_cuda {

// ---------------------------------------------------------------- warp tile products
// acc[16x16] += A[16x16] B[16x16], operands in shared memory. A is row-major (A[r*lda+k]);
// B is row-major (mma_rb: B[k*ldb+n]) or column-major (mma_cb: B[n*ldb+k], i.e. a row-major
// matrix used transposed). The accumulator is spread over the warp; zero/scale/store are
// its only other uses, so the lane layout never matters to the kernels.

// CUDA cores: lane l holds rows 2*(l/4) + {0,1}, columns 4*(l%4) + {0..3}.
template <typename T> struct SoftMma {
  struct Acc {
    float x[8];
  };
  struct FragA {
    const T *p;
    int ld;
  };
  static __device__ __forceinline__ void zero(Acc &a) {
    MF_UNROLL
    for (int i = 0; i < 8; i++) a.x[i] = 0.0f;
  }
  static __device__ __forceinline__ void scale(Acc &a, float s) {
    MF_UNROLL
    for (int i = 0; i < 8; i++) a.x[i] *= s;
  }
  static __device__ __forceinline__ void load_a(FragA &f, const T *A, int lda) {
    f.p = A;
    f.ld = lda;
  }
  static __device__ __forceinline__ void mma_rb(Acc &acc, const FragA &fa, const T *B, int ldb) {
    int lane = threadIdx.x & 31, r = (lane >> 2) * 2, c = (lane & 3) * 4;
    const T *a0 = fa.p + r * fa.ld, *a1 = a0 + fa.ld;
    MF_UNROLL
    for (int k = 0; k < 16; k++) {
      float x0 = to_f(a0[k]), x1 = to_f(a1[k]);
      const T *b = B + k * ldb + c;
      MF_UNROLL
      for (int j = 0; j < 4; j++) {
        float y = to_f(b[j]);
        acc.x[j] += x0 * y;
        acc.x[4 + j] += x1 * y;
      }
    }
  }
  static __device__ __forceinline__ void mma_cb(Acc &acc, const FragA &fa, const T *B, int ldb) {
    int lane = threadIdx.x & 31, r = (lane >> 2) * 2, c = (lane & 3) * 4;
    const T *a0 = fa.p + r * fa.ld, *a1 = a0 + fa.ld;
    MF_UNROLL
    for (int k = 0; k < 16; k++) {
      float x0 = to_f(a0[k]), x1 = to_f(a1[k]);
      MF_UNROLL
      for (int j = 0; j < 4; j++) {
        float y = to_f(B[(c + j) * ldb + k]);
        acc.x[j] += x0 * y;
        acc.x[4 + j] += x1 * y;
      }
    }
  }
  static __device__ __forceinline__ void store(float *Cm, int ldc, const Acc &a) {
    int lane = threadIdx.x & 31, r = (lane >> 2) * 2, c = (lane & 3) * 4;
    MF_UNROLL
    for (int j = 0; j < 4; j++) {
      Cm[r * ldc + c + j] = a.x[j];
      Cm[(r + 1) * ldc + c + j] = a.x[4 + j];
    }
  }
};

#ifdef MF_ATT_WMMA
// bf16 on tensor cores. Pointers must be 32-byte aligned, ld a multiple of 8 (bf16) / 4
// (float): the shared-memory layout below guarantees both.
struct WmmaMma {
  typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> Acc;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, bf16, nvcuda::wmma::row_major>
      FragA;
  static __device__ __forceinline__ void zero(Acc &a) { nvcuda::wmma::fill_fragment(a, 0.0f); }
  static __device__ __forceinline__ void scale(Acc &a, float s) {
    MF_UNROLL
    for (int i = 0; i < a.num_elements; i++) a.x[i] *= s;
  }
  static __device__ __forceinline__ void load_a(FragA &f, const bf16 *A, int lda) {
    nvcuda::wmma::load_matrix_sync(f, A, lda);
  }
  static __device__ __forceinline__ void mma_rb(Acc &acc, const FragA &fa, const bf16 *B, int ldb) {
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, bf16, nvcuda::wmma::row_major> fb;
    nvcuda::wmma::load_matrix_sync(fb, B, ldb);
    nvcuda::wmma::mma_sync(acc, fa, fb, acc);
  }
  static __device__ __forceinline__ void mma_cb(Acc &acc, const FragA &fa, const bf16 *B, int ldb) {
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, bf16, nvcuda::wmma::col_major> fb;
    nvcuda::wmma::load_matrix_sync(fb, B, ldb);
    nvcuda::wmma::mma_sync(acc, fa, fb, acc);
  }
  static __device__ __forceinline__ void store(float *Cm, int ldc, const Acc &a) {
    nvcuda::wmma::store_matrix_sync(Cm, a, ldc, nvcuda::wmma::mem_row_major);
  }
};
template <typename T> struct MmaFor {
  typedef SoftMma<T> type;
};
template <> struct MmaFor<bf16> {
  typedef WmmaMma type;
};
#else
template <typename T> struct MmaFor {
  typedef SoftMma<T> type;
};
#endif

// ---------------------------------------------------------------- shared-memory layout
// Offsets in bytes, each region 128-byte aligned. T tiles: [64][ld], ld = hs + 8.
// Per-warp fp32 strips: S [16][SLD] (SLD = max(64, hs) + 4: also the epilogue's 16 x hs
// staging), dP [16][DLD] (DLD = 68); per-warp T strips P, dS: [16][PLD] (PLD = 72).
enum { ATT_FWD = 0, ATT_DKV = 1, ATT_DQ = 2 };

struct AttSmem {
  size_t q, k, v, dO, L, D, S, dP, P, dS, total;
};

__host__ __device__ inline size_t att_take(size_t &off, size_t bytes) {
  size_t o = off;
  off += (bytes + 127) & ~(size_t)127;
  return o;
}

__host__ __device__ inline AttSmem att_smem(int hs, int tsz, int kind) {
  const size_t ld = hs + ATT_PAD, SLD = (hs > ATT_TILE ? hs : ATT_TILE) + 4, DLD = ATT_TILE + 4;
  const size_t PLD = ATT_TILE + ATT_PAD, tile = ATT_TILE * ld * tsz;
  AttSmem s;
  size_t off = 0;
  s.q = att_take(off, tile);
  s.k = att_take(off, tile);
  s.v = att_take(off, tile);
  s.dO = kind == ATT_FWD ? 0 : att_take(off, tile);
  s.L = kind == ATT_FWD ? 0 : att_take(off, ATT_TILE * sizeof(float));
  s.D = kind == ATT_FWD ? 0 : att_take(off, ATT_TILE * sizeof(float));
  s.S = att_take(off, ATT_WARPS * 16 * SLD * sizeof(float));
  s.dP = kind == ATT_FWD ? 0 : att_take(off, ATT_WARPS * 16 * DLD * sizeof(float));
  s.P = kind == ATT_DQ ? 0 : att_take(off, ATT_WARPS * 16 * PLD * tsz);
  s.dS = kind == ATT_FWD ? 0 : att_take(off, ATT_WARPS * 16 * PLD * tsz);
  s.total = off;
  return s;
}

// ---------------------------------------------------------------- kernels

// dst[64][ld] = rows row0 .. row0+63 of src (row t at src + t*stride, hs elements), rows at
// or past Tn zero-filled. 16-byte accesses; the block's threads share the work.
template <typename T>
__device__ __forceinline__ void att_load_tile(T *dst, const T *src, int row0, int Tn,
                                              size_t stride, int hs, int ld) {
  constexpr int X = V16<T>::N;
  const int ppr = hs / X;
  for (int idx = threadIdx.x; idx < ATT_TILE * ppr; idx += blockDim.x) {
    int rr = idx / ppr, cc = (idx % ppr) * X, t = row0 + rr;
    V16<T> v;
    if (t < Tn) {
      v = ld16(src + (size_t)t * stride + cc);
    } else {
      MF_UNROLL
      for (int k = 0; k < X; k++) v.v[k] = from_f<T>(0.0f);
    }
    st16(dst + rr * ld + cc, v);
  }
}

// L[r] = lse of query row row0 + r in log2 units (+inf past Tn: P = 0 there);
// D[r] = sum_d dO[r,d] O[r,d]. Warp w does rows 16w .. 16w+15, reading dO and O from global.
template <typename T>
__device__ __forceinline__ void att_load_rowstats(float *L, float *D, const float *lse_bh,
                                                  const T *dO, const T *O, int row0, int Tn,
                                                  int C, int hs) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int rr = warp * 16; rr < warp * 16 + 16; rr++) {
    int t = row0 + rr;
    float d = 0.0f;
    if (t < Tn)
      for (int c = lane; c < hs; c += 32)
        d += to_f(dO[(size_t)t * C + c]) * to_f(O[(size_t)t * C + c]);
    d = warp_sum(d);
    if (lane == 0) {
      D[rr] = d;
      L[rr] = t < Tn ? lse_bh[t] * LOG2E : INFINITY;
    }
  }
}

// Writes 16 x hs fp32 strip row r (the lane's half of the columns) scaled by s as T.
template <typename T, int HSM>
__device__ __forceinline__ void att_store_half_row(T *dst, const float *srow, float s, int hs) {
  constexpr int X = V16<T>::N;
  MF_UNROLL
  for (int d0 = 0; d0 < HSM / 2; d0 += X) {
    if (d0 < hs / 2) {
      V16<T> pk;
      MF_UNROLL
      for (int k = 0; k < X; k++) pk.v[k] = from_f<T>(srow[d0 + k] * s);
      st16(dst + d0, pk);
    }
  }
}

template <typename T, int HSM>
__global__ void MF_LAUNCH_BOUNDS(ATT_THREADS)
    attention_forward_kernel(T *__restrict__ out /* [B,T,C] */, float *__restrict__ lse /* [B,NH,T] */,
                             const T *__restrict__ qkv /* [B,T,3C] */, int Tn, int C, int NH, int hs,
                             float sl2 /* scale * log2(e) */) {
  typedef typename MmaFor<T>::type M;
  extern __shared__ __align__(128) unsigned char att_smem_raw[];
  const AttSmem lay = att_smem(hs, (int)sizeof(T), ATT_FWD);
  const int ld = hs + ATT_PAD, SLD = (hs > ATT_TILE ? hs : ATT_TILE) + 4, PLD = ATT_TILE + ATT_PAD;
  T *sQ = (T *)(att_smem_raw + lay.q), *sK = (T *)(att_smem_raw + lay.k);
  T *sV = (T *)(att_smem_raw + lay.v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *Sw = (float *)(att_smem_raw + lay.S) + warp * 16 * SLD;  // [16][SLD] this warp's
  T *Pw = (T *)(att_smem_raw + lay.P) + warp * 16 * PLD;           // [16][PLD] this warp's

  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int qb = gridDim.x - 1 - blockIdx.x, i0 = qb * ATT_TILE;  // heaviest tiles first
  const size_t C3 = 3 * (size_t)C;
  const T *base = qkv + (size_t)b * Tn * C3 + (size_t)h * hs;

  att_load_tile(sQ, base, i0, Tn, C3, hs, ld);
  const int r = lane >> 1, half = lane & 1, qi = i0 + warp * 16 + r;
  float o[HSM / 2];  // row qi, columns half*hs/2 .. : the running (unnormalised) output
  MF_UNROLL
  for (int d = 0; d < HSM / 2; d++) o[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // running max (log2 units) and sum of row qi

  for (int j = 0; j <= qb; j++) {
    __syncthreads();  // the previous tile's K/V are no longer read
    att_load_tile(sK, base + C, j * ATT_TILE, Tn, C3, hs, ld);
    att_load_tile(sV, base + 2 * C, j * ATT_TILE, Tn, C3, hs, ld);
    __syncthreads();
    {  // S[16 x 64] = Q_w K_j^T
      typename M::Acc acc[4];
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::zero(acc[n]);
      for (int kk = 0; kk < hs / 16; kk++) {
        typename M::FragA fa;
        M::load_a(fa, sQ + warp * 16 * ld + kk * 16, ld);
        MF_UNROLL
        for (int n = 0; n < 4; n++) M::mma_cb(acc[n], fa, sK + n * 16 * ld + kk * 16, ld);
      }
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::store(Sw + n * 16, SLD, acc[n]);
    }
    __syncwarp();
    // online softmax of row r (2 lanes: interleaved columns 2i + half)
    const float *srow = Sw + r * SLD;
    const int kbase = j * ATT_TILE;
    float mx = -INFINITY;
    MF_UNROLL
    for (int i = 0; i < 32; i++) {
      int c = 2 * i + half;
      if (kbase + c <= qi) mx = fmaxf(mx, srow[c] * sl2);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float mnew = fmaxf(m, mx);  // finite: key kbase <= qi for every j <= qb
    const float alpha = exp2f(m - mnew);
    float rs = 0.0f;
    T *prow = Pw + r * PLD;
    MF_UNROLL
    for (int i = 0; i < 32; i++) {
      int c = 2 * i + half;
      T p = from_f<T>(kbase + c <= qi ? exp2f(srow[c] * sl2 - mnew) : 0.0f);
      prow[c] = p;
      rs += to_f(p);  // the rounded P that the product uses
    }
    rs += __shfl_xor_sync(0xffffffffu, rs, 1);
    l = l * alpha + rs;
    m = mnew;
    __syncwarp();
    {  // PV[16 x hs] = P_w V_j, staged through the S strip, then O = alpha O + PV
      typename M::Acc acc[HSM / 16];
      MF_UNROLL
      for (int n = 0; n < HSM / 16; n++)
        if (n * 16 < hs) M::zero(acc[n]);
      MF_UNROLL
      for (int kk = 0; kk < 4; kk++) {
        typename M::FragA fa;
        M::load_a(fa, Pw + kk * 16, PLD);
        MF_UNROLL
        for (int n = 0; n < HSM / 16; n++)
          if (n * 16 < hs) M::mma_rb(acc[n], fa, sV + kk * 16 * ld + n * 16, ld);
      }
      MF_UNROLL
      for (int n = 0; n < HSM / 16; n++)
        if (n * 16 < hs) M::store(Sw + n * 16, SLD, acc[n]);
    }
    __syncwarp();
    const float *orow = Sw + r * SLD + half * (hs / 2);
    MF_UNROLL
    for (int d = 0; d < HSM / 2; d++)
      if (d < hs / 2) o[d] = o[d] * alpha + orow[d];
  }
  if (qi < Tn) {
    const float inv = 1.0f / l;
    T *op = out + ((size_t)b * Tn + qi) * C + (size_t)h * hs + half * (hs / 2);
    constexpr int X = V16<T>::N;
    MF_UNROLL
    for (int d0 = 0; d0 < HSM / 2; d0 += X) {
      if (d0 < hs / 2) {
        V16<T> pk;
        MF_UNROLL
        for (int k = 0; k < X; k++) pk.v[k] = from_f<T>(o[d0 + k] * inv);
        st16(op + d0, pk);
      }
    }
    if (half == 0) lse[(size_t)bh * Tn + qi] = (m + log2f(l)) * (1.0f / LOG2E);
  }
}

template <typename T, int HSM>
__global__ void MF_LAUNCH_BOUNDS(ATT_THREADS)
    attention_backward_dkv_kernel(T *__restrict__ dqkv /* [B,T,3C] */, const T *__restrict__ dout /* [B,T,C] */,
                                  const T *__restrict__ qkv /* [B,T,3C] */, const T *__restrict__ out /* [B,T,C] */,
                                  const float *__restrict__ lse /* [B,NH,T] */, int Tn, int C, int NH,
                                  int hs, float sl2, float scale) {
  typedef typename MmaFor<T>::type M;
  extern __shared__ __align__(128) unsigned char att_smem_raw[];
  const AttSmem lay = att_smem(hs, (int)sizeof(T), ATT_DKV);
  const int ld = hs + ATT_PAD, SLD = (hs > ATT_TILE ? hs : ATT_TILE) + 4, DLD = ATT_TILE + 4;
  const int PLD = ATT_TILE + ATT_PAD;
  T *sQ = (T *)(att_smem_raw + lay.q), *sK = (T *)(att_smem_raw + lay.k);
  T *sV = (T *)(att_smem_raw + lay.v), *sdO = (T *)(att_smem_raw + lay.dO);
  float *sL = (float *)(att_smem_raw + lay.L), *sD = (float *)(att_smem_raw + lay.D);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *St = (float *)(att_smem_raw + lay.S) + warp * 16 * SLD;    // [16 keys][SLD]
  float *dPt = (float *)(att_smem_raw + lay.dP) + warp * 16 * DLD;  // [16 keys][DLD]
  T *Pt = (T *)(att_smem_raw + lay.P) + warp * 16 * PLD;            // [16 keys][PLD]
  T *dSt = (T *)(att_smem_raw + lay.dS) + warp * 16 * PLD;          // [16 keys][PLD]

  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int kb = gridDim.x - 1 - blockIdx.x, j0 = kb * ATT_TILE;  // key tile 0 sees the most
  const int nqt = CEIL_DIV(Tn, ATT_TILE);
  const size_t C3 = 3 * (size_t)C;
  const T *base = qkv + (size_t)b * Tn * C3 + (size_t)h * hs;
  const T *dObase = dout + (size_t)b * Tn * C + (size_t)h * hs;
  const T *Obase = out + (size_t)b * Tn * C + (size_t)h * hs;

  att_load_tile(sK, base + C, j0, Tn, C3, hs, ld);
  att_load_tile(sV, base + 2 * C, j0, Tn, C3, hs, ld);
  typename M::Acc dK[HSM / 16], dV[HSM / 16];  // rows 16w.. of the key tile
  MF_UNROLL
  for (int n = 0; n < HSM / 16; n++)
    if (n * 16 < hs) {
      M::zero(dK[n]);
      M::zero(dV[n]);
    }
  const int r = lane >> 1, half = lane & 1, kj = j0 + warp * 16 + r;

  for (int qt = kb; qt < nqt; qt++) {
    const int i0 = qt * ATT_TILE;
    __syncthreads();  // the previous query tile is no longer read
    att_load_tile(sQ, base, i0, Tn, C3, hs, ld);
    att_load_tile(sdO, dObase, i0, Tn, (size_t)C, hs, ld);
    att_load_rowstats(sL, sD, lse + (size_t)bh * Tn, dObase, Obase, i0, Tn, C, hs);
    __syncthreads();
    {  // S^T[16 keys x 64 q] = K_w Q^T, then dP^T = V_w dO^T
      typename M::Acc acc[4];
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::zero(acc[n]);
      for (int kk = 0; kk < hs / 16; kk++) {
        typename M::FragA fa;
        M::load_a(fa, sK + warp * 16 * ld + kk * 16, ld);
        MF_UNROLL
        for (int n = 0; n < 4; n++) M::mma_cb(acc[n], fa, sQ + n * 16 * ld + kk * 16, ld);
      }
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::store(St + n * 16, SLD, acc[n]);
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::zero(acc[n]);
      for (int kk = 0; kk < hs / 16; kk++) {
        typename M::FragA fa;
        M::load_a(fa, sV + warp * 16 * ld + kk * 16, ld);
        MF_UNROLL
        for (int n = 0; n < 4; n++) M::mma_cb(acc[n], fa, sdO + n * 16 * ld + kk * 16, ld);
      }
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::store(dPt + n * 16, DLD, acc[n]);
    }
    __syncwarp();
    // P^T and dS^T of key row r (2 lanes: interleaved query columns 2i + half)
    MF_UNROLL
    for (int i = 0; i < 32; i++) {
      int c = 2 * i + half, q = i0 + c;
      float p = kj <= q && q < Tn ? exp2f(St[r * SLD + c] * sl2 - sL[c]) : 0.0f;
      float ds = p * (dPt[r * DLD + c] - sD[c]);
      Pt[r * PLD + c] = from_f<T>(p);
      dSt[r * PLD + c] = from_f<T>(ds);
    }
    __syncwarp();
    // dV_w += P^T dO; dK_w += dS^T Q (scaled at the end)
    MF_UNROLL
    for (int kk = 0; kk < 4; kk++) {
      typename M::FragA fp, fs;
      M::load_a(fp, Pt + kk * 16, PLD);
      M::load_a(fs, dSt + kk * 16, PLD);
      MF_UNROLL
      for (int n = 0; n < HSM / 16; n++)
        if (n * 16 < hs) {
          M::mma_rb(dV[n], fp, sdO + kk * 16 * ld + n * 16, ld);
          M::mma_rb(dK[n], fs, sQ + kk * 16 * ld + n * 16, ld);
        }
    }
  }
  // epilogue: stage each 16 x hs result through the S strip, write this warp's key rows
  T *dk = dqkv + ((size_t)b * Tn + kj) * C3 + C + (size_t)h * hs + half * (hs / 2);
  __syncwarp();
  MF_UNROLL
  for (int n = 0; n < HSM / 16; n++)
    if (n * 16 < hs) M::store(St + n * 16, SLD, dK[n]);
  __syncwarp();
  if (kj < Tn) att_store_half_row<T, HSM>(dk, St + r * SLD + half * (hs / 2), scale, hs);
  __syncwarp();
  MF_UNROLL
  for (int n = 0; n < HSM / 16; n++)
    if (n * 16 < hs) M::store(St + n * 16, SLD, dV[n]);
  __syncwarp();
  if (kj < Tn) att_store_half_row<T, HSM>(dk + C, St + r * SLD + half * (hs / 2), 1.0f, hs);
}

template <typename T, int HSM>
__global__ void MF_LAUNCH_BOUNDS(ATT_THREADS)
    attention_backward_dq_kernel(T *__restrict__ dqkv /* [B,T,3C] */, const T *__restrict__ dout /* [B,T,C] */,
                                 const T *__restrict__ qkv /* [B,T,3C] */, const T *__restrict__ out /* [B,T,C] */,
                                 const float *__restrict__ lse /* [B,NH,T] */, int Tn, int C, int NH,
                                 int hs, float sl2, float scale) {
  typedef typename MmaFor<T>::type M;
  extern __shared__ __align__(128) unsigned char att_smem_raw[];
  const AttSmem lay = att_smem(hs, (int)sizeof(T), ATT_DQ);
  const int ld = hs + ATT_PAD, SLD = (hs > ATT_TILE ? hs : ATT_TILE) + 4, DLD = ATT_TILE + 4;
  const int PLD = ATT_TILE + ATT_PAD;
  T *sQ = (T *)(att_smem_raw + lay.q), *sK = (T *)(att_smem_raw + lay.k);
  T *sV = (T *)(att_smem_raw + lay.v), *sdO = (T *)(att_smem_raw + lay.dO);
  float *sL = (float *)(att_smem_raw + lay.L), *sD = (float *)(att_smem_raw + lay.D);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *Sw = (float *)(att_smem_raw + lay.S) + warp * 16 * SLD;    // [16 q][SLD]
  float *dPw = (float *)(att_smem_raw + lay.dP) + warp * 16 * DLD;  // [16 q][DLD]
  T *dSw = (T *)(att_smem_raw + lay.dS) + warp * 16 * PLD;          // [16 q][PLD]

  const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
  const int qb = gridDim.x - 1 - blockIdx.x, i0 = qb * ATT_TILE;
  const size_t C3 = 3 * (size_t)C;
  const T *base = qkv + (size_t)b * Tn * C3 + (size_t)h * hs;
  const T *dObase = dout + (size_t)b * Tn * C + (size_t)h * hs;
  const T *Obase = out + (size_t)b * Tn * C + (size_t)h * hs;

  att_load_tile(sQ, base, i0, Tn, C3, hs, ld);
  att_load_tile(sdO, dObase, i0, Tn, (size_t)C, hs, ld);
  att_load_rowstats(sL, sD, lse + (size_t)bh * Tn, dObase, Obase, i0, Tn, C, hs);
  typename M::Acc dQ[HSM / 16];
  MF_UNROLL
  for (int n = 0; n < HSM / 16; n++)
    if (n * 16 < hs) M::zero(dQ[n]);
  const int r = lane >> 1, half = lane & 1, rw = warp * 16 + r, qi = i0 + rw;

  for (int j = 0; j <= qb; j++) {
    __syncthreads();  // Q/dO/L/D complete (first pass); the previous K/V no longer read
    att_load_tile(sK, base + C, j * ATT_TILE, Tn, C3, hs, ld);
    att_load_tile(sV, base + 2 * C, j * ATT_TILE, Tn, C3, hs, ld);
    __syncthreads();
    {  // S[16 q x 64 keys] = Q_w K^T, then dP = dO_w V^T
      typename M::Acc acc[4];
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::zero(acc[n]);
      for (int kk = 0; kk < hs / 16; kk++) {
        typename M::FragA fa;
        M::load_a(fa, sQ + warp * 16 * ld + kk * 16, ld);
        MF_UNROLL
        for (int n = 0; n < 4; n++) M::mma_cb(acc[n], fa, sK + n * 16 * ld + kk * 16, ld);
      }
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::store(Sw + n * 16, SLD, acc[n]);
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::zero(acc[n]);
      for (int kk = 0; kk < hs / 16; kk++) {
        typename M::FragA fa;
        M::load_a(fa, sdO + warp * 16 * ld + kk * 16, ld);
        MF_UNROLL
        for (int n = 0; n < 4; n++) M::mma_cb(acc[n], fa, sV + n * 16 * ld + kk * 16, ld);
      }
      MF_UNROLL
      for (int n = 0; n < 4; n++) M::store(dPw + n * 16, DLD, acc[n]);
    }
    __syncwarp();
    const int kbase = j * ATT_TILE;
    const float Lr = sL[rw], Dr = sD[rw];
    MF_UNROLL
    for (int i = 0; i < 32; i++) {
      int c = 2 * i + half;
      float p = kbase + c <= qi && qi < Tn ? exp2f(Sw[r * SLD + c] * sl2 - Lr) : 0.0f;
      dSw[r * PLD + c] = from_f<T>(p * (dPw[r * DLD + c] - Dr));
    }
    __syncwarp();
    MF_UNROLL
    for (int kk = 0; kk < 4; kk++) {  // dQ_w += dS K_j (scaled at the end)
      typename M::FragA fs;
      M::load_a(fs, dSw + kk * 16, PLD);
      MF_UNROLL
      for (int n = 0; n < HSM / 16; n++)
        if (n * 16 < hs) M::mma_rb(dQ[n], fs, sK + kk * 16 * ld + n * 16, ld);
    }
  }
  __syncwarp();
  MF_UNROLL
  for (int n = 0; n < HSM / 16; n++)
    if (n * 16 < hs) M::store(Sw + n * 16, SLD, dQ[n]);
  __syncwarp();
  if (qi < Tn)
    att_store_half_row<T, HSM>(dqkv + ((size_t)b * Tn + qi) * C3 + (size_t)h * hs + half * (hs / 2),
                               Sw + r * SLD + half * (hs / 2), scale, hs);
}

// ---------------------------------------------------------------- launchers

static void att_check(int B, int Tn, int C, int NH, const void *p0, const void *p1,
                      const void *p2) {
  MF_REQUIRE(B >= 0 && Tn >= 0 && C > 0 && NH > 0 && C % NH == 0, "B=%d T=%d C=%d NH=%d", B, Tn,
             C, NH);
  int hs = C / NH;
  MF_REQUIRE(hs % 16 == 0 && hs <= 128, "head size %d must be a multiple of 16, at most 128", hs);
  MF_REQUIRE(aligned16(p0) && aligned16(p1) && aligned16(p2), "16-byte aligned arrays");
}

template <typename T, int HSM>
static void att_forward_launch(T *out, float *lse, const T *qkv, int B, int Tn, int C, int NH,
                               cudaStream_t stream) {
  int hs = C / NH;
  size_t smem = att_smem(hs, (int)sizeof(T), ATT_FWD).total;
  MF_REQUIRE(smem <= max_smem_optin(), "attention tiles need %zu bytes of shared memory", smem);
  allow_smem(attention_forward_kernel<T, HSM>, smem);
  dim3 grid(CEIL_DIV(Tn, ATT_TILE), B * NH);
  float sl2 = LOG2E / sqrtf((float)hs);
  MF_LAUNCH((attention_forward_kernel<T, HSM>), grid, ATT_THREADS, smem, stream, out, lse, qkv, Tn,
            C, NH, hs, sl2);
  MF_CHECK_LAUNCH();
}

template <typename T, int HSM>
static void att_backward_launch(T *dqkv, const T *dout, const T *qkv, const T *out,
                                const float *lse, int B, int Tn, int C, int NH,
                                cudaStream_t stream) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs), sl2 = LOG2E * scale;
  dim3 grid(CEIL_DIV(Tn, ATT_TILE), B * NH);
  size_t smem = att_smem(hs, (int)sizeof(T), ATT_DKV).total;
  MF_REQUIRE(smem <= max_smem_optin(), "attention tiles need %zu bytes of shared memory", smem);
  allow_smem(attention_backward_dkv_kernel<T, HSM>, smem);
  MF_LAUNCH((attention_backward_dkv_kernel<T, HSM>), grid, ATT_THREADS, smem, stream, dqkv, dout,
            qkv, out, lse, Tn, C, NH, hs, sl2, scale);
  MF_CHECK_LAUNCH();
  smem = att_smem(hs, (int)sizeof(T), ATT_DQ).total;
  MF_REQUIRE(smem <= max_smem_optin(), "attention tiles need %zu bytes of shared memory", smem);
  allow_smem(attention_backward_dq_kernel<T, HSM>, smem);
  MF_LAUNCH((attention_backward_dq_kernel<T, HSM>), grid, ATT_THREADS, smem, stream, dqkv, dout,
            qkv, out, lse, Tn, C, NH, hs, sl2, scale);
  MF_CHECK_LAUNCH();
}

template <typename T>
void attention_forward(T *out /* [B,T,C] */, float *lse /* [B,NH,T] */, const T *qkv /* [B,T,3C] */,
                       int B, int Tn, int C, int NH, cudaStream_t stream) {
  att_check(B, Tn, C, NH, out, qkv, lse);
  if (B == 0 || Tn == 0) return;
  if (C / NH <= 64)
    att_forward_launch<T, 64>(out, lse, qkv, B, Tn, C, NH, stream);
  else
    att_forward_launch<T, 128>(out, lse, qkv, B, Tn, C, NH, stream);
}

template <typename T>
void attention_backward(T *dqkv /* [B,T,3C] */, const T *dout /* [B,T,C] */,
                        const T *qkv /* [B,T,3C] */, const T *out /* [B,T,C] */,
                        const float *lse /* [B,NH,T] */, int B, int Tn, int C, int NH,
                        cudaStream_t stream) {
  att_check(B, Tn, C, NH, dqkv, dout, qkv);
  MF_REQUIRE(aligned16(out), "16-byte aligned out");
  if (B == 0 || Tn == 0) return;
  if (C / NH <= 64)
    att_backward_launch<T, 64>(dqkv, dout, qkv, out, lse, B, Tn, C, NH, stream);
  else
    att_backward_launch<T, 128>(dqkv, dout, qkv, out, lse, B, Tn, C, NH, stream);
}

#define INST(T)                                                                               \
  template void attention_forward<T>(T *, float *, const T *, int, int, int, int, cudaStream_t); \
  template void attention_backward<T>(T *, const T *, const T *, const T *, const float *, int,  \
                                      int, int, int, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
