/* Autograd: an op called through kernels/ops.h runs its forward kernel and, when the
 * context records, appends a node to the tape. mf_backward walks the tape in reverse.
 * The context also owns the step arena that activations and their gradients come from. */
#ifndef MF_TAPE_H
#define MF_TAPE_H

#include "core/status.h"
#include "core/tensor.h"

struct mf_backend;
struct mf_comm;

/* Every op of kernels/ops.def, the tensor-parallel ones (MF_TP_OP) included. */
#define MF_TP_OP MF_OP
typedef enum mf_op_id {
#define MF_OP(name, fields) MF_OP_##name,
#include "kernels/ops.def"
#undef MF_OP
  MF_OP_COUNT
} mf_op_id;

#define MF_OP(name, fields) typedef struct mf_##name##_params { fields } mf_##name##_params;
#include "kernels/ops.def"
#undef MF_OP

typedef struct mf_node {
  mf_op_id op;
  union {
#define MF_OP(name, fields) mf_##name##_params name;
#include "kernels/ops.def"
#undef MF_OP
  } p;
  mf_tensor *in[3];
  mf_tensor *out;
  float *saved[2];
} mf_node;
#undef MF_TP_OP

typedef struct mf_ctx mf_ctx;

mf_ctx *mf_ctx_create(const struct mf_backend *be, size_t arena_bytes);
void mf_ctx_destroy(mf_ctx *c);
const struct mf_backend *mf_ctx_backend(const mf_ctx *c);
/* Recording on: ops append nodes (training). Off: forward only (eval, generation). */
void mf_ctx_set_record(mf_ctx *c, int on);
int mf_ctx_recording(const mf_ctx *c);
/* Drops the tape and every activation; call after each micro-step. */
void mf_ctx_reset(mf_ctx *c);
/* First error since the last reset (ops record it instead of returning it). */
mf_status mf_ctx_status(const mf_ctx *c);
size_t mf_ctx_arena_peak(const mf_ctx *c);
int mf_ctx_arena_grows(const mf_ctx *c);
int mf_ctx_nodes(const mf_ctx *c);

/* For ops: records a failure (the first one sticks until the next reset). */
void mf_ctx_fail(mf_ctx *c, mf_status st);
/* For ops: an arena tensor (NULL and sticky MF_ERR_NOMEM on failure). */
mf_tensor *mf_ctx_tensor(mf_ctx *c, mf_dtype dt, int ndim, const int64_t *shape);
void *mf_ctx_alloc(mf_ctx *c, size_t bytes);
/* For ops: a new tensor (host struct) over x's data, with no gradient of its own (an
 * identity op's output); a recomputed x's view is recomputed with it */
mf_tensor *mf_ctx_view(mf_ctx *c, const mf_tensor *x);
/* Appends a node when recording; NULL otherwise. */
mf_node *mf_ctx_record(mf_ctx *c, mf_op_id op);
const char *mf_op_name(mf_op_id op);

/* Activation recomputation (config `recompute`), to train longer sequences or larger
 * micro-batches in the same memory. 0: every activation is stored until the reset. 1: the
 * GELU outputs of a step share one buffer (each is consumed by the next matmul at once)
 * and backward makes each again from its stored input just before the node that reads
 * it. 2: also the layernorm outputs (from the stored input, mean and rstd). Gradients are
 * bitwise those of level 0 (the same kernels on the same inputs). One exception on a GPU:
 * matmul_gelu's forward takes its GELU from cuBLASLt's epilogue and the recompute from
 * gelu_forward on the saved matmul output, which agree to rounding only (bitwise on the
 * CPU and the emulator). */
enum { MF_REMAT_GELU, MF_REMAT_LAYERNORM, MF_REMAT_KINDS };
void mf_ctx_set_recompute(mf_ctx *c, int level);
int mf_ctx_recompute(const mf_ctx *c);
/* For ops: the output tensor of a recomputable kind: in the kind's shared buffer when the
 * level covers it and the context records, an ordinary arena tensor otherwise. After
 * recording the node that writes it, the op calls mf_ctx_remat_made. */
mf_tensor *mf_ctx_remat_tensor(mf_ctx *c, int kind, mf_dtype dt, int ndim, const int64_t *shape);
void mf_ctx_remat_made(mf_ctx *c, mf_tensor *t, const mf_node *nd);
/* For ops whose backward reads a recomputable tensor that is not among the node's inputs
 * and output (those are made ready before the node runs): makes t's data current, running
 * its node's recompute if another tensor has taken the shared buffer since. */
void mf_ctx_remat_ready(mf_ctx *c, const mf_tensor *t);
/* Data parallelism's tied weights (parallel/dp.c): until the next reset, the embedding's
 * backward adds nothing to param's gradient and copies its output gradient [B,T,C] (act
 * dtype) to rows instead, for the caller to add in after the gradient reduction. param NULL:
 * off. mf_ctx_deferred_rows: rows, when param's rows are deferred, else NULL (for ops). */
void mf_ctx_defer_rows(mf_ctx *c, const mf_tensor *param, void *rows);
void *mf_ctx_deferred_rows(const mf_ctx *c, const mf_tensor *param);

/* For ops: the buffer of an activation's gradient (or of a second gradient, added into the
 * first). Gradients are recycled within a step: mf_backward hands an activation's gradient
 * back once the node that made the activation has run its backward (nothing reads it after
 * that), and the next gradient of the same size reuses it; mf_ctx_grad_release hands back
 * a scratch one at once. So the step's memory holds the live gradients, not all of them. */
void *mf_ctx_grad_alloc(mf_ctx *c, size_t bytes);
void mf_ctx_grad_release(mf_ctx *c, void *p); /* p not from mf_ctx_grad_alloc: nothing */

/* Node i of the tape (0 = the first recorded), for whoever inspects it (the
 * data-parallel layer counts which nodes use each parameter). */
const mf_node *mf_ctx_node(const mf_ctx *c, int i);

/* Called by mf_backward after each node, in reverse tape order, whether the node ran or
 * was skipped (nothing downstream needed it), then once more with nd == NULL when the
 * pass is over. Once every node that uses a parameter has been visited, that
 * parameter's gradient is final: data parallelism starts sending it then, overlapping
 * the rest of the backward pass. A non-OK return stops the pass with that status. */
typedef mf_status (*mf_backward_hook)(void *user, mf_ctx *c, int index, const mf_node *nd);
void mf_ctx_set_backward_hook(mf_ctx *c, mf_backward_hook fn, void *user); /* fn NULL: none */

/* Seeds d(loss_rows) = seed for every row, then runs the tape backwards. Parameter
 * gradients accumulate into their grads buffer. */
mf_status mf_backward(mf_ctx *c, mf_tensor *loss_rows, float seed);
/* The same from a gradient of loss_rows the caller filled: seed_grad, fp32 in the backend's
 * memory, one value per row, read (not kept) by the step. Nothing waits for the device, so
 * a CUDA graph capture can hold the whole backward (mf_backward uploads its seed). */
mf_status mf_backward_seeded(mf_ctx *c, mf_tensor *loss_rows, float *seed_grad);

#endif
