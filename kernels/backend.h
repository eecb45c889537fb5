/* A device backend: a small table of kernel entry points with the CPU kernels' types.
 * The CUDA backend fills the same table with launchers that add the current stream. */
#ifndef MF_BACKEND_H
#define MF_BACKEND_H

#include "core/tensor.h"
#include "kernels/cpu/cpu.h"

typedef struct mf_backend {
  const char *name;
  mf_device device;
#define MF_OP(name, fields)                        \
  __typeof__(name##_forward) *name##_forward;      \
  __typeof__(name##_backward) *name##_backward;
#include "kernels/ops.def"
#undef MF_OP
  __typeof__(accumulate) *accumulate;
  __typeof__(adamw_update) *adamw_update;
  __typeof__(sumsq) *sumsq;
  __typeof__(attention_kv_forward) *attention_kv_forward;
  void *(*alloc)(size_t bytes);   /* 64-byte aligned; NULL on failure */
  void (*free)(void *p);
  void (*memset0)(void *p, size_t bytes);
} mf_backend;

extern const mf_backend mf_backend_cpu;

#endif
