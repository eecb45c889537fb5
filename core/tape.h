/* Autograd: an op called through kernels/ops.h runs its forward kernel and, when the
 * context records, appends a node to the tape. mf_backward walks the tape in reverse.
 * The context also owns the step arena that activations and their gradients come from. */
#ifndef MF_TAPE_H
#define MF_TAPE_H

#include "core/status.h"
#include "core/tensor.h"

struct mf_backend;

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

/* For ops: an arena tensor (NULL and sticky MF_ERR_NOMEM on failure). */
mf_tensor *mf_ctx_tensor(mf_ctx *c, mf_dtype dt, int ndim, const int64_t *shape);
void *mf_ctx_alloc(mf_ctx *c, size_t bytes);
/* Appends a node when recording; NULL otherwise. */
mf_node *mf_ctx_record(mf_ctx *c, mf_op_id op);
const char *mf_op_name(mf_op_id op);

/* Seeds d(loss_rows) = seed for every row, then runs the tape backwards. Parameter
 * gradients accumulate into their grads buffer. */
mf_status mf_backward(mf_ctx *c, mf_tensor *loss_rows, float seed);

#endif
