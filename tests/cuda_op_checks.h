// The CUDA op checks shared by tests/test_cuda_kernels.cpp (kernels/cuda built against the
// emulator, run in CI) and tests/gpu/test_gpu_ops.cu (the same kernels on a real GPU, plus
// the cuBLASLt matmul). Every check: fresh random inputs, outputs poisoned with NaN before
// the launch (activation outputs must be fully written), parameter gradients pre-filled with
// random values (they must be accumulated), the CPU twin from kernels/cpu/cpu.h as the
// reference, normalised error max|a - ref| / max|ref| against a bound per dtype:
//   fp32 1e-5; bf16 1e-2 (the reference runs in fp32 on the bf16-rounded inputs; the CUDA
//   kernel rounds its outputs to bf16, 2^-9 relative, and may round intermediates that the
//   CPU keeps in fp32, e.g. attention's P and dS before the tensor-core products).
// Reproducibility of the deterministic reductions is checked bitwise (two runs).
// Each check appends a row to the table that print_table() prints at the end.
#ifndef MF_TESTS_CUDA_OP_CHECKS_H
#define MF_TESTS_CUDA_OP_CHECKS_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda_kernels.h"
#if defined(MF_CUDA_EMULATION)
#include "tests/cuda_emu_test.h"  // CHECK/CHECKF/SKIP, emulator findings, report
#define OC_REPORT(name) mf_emu_test::report(name)
#else
extern "C" {
#include "tests/test.h"  // CHECK/CHECKF/SKIP, report
}
#define OC_REPORT(name) mf_test_report(name)
#endif

