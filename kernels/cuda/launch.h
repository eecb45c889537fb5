/* Every kernel launch in kernels/cuda goes through MF_LAUNCH, so the same .cu sources
 * build under nvcc for the GPU and, with MF_CUDA_EMULATION, as plain C++ against our
 * emulator (kernels/cuda/emu/), which runs them on the CPU with race and bounds checks.
 *   MF_LAUNCH(kernel, grid, block, smem_bytes, stream, args...)
 * Name template kernels with their arguments (MF_LAUNCH(k<T>, ...)) and pass nullptr, not
 * 0/NULL, for null pointer arguments: the emulator takes the kernel's address.
 * After a launch, launchers call MF_CHECK_LAUNCH(): a failed launch (bad configuration, too
 * much shared memory, ...) prints the error with file:line and exits, as a failed CUDA call
 * in a launcher is a programming error that no caller can handle. */
#ifndef MF_CUDA_LAUNCH_H
#define MF_CUDA_LAUNCH_H

#if defined(__CUDACC__) && !defined(MF_CUDA_EMULATION)
#include <cuda_runtime.h>
#define MF_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#else
#include "kernels/cuda/emu/emu.h" /* provides mf_emu_launch and the CUDA names */
#define MF_LAUNCH(kernel, grid, block, smem, stream, ...) \
  mf_emu_launch(#kernel, kernel, (grid), (block), (smem), (stream), ##__VA_ARGS__)
#endif

#include <stdio.h>
#include <stdlib.h>

#define MF_CHECK_LAUNCH() mf_cuda_check_launch_(__FILE__, __LINE__)
static inline void mf_cuda_check_launch_(const char *file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    fprintf(stderr, "%s:%d: CUDA kernel launch failed: %s (%s)\n", file, line,
            cudaGetErrorString(e), cudaGetErrorName(e));
    exit(1);
  }
}

#endif
