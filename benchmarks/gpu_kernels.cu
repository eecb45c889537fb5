// Per-kernel GPU benchmark: every CUDA op of the GPT job at GPT-2 124M training shapes
// (B x T rows, C 768, 12 heads, Vp 50304), fp32 and bf16, timed with CUDA events, with the
// achieved bandwidth and arithmetic rate against this machine's ceilings (ANCHORS.md: device
// copies ~4.3 TB/s, bf16 GEMM ~790 TFLOP/s on the H200; override with --gbs / --tflops).
//   gpu_kernels [--B 8] [--T 1024] [--iters 20] [--gbs 4300] [--tflops 790]
// Before timing, each op is validated against its CPU twin on small shapes of the same kind
// (the checks of tests/cuda_op_checks.h, outputs poisoned); a failed check stops the run.
// GB/s counts the bytes an op must move at least (each input read once, each output written
// once); TFLOP/s counts the matmul and attention FLOPs (causal: half of T x T). Columns are
// fixed, like nccl-tests. Without a GPU it prints "skipped: no GPU" and exits 0.
#include <stdlib.h>
#include <string.h>

#include <functional>

#include "tests/cuda_op_checks.h"

namespace {

using namespace opcheck;

struct Opts {
  int B = 8, T = 1024, iters = 20;
  double gbs = 4300, tflops = 790;
};

// mean time of one call in microseconds, after 3 untimed calls
double time_us(const std::function<void()> &f, int iters) {
  for (int i = 0; i < 3; i++) f();
  cudaEvent_t a, b;
  OC_CUDA(cudaEventCreate(&a));
  OC_CUDA(cudaEventCreate(&b));
  OC_CUDA(cudaEventRecord(a, g_stream));
  for (int i = 0; i < iters; i++) f();
  OC_CUDA(cudaEventRecord(b, g_stream));
  OC_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  OC_CUDA(cudaEventElapsedTime(&ms, a, b));
  OC_CUDA(cudaEventDestroy(a));
  OC_CUDA(cudaEventDestroy(b));
  return 1e3 * ms / iters;
}

void row(const Opts &o, const char *op, const char *dt, const char *shape, double us, double bytes, double flops) {
  double gbs = bytes / (us * 1e-6) / 1e9, tf = flops / (us * 1e-6) / 1e12;
  printf("  %-28s %-5s %-22s %10.1f %9.0f %6.1f%%", op, dt, shape, us, gbs, 100 * gbs / o.gbs);
  if (flops > 0) printf(" %9.1f %6.1f%%\n", tf, 100 * tf / o.tflops);
  else printf(" %9s %7s\n", "-", "-");
}

// device buffer of n random values in [-1, 1) (T storage)
template <typename T> T *rand_dev(size_t n, float scale = 1.0f) {
  std::vector<float> h(n);
  for (size_t i = 0; i < n; i++) h[i] = scale * (2 * urand() - 1);
  return dup<T>(h);
}

template <typename T> void bench(const Opts &o) {
  const char *dt = Ty<T>::name();
  const int B = o.B, Tn = o.T, C = 768, NH = 12, V = 50257, Vp = 50304, N = B * Tn;
  const double s = sizeof(T), NC = (double)N * C;
  char sh[64];
  std::vector<int32_t> ids(N);
  for (auto &v : ids) v = randint(0, V);
  int32_t *d_ids = dup_i(ids);

  T *x = rand_dev<T>((size_t)N * C), *y = rand_dev<T>((size_t)N * C), *out = rand_dev<T>((size_t)N * C);
  T *wte = rand_dev<T>((size_t)Vp * C, 0.02f), *wpe = rand_dev<T>((size_t)Tn * C, 0.02f);
  T *gte = rand_dev<T>((size_t)Vp * C), *gpe = rand_dev<T>((size_t)Tn * C);
  T *w = rand_dev<T>(C), *b = rand_dev<T>(C), *dw = rand_dev<T>(C), *db = rand_dev<T>(C);
  float *mean = dalloc<float>(N), *rstd = dalloc<float>(N);

  snprintf(sh, sizeof sh, "B%d T%d C%d", B, Tn, C);
  row(o, "encoder_forward", dt, sh,
      time_us([&] { mf_cuda::encoder_forward(out, d_ids, wte, wpe, B, Tn, C, g_stream); }, o.iters),
      (2 * NC + (double)Tn * C) * s + 4.0 * N, 0);
  row(o, "encoder_backward", dt, sh,
      time_us([&] { mf_cuda::encoder_backward(gte, gpe, x, d_ids, B, Tn, C, g_stream); }, o.iters),
      (NC + 2 * NC + 2.0 * Tn * C) * s + 4.0 * N, 0);
  snprintf(sh, sizeof sh, "N%d C%d", N, C);
  row(o, "layernorm_forward", dt, sh,
      time_us([&] { mf_cuda::layernorm_forward(out, mean, rstd, x, w, b, N, C, g_stream); }, o.iters),
      2 * NC * s + 8.0 * N, 0);
  row(o, "residual_layernorm_forward", dt, sh,
      time_us([&] { mf_cuda::residual_layernorm_forward(out, y, mean, rstd, x, x, w, b, N, C, g_stream); },
              o.iters),
      4 * NC * s + 8.0 * N, 0);
  row(o, "layernorm_backward", dt, sh,
      time_us([&] { mf_cuda::layernorm_backward(y, dw, db, out, x, w, mean, rstd, N, C, g_stream); }, o.iters),
      3 * NC * s + 8.0 * N, 0);
  row(o, "residual_forward", dt, sh,
      time_us([&] { mf_cuda::residual_forward(out, x, y, (size_t)N * C, g_stream); }, o.iters), 3 * NC * s, 0);

  // the MLP width: 4C
  size_t n4 = (size_t)N * 4 * C;
  T *h = rand_dev<T>(n4), *hg = rand_dev<T>(n4), *pre = rand_dev<T>(n4);
  snprintf(sh, sizeof sh, "n%zu", n4);
  row(o, "gelu_forward", dt, sh, time_us([&] { mf_cuda::gelu_forward(hg, h, n4, g_stream); }, o.iters),
      2.0 * n4 * s, 0);
  row(o, "gelu_backward", dt, sh, time_us([&] { mf_cuda::gelu_backward(hg, h, pre, n4, g_stream); }, o.iters),
      3.0 * n4 * s, 0);

  // matmuls: the fc layer (C -> 4C, bias + GELU epilogue) and the attention qkv (C -> 3C)
  T *wfc = rand_dev<T>((size_t)C * 4 * C, 0.02f), *bfc = rand_dev<T>(4 * C), *gw = rand_dev<T>((size_t)C * 4 * C);
  T *gb = rand_dev<T>(4 * C);
  double mmf = 2.0 * N * C * 4 * C, mmb = ((double)N * C + (double)C * 4 * C + (double)N * 4 * C) * s;
  snprintf(sh, sizeof sh, "N%d C%d OC%d", N, C, 4 * C);
  row(o, "matmul_forward", dt, sh,
      time_us([&] { mf_cuda::matmul_forward(h, x, wfc, bfc, N, C, 4 * C, 0, g_stream); }, o.iters), mmb, mmf);
  row(o, "matmul_bias_gelu_forward", dt, sh,
      time_us([&] { mf_cuda::matmul_bias_gelu_forward(hg, pre, x, wfc, bfc, N, C, 4 * C, 0, g_stream); }, o.iters),
      mmb + (double)n4 * s, mmf);
  row(o, "matmul_backward", dt, sh,
      time_us([&] { mf_cuda::matmul_backward(y, gw, gb, h, x, wfc, N, C, 4 * C, 0, g_stream); }, o.iters),
      2 * mmb + 2.0 * C * 4 * C * s, 2 * mmf);
  snprintf(sh, sizeof sh, "N%d C%d OC%d", N, 4 * C, C);
  row(o, "matmul_backward_dgelu", dt, sh,
      time_us([&] { mf_cuda::matmul_backward_dgelu(hg, gb, x, wfc, pre, N, 4 * C, C, 1, g_stream); }, o.iters),
      mmb + (double)n4 * s, mmf);

  // attention: qkv [B,T,3C]
  T *qkv = rand_dev<T>((size_t)N * 3 * C), *dqkv = rand_dev<T>((size_t)N * 3 * C);
  float *lse = dalloc<float>((size_t)B * NH * Tn);
  double af = 2.0 * B * (double)Tn * Tn * C;  // QK^T and PV, causal half, multiply-add = 2
  snprintf(sh, sizeof sh, "B%d T%d C%d NH%d", B, Tn, C, NH);
  row(o, "attention_forward", dt, sh,
      time_us([&] { mf_cuda::attention_forward(out, lse, qkv, B, Tn, C, NH, g_stream); }, o.iters),
      4 * NC * s + 4.0 * B * NH * Tn, af);
  row(o, "attention_backward", dt, sh,
      time_us([&] { mf_cuda::attention_backward(dqkv, y, qkv, out, lse, B, Tn, C, NH, g_stream); }, o.iters),
      (3 * NC + 5 * NC + 3 * NC) * s + 4.0 * B * NH * Tn, 2.5 * af);

  // the classifier: logits [N, Vp], one read and one write
  T *logits = rand_dev<T>((size_t)N * Vp);
  float *losses = dalloc<float>(N), *dl = dup<float>(std::vector<float>(N, 1.0f / N));
  snprintf(sh, sizeof sh, "N%d V%d Vp%d", N, V, Vp);
  row(o, "softmax_xent_forward_backward", dt, sh,
      time_us([&] { mf_cuda::softmax_xent_forward_backward(losses, logits, logits, d_ids, dl, N, V, Vp, g_stream); },
              o.iters),
      2.0 * N * Vp * s, 0);

  // the optimizer over 124M parameters: fp32 params, m, v read and written, T grads and copy
  size_t np = 124475904;
  float *p = dalloc<float>(np), *m = dalloc<float>(np), *v = dalloc<float>(np);
  OC_CUDA(cudaMemsetAsync(p, 0, np * 4, g_stream));
  OC_CUDA(cudaMemsetAsync(m, 0, np * 4, g_stream));
  OC_CUDA(cudaMemsetAsync(v, 0, np * 4, g_stream));
  T *g = dalloc<T>(np), *pc = dalloc<T>(np);
  OC_CUDA(cudaMemsetAsync(g, 0, np * sizeof(T), g_stream));
  double *d_ss = dalloc<double>(1);
  snprintf(sh, sizeof sh, "n%zu", np);
  row(o, "adamw_update", dt, sh,
      time_us([&] { mf_cuda::adamw_update(p, m, v, pc, g, np, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1, g_stream); },
              o.iters),
      np * (24.0 + 2 * s), 0);
  row(o, "sumsq", dt, sh, time_us([&] { mf_cuda::sumsq(d_ss, g, np, g_stream); }, o.iters), np * s, 0);
  dfree_all();
}

}  // namespace

