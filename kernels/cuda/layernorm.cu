// LayerNorm over the last dimension on CUDA (eps 1e-5, biased variance, as
// torch.nn.LayerNorm), and the fused residual + LayerNorm forward.
// Parameter gradients accumulate (+=) into dweight/dbias; the activation gradient dinp is
// written (=).
//
// Forward: one warp per row, 16-byte packs; three sweeps over the row (mean, variance of
// the deviations, output), the second and third from L1. The residual variant adds a + b,
// rounds the sum to T and stores it, and normalises the stored sum.
// Backward: one warp per row computes dinp (two sweeps), and per-warp partial dweight/dbias
// in shared memory; each block owns LN_RPB consecutive rows and writes one partial row of
// [dweight | dbias] to the scratch area; a second kernel adds the partials in block order.
// Bitwise reproducible run to run (fixed trees, no atomics).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define LN_EPS 1e-5f
#define LN_THREADS 128  // 4 warps
#define LN_RPB 32       // rows per block in the backward (the partial-sum granularity)

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

template <typename T, bool RESID>
__global__ void layernorm_forward_kernel(T *__restrict__ out /* [N,C] */,
                                         T *resid /* [N,C], RESID only */,
                                         float *__restrict__ mean /* [N] or NULL */,
                                         float *__restrict__ rstd /* [N] or NULL */,
                                         const T *a /* [N,C] */, const T *b /* [N,C], RESID */,
                                         const T *__restrict__ weight /* [C] */,
                                         const T *__restrict__ bias /* [C] */, int N, int C) {
  constexpr int X = V16<T>::N;
  int lane = threadIdx.x & 31;
  int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= N) return;
  const T *x = a + (size_t)row * C;
  float sum = 0.0f;
  if (RESID) {
    T *s = resid + (size_t)row * C;
    const T *y = b + (size_t)row * C;
    for (int c = lane * X; c < C; c += 32 * X) {
      V16<T> u = ld16(x + c), w = ld16(y + c), o;
      MF_UNROLL
      for (int k = 0; k < X; k++) {
        o.v[k] = from_f<T>(to_f(u.v[k]) + to_f(w.v[k]));
        sum += to_f(o.v[k]);
      }
      st16(s + c, o);
    }
    x = s;  // normalise the stored sum (this lane reads back only what it wrote)
  } else {
    for (int c = lane * X; c < C; c += 32 * X) {
      V16<T> u = ld16(x + c);
      MF_UNROLL
      for (int k = 0; k < X; k++) sum += to_f(u.v[k]);
    }
  }
  float m = warp_sum(sum) / (float)C;
  float var = 0.0f;
  for (int c = lane * X; c < C; c += 32 * X) {
    V16<T> u = ld16(x + c);
    MF_UNROLL
    for (int k = 0; k < X; k++) {
      float d = to_f(u.v[k]) - m;
      var += d * d;
    }
  }
  float r = 1.0f / sqrtf(warp_sum(var) / (float)C + LN_EPS);
  T *o = out + (size_t)row * C;
  for (int c = lane * X; c < C; c += 32 * X) {
    V16<T> u = ld16(x + c), w = ld16(weight + c), bb = ld16(bias + c), y;
    MF_UNROLL
    for (int k = 0; k < X; k++)
      y.v[k] = from_f<T>((to_f(u.v[k]) - m) * r * to_f(w.v[k]) + to_f(bb.v[k]));
    st16(o + c, y);
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

// dinp rows of block blockIdx.x (rows LN_RPB*blockIdx.x ..), and if part is not NULL the
// block's partial [dweight | dbias] in part[blockIdx.x, 0:2C]. dinp may alias dout: each
// lane reads dout elements before it writes the same elements of dinp.
template <typename T>
__global__ void layernorm_backward_kernel(T *dinp /* [N,C] or NULL */,
                                          float *__restrict__ part /* [G,2C] or NULL */,
                                          const T *dout /* [N,C] */,
                                          const T *__restrict__ inp /* [N,C] */,
                                          const T *__restrict__ weight /* [C] */,
                                          const float *__restrict__ mean /* [N] */,
                                          const float *__restrict__ rstd /* [N] */, int N, int C) {
  constexpr int X = V16<T>::N;
  extern __shared__ __align__(16) unsigned char ln_smem[];
  float *acc_all = reinterpret_cast<float *>(ln_smem);  // [NW][2C] when part
  const int NW = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (part) {
    for (int i = threadIdx.x; i < NW * 2 * C; i += blockDim.x) acc_all[i] = 0.0f;
    __syncthreads();
  }
  float *acc = acc_all + (size_t)warp * 2 * C;  // this warp's [dweight | dbias] partial
  int r0 = blockIdx.x * LN_RPB, r1 = min(N, r0 + LN_RPB);
  for (int row = r0 + warp; row < r1; row += NW) {
    const T *dy = dout + (size_t)row * C, *x = inp + (size_t)row * C;
    float m = mean[row], rs = rstd[row], sa = 0.0f, sb = 0.0f;
    for (int c = lane * X; c < C; c += 32 * X) {
      V16<T> g = ld16(dy + c), u = ld16(x + c), w = ld16(weight + c);
      MF_UNROLL
      for (int k = 0; k < X; k++) {
        float xhat = (to_f(u.v[k]) - m) * rs, d = to_f(g.v[k]), dn = to_f(w.v[k]) * d;
        sa += dn;
        sb += dn * xhat;
        if (part) {
          acc[c + k] += xhat * d;
          acc[C + c + k] += d;
        }
      }
    }
    if (!dinp) continue;
    float ma = warp_sum(sa) / (float)C, mb = warp_sum(sb) / (float)C;
    T *dx = dinp + (size_t)row * C;
    for (int c = lane * X; c < C; c += 32 * X) {
      V16<T> g = ld16(dy + c), u = ld16(x + c), w = ld16(weight + c), o;
      MF_UNROLL
      for (int k = 0; k < X; k++) {
        float xhat = (to_f(u.v[k]) - m) * rs, dn = to_f(w.v[k]) * to_f(g.v[k]);
        o.v[k] = from_f<T>((dn - ma - xhat * mb) * rs);
      }
      st16(dx + c, o);
    }
  }
  if (part) {
    __syncthreads();
    for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
      float s = 0.0f;
      for (int w = 0; w < NW; w++) s += acc_all[(size_t)w * 2 * C + c];
      part[(size_t)blockIdx.x * 2 * C + c] = s;
    }
  }
}