namespace opcheck {

using mf_cuda::bf16;

#define OC_CUDA(call)                                                                     \
  do {                                                                                    \
    cudaError_t e_ = (call);                                                              \
    if (e_ != cudaSuccess) {                                                              \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

// ---- random data (xorshift, fixed seed: a run is reproducible) ----
static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static float urand() {  // [0, 1)
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (float)((g_rng >> 40) * (1.0 / 16777216.0));
}
static std::vector<float> randv(size_t n, float lo, float hi) {
  std::vector<float> v(n);
  for (float &x : v) x = lo + (hi - lo) * urand();
  return v;
}
static int randint(int lo, int hi) {  // [lo, hi)
  int v = lo + (int)(urand() * (float)(hi - lo));
  return v < hi ? v : hi - 1;
}

// ---- storage types on the host ----
static inline uint16_t bf_bits(float f) {  // round to nearest even, as __float2bfloat16
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float bf_val(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

template <typename T> struct Ty;
template <> struct Ty<float> {
  static const char *name() { return "fp32"; }
  static double tol() { return 1e-5; }
  static float round(float x) { return x; }
  static void enc(float *d, float x) { *d = x; }
  static float dec(const float *s) { return *s; }
};
template <> struct Ty<bf16> {
  static const char *name() { return "bf16"; }
  static double tol() { return 1e-2; }
  static float round(float x) { return bf_val(bf_bits(x)); }
  static void enc(bf16 *d, float x) {
    uint16_t b = bf_bits(x);
    memcpy((void *)d, &b, 2);
  }
  static float dec(const bf16 *s) {
    uint16_t b;
    memcpy(&b, (const void *)s, 2);
    return bf_val(b);
  }
};

// the values a T array can hold (what the CPU reference must be given)
template <typename T> static std::vector<float> rnd(std::vector<float> v) {
  for (float &x : v) x = Ty<T>::round(x);
  return v;
}

// ---- device buffers (freed at the end of each check) ----
static std::vector<void *> g_allocs;
static void dfree_all() {
  for (void *p : g_allocs) OC_CUDA(cudaFree(p));
  g_allocs.clear();
}
template <typename T> static T *dalloc(size_t n) {
  T *p = nullptr;
  OC_CUDA(cudaMalloc((void **)&p, (n ? n : 1) * sizeof(T)));
  g_allocs.push_back(p);
  return p;
}
template <typename T> static T *dup(const std::vector<float> &h) {  // rounds for bf16
  std::vector<T> s(h.size() ? h.size() : 1);
  for (size_t i = 0; i < h.size(); i++) Ty<T>::enc(&s[i], h[i]);
  T *d = dalloc<T>(h.size());
  OC_CUDA(cudaMemcpy(d, s.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
static int32_t *dup_i(const std::vector<int32_t> &h) {
  int32_t *d = dalloc<int32_t>(h.size());
  OC_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  return d;
}
template <typename T> static void dset(T *d, const std::vector<float> &h) {
  std::vector<T> s(h.size() ? h.size() : 1);
  for (size_t i = 0; i < h.size(); i++) Ty<T>::enc(&s[i], h[i]);
  OC_CUDA(cudaMemcpy(d, s.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
}
template <typename T> static T *dnan(size_t n) {  // poisoned output
  return dup<T>(std::vector<float>(n, NAN));
}
template <typename T> static std::vector<float> down(const T *d, size_t n) {
  std::vector<T> s(n ? n : 1);
  OC_CUDA(cudaDeviceSynchronize());
  OC_CUDA(cudaMemcpy(s.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<float> h(n);
  for (size_t i = 0; i < n; i++) h[i] = Ty<T>::dec(&s[i]);
  return h;
}
template <typename T> static std::vector<uint8_t> down_bits(const T *d, size_t n) {
  std::vector<uint8_t> s(n * sizeof(T) + 1);
  OC_CUDA(cudaDeviceSynchronize());
  OC_CUDA(cudaMemcpy(s.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return s;
}

// max |a - ref| / max |ref|; a NaN anywhere in a (an unwritten, poisoned output) gives NaN
static double nerr(const std::vector<float> &a, const std::vector<float> &ref) {
  double md = 0, mr = 1e-30;
  for (size_t i = 0; i < ref.size(); i++) {
    double d = fabs((double)a[i] - (double)ref[i]);
    if (!(d <= md)) md = d;
    if (fabs((double)ref[i]) > mr) mr = fabs((double)ref[i]);
  }
  return md / mr;
}

// ---- the table ----
struct Row {
  std::string op, dtype, shape;
  double err, tol;
};
static std::vector<Row> g_rows;
static cudaStream_t g_stream = nullptr;

// after every comparison: the emulator's race/bounds/init findings count as failures
#if defined(MF_CUDA_EMULATION)
static void backend_check(const char *op, const char *dt, const std::string &shape) {
  std::string what = std::string(op) + " " + dt + " " + shape;
  mf_emu_test::check_emu_clean(what.c_str());
}
#else
static void backend_check(const char *, const char *, const std::string &) {}
#endif

static void record(const char *op, const char *dt, const std::string &shape, double err, double tol) {
  CHECKF(err <= tol, "%s %s %s: normalised error %.3g > %.3g", op, dt, shape.c_str(), err, tol);
  backend_check(op, dt, shape);
  g_rows.push_back({op, dt, shape, err, tol});
}
static void record_exact(const char *op, const char *dt, const std::string &shape, bool same) {
  CHECKF(same, "%s %s %s: not bitwise reproducible", op, dt, shape.c_str());
  backend_check(op, dt, shape);
  g_rows.push_back({op, dt, shape, same ? 0.0 : INFINITY, 0.0});
}
static void skip_row(const char *op, const char *why) {
  SKIP("%s: %s", op, why);
  g_rows.push_back({op, "-", why, NAN, NAN});
}

static void print_table() {
  size_t w0 = 2, w2 = 5;
  for (const Row &r : g_rows) {
    w0 = r.op.size() > w0 ? r.op.size() : w0;
    w2 = r.shape.size() > w2 ? r.shape.size() : w2;
  }
  printf("\n%-*s  %-5s  %-*s  %10s  %8s  %s\n", (int)w0, "op", "dtype", (int)w2, "shape",
         "max nerr", "bound", "result");
  int pass = 0, fail = 0, skip = 0;
  for (const Row &r : g_rows) {
    const char *res;
    if (r.err != r.err && r.tol != r.tol) {
      res = "SKIP";
      skip++;
    } else if (r.err <= r.tol) {
      res = "pass";
      pass++;
    } else {
      res = "FAIL";
      fail++;
    }
    printf("%-*s  %-5s  %-*s  %10.2e  %8.0e  %s\n", (int)w0, r.op.c_str(), r.dtype.c_str(), (int)w2,
           r.shape.c_str(), r.err, r.tol, res);
  }
  printf("%d pass, %d fail, %d skipped\n\n", pass, fail, skip);
}

static std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static std::string fmt(const char *f, ...) {
  char b[160];
  va_list ap;
  va_start(ap, f);
  vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}

// ---------------------------------------------------------------- the checks

template <typename T> static void check_encoder(int B, int Tn, int C, int Vp) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("B=%d T=%d C=%d Vp=%d", B, Tn, C, Vp);
  size_t BT = (size_t)B * Tn;
  std::vector<int32_t> inp(BT);
  for (auto &t : inp) t = randint(0, Vp > 8 ? 8 : Vp);  // few distinct tokens: many repeats
  for (size_t i = 0; i < BT; i += 3) inp[i] = randint(0, Vp);
  auto wte = rnd<T>(randv((size_t)Vp * C, -1, 1)), wpe = rnd<T>(randv((size_t)Tn * C, -1, 1));
  int32_t *d_inp = dup_i(inp);
  T *d_wte = dup<T>(wte), *d_wpe = dup<T>(wpe), *d_out = dnan<T>(BT * C);
  mf_cuda::encoder_forward(d_out, d_inp, d_wte, d_wpe, B, Tn, C, g_stream);
  std::vector<float> ref(BT * C);
  encoder_forward(ref.data(), inp.data(), wte.data(), wpe.data(), B, Tn, C);
  record("encoder_forward", dt, sh, nerr(down(d_out, BT * C), ref), Ty<T>::tol());

  auto dout = rnd<T>(randv(BT * C, -1, 1));
  auto gte = rnd<T>(randv((size_t)Vp * C, -1, 1)), gpe = rnd<T>(randv((size_t)Tn * C, -1, 1));
  T *d_dout = dup<T>(dout), *d_gte = dup<T>(gte), *d_gpe = dup<T>(gpe);
  mf_cuda::encoder_backward(d_gte, d_gpe, d_dout, d_inp, B, Tn, C, g_stream);
  auto rte = gte, rpe = gpe;
  encoder_backward(rte.data(), rpe.data(), dout.data(), inp.data(), B, Tn, C);
  record("encoder_backward dwte", dt, sh, nerr(down(d_gte, rte.size()), rte), Ty<T>::tol());
  record("encoder_backward dwpe", dt, sh, nerr(down(d_gpe, rpe.size()), rpe), Ty<T>::tol());
  auto bits = down_bits(d_gte, rte.size());
  dset(d_gte, gte);
  mf_cuda::encoder_backward(d_gte, (T *)nullptr, d_dout, d_inp, B, Tn, C, g_stream);
  record_exact("encoder_backward dwte (rerun)", dt, sh, bits == down_bits(d_gte, rte.size()));
  dfree_all();
}

// vocabulary-parallel embedding over tp ranks of Vp/tp rows each: every rank's forward and
// backward against the CPU twin, and the sum of the ranks' outputs (what the all-reduce
// makes) bitwise equal to encoder_forward on the whole table
template <typename T> static void check_tp_embed(int B, int Tn, int C, int Vp, int tp) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("B=%d T=%d C=%d Vp=%d tp=%d", B, Tn, C, Vp, tp);
  size_t BT = (size_t)B * Tn;
  int nv = Vp / tp;
  std::vector<int32_t> inp(BT);
  for (auto &t : inp) t = randint(0, Vp);
  auto wte = rnd<T>(randv((size_t)Vp * C, -1, 1)), wpe = rnd<T>(randv((size_t)Tn * C, -1, 1));
  auto dout = rnd<T>(randv(BT * C, -1, 1));
  int32_t *d_inp = dup_i(inp);
  T *d_wte = dup<T>(wte), *d_wpe = dup<T>(wpe), *d_dout = dup<T>(dout), *d_whole = dnan<T>(BT * C);
  mf_cuda::encoder_forward(d_whole, d_inp, d_wte, d_wpe, B, Tn, C, g_stream);
  std::vector<float> sum(BT * C, 0.0f);
  double ef = 0, eb = 0;
  for (int r = 0; r < tp; r++) {
    int v0 = r * nv;
    T *d_out = dnan<T>(BT * C);
    mf_cuda::tp_embed_forward(d_out, d_inp, d_wte + (size_t)v0 * C, d_wpe, B, Tn, C, v0, nv, r == 0, g_stream);
    std::vector<float> ref(BT * C), got = down(d_out, BT * C);
    tp_embed_forward(ref.data(), inp.data(), wte.data() + (size_t)v0 * C, wpe.data(), B, Tn, C, v0, nv, r == 0);
    double e = nerr(got, ref);
    ef = e > ef ? e : ef;
    for (size_t i = 0; i < sum.size(); i++) sum[i] += got[i];
    auto g0 = rnd<T>(randv((size_t)nv * C, -1, 1)), p0 = rnd<T>(randv((size_t)Tn * C, -1, 1));
    T *d_g = dup<T>(g0), *d_p = dup<T>(p0);
    mf_cuda::tp_embed_backward(d_g, d_p, d_dout, d_inp, B, Tn, C, v0, nv, g_stream);
    tp_embed_backward(g0.data(), p0.data(), dout.data(), inp.data(), B, Tn, C, v0, nv);
    double e1 = nerr(down(d_g, g0.size()), g0), e2 = nerr(down(d_p, p0.size()), p0);
    e1 = e1 > e2 ? e1 : e2;
    eb = e1 > eb ? e1 : eb;
  }
  record("tp_embed_forward", dt, sh, ef, Ty<T>::tol());
  record("tp_embed_backward", dt, sh, eb, Ty<T>::tol());
  std::vector<float> whole = down(d_whole, BT * C);
  sum = rnd<T>(sum);  // the all-reduce rounds its sum to T once (the other terms are zeros)
  record_exact("tp_embed_forward sum of ranks == encoder_forward", dt, sh,
               memcmp(whole.data(), sum.data(), whole.size() * sizeof(float)) == 0);
  dfree_all();
}

// vocabulary-parallel cross-entropy, each phase of each rank against the CPU twin, the
// collectives between them done here (max of M, sum of S); in place as tp_ops.c runs it
template <typename T> static void check_tp_xent(int N, int V, int Vp, int tp) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%d V=%d Vp=%d tp=%d", N, V, Vp, tp);
  int Vl = Vp / tp;
  auto logits = rnd<T>(randv((size_t)N * Vp, -4, 4));
  std::vector<int32_t> tg(N);
  for (int i = 0; i < N; i++) tg[i] = (i % 4 == 3) ? -1 : randint(0, V);
  int32_t *d_tg = dup_i(tg);
  std::vector<std::vector<float>> part(tp);  // each rank's columns [N,Vl]
  for (int r = 0; r < tp; r++) {
    part[r].resize((size_t)N * Vl);
    for (int i = 0; i < N; i++)
      memcpy(&part[r][(size_t)i * Vl], &logits[(size_t)i * Vp + (size_t)r * Vl], (size_t)Vl * sizeof(float));
  }
  auto nreal = [&](int r) { int n = V - r * Vl; return n < 0 ? 0 : n > Vl ? Vl : n; };
  // phase 1: max
  std::vector<float> M(N, -INFINITY);
  double em = 0;
  for (int r = 0; r < tp; r++) {
    T *d_x = dup<T>(part[r]);
    float *d_M = dnan<float>(N);
    mf_cuda::tp_xent_max(d_M, d_x, N, Vl, nreal(r), g_stream);
    std::vector<float> ref(N), got = down(d_M, N);
    tp_xent_max(ref.data(), part[r].data(), N, Vl, nreal(r));
    bool same = memcmp(ref.data(), got.data(), N * sizeof(float)) == 0;  // -inf where a rank has no real column
    em = same ? em : 1.0;
    for (int i = 0; i < N; i++) M[i] = ref[i] > M[i] ? ref[i] : M[i];
  }
  record_exact("tp_xent_max", dt, sh, em == 0);
  // phase 2: exp, S (double) summed over ranks
  std::vector<double> S(2 * (size_t)N, 0.0);
  std::vector<std::vector<float>> ex(tp);
  double ee = 0, es = 0;
  float *d_Mg = dup<float>(M);
  for (int r = 0; r < tp; r++) {
    T *d_x = dup<T>(part[r]);
    double *d_S = dalloc<double>(2 * (size_t)N);
    mf_cuda::tp_xent_exp(d_S, d_x, d_x, d_Mg, d_tg, N, Vl, nreal(r), r * Vl, g_stream);
    std::vector<double> sref(2 * (size_t)N), sgot(2 * (size_t)N);
    ex[r].resize((size_t)N * Vl);
    tp_xent_exp(sref.data(), ex[r].data(), part[r].data(), M.data(), tg.data(), N, Vl, nreal(r), r * Vl);
    OC_CUDA(cudaMemcpy(sgot.data(), d_S, sgot.size() * sizeof(double), cudaMemcpyDeviceToHost));
    double e = nerr(down(d_x, ex[r].size()), ex[r]);
    ee = e > ee ? e : ee;
    for (size_t i = 0; i < sref.size(); i++) {
      double d = fabs(sgot[i] - sref[i]) / (fabs(sref[i]) > 1 ? fabs(sref[i]) : 1.0);
      es = d > es ? d : es;
      S[i] += sref[i];
    }
  }
  record("tp_xent_exp ex", dt, sh, ee, Ty<T>::tol());
  record("tp_xent_exp S", dt, sh, es, 1e-5);
  // phase 3: normalise and loss (every rank computes the same losses)
  double *d_Sg = dalloc<double>(S.size());
  OC_CUDA(cudaMemcpy(d_Sg, S.data(), S.size() * sizeof(double), cudaMemcpyHostToDevice));
  double ep = 0, el = 0, eg = 0;
  auto dl = randv(N, 0.5f, 2.0f);
  float *d_dl = dup<float>(dl);
  for (int r = 0; r < tp; r++) {
    auto exr = rnd<T>(ex[r]);
    T *d_p = dup<T>(exr);
    float *d_loss = dnan<float>(N);
    mf_cuda::tp_xent_finish(d_loss, d_p, d_Sg, d_Mg, d_tg, N, Vl, nreal(r), g_stream);
    std::vector<float> lref(N);
    tp_xent_finish(lref.data(), exr.data(), S.data(), M.data(), tg.data(), N, Vl, nreal(r));
    double e1 = nerr(down(d_p, exr.size()), exr), e2 = nerr(down(d_loss, N), lref);
    ep = e1 > ep ? e1 : ep;
    el = e2 > el ? e2 : el;
    // backward, in place over the probabilities
    auto pr = rnd<T>(exr);
    dset(d_p, pr);
    mf_cuda::tp_xent_backward(d_p, d_dl, d_p, d_tg, N, Vl, r * Vl, g_stream);
    std::vector<float> gref(pr.size());
    tp_xent_backward(gref.data(), dl.data(), pr.data(), tg.data(), N, Vl, r * Vl);
    double e3 = nerr(down(d_p, gref.size()), gref);
    eg = e3 > eg ? e3 : eg;
  }
  record("tp_xent_finish probs", dt, sh, ep, Ty<T>::tol());
  record("tp_xent_finish losses", dt, sh, el, 1e-5);
  record("tp_xent_backward (in place)", dt, sh, eg, Ty<T>::tol());
  dfree_all();
}

template <typename T> static void check_layernorm(int N, int C) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%d C=%d", N, C);
  size_t NC = (size_t)N * C;
  auto inp = rnd<T>(randv(NC, -2, 3)), w = rnd<T>(randv(C, 0.5f, 1.5f)),
       b = rnd<T>(randv(C, -0.5f, 0.5f));
  T *d_inp = dup<T>(inp), *d_w = dup<T>(w), *d_b = dup<T>(b), *d_out = dnan<T>(NC);
  float *d_mean = dnan<float>(N), *d_rstd = dnan<float>(N);
  mf_cuda::layernorm_forward(d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, g_stream);
  std::vector<float> out(NC), mean(N), rstd(N);
  layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C);
  record("layernorm_forward out", dt, sh, nerr(down(d_out, NC), out), Ty<T>::tol());
  record("layernorm_forward mean", dt, sh, nerr(down(d_mean, N), mean), 1e-5);
  record("layernorm_forward rstd", dt, sh, nerr(down(d_rstd, N), rstd), 1e-5);

  {  // fused residual + layernorm
    auto a = rnd<T>(randv(NC, -2, 2)), a2 = rnd<T>(randv(NC, -1, 1));
    std::vector<float> s(NC), o2(NC), m2(N), r2(N);
    residual_forward(s.data(), a.data(), a2.data(), NC);
    s = rnd<T>(s);
    layernorm_forward(o2.data(), m2.data(), r2.data(), s.data(), w.data(), b.data(), N, C);
    T *d_a = dup<T>(a), *d_a2 = dup<T>(a2), *d_s = dnan<T>(NC), *d_o2 = dnan<T>(NC);
    float *d_m2 = dnan<float>(N), *d_r2 = dnan<float>(N);
    mf_cuda::residual_layernorm_forward(d_o2, d_s, d_m2, d_r2, d_a, d_a2, d_w, d_b, N, C, g_stream);
    record("residual_layernorm_forward out", dt, sh, nerr(down(d_o2, NC), o2), Ty<T>::tol());
    record("residual_layernorm_forward resid", dt, sh, nerr(down(d_s, NC), s), Ty<T>::tol());
    record("residual_layernorm_forward mean", dt, sh, nerr(down(d_m2, N), m2), 1e-5);
    record("residual_layernorm_forward rstd", dt, sh, nerr(down(d_r2, N), r2), 1e-5);
  }

  auto dout = rnd<T>(randv(NC, -1, 1));
  auto gw = rnd<T>(randv(C, -1, 1)), gb = rnd<T>(randv(C, -1, 1));
  float *d_m = dup<float>(mean), *d_r = dup<float>(rstd);
  T *d_dout = dup<T>(dout), *d_dinp = dnan<T>(NC), *d_gw = dup<T>(gw), *d_gb = dup<T>(gb);
  mf_cuda::layernorm_backward(d_dinp, d_gw, d_gb, d_dout, d_inp, d_w, d_m, d_r, N, C, g_stream);
  std::vector<float> dinp(NC), rw = gw, rb = gb;
  layernorm_backward(dinp.data(), rw.data(), rb.data(), dout.data(), inp.data(), w.data(),
                     mean.data(), rstd.data(), N, C);
  record("layernorm_backward dinp", dt, sh, nerr(down(d_dinp, NC), dinp), Ty<T>::tol());
  record("layernorm_backward dweight", dt, sh, nerr(down(d_gw, C), rw), Ty<T>::tol());
  record("layernorm_backward dbias", dt, sh, nerr(down(d_gb, C), rb), Ty<T>::tol());
  auto bw = down_bits(d_gw, C), bb = down_bits(d_gb, C);
  dset(d_gw, gw);
  dset(d_gb, gb);
  mf_cuda::layernorm_backward((T *)nullptr, d_gw, d_gb, d_dout, d_inp, d_w, d_m, d_r, N, C,
                              g_stream);  // params only, and a rerun
  record_exact("layernorm_backward dweight/dbias (rerun)", dt, sh,
               bw == down_bits(d_gw, C) && bb == down_bits(d_gb, C));
  mf_cuda::layernorm_backward(d_dout, (T *)nullptr, (T *)nullptr, d_dout, d_inp, d_w, d_m, d_r, N,
                              C, g_stream);  // dinp only, in place over dout
  record("layernorm_backward dinp (in place)", dt, sh, nerr(down(d_dout, NC), dinp), Ty<T>::tol());
  dfree_all();
}

template <typename T> static void check_gelu(size_t N) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%zu", N);
  auto x = rnd<T>(randv(N, -6, 6));
  if (N > 2) x[0] = -12.0f, x[1] = 11.0f;
  T *d_x = dup<T>(x), *d_y = dnan<T>(N);
  mf_cuda::gelu_forward(d_y, d_x, N, g_stream);
  std::vector<float> y(N), g(N);
  gelu_forward(y.data(), x.data(), N);
  record("gelu_forward", dt, sh, nerr(down(d_y, N), y), Ty<T>::tol());
  auto dout = rnd<T>(randv(N, -1, 1));
  T *d_dout = dup<T>(dout), *d_dx = dnan<T>(N);
  mf_cuda::gelu_backward(d_dx, d_x, d_dout, N, g_stream);
  gelu_backward(g.data(), x.data(), dout.data(), N);
  record("gelu_backward", dt, sh, nerr(down(d_dx, N), g), Ty<T>::tol());
  dfree_all();
}

template <typename T> static void check_residual(size_t N) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%zu", N);
  auto a = rnd<T>(randv(N, -2, 2)), b = rnd<T>(randv(N, -2, 2));
  T *d_a = dup<T>(a), *d_b = dup<T>(b), *d_o = dnan<T>(N);
  mf_cuda::residual_forward(d_o, d_a, d_b, N, g_stream);
  std::vector<float> o(N);
  residual_forward(o.data(), a.data(), b.data(), N);
  record("residual_forward", dt, sh, nerr(down(d_o, N), o), Ty<T>::tol());
  T *d_da = dnan<T>(N), *d_db = dnan<T>(N);
  mf_cuda::residual_backward(d_da, d_db, d_a, N, g_stream);
  double e = nerr(down(d_da, N), a), e2 = nerr(down(d_db, N), a);
  record("residual_backward", dt, sh, e > e2 ? e : e2, 0.0);
  mf_cuda::accumulate(d_a, d_b, N, g_stream);
  accumulate(a.data(), b.data(), N);
  record("accumulate", dt, sh, nerr(down(d_a, N), a), Ty<T>::tol());
  dfree_all();
}

template <typename T> static void check_attention(int B, int Tn, int C, int NH, double tol) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("B=%d T=%d C=%d NH=%d", B, Tn, C, NH);
  size_t n3 = (size_t)B * Tn * 3 * C, n1 = (size_t)B * Tn * C, nl = (size_t)B * NH * Tn;
  auto qkv = rnd<T>(randv(n3, -1.5f, 1.5f));
  T *d_qkv = dup<T>(qkv), *d_out = dnan<T>(n1);
  float *d_lse = dnan<float>(nl);
  mf_cuda::attention_forward(d_out, d_lse, d_qkv, B, Tn, C, NH, g_stream);
  std::vector<float> out(n1), lse(nl);
  attention_forward(out.data(), lse.data(), qkv.data(), B, Tn, C, NH);
  record("attention_forward out", dt, sh, nerr(down(d_out, n1), out), tol);
  // lse in bf16 comes from sums of bf16-rounded P: ~1e-4 absolute
  record("attention_forward lse", dt, sh, nerr(down(d_lse, nl), lse), sizeof(T) == 4 ? 1e-5 : 1e-3);

  auto dout = rnd<T>(randv(n1, -1, 1));
  auto outr = rnd<T>(out);  // the backward reads the saved out in T
  T *d_dout = dup<T>(dout), *d_outr = dup<T>(outr), *d_dqkv = dnan<T>(n3);
  float *d_lse2 = dup<float>(lse);
  mf_cuda::attention_backward(d_dqkv, d_dout, d_qkv, d_outr, d_lse2, B, Tn, C, NH, g_stream);
  std::vector<float> dqkv(n3);
  attention_backward(dqkv.data(), dout.data(), qkv.data(), outr.data(), lse.data(), B, Tn, C, NH);
  record("attention_backward dqkv", dt, sh, nerr(down(d_dqkv, n3), dqkv), tol);
  dfree_all();
}

template <typename T> static void check_softmax_xent(int N, int V, int Vp) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%d V=%d Vp=%d", N, V, Vp);
  size_t n = (size_t)N * Vp;
  auto logits = rnd<T>(randv(n, -4, 4));
  for (int i = 0; i < N; i++) logits[(size_t)i * Vp + randint(0, V)] = Ty<T>::round(9.0f);
  std::vector<int32_t> tg(N);
  for (int i = 0; i < N; i++) tg[i] = (i % 4 == 3) ? -1 : randint(0, V);
  int32_t *d_tg = dup_i(tg);
  T *d_logits = dup<T>(logits), *d_probs = dnan<T>(n);
  float *d_loss = dnan<float>(N);
  mf_cuda::softmax_xent_forward(d_loss, d_probs, d_logits, d_tg, N, V, Vp, g_stream);
  std::vector<float> loss(N), probs(n);
  softmax_xent_forward(loss.data(), probs.data(), logits.data(), tg.data(), N, V, Vp);
  record("softmax_xent_forward losses", dt, sh, nerr(down(d_loss, N), loss), 1e-5);
  record("softmax_xent_forward probs", dt, sh, nerr(down(d_probs, n), probs), Ty<T>::tol());
  // in place: probs over the logits
  T *d_inpl = dup<T>(logits);
  float *d_loss2 = dnan<float>(N);
  mf_cuda::softmax_xent_forward(d_loss2, d_inpl, d_inpl, d_tg, N, V, Vp, g_stream);
  double e1 = nerr(down(d_loss2, N), loss), e2 = nerr(down(d_inpl, n), probs);
  record("softmax_xent_forward (in place)", dt, sh, e1 > e2 ? e1 : e2, Ty<T>::tol());

  auto dl = randv(N, 0.5f, 2.0f);
  auto probs_r = rnd<T>(probs);
  float *d_dl = dup<float>(dl);
  T *d_pr = dup<T>(probs_r), *d_dlog = dnan<T>(n);
  mf_cuda::softmax_xent_backward(d_dlog, d_dl, d_pr, d_tg, N, V, Vp, g_stream);
  std::vector<float> dlog(n);
  softmax_xent_backward(dlog.data(), dl.data(), probs_r.data(), tg.data(), N, V, Vp);
  record("softmax_xent_backward", dt, sh, nerr(down(d_dlog, n), dlog), Ty<T>::tol());

  // the fused training kernel, in place over the logits
  std::vector<float> dref(n);
  softmax_xent_backward(dref.data(), dl.data(), probs.data(), tg.data(), N, V, Vp);
  float *d_loss3 = dnan<float>(N);
  mf_cuda::softmax_xent_forward_backward(d_loss3, d_logits, d_logits, d_tg, d_dl, N, V, Vp, g_stream);
  record("softmax_xent_forward_backward losses", dt, sh, nerr(down(d_loss3, N), loss), 1e-5);
  record("softmax_xent_forward_backward dlogits", dt, sh, nerr(down(d_logits, n), dref), Ty<T>::tol());
  dfree_all();
}

template <typename T> static void check_adamw(size_t n) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("n=%zu", n);
  auto p = randv(n, -1, 1), m = randv(n, -0.1f, 0.1f), v = randv(n, 0, 0.01f);
  float *d_p = dup<float>(p), *d_m = dup<float>(m), *d_v = dup<float>(v);
  T *d_copy = dnan<T>(n);
  double ep = 0, em = 0, ev = 0;
  for (int t = 1; t <= 3; t++) {
    auto g = rnd<T>(randv(n, -1, 1));
    T *d_g = dup<T>(g);
    mf_cuda::adamw_update(d_p, d_m, d_v, d_copy, d_g, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t,
                          g_stream);
    adamw_update(p.data(), m.data(), v.data(), nullptr, g.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
  }
  ep = nerr(down(d_p, n), p);
  em = nerr(down(d_m, n), m);
  ev = nerr(down(d_v, n), v);
  record("adamw_update params", dt, sh, ep, 1e-5);
  record("adamw_update m", dt, sh, em, 1e-5);
  record("adamw_update v", dt, sh, ev, 1e-5);
  record("adamw_update params copy", dt, sh, nerr(down(d_copy, n), rnd<T>(p)), Ty<T>::tol());
  dfree_all();
}

template <typename T> static void check_sumsq(size_t n) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("n=%zu", n);
  auto x = rnd<T>(randv(n, -2, 2));
  T *d_x = dup<T>(x);
  double *d_s = dalloc<double>(1);
  float *d_norm = dnan<float>(1);
  mf_cuda::sumsq(d_s, d_x, n, g_stream);
  mf_cuda::global_norm(d_norm, d_x, n, g_stream);
  double s = 0, s2 = 0;
  OC_CUDA(cudaMemcpy(&s, d_s, sizeof s, cudaMemcpyDeviceToHost));
  double ref = sumsq(x.data(), n);
  record("sumsq", dt, sh, fabs(s - ref) / (ref > 0 ? ref : 1), 1e-12);
  float nrm = down(d_norm, 1)[0];
  record("global_norm", dt, sh, fabs(nrm - sqrt(ref)) / (ref > 0 ? sqrt(ref) : 1), 1e-6);
  mf_cuda::sumsq(d_s, d_x, n, g_stream);
  OC_CUDA(cudaMemcpy(&s2, d_s, sizeof s2, cudaMemcpyDeviceToHost));
  record_exact("sumsq (rerun)", dt, sh, memcmp(&s, &s2, sizeof s) == 0);
  dfree_all();
}

static void check_cast(size_t n) {
  std::string sh = fmt("n=%zu", n);
  auto x = randv(n, -100, 100);
  if (n > 3) x[0] = 1.0f + 1.0f / 256.0f, x[1] = -0.0f, x[2] = 3.4e38f;  // a tie, -0, overflow to inf
  float *d_x = dup<float>(x), *d_back = dnan<float>(n);
  bf16 *d_b = dnan<bf16>(n);
  mf_cuda::cast(d_b, d_x, n, g_stream);
  auto bits = down_bits(d_b, n);
  bool same = true;
  for (size_t i = 0; i < n; i++) {
    uint16_t want = bf_bits(x[i]), got;
    memcpy(&got, &bits[2 * i], 2);
    same = same && want == got;
  }
  record_exact("cast fp32->bf16 (bitwise RNE)", "bf16", sh, same);
  mf_cuda::cast(d_back, d_b, n, g_stream);
  auto back = down(d_back, n);
  bool exact = true;
  for (size_t i = 0; i < n; i++) exact = exact && back[i] == bf_val(bf_bits(x[i]));
  record_exact("cast bf16->fp32 (exact)", "fp32", sh, exact);
  dfree_all();
}

template <typename T> static void check_bias(int N, int OC) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%d OC=%d", N, OC);
  auto dout = rnd<T>(randv((size_t)N * OC, -1, 1)), db = rnd<T>(randv(OC, -1, 1));
  T *d_dout = dup<T>(dout), *d_db = dup<T>(db);
  mf_cuda::bias_backward(d_db, d_dout, N, OC, g_stream);
  auto ref = db;
  matmul_backward(nullptr, nullptr, ref.data(), dout.data(), nullptr, nullptr, N, 1, OC, 0);
  record("bias_backward", dt, sh, nerr(down(d_db, OC), ref), Ty<T>::tol());
  auto bits = down_bits(d_db, OC);
  dset(d_db, db);
  mf_cuda::bias_backward(d_db, d_dout, N, OC, g_stream);
  record_exact("bias_backward (rerun)", dt, sh, bits == down_bits(d_db, OC));
  // bias_forward: out += bias on every row
  auto x = rnd<T>(randv((size_t)N * OC, -1, 1));
  T *d_x = dup<T>(x), *d_b = dup<T>(db);
  mf_cuda::bias_forward(d_x, d_b, N, OC, g_stream);
  bias_forward(x.data(), db.data(), N, OC);
  record("bias_forward", dt, sh, nerr(down(d_x, x.size()), x), Ty<T>::tol());
  dfree_all();
}

// The SIMT GEMM (matmul_simt.cu: no library, so it runs under the emulator too) against the
// CPU matmul: forward with and without bias, backward with every output, then dinp only and
// dweight only (the skipped outputs untouched) as a bitwise rerun. dbias is checked where
// bias_backward takes the shape (OC % (16/sizeof(T)) == 0), otherwise passed as NULL.
template <typename T> static void check_matmul_simt(int N, int C, int OC, int wt) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%d C=%d OC=%d wt=%d", N, C, OC, wt);
  double tol = Ty<T>::tol();
  size_t nin = (size_t)N * C, nout = (size_t)N * OC, nw = (size_t)C * OC;
  auto inp = rnd<T>(randv(nin, -1, 1)), w = rnd<T>(randv(nw, -0.2f, 0.2f)),
       bias = rnd<T>(randv(OC, -0.5f, 0.5f));
  T *d_inp = dup<T>(inp), *d_w = dup<T>(w), *d_bias = dup<T>(bias), *d_out = dnan<T>(nout);
  std::vector<float> out(nout), out0(nout);
  mf_cuda::matmul_simt_forward(d_out, d_inp, d_w, d_bias, N, C, OC, wt, g_stream);
  matmul_forward(out.data(), inp.data(), w.data(), bias.data(), N, C, OC, wt);
  record("matmul_simt_forward +bias", dt, sh, nerr(down(d_out, nout), out), tol);
  dset(d_out, std::vector<float>(nout, NAN));
  mf_cuda::matmul_simt_forward(d_out, d_inp, d_w, (const T *)nullptr, N, C, OC, wt, g_stream);
  matmul_forward(out0.data(), inp.data(), w.data(), nullptr, N, C, OC, wt);
  record("matmul_simt_forward", dt, sh, nerr(down(d_out, nout), out0), tol);

  const bool with_db = OC % (16 / (int)sizeof(T)) == 0;
  auto dout = rnd<T>(randv(nout, -1, 1)), gw = rnd<T>(randv(nw, -1, 1)), gb = rnd<T>(randv(OC, -1, 1));
  T *d_dout = dup<T>(dout), *d_dinp = dnan<T>(nin), *d_gw = dup<T>(gw);
  T *d_gb = with_db ? dup<T>(gb) : nullptr;
  mf_cuda::matmul_simt_backward(d_dinp, d_gw, d_gb, d_dout, d_inp, d_w, N, C, OC, wt, g_stream);
  std::vector<float> dinp(nin), rw = gw, rb = gb;
  matmul_backward(dinp.data(), rw.data(), with_db ? rb.data() : nullptr, dout.data(), inp.data(),
                  w.data(), N, C, OC, wt);
  record("matmul_simt_backward dinp", dt, sh, nerr(down(d_dinp, nin), dinp), tol);
  record("matmul_simt_backward dweight", dt, sh, nerr(down(d_gw, nw), rw), tol);
  if (with_db) record("matmul_simt_backward dbias", dt, sh, nerr(down(d_gb, OC), rb), tol);
  auto bi = down_bits(d_dinp, nin), bw = down_bits(d_gw, nw);
  dset(d_dinp, std::vector<float>(nin, NAN));
  dset(d_gw, gw);
  mf_cuda::matmul_simt_backward(d_dinp, (T *)nullptr, (T *)nullptr, d_dout, d_inp, d_w, N, C, OC,
                                wt, g_stream);  // dinp only
  mf_cuda::matmul_simt_backward((T *)nullptr, d_gw, (T *)nullptr, d_dout, d_inp, d_w, N, C, OC,
                                wt, g_stream);  // dweight only
  record_exact("matmul_simt_backward dinp/dweight (rerun)", dt, sh,
               bi == down_bits(d_dinp, nin) && bw == down_bits(d_gw, nw));
  dfree_all();
}

#if !defined(MF_CUDA_EMULATION)
// cuBLASLt matmul with its epilogues (GPU only). gelu_tol: cuBLASLt's GELU epilogue has its own
// tanh evaluation, so the fused GELU outputs get a looser fp32 bound than the plain GEMMs.
template <typename T> static void check_matmul(int N, int C, int OC, int wt, double gelu_tol) {
  const char *dt = Ty<T>::name();
  std::string sh = fmt("N=%d C=%d OC=%d wt=%d", N, C, OC, wt);
  double tol = Ty<T>::tol(), gtol = tol > gelu_tol ? tol : gelu_tol;
  size_t nin = (size_t)N * C, nout = (size_t)N * OC, nw = (size_t)C * OC;
  auto inp = rnd<T>(randv(nin, -1, 1)), w = rnd<T>(randv(nw, -0.2f, 0.2f)),
       bias = rnd<T>(randv(OC, -0.5f, 0.5f));
  T *d_inp = dup<T>(inp), *d_w = dup<T>(w), *d_bias = dup<T>(bias), *d_out = dnan<T>(nout);
  std::vector<float> out(nout), pre(nout), act(nout);
  mf_cuda::matmul_forward(d_out, d_inp, d_w, d_bias, N, C, OC, wt, g_stream);
  matmul_forward(out.data(), inp.data(), w.data(), bias.data(), N, C, OC, wt);
  record("matmul_forward +bias", dt, sh, nerr(down(d_out, nout), out), tol);
  {  // the SIMT GEMM (matmul_simt.cu) against cuBLASLt: the same product by other means
    T *d_simt = dnan<T>(nout);
    mf_cuda::matmul_simt_forward(d_simt, d_inp, d_w, d_bias, N, C, OC, wt, g_stream);
    record("matmul_simt_forward +bias vs cuBLASLt", dt, sh,
           nerr(down(d_simt, nout), down(d_out, nout)), tol);
  }
  mf_cuda::matmul_forward(d_out, d_inp, d_w, (const T *)nullptr, N, C, OC, wt, g_stream);
  matmul_forward(pre.data(), inp.data(), w.data(), nullptr, N, C, OC, wt);
  record("matmul_forward", dt, sh, nerr(down(d_out, nout), pre), tol);

  T *d_pre = dnan<T>(nout), *d_act = dnan<T>(nout);
  mf_cuda::matmul_bias_gelu_forward(d_act, d_pre, d_inp, d_w, d_bias, N, C, OC, wt, g_stream);
  auto out_r = rnd<T>(out);  // the saved pre-activation is stored in T
  gelu_forward(act.data(), out_r.data(), nout);
  record("matmul_bias_gelu_forward pre_gelu", dt, sh, nerr(down(d_pre, nout), out), tol);
  record("matmul_bias_gelu_forward out", dt, sh, nerr(down(d_act, nout), act), gtol);

  auto dout = rnd<T>(randv(nout, -1, 1)), gw = rnd<T>(randv(nw, -1, 1)), gb = rnd<T>(randv(OC, -1, 1));
  T *d_dout = dup<T>(dout), *d_dinp = dnan<T>(nin), *d_gw = dup<T>(gw), *d_gb = dup<T>(gb);
  mf_cuda::matmul_backward(d_dinp, d_gw, d_gb, d_dout, d_inp, d_w, N, C, OC, wt, g_stream);
  std::vector<float> dinp(nin), rw = gw, rb = gb;
  matmul_backward(dinp.data(), rw.data(), rb.data(), dout.data(), inp.data(), w.data(), N, C, OC, wt);
  record("matmul_backward dinp", dt, sh, nerr(down(d_dinp, nin), dinp), tol);
  record("matmul_backward dweight", dt, sh, nerr(down(d_gw, nw), rw), tol);
  record("matmul_backward dbias", dt, sh, nerr(down(d_gb, OC), rb), tol);
  {  // the SIMT backward against cuBLASLt's (dbias: the same bias_backward in both)
    T *d_sdinp = dnan<T>(nin), *d_sgw = dup<T>(gw);
    mf_cuda::matmul_simt_backward(d_sdinp, d_sgw, (T *)nullptr, d_dout, d_inp, d_w, N, C, OC, wt,
                                  g_stream);
    record("matmul_simt_backward dinp vs cuBLASLt", dt, sh,
           nerr(down(d_sdinp, nin), down(d_dinp, nin)), tol);
    record("matmul_simt_backward dweight vs cuBLASLt", dt, sh,
           nerr(down(d_sgw, nw), down(d_gw, nw)), tol);
  }

  // dgelu: this matmul's dinp GEMM through the GELU of a layer whose pre-activation is inp-shaped
  auto pre_in = rnd<T>(randv(nin, -3, 3)), gb2 = rnd<T>(randv(C, -1, 1));
  T *d_prein = dup<T>(pre_in), *d_dpre = dnan<T>(nin), *d_gb2 = dup<T>(gb2);
  mf_cuda::matmul_backward_dgelu(d_dpre, d_gb2, d_dout, d_w, d_prein, N, C, OC, wt, g_stream);
  std::vector<float> dpre(nin), rb2 = gb2;
  gelu_backward(dpre.data(), pre_in.data(), dinp.data(), nin);
  matmul_backward(nullptr, nullptr, rb2.data(), dpre.data(), nullptr, nullptr, N, 1, C, 0);
  record("matmul_backward_dgelu dpre", dt, sh, nerr(down(d_dpre, nin), dpre), gtol);
  record("matmul_backward_dgelu dbias", dt, sh, nerr(down(d_gb2, C), rb2), gtol);
  dfree_all();
}
#endif

// ---------------------------------------------------------------- the suites

struct Shapes {
  std::vector<int> enc;    // B, T, C, Vp quadruples
  std::vector<int> ln;     // N, C pairs
  std::vector<size_t> ew;  // elementwise lengths
  std::vector<int> att;    // B, T, C, NH quadruples
  std::vector<int> xent;   // N, V, Vp triples
  std::vector<size_t> opt; // adamw / sumsq / cast lengths
  std::vector<int> bias;   // N, OC pairs
  std::vector<int> tpe;    // B, T, C, Vp, tp quintuples (vocabulary-parallel embedding)
  std::vector<int> tpx;    // N, V, Vp, tp quadruples (vocabulary-parallel cross-entropy)
  std::vector<int> mm;     // N, C, OC, wt quadruples (GPU only)
  // N, C, OC triples for the SIMT matmul, each with wt 0 and 1 (OC = 13: no dbias). The
  // default serves both suites (tests/gpu/test_gpu_ops.cu keeps it).
  std::vector<int> simt = {1, 3, 8, 37, 29, 24, 64, 128, 96, 5, 70, 13};
};

// att_tol: the fp32 attention bound (bf16 uses the bf16 bound)
template <typename T> static void run_dtype(const Shapes &s, double att_tol) {
  for (size_t i = 0; i + 3 < s.enc.size(); i += 4) check_encoder<T>(s.enc[i], s.enc[i + 1], s.enc[i + 2], s.enc[i + 3]);
  for (size_t i = 0; i + 1 < s.ln.size(); i += 2) check_layernorm<T>(s.ln[i], s.ln[i + 1]);
  for (size_t n : s.ew) check_gelu<T>(n);
  for (size_t n : s.ew) check_residual<T>(n);
  for (size_t i = 0; i + 3 < s.att.size(); i += 4)
    check_attention<T>(s.att[i], s.att[i + 1], s.att[i + 2], s.att[i + 3],
                       sizeof(T) == 4 ? att_tol : Ty<T>::tol());
  for (size_t i = 0; i + 2 < s.xent.size(); i += 3) check_softmax_xent<T>(s.xent[i], s.xent[i + 1], s.xent[i + 2]);
  for (size_t n : s.opt) check_adamw<T>(n);
  for (size_t n : s.opt) check_sumsq<T>(n);
  for (size_t i = 0; i + 1 < s.bias.size(); i += 2) check_bias<T>(s.bias[i], s.bias[i + 1]);
  for (size_t i = 0; i + 4 < s.tpe.size(); i += 5)
    check_tp_embed<T>(s.tpe[i], s.tpe[i + 1], s.tpe[i + 2], s.tpe[i + 3], s.tpe[i + 4]);
  for (size_t i = 0; i + 3 < s.tpx.size(); i += 4) check_tp_xent<T>(s.tpx[i], s.tpx[i + 1], s.tpx[i + 2], s.tpx[i + 3]);
  for (size_t i = 0; i + 2 < s.simt.size(); i += 3)
    for (int wt = 0; wt < 2; wt++) check_matmul_simt<T>(s.simt[i], s.simt[i + 1], s.simt[i + 2], wt);
}

}  // namespace opcheck

#endif
