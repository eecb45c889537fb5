/* Emulated kernel tests end to end, on two kernels written like the ones in kernels/cuda
 * (a block-reduction row normalisation and a one-warp-per-row shuffle softmax, templated on
 * the storage type, with launchers that take a trailing stream): random inputs of several
 * shapes including ragged ones, outputs poisoned before each run, each case under several
 * thread orders, results against a CPU computation in double, and the emulator's checks.
 * It doubles as the template for tests of kernels/cuda/<op>.cu (see tests/cuda_emu_test.h).
 * The kernels live here, not in kernels/cuda: they prove the test infrastructure. */
#include <cmath>

#include "tests/cuda_emu_test.h"

using namespace mf_emu_test;

namespace example {

template <class T> __device__ __forceinline__ float ld(const T *p) { return to_float(*p); }

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
/* sum over the block (blockDim.x a multiple of 32); every thread gets it */
__device__ float block_sum(float x) {
  __shared__ float part[32];
  int lane = threadIdx.x % 32, w = threadIdx.x / 32, nw = blockDim.x / 32;
  x = warp_sum(x);
  __syncthreads(); /* part may still be read by a previous call */
  if (lane == 0) part[w] = x;
  __syncthreads();
  return warp_sum(lane < nw ? part[lane] : 0.0f);
}

/* out[r, :] = (x - mean) * rstd * weight + bias; one block per row */
template <class T>
__global__ void emu_x_rownorm_kernel(T *out, float *mean, float *rstd, const T *inp,
                                     const T *weight, const T *bias, int C) {
  const T *x = inp + (size_t)blockIdx.x * C;
  float s = 0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += ld(x + c);
  float m = block_sum(s) / C, v = 0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float d = ld(x + c) - m;
    v += d * d;
  }
  float r = rsqrtf(block_sum(v) / C + 1e-5f);
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    out[(size_t)blockIdx.x * C + c] = from_float<T>((ld(x + c) - m) * r * ld(weight + c) + ld(bias + c));
  if (threadIdx.x == 0) mean[blockIdx.x] = m, rstd[blockIdx.x] = r;
}

/* softmax over each row, one warp per row */
template <class T> __global__ void emu_x_softmax_kernel(T *out, const T *inp, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return; /* the whole warp leaves */
  const T *x = inp + (size_t)row * C;
  float mx = -INFINITY;
  for (int c = lane; c < C; c += 32) mx = fmaxf(mx, ld(x + c));
  mx = warp_max(mx);
  float s = 0;
  for (int c = lane; c < C; c += 32) s += __expf(ld(x + c) - mx);
  s = warp_sum(s);
  for (int c = lane; c < C; c += 32) out[(size_t)row * C + c] = from_float<T>(__expf(ld(x + c) - mx) / s);
}

template <class T>
void rownorm_forward(T *out, float *mean, float *rstd, const T *inp, const T *weight, const T *bias,
                     int N, int C, cudaStream_t stream) {
  MF_LAUNCH(emu_x_rownorm_kernel<T>, N, 128, 0, stream, out, mean, rstd, inp, weight, bias, C);
  MF_CHECK_LAUNCH();
}
template <class T> void softmax_forward(T *out, const T *inp, int N, int C, cudaStream_t stream) {
  MF_LAUNCH(emu_x_softmax_kernel<T>, (N + 3) / 4, 128, 0, stream, out, inp, N, C);
  MF_CHECK_LAUNCH();
}

}  // namespace example

/* CPU computations in double */
static void rownorm_ref(std::vector<float> &out, std::vector<float> &mean, std::vector<float> &rstd,
                        const std::vector<float> &x, const std::vector<float> &w,
                        const std::vector<float> &b, int N, int C) {
  for (int r = 0; r < N; r++) {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += x[r * C + c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[r * C + c] - m) * (x[r * C + c] - m);
    double rs = 1.0 / std::sqrt(v / C + 1e-5);
    for (int c = 0; c < C; c++) out[r * C + c] = (float)((x[r * C + c] - m) * rs * w[c] + b[c]);
    mean[r] = (float)m, rstd[r] = (float)rs;
  }
}
static void softmax_ref(std::vector<float> &out, const std::vector<float> &x, int N, int C) {
  for (int r = 0; r < N; r++) {
    double mx = -INFINITY, s = 0;
    for (int c = 0; c < C; c++) mx = std::max(mx, (double)x[r * C + c]);
    for (int c = 0; c < C; c++) s += std::exp(x[r * C + c] - mx);
    for (int c = 0; c < C; c++) out[r * C + c] = (float)(std::exp(x[r * C + c] - mx) / s);
  }
}

template <class T> static void check_case(int N, int C, uint64_t seed) {
  char what[96];
  std::vector<float> x = rounded<T>(rand_floats((size_t)N * C, -3, 3, seed));
  std::vector<float> w = rounded<T>(rand_floats(C, 0.5f, 1.5f, seed + 1));
  std::vector<float> b = rounded<T>(rand_floats(C, -0.5f, 0.5f, seed + 2));
  DevBuf<T> dx(x, "inp"), dw(w, "weight"), db(b, "bias"), dout((size_t)N * C, "out");
  DevBuf<float> dmean(N, "mean"), drstd(N, "rstd");
  std::vector<float> out((size_t)N * C), mean(N), rstd(N);
  const char *ty = sizeof(T) == 4 ? "f32" : "bf16";

  dout.poison(), dmean.poison(), drstd.poison();
  example::rownorm_forward<T>(dout, dmean, drstd, dx, dw, db, N, C, 0);
  rownorm_ref(out, mean, rstd, x, w, b, N, C);
  snprintf(what, sizeof what, "rownorm %s N=%d C=%d out", ty, N, C);
  check_close(what, dout.download_floats(), out, tol<T>(2e-6, 1e-2));
  snprintf(what, sizeof what, "rownorm %s N=%d C=%d mean/rstd", ty, N, C);
  check_close(what, dmean.download_floats(), mean, 1e-5);
  check_close(what, drstd.download_floats(), rstd, 1e-4);
  check_emu_clean(what);

  dout.poison();
  example::softmax_forward<T>(dout, dx, N, C, 0);
  softmax_ref(out, x, N, C);
  snprintf(what, sizeof what, "softmax %s N=%d C=%d", ty, N, C);
  check_close(what, dout.download_floats(), out, tol<T>(2e-6, 1e-2));
  check_emu_clean(what);
}

int main() {
  const int shapes[][2] = {{1, 1}, {3, 31}, {5, 128}, {7, 257}, {9, 1000}};
  for (uint64_t s : schedule_seeds()) {
    set_schedule_seed(s);
    for (auto &sh : shapes) {
      check_case<float>(sh[0], sh[1], 10 + (uint64_t)sh[1]);
      check_case<__nv_bfloat16>(sh[0], sh[1], 20 + (uint64_t)sh[1]);
    }
  }
  return report("test_cuda_emu_example");
}
