// Token + position embedding on CUDA: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:].
// Parameter gradients accumulate (+=) into dwte and dwpe; there are no activation
// gradients (token ids are integers).
//
// Forward: one thread per 16-byte pack of out (4 floats / 8 bf16), fp32 add.
// Backward, deterministic without atomics:
//   dwpe: one thread per (t, pack) sums dout[b,t,pack] over b in order.
//   dwte: the vocabulary is dealt out to G blocks by v % G. Each block scans the token ids
//   in chunks of CHUNK positions, compacts the positions whose token it owns (in position
//   order: warp ballots + a block prefix), sorts them stably by token, and for each run of
//   one token sums the dout rows in position order in fp32 registers and adds the sum to
//   the dwte row once. Every dwte element is owned by one thread of one block, and gets
//   its terms in a fixed order whatever the timing. A frequent token costs one long run
//   of independent row loads, not a serial chain of read-modify-writes.
// tp_embed_* (vocabulary-parallel, parallel/tp_ops.c) are the same kernels on rows
// [v0, v0+nv) of the vocabulary: other tokens read a zero row and get no gradient here.
#include <limits.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

// out[bt] = (wte[inp[bt] - v0] if that row is here, else 0) + (wpe[t] if add_pos, else 0)
template <typename T>
__global__ void encoder_forward_kernel(T *__restrict__ out /* [BT,C] */,
                                       const int32_t *__restrict__ inp /* [BT] */,
                                       const T *__restrict__ wte /* [nv,C] */,
                                       const T *__restrict__ wpe /* [maxT,C] */, int BT, int Tn,
                                       int C, int v0, int nv, int add_pos) {
  constexpr int X = V16<T>::N;
  int packs = C / X;
  long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long)BT * packs) return;
  int bt = (int)(idx / packs), c = (int)(idx % packs) * X, l = inp[bt] - v0;
  float e[X], p[X];
  MF_UNROLL
  for (int k = 0; k < X; k++) e[k] = p[k] = 0.0f;
  if (l >= 0 && l < nv) {
    V16<T> u = ld16(wte + (size_t)l * C + c);
    MF_UNROLL
    for (int k = 0; k < X; k++) e[k] = to_f(u.v[k]);
  }
  if (add_pos) {
    V16<T> u = ld16(wpe + (size_t)(bt % Tn) * C + c);
    MF_UNROLL
    for (int k = 0; k < X; k++) p[k] = to_f(u.v[k]);
  }
  V16<T> o;
  MF_UNROLL
  for (int k = 0; k < X; k++) o.v[k] = from_f<T>(e[k] + p[k]);
  st16(out + (size_t)bt * C + c, o);
}

// dwpe[t, pack] += sum over b of dout[b, t, pack]
template <typename T>
__global__ void encoder_dwpe_kernel(T *__restrict__ dwpe /* [maxT,C] */,
                                    const T *__restrict__ dout /* [B,T,C] */, int B, int Tn,
                                    int C) {
  constexpr int X = V16<T>::N;
  int packs = C / X;
  long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long)Tn * packs) return;
  int t = (int)(idx / packs), c = (int)(idx % packs) * X;
  float acc[X];
  MF_UNROLL
  for (int k = 0; k < X; k++) acc[k] = 0.0f;
  for (int b = 0; b < B; b++) {
    V16<T> d = ld16(dout + ((size_t)b * Tn + t) * C + c);
    MF_UNROLL
    for (int k = 0; k < X; k++) acc[k] += to_f(d.v[k]);
  }
  T *g = dwpe + (size_t)t * C + c;
  V16<T> o = ld16(g);
  MF_UNROLL
  for (int k = 0; k < X; k++) o.v[k] = from_f<T>(to_f(o.v[k]) + acc[k]);
  st16(g, o);
}

#define ENC_THREADS 128
#define ENC_CHUNK 512  // positions scanned per round; a multiple of ENC_THREADS

