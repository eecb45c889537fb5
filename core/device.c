#include "core/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threads.h"
#include "kernels/backend.h"
#ifdef MF_HAVE_CUDA
#include "kernels/cuda/device.h"
#endif
#if defined(MF_HAVE_CUDA) && !defined(MF_CUDA_LINKED)
#include <dlfcn.h>
#include <unistd.h>
#endif

int mf_device_gpu_count(char *why, int n) {
#ifdef MF_HAVE_CUDA
  return mf_cuda_device_count(why, n);
#else
  snprintf(why, (size_t)n, "mforge was built without CUDA");
  return 0;
#endif
}

mf_status mf_device_bind(int local_rank, int *dev) {
  char why[256] = "";
  int n = mf_device_gpu_count(why, sizeof why);
  if (n <= 0) return MF_ERR(MF_ERR_CONFIG, "no GPU to bind this rank to (%s); set device: cpu", why);
  *dev = local_rank % n;
#ifdef MF_HAVE_CUDA
  if (mf_cuda_set_device(*dev, why, sizeof why) != 0) return MF_ERR(MF_ERR_BACKEND, "%s", why);
#endif
  return MF_OK;
}

size_t mf_device_mem_used(void) {
#ifdef MF_HAVE_CUDA
  return mf_cuda_mem_used();
#else
  return 0;
#endif
}

#if defined(MF_HAVE_CUDA) && !defined(MF_CUDA_LINKED)
/* The CUDA backend (kernels/cuda and cuBLASLt) is a plugin, libmforge_cuda.so, opened by
 * the first run that asks for it: a CPU run then never maps cuBLASLt, whose loading alone
 * costs ~200 MB of resident memory. Looked for in $MF_CUDA_PLUGIN, next to the executable,
 * then in the build tree it came from. */
const mf_backend *mf_device_cuda_backend(int bf16, char *why, int n) {
  static void *h;
  static char err[512];
  if (h || err[0]) {
    if (!h) snprintf(why, (size_t)n, "%s", err);
    return h ? dlsym(h, bf16 ? "mf_backend_cuda_bf16" : "mf_backend_cuda") : NULL;
  }
  char exe_dir[4096] = "", cand[3][4200];
  ssize_t k = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
  if (k > 0) {
    exe_dir[k] = 0;
    char *slash = strrchr(exe_dir, '/');
    if (slash) *slash = 0;
  }
  const char *env = getenv("MF_CUDA_PLUGIN");
  snprintf(cand[0], sizeof cand[0], "%s", env ? env : "");
  snprintf(cand[1], sizeof cand[1], "%s/libmforge_cuda.so", exe_dir);
  snprintf(cand[2], sizeof cand[2], "%s", MF_CUDA_PLUGIN_PATH);
  for (int i = 0; i < 3 && !h; i++) {
    if (!cand[i][0] || access(cand[i], R_OK) != 0) continue;
    h = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(err, sizeof err, "cannot load the CUDA backend %s: %s", cand[i], dlerror());
  }
  const mf_backend *be = h ? dlsym(h, bf16 ? "mf_backend_cuda_bf16" : "mf_backend_cuda") : NULL;
  if (h && !be) {
    snprintf(err, sizeof err, "the CUDA backend plugin lacks its tables (a stale build?)");
    h = NULL;
  }
  if (!h && !err[0])
    snprintf(err, sizeof err, "the CUDA backend plugin libmforge_cuda.so is not next to the executable (%s) "
             "nor at %s; set MF_CUDA_PLUGIN to its path", exe_dir, MF_CUDA_PLUGIN_PATH);
  if (!be) snprintf(why, (size_t)n, "%s", err);
  return be;
}
#elif defined(MF_HAVE_CUDA)
/* linked in (the emulation build's mforge_emu) */
const mf_backend *mf_device_cuda_backend(int bf16, char *why, int n) {
  (void)why;
  (void)n;
  return bf16 ? &mf_backend_cuda_bf16 : &mf_backend_cuda;
}
#else
const mf_backend *mf_device_cuda_backend(int bf16, char *why, int n) {
  (void)bf16;
  snprintf(why, (size_t)n, "mforge was built without CUDA");
  return NULL;
}
#endif

/* what the CUDA kernels need of the model's shape (their launchers abort otherwise) */
static mf_status cuda_shape_ok(const mf_config *cfg) {
  const mf_model_cfg *m = &cfg->model;
  int hs = m->n_head > 0 ? m->n_embd / m->n_head : 0;
  if (m->n_embd % 4 != 0 || hs % 16 != 0 || hs > 128)
    return MF_ERR(MF_ERR_CONFIG, "device: cuda needs model.n_embd / model.n_head (the head size, here %d) to be a "
                  "multiple of 16 and at most 128; change model.n_head or set device: cpu", hs);
  return MF_OK;
}

mf_status mf_device_select(const mf_config *cfg, const mf_backend **be, char *desc, int n) {
  char why[256] = "";
  int want_cuda = strcmp(cfg->device, "cuda") == 0, is_auto = strcmp(cfg->device, "auto") == 0;
  int gpus = strcmp(cfg->device, "cpu") == 0 ? 0 : mf_device_gpu_count(why, sizeof why);
  if (want_cuda && gpus == 0)
    return MF_ERR(MF_ERR_CONFIG, "device: cuda was asked for but no GPU is usable (%s); set device: cpu or auto", why);
#ifdef MF_HAVE_CUDA
  if (want_cuda || (is_auto && gpus > 0 && cuda_shape_ok(cfg) == MF_OK)) {
    MF_TRY(cuda_shape_ok(cfg));
    int bf16 = strcmp(cfg->precision, "bf16") == 0;
    const mf_backend *cb = mf_device_cuda_backend(bf16, why, sizeof why);
    if (!cb) return MF_ERR(MF_ERR_CONFIG, "device: %s: %s; or set device: cpu", cfg->device, why);
    char name[200] = "GPU 0";
    mf_cuda_device_name(0, name, sizeof name);
    *be = cb;
    /* bf16 GEMMs are bf16 whatever tf32 says; the switch still covers any fp32 one */
    if (cb->set_tf32) cb->set_tf32(cfg->tf32);
    snprintf(desc, (size_t)n, "cuda: %s, %s", name,
             bf16 ? "bf16 (fp32 master weights and AdamW state)" : cfg->tf32 ? "fp32, TF32 matmuls" : "fp32");
    return MF_OK;
  }
#else
  (void)is_auto;
  (void)cuda_shape_ok;
#endif
  if (strcmp(cfg->precision, "fp32") != 0)
    return MF_ERR(MF_ERR_CONFIG, "precision: %s needs device: cuda; the CPU backend trains in fp32", cfg->precision);
  /* as cuda_graph: the same config runs on either when device: auto chose the CPU */
  if (cfg->tf32 && !is_auto)
    return MF_ERR(MF_ERR_CONFIG, "tf32: true needs device: cuda (the CPU backend has no TF32 matmuls); set tf32: "
                  "false");
  *be = &mf_backend_cpu;
  snprintf(desc, (size_t)n, "cpu (%d threads, %s%s%s)", mf_get_threads(), mf_blas_kernels(),
           gpus > 0 ? "; a GPU is present but the model's shape does not suit the CUDA kernels" : "",
           cfg->tf32 ? "; tf32 ignored: no TF32 on the CPU" : "");
  return MF_OK;
}
