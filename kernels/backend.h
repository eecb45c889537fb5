/* A device backend: a small table of kernel entry points with the CPU kernels' types.
 * The CUDA backend fills the same table with launchers that add its stream; all pointers
 * passed to the kernel entries are in the backend's memory (alloc), never host memory.
 *
 * `act` is the storage type of activations, their gradients, the weights the kernels read
 * and the parameter gradients: MF_F32, or MF_BF16 for the CUDA bf16 table, whose entries
 * take the same float * arguments but read and write bf16 through them. Always fp32
 * whatever `act` says: losses and their gradients, saved statistics (layernorm mean/rstd,
 * attention lse), and the master parameters, m and v that adamw_update updates. */
#ifndef MF_BACKEND_H
#define MF_BACKEND_H

#include "core/tensor.h"
#include "kernels/cpu/cpu.h"

#ifdef __cplusplus /* kernels/cuda/backend_cuda.cu fills one */
#define MF_TYPEOF(x) decltype(x)
extern "C" {
#else
#define MF_TYPEOF(x) __typeof__(x)
#endif

typedef struct mf_backend {
  const char *name;
  mf_device device;
  mf_dtype act;
#define MF_OP(name, fields)                        \
  MF_TYPEOF(name##_forward) *name##_forward;       \
  MF_TYPEOF(name##_backward) *name##_backward;
#include "kernels/ops.def"
#undef MF_OP
  MF_TYPEOF(accumulate) *accumulate;
  MF_TYPEOF(adamw_update) *adamw_update;
  MF_TYPEOF(sumsq) *sumsq;
  MF_TYPEOF(attention_kv_forward) *attention_kv_forward;
  /* the kernels of the tensor-parallel ops (parallel/tp_ops.c), between their collectives;
   * M, S and the losses are fp32/double whatever `act` says */
  MF_TYPEOF(tp_embed_forward) *tp_embed_forward;
  MF_TYPEOF(tp_embed_backward) *tp_embed_backward;
  MF_TYPEOF(bias_forward) *bias_forward;
  MF_TYPEOF(bias_backward) *bias_backward;
  MF_TYPEOF(tp_xent_max) *tp_xent_max;
  MF_TYPEOF(tp_xent_exp) *tp_xent_exp;
  MF_TYPEOF(tp_xent_finish) *tp_xent_finish;
  MF_TYPEOF(tp_xent_backward) *tp_xent_backward;
  /* forward only: mf_residual_layernorm's backward runs residual's and layernorm's entries */
  MF_TYPEOF(residual_layernorm_forward) *residual_layernorm_forward;
  void *(*alloc)(size_t bytes);   /* 64-byte aligned; NULL on failure */
  void (*free)(void *p);
  void (*memset0)(void *p, size_t bytes);
  /* moving data between host memory and the backend's (plain memcpy on the CPU); both
   * return when the copy is complete, so to_host also waits for the work queued before it */
  void (*to_device)(void *dst, const void *src, size_t bytes);
  void (*to_host)(void *dst, const void *src, size_t bytes);
  /* within the backend's memory, in the order of the queued work (any dtype: bytes) */
  void (*copy)(void *dst, const void *src, size_t bytes);
  /* act != MF_F32 only: copy[n] (act) = master[n] (fp32), rounded; the weights the
   * kernels read after each update */
  void (*cast_copy)(float *copy, const float *master, size_t n);
  /* config tf32: fp32 GEMMs on TF32 tensor cores (operands rounded to 10 mantissa bits,
   * fp32 sums): ~1e-3 relative instead of ~1e-6, at several times the fp32 rate. A process-
   * wide switch, off by default. NULL: the backend has none (the CPU) */
  void (*set_tf32)(int on);
  /* the queue every kernel of this backend runs on (a cudaStream_t), for device
   * communicators that must order their work after it (NCCL); NULL on the CPU */
  void *(*stream)(void);
  /* CUDA graphs of the queue's work (NULL on the CPU). Between graph_begin and graph_end
   * the kernels, memsets and device copies queued are recorded, not run; graph_end returns
   * them as an executable graph, which graph_launch queues (asynchronously, as one kernel)
   * as often as wanted, on the memory the recorded calls named. Nothing between begin and
   * end may wait for the device or allocate: to_device, to_host, sumsq, alloc and free
   * fail the capture, as would a launcher whose scratch area has to grow. Each returns
   * NULL, or why it failed (graph_end: the capture is over either way, *graph NULL). */
  const char *(*graph_begin)(void);
  const char *(*graph_end)(void **graph);
  const char *(*graph_launch)(void *graph);
  void (*graph_free)(void *graph); /* NULL: nothing */
} mf_backend;

extern const mf_backend mf_backend_cpu;
/* kernels/cuda/backend_cuda.cu: present when built with CUDA (or in the emulation build's
 * test programs); mf_device_select hands it out for `device: cuda|auto` */
extern const mf_backend mf_backend_cuda;
extern const mf_backend mf_backend_cuda_bf16; /* precision: bf16 */

#ifdef __cplusplus
}
#endif

#endif
