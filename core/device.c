#include "core/device.h"

#include <stdio.h>
#include <string.h>

#include "core/threads.h"
#include "kernels/backend.h"
#ifdef MF_HAVE_CUDA
#include "kernels/cuda/device.h"
#endif

int mf_device_gpu_count(char *why, int n) {
#ifdef MF_HAVE_CUDA
  return mf_cuda_device_count(why, n);
#else
  snprintf(why, (size_t)n, "mforge was built without CUDA");
  return 0;
#endif
}

mf_status mf_device_select(const mf_config *cfg, const mf_backend **be, char *desc, int n) {
  char why[256] = "";
  int want_cuda = strcmp(cfg->device, "cuda") == 0;
  int gpus = strcmp(cfg->device, "cpu") == 0 ? 0 : mf_device_gpu_count(why, sizeof why);
  if (want_cuda) {
    if (gpus == 0)
      return MF_ERR(MF_ERR_CONFIG, "device: cuda was asked for but no GPU is usable (%s); set device: cpu or auto", why);
    /* the CUDA kernels of the GPT job come with the CUDA backend issue */
    return MF_ERR(MF_ERR_CONFIG, "device: cuda: the CUDA backend is not built into this version yet; set device: cpu");
  }
  if (strcmp(cfg->precision, "fp32") != 0)
    return MF_ERR(MF_ERR_CONFIG, "precision: %s needs device: cuda; the CPU backend trains in fp32", cfg->precision);
  *be = &mf_backend_cpu;
  snprintf(desc, (size_t)n, "cpu (%d threads%s)", mf_get_threads(),
           gpus > 0 ? "; a GPU is present but the CUDA backend is not in this version" : "");
  return MF_OK;
}
