/* The CUDA backend plugin (libmforge_cuda.so, core/device.c): it loads on a machine without
 * a GPU too (only running kernels needs one), and its table is complete: every kernel entry,
 * memory and copy function is set. Catches a plugin that is missing, stale or unloadable. */
#include <stdio.h>
#include <string.h>

#include "core/device.h"
#include "kernels/backend.h"
#include "tests/test.h"

int main(void) {
  char why[600] = "";
  const mf_backend *be = mf_device_cuda_backend(0, why, sizeof why);
  CHECK(be != NULL);
  if (!be) {
    fprintf(stderr, "plugin: %s\n", why);
    return mf_test_report("test_cuda_plugin");
  }
  CHECK(strcmp(be->name, "cuda") == 0);
  CHECK(be->device == MF_CUDA);
#define MF_OP(name, fields) CHECK(be->name##_forward != NULL && be->name##_backward != NULL);
#include "kernels/ops.def"
#undef MF_OP
  CHECK(be->accumulate && be->adamw_update && be->sumsq);
  CHECK(be->residual_layernorm_forward); /* the non-op entries the model calls on the device */
  CHECK(be->tp_embed_forward && be->tp_embed_backward && be->bias_forward && be->bias_backward); /* TP */
  CHECK(be->tp_xent_max && be->tp_xent_exp && be->tp_xent_finish && be->tp_xent_backward);
  CHECK(be->alloc && be->free && be->memset0 && be->to_device && be->to_host);
  /* a second call returns the same table without reloading; the bf16 one is there too */
  CHECK(mf_device_cuda_backend(0, why, sizeof why) == be);
  const mf_backend *bf = mf_device_cuda_backend(1, why, sizeof why);
  CHECK(bf && bf != be && bf->act == MF_BF16 && bf->cast_copy && be->act == MF_F32 && !be->cast_copy);
  char gw[256];
  printf("CUDA plugin loaded; %d GPU(s) visible%s%s\n", mf_device_gpu_count(gw, sizeof gw), gw[0] ? ": " : "", gw);
  return mf_test_report("test_cuda_plugin");
}
