/* The CPU backend table: the kernels of kernels/cpu plus host memory. */
#include <stdlib.h>
#include <string.h>

#include "core/hostmem.h"
#include "kernels/backend.h"

static void *cpu_alloc(size_t bytes) { return mf_host_alloc(bytes); }
static void cpu_free(void *p) { mf_host_free(p); }
static void cpu_memset0(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) {
  if (bytes) memcpy(dst, src, bytes);
}

const mf_backend mf_backend_cpu = {
    .name = "cpu",
    .device = MF_CPU,
    .act = MF_F32,
#define MF_OP(name, fields) .name##_forward = name##_forward, .name##_backward = name##_backward,
#include "kernels/ops.def"
#undef MF_OP
    .accumulate = accumulate,
    .adamw_update = adamw_update,
    .sumsq = sumsq,
    .attention_kv_forward = attention_kv_forward,
    .tp_embed_forward = tp_embed_forward,
    .tp_embed_backward = tp_embed_backward,
    .bias_forward = bias_forward,
    .bias_backward = bias_backward,
    .tp_xent_max = tp_xent_max,
    .tp_xent_exp = tp_xent_exp,
    .tp_xent_finish = tp_xent_finish,
    .tp_xent_backward = tp_xent_backward,
    .residual_layernorm_forward = residual_layernorm_forward,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset0 = cpu_memset0,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
};