// dwte[v,:] += dout[p,:] for every position p with inp[p] - v0 == v in [0, nv),
// v % gridDim.x == blockIdx.x
template <typename T>
__global__ void encoder_dwte_kernel(T *__restrict__ dwte /* [nv,C] */,
                                    const T *__restrict__ dout /* [BT,C] */,
                                    const int32_t *__restrict__ inp /* [BT] */, int BT, int C,
                                    int v0, int nv) {
  constexpr int X = V16<T>::N;
  constexpr int NW = ENC_THREADS / 32;
  __shared__ int s_pos[ENC_CHUNK];     // matching positions, in position order
  __shared__ int s_tok[ENC_CHUNK];     // their tokens
  __shared__ int s_sorted[ENC_CHUNK];  // indices into s_pos, sorted by (token, position)
  __shared__ int s_warp[NW];
  const int G = gridDim.x, g = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int packs = C / X;

  for (int base = 0; base < BT; base += ENC_CHUNK) {
    // 1. ordered compaction of the positions this block owns; every thread keeps the count
    int n = 0;
    for (int sub = 0; sub < ENC_CHUNK; sub += ENC_THREADS) {
      int p = base + sub + tid;
      int tok = p < BT ? inp[p] - v0 : -1;
      bool mine = tok >= 0 && tok < nv && tok % G == g;
      unsigned m = __ballot_sync(0xffffffffu, mine);
      if (lane == 0) s_warp[warp] = __popc(m);
      __syncthreads();
      int off = n, tot = 0;
      for (int w = 0; w < NW; w++) {
        if (w == warp) off += tot;
        tot += s_warp[w];
      }
      if (mine) {
        int k = off + __popc(m & ((1u << lane) - 1u));
        s_pos[k] = p;
        s_tok[k] = tok;
      }
      n += tot;
      __syncthreads();  // s_warp is rewritten by the next round
    }
    if (n == 0) continue;  // uniform: every thread counted the same n
    // 2. stable sort by token: rank = #entries with a smaller (token, index)
    for (int i = tid; i < n; i += ENC_THREADS) {
      int v = s_tok[i], r = 0;
      for (int j = 0; j < n; j++) {
        int w = s_tok[j];
        r += (w < v) || (w == v && j < i);
      }
      s_sorted[r] = i;
    }
    __syncthreads();
    // 3. one run per token: sum its rows in position order, add once
    for (int r0 = 0; r0 < n;) {
      int v = s_tok[s_sorted[r0]], r1 = r0 + 1;
      while (r1 < n && s_tok[s_sorted[r1]] == v) r1++;
      for (int pk = tid; pk < packs; pk += ENC_THREADS) {
        float acc[X];
        MF_UNROLL
        for (int k = 0; k < X; k++) acc[k] = 0.0f;
        for (int r = r0; r < r1; r++) {
          V16<T> d = ld16(dout + (size_t)s_pos[s_sorted[r]] * C + pk * X);
          MF_UNROLL
          for (int k = 0; k < X; k++) acc[k] += to_f(d.v[k]);
        }
        T *dst = dwte + (size_t)v * C + pk * X;
        V16<T> o = ld16(dst);
        MF_UNROLL
        for (int k = 0; k < X; k++) o.v[k] = from_f<T>(to_f(o.v[k]) + acc[k]);
        st16(dst, o);
      }
      r0 = r1;
    }
    __syncthreads();  // s_pos/s_tok/s_sorted are rewritten by the next chunk
  }
}

// ---------------------------------------------------------------- launchers

