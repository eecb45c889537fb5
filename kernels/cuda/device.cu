// Device discovery for `device: auto|cuda` and device memory figures for the benchmarks.
#include <cuda_runtime.h>
#include <stdio.h>

#include "kernels/cuda/device.h"

// ---- launchers / host helpers ----

extern "C" int mf_cuda_device_count(char *why, int why_len) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) snprintf(why, (size_t)why_len, "%s", cudaGetErrorString(e));
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

extern "C" int mf_cuda_device_name(int dev, char *name, int len) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return -1;
  snprintf(name, (size_t)len, "%s (sm_%d%d, %.0f GiB)", prop.name, prop.major, prop.minor,
           (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  return 0;
}

extern "C" int mf_cuda_set_device(int dev, char *why, int why_len) {
  cudaError_t e = cudaSetDevice(dev);
  if (e == cudaSuccess) return 0;
  if (why) snprintf(why, (size_t)why_len, "cudaSetDevice(%d): %s", dev, cudaGetErrorString(e));
  (void)cudaGetLastError();
  return -1;
}

extern "C" size_t mf_cuda_mem_used(void) {
  size_t free_b = 0, total = 0;
  if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return total - free_b;
}