int main(int argc, char **argv) {
  Opts o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--B")) o.B = atoi(v);
    else if (!strcmp(k, "--T")) o.T = atoi(v);
    else if (!strcmp(k, "--iters")) o.iters = atoi(v);
    else if (!strcmp(k, "--gbs")) o.gbs = atof(v);
    else if (!strcmp(k, "--tflops")) o.tflops = atof(v);
    else {
      fprintf(stderr, "gpu_kernels: unknown option %s (usage: gpu_kernels [--B 8] [--T 1024] [--iters 20] "
              "[--gbs 4300] [--tflops 790])\n", k);
      return 2;
    }
  }
  if (argc % 2 == 0 || o.B < 1 || o.T < 1 || o.T % 64 != 0 || o.iters < 1) {
    fprintf(stderr, "gpu_kernels: options come in pairs; --B >= 1, --T a multiple of 64, --iters >= 1\n");
    return 2;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    (void)cudaGetLastError();
    printf("skipped: no GPU\n");
    return 0;
  }
  cudaDeviceProp prop;
  OC_CUDA(cudaGetDeviceProperties(&prop, 0));
  OC_CUDA(cudaStreamCreate(&opcheck::g_stream));
  printf("# gpu_kernels: %s, GPT-2 124M shapes B %d T %d; ceilings %.0f GB/s, %.0f TFLOP/s\n", prop.name, o.B, o.T,
         o.gbs, o.tflops);
  // validation first: the same kernels against the CPU twins on small shapes
  opcheck::Shapes s;
  s.enc = {2, 64, 768, 1000};
  s.ln = {128, 768};
  s.ew = {4099};
  s.att = {1, 130, 768, 12};
  s.xent = {16, 1000, 1024};
  s.opt = {4099};
  s.bias = {130, 768};
  opcheck::run_dtype<float>(s, 1e-5);
  opcheck::run_dtype<opcheck::bf16>(s, 1e-2);
  opcheck::check_matmul<float>(128, 768, 3072, 0, 1e-4);
  opcheck::check_matmul<opcheck::bf16>(128, 768, 3072, 0, 1e-2);
  int failed = 0;
  for (const auto &r : opcheck::g_rows)
    if (!(r.err <= r.tol)) failed++;
  printf("# validation: %zu checks against the CPU twins, %d failed\n", opcheck::g_rows.size(), failed);
  if (failed) {
    opcheck::print_table();
    return 1;
  }
  printf("  %-28s %-5s %-22s %10s %9s %7s %9s %7s\n", "op", "type", "shape", "time(us)", "GB/s", "%bw", "TFLOP/s",
         "%peak");
  bench<float>(o);
  bench<opcheck::bf16>(o);
  mf_cuda::matmul_shutdown();
  OC_CUDA(cudaStreamDestroy(opcheck::g_stream));
  return 0;
}
