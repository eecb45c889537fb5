// The CUDA kernels (kernels/cuda/*.cu) run on the CPU through the emulator (MF_CUDA_EMULATION:
// seeded random thread order, race / bounds / uninitialised-read checks), each against its
// CPU twin from kernels/cpu, forward and backward, fp32 and bf16, on small ragged shapes
// (T = 1, 5, 67; C = 48, 96; NH = 1, 3, so head sizes 16, 32, 48, 96; Vp not a multiple of
// 32). The checks themselves are in tests/cuda_op_checks.h, shared with the GPU run
// (tests/gpu/test_gpu_ops.cu). matmul.cu is cuBLASLt and cannot run here: it is listed as
// skipped, and checked by tests/gpu/run.sh on a GPU machine. Its library-free twin
// matmul_simt.cu runs here (Shapes::simt, the default: N = 1, 37, 64, 5; C = 3, 29, 128, 70;
// OC = 8, 24, 96, 13; wt 0 and 1).
// Any emulator report (race, out of bounds, uninitialised read) fails the check it occurs in.
#include <time.h>

#include "tests/cuda_op_checks.h"

int main(void) {
  using namespace opcheck;
  time_t t0 = time(nullptr);
  OC_CUDA(cudaStreamCreate(&g_stream));
  Shapes s;
  s.enc = {1, 1, 48, 40, 2, 5, 96, 72, 1, 67, 48, 64};  // B, T, C, Vp
  s.ln = {1, 48, 5, 96, 67, 48, 3, 1600};  // N, C (C = 1600: partials past 48 KB of smem)
  s.ew = {1, 7, 1003};
  // B, T, C, NH: head sizes 16, 48, 32, 96, 128 (the hs <= 64 and <= 128 kernels); T = 130 has
  // three query/key tiles (a full off-diagonal tile on both sides) and a 2-row tail
  s.att = {1, 1, 48, 3, 2, 5, 48, 1, 1, 67, 96, 3, 1, 67, 96, 1, 1, 130, 48, 3, 1, 5, 128, 1};
  // N, V, Vp; Vp = 120000: a row too large for shared memory (the uncached write sweep)
  s.xent = {1, 67, 72, 5, 50, 56, 13, 67, 72, 2, 119993, 120000};
  s.opt = {1, 1003, 4099};
  s.bias = {1, 48, 67, 96, 130, 72};  // N, OC
  s.tpe = {2, 5, 48, 40, 2, 1, 67, 96, 64, 4};  // B, T, C, Vp, tp
  // N, V, Vp, tp: a padded last slice; a rank with no real column (V = 20, Vl = 32); 4 ranks
  s.tpx = {5, 50, 56, 2, 13, 20, 64, 2, 3, 67, 72, 4};
  for (uint64_t seed : mf_emu_test::schedule_seeds()) {  // each case under several thread orders
    mf_emu_test::set_schedule_seed(seed);
    printf("thread-order seed %llu\n", (unsigned long long)seed);
    run_dtype<float>(s, 1e-5);
    run_dtype<bf16>(s, 1e-2);
    check_cast(1003);
    skip_row("matmul (cuBLASLt: forward +bias, +bias+gelu, backward, dgelu)",
             "cuBLASLt: GPU-only check in tests/gpu");
    print_table();
    g_rows.clear();
  }
  OC_CUDA(cudaStreamDestroy(g_stream));
  printf("emulated in %ld s\n", (long)(time(nullptr) - t0));
  return OC_REPORT("test_cuda_emu_kernels");
}
