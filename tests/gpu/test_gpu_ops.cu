// Every CUDA op on a real GPU against its CPU twin (kernels/cpu), including the cuBLASLt
// matmul and its epilogues that the emulator cannot run: fresh random inputs of GPT-2-sized
// and ragged shapes, outputs poisoned with NaN, the same normalised-error bounds as the
// emulation suite (tests/cuda_op_checks.h has the checks), one table at the end.
// Run by tests/gpu/run.sh on a lent GPU machine. Without a usable GPU it prints
// "skipped: no GPU" and exits 0 with the skip counted.
#include <time.h>

#include "tests/cuda_op_checks.h"

int main(void) {
  using namespace opcheck;
  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  if (e != cudaSuccess || ndev == 0) {
    (void)cudaGetLastError();
    SKIP("no GPU (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
    printf("skipped: no GPU\n");
    return mf_test_report("test_gpu_ops");
  }
  cudaDeviceProp prop;
  OC_CUDA(cudaGetDeviceProperties(&prop, 0));
  printf("GPU: %s (sm_%d%d, %d SMs, %.0f GiB)\n", prop.name, prop.major, prop.minor,
         prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30));
  time_t t0 = time(nullptr);
  OC_CUDA(cudaStreamCreate(&g_stream));

  Shapes s;  // GPT-2 124M sizes (B*T = 4096 or 8192 rows, C = 768, Vp = 50304) and ragged ones
  s.enc = {4, 1024, 768, 50304, 3, 67, 96, 1000};
  s.ln = {8192, 768, 67, 1600, 5, 48};  // C = 1600: partials above 48 KB of shared memory
  s.ew = {(size_t)8192 * 3072, 1003};
  s.att = {4, 1024, 768, 12, 1, 67, 96, 1, 2, 300, 256, 2, 3, 129, 48, 3};  // hs 64, 96, 128, 16
  s.xent = {256, 50257, 50304, 33, 67, 72};
  s.opt = {(size_t)10000003, 1003};
  s.bias = {8192, 3072, 67, 72};
  s.tpe = {4, 1024, 768, 50304, 2, 1, 67, 96, 64, 4};  // B, T, C, Vp, tp
  s.tpx = {256, 50257, 50304, 2, 13, 20, 64, 2, 3, 67, 72, 4};  // N, V, Vp, tp
  run_dtype<float>(s, 1e-5);
  run_dtype<bf16>(s, 1e-2);
  check_cast((size_t)1 << 24);
  check_cast(1003);

  // cuBLASLt: GPT-2 fc (Conv1D layout), lm head (Linear layout, tied embedding), ragged
  const int mm[] = {1024, 768, 3072, 0, 1024, 3072, 768, 0, 256, 768, 50304, 1, 67, 96, 200, 1};
  for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i += 4) {
    check_matmul<float>(mm[i], mm[i + 1], mm[i + 2], mm[i + 3], 1e-4);
    check_matmul<bf16>(mm[i], mm[i + 1], mm[i + 2], mm[i + 3], 1e-2);
  }
  mf_cuda::matmul_set_tf32(1);  // TF32 operands (10-bit mantissa): bf16-like bound
  {
    const int N = 512, C = 768, OC = 768;
    auto inp = randv((size_t)N * C, -1, 1), w = randv((size_t)C * OC, -0.2f, 0.2f);
    float *d_inp = dup<float>(inp), *d_w = dup<float>(w), *d_out = dnan<float>((size_t)N * OC);
    mf_cuda::matmul_forward(d_out, d_inp, d_w, (const float *)nullptr, N, C, OC, 0, g_stream);
    std::vector<float> ref((size_t)N * OC);
    matmul_forward(ref.data(), inp.data(), w.data(), nullptr, N, C, OC, 0);
    record("matmul_forward (tf32)", "fp32", fmt("N=%d C=%d OC=%d wt=0", N, C, OC),
           nerr(down(d_out, ref.size()), ref), 5e-3);
    dfree_all();
  }
  mf_cuda::matmul_set_tf32(0);
  mf_cuda::matmul_shutdown();

  print_table();
  OC_CUDA(cudaStreamDestroy(g_stream));
  printf("checked in %ld s\n", (long)(time(nullptr) - t0));
  return mf_test_report("test_gpu_ops");
}