// ---------------------------------------------------------------- launchers

template <typename T>
static void check_ln(int N, int C, const void *p0, const void *p1, const void *p2) {
  constexpr int X = V16<T>::N;
  MF_REQUIRE(N >= 0 && C > 0, "N=%d C=%d", N, C);
  MF_REQUIRE(C % X == 0, "C=%d must be a multiple of %d (16-byte rows)", C, X);
  MF_REQUIRE(aligned16(p0) && aligned16(p1) && aligned16(p2), "16-byte aligned arrays");
}

template <typename T>
void layernorm_forward(T *out /* [N,C] */, float *mean /* [N] or NULL */,
                       float *rstd /* [N] or NULL */, const T *inp /* [N,C] */,
                       const T *weight /* [C] */, const T *bias /* [C] */, int N, int C,
                       cudaStream_t stream) {
  check_ln<T>(N, C, out, inp, weight);
  MF_REQUIRE(aligned16(bias), "16-byte aligned bias");
  if (N == 0) return;
  const int rows = LN_THREADS / 32;
  MF_LAUNCH((layernorm_forward_kernel<T, false>), CEIL_DIV(N, rows), LN_THREADS, 0, stream, out,
            (T *)nullptr, mean, rstd, inp, (const T *)nullptr, weight, bias, N, C);
  MF_CHECK_LAUNCH();
}

template <typename T>
void residual_layernorm_forward(T *out /* [N,C] */, T *resid /* [N,C] */,
                                float *mean /* [N] or NULL */, float *rstd /* [N] or NULL */,
                                const T *a /* [N,C] */, const T *b /* [N,C] */,
                                const T *weight /* [C] */, const T *bias /* [C] */, int N, int C,
                                cudaStream_t stream) {
  check_ln<T>(N, C, out, a, weight);
  MF_REQUIRE(aligned16(bias) && aligned16(resid) && aligned16(b), "16-byte aligned arrays");
  if (N == 0) return;
  const int rows = LN_THREADS / 32;
  MF_LAUNCH((layernorm_forward_kernel<T, true>), CEIL_DIV(N, rows), LN_THREADS, 0, stream, out,
            resid, mean, rstd, a, b, weight, bias, N, C);
  MF_CHECK_LAUNCH();
}

template <typename T>
void layernorm_backward(T *dinp /* [N,C] or NULL */, T *dweight /* [C] or NULL */,
                        T *dbias /* [C] or NULL */, const T *dout /* [N,C] */,
                        const T *inp /* [N,C] */, const T *weight /* [C] */,
                        const float *mean /* [N] */, const float *rstd /* [N] */, int N, int C,
                        cudaStream_t stream) {
  check_ln<T>(N, C, dout, inp, weight);
  MF_REQUIRE(!dinp || aligned16(dinp), "16-byte aligned dinp");
  bool want_param = dweight || dbias;
  if (N == 0 || (!dinp && !want_param)) return;
  int G = CEIL_DIV(N, LN_RPB);
  float *part = want_param ? (float *)scratch((size_t)G * 2 * C * sizeof(float)) : nullptr;
  size_t smem = want_param ? (size_t)(LN_THREADS / 32) * 2 * C * sizeof(float) : 0;
  MF_REQUIRE(smem <= max_smem_optin(), "C=%d too wide for the shared-memory partials", C);
  allow_smem(layernorm_backward_kernel<T>, smem);
  MF_LAUNCH(layernorm_backward_kernel<T>, G, LN_THREADS, smem, stream, dinp, part, dout, inp,
            weight, mean, rstd, N, C);
  MF_CHECK_LAUNCH();
  if (dweight) partials_add(dweight, part, G, C, 2 * C, stream);
  if (dbias) partials_add(dbias, part + C, G, C, 2 * C, stream);
}

#define INST(T)                                                                                \
  template void layernorm_forward<T>(T *, float *, float *, const T *, const T *, const T *, int, \
                                     int, cudaStream_t);                                       \
  template void residual_layernorm_forward<T>(T *, T *, float *, float *, const T *, const T *,   \
                                              const T *, const T *, int, int, cudaStream_t);   \
  template void layernorm_backward<T>(T *, T *, T *, const T *, const T *, const T *,           \
                                      const float *, const float *, int, int, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda
