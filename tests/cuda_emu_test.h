/* Harness for emulated CUDA tests (no GPU): a kernel from kernels/cuda runs on the CPU
 * emulator (kernels/cuda/emu) and its output is compared with its CPU twin (kernels/cpu).
 * Same CHECK/CHECKF/SKIP and summary line as tests/test.h, plus device buffers, poisoning,
 * comparison and the emulator's own findings.
 *
 * A kernel test, tests/test_cuda_emu_<op>.cpp, registered in a tests/ .cmake file with
 * mf_cuda_emu_test(test_cuda_emu_<op>):
 *
 *   #include "tests/cuda_emu_test.h"
 *   #include "kernels/cuda/cuda_kernels.h"       // launchers (namespace mf_cuda)
 *   #include "kernels/cpu/cpu.h"                 // CPU twins
 *   using namespace mf_emu_test;
 *   template <class T> void check(int N, int C, uint64_t seed) {
 *     std::vector<float> x = rand_floats(N * C, -2, 2, seed);
 *     x = rounded<T>(x);                          // what a T buffer holds
 *     DevBuf<T> dx(x, "inp"), dy(N * C, "out");   // uploads x; dy starts poisoned (NaN)
 *     dy.poison();                                // before every run that should write it
 *     mf_cuda::gelu_forward<T>(dy, dx, N * C, 0);
 *     std::vector<float> want(N * C);
 *     gelu_forward(want.data(), x.data(), N * C);  // CPU twin
 *     check_close("gelu fwd", dy.download_floats(), want, tol<T>(1e-6, 1e-2));
 *     check_emu_clean("gelu fwd");                // no race/bounds/init report
 *   }
 *   int main() {
 *     for (uint64_t s : schedule_seeds()) {      // each case under a few thread orders
 *       set_schedule_seed(s);
 *       check<float>(3, 8, 1); check<__nv_bfloat16>(7, 40, 2);   // incl. ragged shapes
 *     }
 *     return report("test_cuda_emu_gelu");
 *   }
 *
 * Every kernel a test launches counts as checked by emulation (tests/test_cuda_emu_count).
 * Emulator reports (races, out-of-bounds, ...) print as they happen; check_emu_clean turns
 * them into a failed check, and report() fails the test if any were never checked. */
#ifndef MF_CUDA_EMU_TEST_H
#define MF_CUDA_EMU_TEST_H

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cuda/launch.h"

namespace mf_emu_test {
extern int checks, failures, skips;
}

#define CHECK(cond)                                                            \
  do {                                                                         \
    mf_emu_test::checks++;                                                     \
    if (!(cond)) {                                                             \
      mf_emu_test::failures++;                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

#define CHECKF(cond, ...)                                                        \
  do {                                                                           \
    mf_emu_test::checks++;                                                       \
    if (!(cond)) {                                                               \
      mf_emu_test::failures++;                                                   \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                              \
      fputc('\n', stderr);                                                       \
    }                                                                            \
  } while (0)

#define SKIP(...)                             \
  do {                                        \
    mf_emu_test::skips++;                     \
    fprintf(stderr, "skipped: " __VA_ARGS__); \
    fputc('\n', stderr);                      \
  } while (0)

namespace mf_emu_test {

/* ---- storage types ---- */
template <class T> inline float to_float(T v) { return (float)v; }
template <> inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> inline float to_float(__half v) { return __half2float(v); }
template <class T> inline T from_float(float v) { return (T)v; }
template <> inline __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
template <> inline __half from_float(float v) { return __float2half(v); }
/* x as a T buffer holds it (bf16/half rounding); feed this to the CPU twin */
template <class T> std::vector<float> rounded(const std::vector<float> &x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); i++) r[i] = to_float(from_float<T>(x[i]));
  return r;
}
/* a tolerance by storage type: f32 for float, lp for bf16/half */
template <class T> inline double tol(double f32, double lp) {
  return sizeof(T) == 4 ? f32 : lp;
}

/* ---- random inputs (deterministic) ---- */
std::vector<float> rand_floats(size_t n, float lo, float hi, uint64_t seed);
std::vector<int32_t> rand_ints(size_t n, int32_t lo, int32_t hi_exclusive, uint64_t seed);

/* ---- device buffers ---- */
template <class T> class DevBuf {
 public:
  DevBuf(size_t n, const char *name) : n_(n) {
    CHECKF(cudaMalloc(&p_, n * sizeof(T) + (n == 0)) == cudaSuccess, "cudaMalloc %s", name);
    mf_emu::name_alloc(p_, name);
  }
  /* from host data: vector<T>, or vector<float> converted to T (bf16/half: rounded) */
  template <class U> DevBuf(const std::vector<U> &host, const char *name) : DevBuf(host.size(), name) {
    if constexpr (std::is_same<U, T>::value) upload(host);
    else upload_floats(host);
  }
  ~DevBuf() { cudaFree(p_); }
  DevBuf(const DevBuf &) = delete;
  DevBuf &operator=(const DevBuf &) = delete;
  T *ptr() const { return p_; }
  operator T *() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T> &h) {
    CHECK(h.size() == n_);
    CHECK(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  template <class U> void upload_floats(const std::vector<U> &h) {
    std::vector<T> t(h.size());
    for (size_t i = 0; i < h.size(); i++) t[i] = from_float<T>((float)h[i]);
    upload(t);
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
  std::vector<float> download_floats() const {
    std::vector<T> h = download();
    std::vector<float> f(n_);
    for (size_t i = 0; i < n_; i++) f[i] = to_float(h[i]);
    return f;
  }
  /* every byte 0xFF: NaN for float/bf16/half, -1 for integers; an output the kernel leaves
   * unwritten then fails the comparison */
  void poison() { CHECK(cudaMemset(p_, 0xff, n_ * sizeof(T)) == cudaSuccess); }

 private:
  T *p_ = nullptr;
  size_t n_;
};

/* ---- comparison ---- */
struct Diff {
  double nerr;      /* max |got - want| / max(max |want|, 1e-30); NaN/inf in got -> inf */
  size_t worst;     /* index of the largest difference */
  size_t nonfinite; /* count of NaN/inf in got where want is finite */
};
Diff compare(const std::vector<float> &got, const std::vector<float> &want);
/* one check: nerr <= tol; prints the worst element on failure */
bool check_close(const char *what, const std::vector<float> &got, const std::vector<float> &want,
                 double tol);
/* one check: bitwise equality (for exact kernels: copies, casts, integer outputs) */
bool check_equal_bits(const char *what, const void *got, const void *want, size_t bytes);

/* ---- the emulator ---- */
/* one check: the emulator reported nothing (race, bounds, uninitialized read, ...) since
 * the last call; clears its count */
bool check_emu_clean(const char *what);
/* thread-order seeds to run each case under: MF_EMU_SEEDS="1,2,3" or the default {1, 2} */
std::vector<uint64_t> schedule_seeds();
void set_schedule_seed(uint64_t s);

/* prints "<name>: N checks, M failed[, K skipped]"; fails if emulator reports were left
 * unchecked; returns the exit code */
int report(const char *name);

}  // namespace mf_emu_test

#endif
