/* The CUDA backend tables (kernels/cuda/backend_cuda.cu, fp32 and bf16) on the emulator, for
 * the entries that are more than one launcher: matmul_gelu (the SIMT GEMM and gelu here;
 * cuBLASLt's GELU epilogue on a GPU), gelu_matmul (gelu then the GEMM; backward the GEMM then
 * gelu_backward in place here, cuBLASLt's DGELU epilogue on a GPU) and
 * residual_layernorm_forward, each against its CPU
 * twin, and bitwise against the unfused entries the tape uses to recompute its outputs
 * (gelu_forward from pre_gelu, layernorm_forward from the sum), which is what keeps
 * `recompute` exact on the device. Ragged shapes: N = 1, 37; C = 48, 96 (ln), OC = 24, 13.
 * And set_tf32 (config tf32): with it on, the fp32 table's matmuls equal the CPU's on operands
 * rounded to TF32 (10 mantissa bits) and miss the unrounded result by TF32's error; off
 * again, they are fp32 again. */
#include <cstring>

#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/cuda_emu_test.h"

using namespace mf_emu_test;

namespace {

/* float * as the table takes it (the bf16 table reads and writes T through it) */
template <class T> float *F(const DevBuf<T> &b) { return reinterpret_cast<float *>(b.ptr()); }

template <class T> bool same_bits(const DevBuf<T> &a, const DevBuf<T> &b) {
  std::vector<T> x = a.download(), y = b.download();
  return x.size() == y.size() && memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0;
}

template <class T> void check_matmul_gelu(const mf_backend *be, int N, int C, int OC, int wt, uint64_t seed) {
  char what[160];
  snprintf(what, sizeof what, "%s matmul_gelu N=%d C=%d OC=%d wt=%d", be->name, N, C, OC, wt);
  size_t nin = (size_t)N * C, nw = (size_t)C * OC, nout = (size_t)N * OC;
  auto inp = rounded<T>(rand_floats(nin, -1, 1, seed)), w = rounded<T>(rand_floats(nw, -0.3f, 0.3f, seed + 1));
  auto bias = rounded<T>(rand_floats(OC, -0.5f, 0.5f, seed + 2));
  DevBuf<T> d_inp(inp, "inp"), d_w(w, "weight"), d_b(bias, "bias"), d_out(nout, "out"), d_pre(nout, "pre_gelu");
  d_out.poison();
  d_pre.poison();
  be->matmul_gelu_forward(F(d_out), F(d_pre), F(d_inp), F(d_w), F(d_b), N, C, OC, wt);
  std::vector<float> out(nout), pre(nout);
  matmul_gelu_forward(out.data(), pre.data(), inp.data(), w.data(), bias.data(), N, C, OC, wt);
  cudaDeviceSynchronize();
  check_close(what, d_pre.download_floats(), pre, tol<T>(1e-5, 1e-2));
  check_close(what, d_out.download_floats(), out, tol<T>(1e-5, 1e-2));
  DevBuf<T> d_re(nout, "recomputed");
  d_re.poison();
  be->gelu_forward(F(d_re), F(d_pre), nout); /* mf_op_recompute's way */
  cudaDeviceSynchronize();
  CHECKF(same_bits(d_re, d_out), "%s: gelu_forward(pre_gelu) is not the forward's output", what);

  /* backward: dinp written, dweight/dbias accumulated (dbias where bias_backward takes OC) */
  const bool with_db = OC % (16 / (int)sizeof(T)) == 0;
  auto dout = rounded<T>(rand_floats(nout, -1, 1, seed + 3)), gw = rounded<T>(rand_floats(nw, -1, 1, seed + 4));
  auto gb = rounded<T>(rand_floats(OC, -1, 1, seed + 5));
  DevBuf<T> d_dout(dout, "dout"), d_dinp(nin, "dinp"), d_gw(gw, "dweight"), d_gb(gb, "dbias"), d_dpre(nout, "dpre");
  d_dinp.poison();
  d_dpre.poison();
  be->matmul_gelu_backward(F(d_dinp), F(d_gw), with_db ? F(d_gb) : nullptr, F(d_dpre), F(d_dout), F(d_inp), F(d_w),
                           F(d_pre), N, C, OC, wt);
  /* the twin on the pre_gelu the device saved (bf16: rounded as stored) */
  std::vector<float> pre_dev = d_pre.download_floats(), dinp(nin), rw = gw, rb = gb, dpre(nout);
  matmul_gelu_backward(dinp.data(), rw.data(), with_db ? rb.data() : nullptr, dpre.data(), dout.data(), inp.data(),
                       w.data(), pre_dev.data(), N, C, OC, wt);
  cudaDeviceSynchronize();
  check_close(what, d_dinp.download_floats(), dinp, tol<T>(1e-5, 1e-2));
  check_close(what, d_gw.download_floats(), rw, tol<T>(1e-5, 1e-2));
  if (with_db) check_close(what, d_gb.download_floats(), rb, tol<T>(1e-5, 1e-2));
  check_emu_clean(what);
}

template <class T> void check_gelu_matmul(const mf_backend *be, int N, int C, int OC, int wt, bool bias,
                                          uint64_t seed) {
  char what[160];
  snprintf(what, sizeof what, "%s gelu_matmul N=%d C=%d OC=%d wt=%d%s", be->name, N, C, OC, wt, bias ? "" : " no bias");
  size_t nin = (size_t)N * C, nw = (size_t)C * OC, nout = (size_t)N * OC;
  auto inp = rounded<T>(rand_floats(nin, -3, 3, seed)), w = rounded<T>(rand_floats(nw, -0.3f, 0.3f, seed + 1));
  auto b = rounded<T>(rand_floats(OC, -0.5f, 0.5f, seed + 2));
  DevBuf<T> d_inp(inp, "inp"), d_w(w, "weight"), d_b(b, "bias"), d_out(nout, "out"), d_act(nin, "act");
  d_out.poison();
  d_act.poison();
  be->gelu_matmul_forward(F(d_out), F(d_act), F(d_inp), F(d_w), bias ? F(d_b) : nullptr, N, C, OC, wt);
  std::vector<float> out(nout), act(nin);
  gelu_matmul_forward(out.data(), act.data(), inp.data(), w.data(), bias ? b.data() : nullptr, N, C, OC, wt);
  cudaDeviceSynchronize();
  check_close(what, d_act.download_floats(), act, tol<T>(1e-6, 1e-2));
  check_close(what, d_out.download_floats(), out, tol<T>(1e-5, 1e-2));
  /* the tape's recompute makes act again with gelu_forward: the same bits */
  DevBuf<T> d_re(nin, "recomputed");
  d_re.poison();
  be->gelu_forward(F(d_re), F(d_inp), nin);
  cudaDeviceSynchronize();
  CHECKF(same_bits(d_re, d_act), "%s: gelu_forward(inp) is not the forward's act", what);

  /* backward: dinp written, dweight/dbias accumulated (dbias where bias_backward takes OC) */
  const bool with_db = bias && OC % (16 / (int)sizeof(T)) == 0;
  auto dout = rounded<T>(rand_floats(nout, -1, 1, seed + 3)), gw = rounded<T>(rand_floats(nw, -1, 1, seed + 4));
  auto gb = rounded<T>(rand_floats(OC, -1, 1, seed + 5));
  DevBuf<T> d_dout(dout, "dout"), d_dinp(nin, "dinp"), d_gw(gw, "dweight"), d_gb(gb, "dbias");
  d_dinp.poison();
  be->gelu_matmul_backward(F(d_dinp), F(d_gw), with_db ? F(d_gb) : nullptr, F(d_dout), F(d_inp), F(d_w), F(d_act),
                           N, C, OC, wt);
  std::vector<float> act_dev = d_act.download_floats(), dinp(nin), rw = gw, rb = gb;
  gelu_matmul_backward(dinp.data(), rw.data(), with_db ? rb.data() : nullptr, dout.data(), inp.data(), w.data(),
                       act_dev.data(), N, C, OC, wt);
  cudaDeviceSynchronize();
  check_close(what, d_dinp.download_floats(), dinp, tol<T>(1e-5, 1e-2));
  check_close(what, d_gw.download_floats(), rw, tol<T>(1e-5, 1e-2));
  if (with_db) check_close(what, d_gb.download_floats(), rb, tol<T>(1e-5, 1e-2));
  check_emu_clean(what);
}

template <class T> void check_residual_layernorm(const mf_backend *be, int N, int C, uint64_t seed) {
  char what[160];
  snprintf(what, sizeof what, "%s residual_layernorm_forward N=%d C=%d", be->name, N, C);
  size_t nc = (size_t)N * C;
  auto a = rounded<T>(rand_floats(nc, -2, 2, seed)), b = rounded<T>(rand_floats(nc, -1, 1, seed + 1));
  auto w = rounded<T>(rand_floats(C, 0.5f, 1.5f, seed + 2)), bias = rounded<T>(rand_floats(C, -0.5f, 0.5f, seed + 3));
  DevBuf<T> d_a(a, "a"), d_b(b, "b"), d_w(w, "weight"), d_bias(bias, "bias"), d_out(nc, "out"), d_s(nc, "resid");
  DevBuf<float> d_m(N, "mean"), d_r(N, "rstd");
  d_out.poison();
  d_s.poison();
  d_m.poison();
  d_r.poison();
  be->residual_layernorm_forward(F(d_out), F(d_s), d_m, d_r, F(d_a), F(d_b), F(d_w), F(d_bias), N, C);
  std::vector<float> s(nc), out(nc), m(N), r(N);
  residual_forward(s.data(), a.data(), b.data(), nc);
  s = rounded<T>(s); /* the device stores the sum in T and normalises what it stored */
  layernorm_forward(out.data(), m.data(), r.data(), s.data(), w.data(), bias.data(), N, C);
  cudaDeviceSynchronize();
  check_close(what, d_s.download_floats(), s, tol<T>(1e-6, 1e-2));
  check_close(what, d_out.download_floats(), out, tol<T>(1e-5, 1e-2));
  check_close(what, d_m.download_floats(), m, 1e-5);
  check_close(what, d_r.download_floats(), r, 1e-5);
  /* the unfused entries: the same sum, and the layernorm the tape recomputes from it */
  DevBuf<T> d_s2(nc, "resid2"), d_out2(nc, "out2");
  DevBuf<float> d_m2(N, "mean2"), d_r2(N, "rstd2");
  d_s2.poison();
  d_out2.poison();
  be->residual_forward(F(d_s2), F(d_a), F(d_b), nc);
  be->layernorm_forward(F(d_out2), d_m2, d_r2, F(d_s), F(d_w), F(d_bias), N, C);
  cudaDeviceSynchronize();
  CHECKF(same_bits(d_s2, d_s) && same_bits(d_out2, d_out) && same_bits(d_m2, d_m) && same_bits(d_r2, d_r),
         "%s: not bitwise residual_forward + layernorm_forward", what);
  check_emu_clean(what);
}

/* what TF32 tensor cores read of an fp32 operand: the mantissa rounded to 10 bits */
std::vector<float> tf32(const std::vector<float> &x) {
  std::vector<float> y(x);
  for (float &v : y) {
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    memcpy(&v, &u, 4);
  }
  return y;
}

/* matmul forward and backward through the fp32 table with set_tf32(1), against the CPU on
 * TF32-rounded operands (each product's two operands rounded, as the tensor cores do); then
 * set_tf32(0) gives the fp32 result again */
void check_tf32(const mf_backend *be, int N, int C, int OC, int wt, uint64_t seed) {
  char what[160];
  snprintf(what, sizeof what, "%s tf32 matmul N=%d C=%d OC=%d wt=%d", be->name, N, C, OC, wt);
  CHECKF(be->set_tf32 != nullptr, "%s: the table has no set_tf32", what);
  if (!be->set_tf32) return;
  size_t nin = (size_t)N * C, nw = (size_t)C * OC, nout = (size_t)N * OC;
  auto inp = rand_floats(nin, -1, 1, seed), w = rand_floats(nw, -0.3f, 0.3f, seed + 1);
  auto dout = rand_floats(nout, -1, 1, seed + 2);
  DevBuf<float> d_inp(inp, "inp"), d_w(w, "weight"), d_out(nout, "out"), d_dout(dout, "dout");
  DevBuf<float> d_dinp(nin, "dinp"), d_dw(std::vector<float>(nw, 0.0f), "dweight");
  d_out.poison();
  d_dinp.poison();
  be->set_tf32(1);
  be->matmul_forward(d_out, d_inp, d_w, nullptr, N, C, OC, wt);
  be->matmul_backward(d_dinp, d_dw, nullptr, d_dout, d_inp, d_w, N, C, OC, wt);
  cudaDeviceSynchronize();
  std::vector<float> out(nout), exact(nout), dinp(nin), dw(nw, 0.0f);
  matmul_forward(out.data(), tf32(inp).data(), tf32(w).data(), nullptr, N, C, OC, wt);
  matmul_forward(exact.data(), inp.data(), w.data(), nullptr, N, C, OC, wt);
  matmul_backward(dinp.data(), dw.data(), nullptr, tf32(dout).data(), tf32(inp).data(), tf32(w).data(), N, C, OC,
                  wt);
  std::vector<float> got = d_out.download_floats();
  check_close(what, got, out, 1e-6);
  check_close(what, d_dinp.download_floats(), dinp, 1e-6);
  check_close(what, d_dw.download_floats(), dw, 1e-6);
  /* rounding happened: TF32's error (2^-11 per operand) is far above fp32's */
  Diff e = compare(got, exact);
  CHECKF(e.nerr > 2e-5 && e.nerr < 3e-3, "%s: TF32 vs exact fp32: normalised error %.2e, want 2e-5 .. 3e-3", what,
         e.nerr);
  be->set_tf32(0);
  d_out.poison();
  be->matmul_forward(d_out, d_inp, d_w, nullptr, N, C, OC, wt);
  cudaDeviceSynchronize();
  check_close(what, d_out.download_floats(), exact, 1e-6);
  check_emu_clean(what);
}

template <class T> void run(const mf_backend *be) {
  const int mm[][3] = {{1, 3, 24}, {37, 29, 24}, {5, 70, 13}};
  uint64_t seed = 100;
  for (auto &s : mm)
    for (int wt = 0; wt < 2; wt++) {
      check_matmul_gelu<T>(be, s[0], s[1], s[2], wt, seed += 10);
      check_gelu_matmul<T>(be, s[0], s[2], s[1], wt, wt == 0, seed += 10); /* C = 24, 13: the DGELU aux ld */
    }
  const int ln[][2] = {{1, 48}, {37, 96}};
  for (auto &s : ln) check_residual_layernorm<T>(be, s[0], s[1], seed += 10);
}

}  // namespace

int main() {
  for (uint64_t s : schedule_seeds()) {
    set_schedule_seed(s);
    run<float>(&mf_backend_cuda);
    run<__nv_bfloat16>(&mf_backend_cuda_bf16);
    check_tf32(&mf_backend_cuda, 37, 96, 40, 0, 500);
    check_tf32(&mf_backend_cuda, 19, 70, 13, 1, 510);
  }
  return report("test_cuda_emu_backend");
}