template <typename T>
void tp_embed_forward(T *out /* [B,T,C] */, const int32_t *inp /* [B,T] */,
                      const T *wte /* [nv,C] */, const T *wpe /* [maxT,C] */, int B, int Tn, int C,
                      int v0, int nv, int add_pos, cudaStream_t stream) {
  constexpr int X = V16<T>::N;
  MF_REQUIRE(B >= 0 && Tn >= 0 && C >= 0 && nv >= 0, "B=%d T=%d C=%d nv=%d", B, Tn, C, nv);
  MF_REQUIRE(C % X == 0, "C=%d must be a multiple of %d (16-byte rows)", C, X);
  MF_REQUIRE(aligned16(out) && aligned16(wte) && aligned16(wpe), "16-byte aligned arrays");
  long total = (long)B * Tn * (C / X);
  if (total == 0) return;
  const int threads = 256;
  MF_LAUNCH(encoder_forward_kernel<T>, (unsigned)CEIL_DIV(total, threads), threads, 0, stream,
            out, inp, wte, wpe, B * Tn, Tn, C, v0, nv, add_pos);
  MF_CHECK_LAUNCH();
}

template <typename T>
void encoder_forward(T *out /* [B,T,C] */, const int32_t *inp /* [B,T] */,
                     const T *wte /* [Vp,C] */, const T *wpe /* [maxT,C] */, int B, int Tn, int C,
                     cudaStream_t stream) {
  tp_embed_forward(out, inp, wte, wpe, B, Tn, C, 0, INT_MAX, 1, stream);
}

template <typename T>
void tp_embed_backward(T *dwte /* [nv,C] or NULL */, T *dwpe /* [maxT,C] or NULL */,
                       const T *dout /* [B,T,C] */, const int32_t *inp /* [B,T] */, int B, int Tn,
                       int C, int v0, int nv, cudaStream_t stream) {
  constexpr int X = V16<T>::N;
  MF_REQUIRE(B >= 0 && Tn >= 0 && C >= 0 && nv >= 0, "B=%d T=%d C=%d nv=%d", B, Tn, C, nv);
  MF_REQUIRE(C % X == 0, "C=%d must be a multiple of %d (16-byte rows)", C, X);
  MF_REQUIRE(aligned16(dout) && (!dwte || aligned16(dwte)) && (!dwpe || aligned16(dwpe)),
             "16-byte aligned arrays");
  int BT = B * Tn;
  if (BT == 0 || C == 0) return;
  if (dwpe) {
    long total = (long)Tn * (C / X);
    const int threads = 256;
    MF_LAUNCH(encoder_dwpe_kernel<T>, (unsigned)CEIL_DIV(total, threads), threads, 0, stream,
              dwpe, dout, B, Tn, C);
    MF_CHECK_LAUNCH();
  }
  if (dwte) {
    // G depends on the shape only, so the summation order is fixed for a given shape
    int G = CEIL_DIV(BT, 16);
    if (G > 1024) G = 1024;
    MF_LAUNCH(encoder_dwte_kernel<T>, G, ENC_THREADS, 0, stream, dwte, dout, inp, BT, C, v0, nv);
    MF_CHECK_LAUNCH();
  }
}

template <typename T>
void encoder_backward(T *dwte /* [Vp,C] or NULL */, T *dwpe /* [maxT,C] or NULL */,
                      const T *dout /* [B,T,C] */, const int32_t *inp /* [B,T] */, int B, int Tn,
                      int C, cudaStream_t stream) {
  tp_embed_backward(dwte, dwpe, dout, inp, B, Tn, C, 0, INT_MAX, stream);
}

#define INST(T)                                                                                \
  template void encoder_forward<T>(T *, const int32_t *, const T *, const T *, int, int, int,    \
                                   cudaStream_t);                                              \
  template void encoder_backward<T>(T *, T *, const T *, const int32_t *, int, int, int,        \
                                    cudaStream_t);                                              \
  template void tp_embed_forward<T>(T *, const int32_t *, const T *, const T *, int, int, int,   \
                                    int, int, int, cudaStream_t);                               \
  template void tp_embed_backward<T>(T *, T *, const T *, const int32_t *, int, int, int, int,   \
                                     int, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
