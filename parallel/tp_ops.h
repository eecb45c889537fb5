/* Tensor-parallel ops on the tape (Megatron-LM style). Each runs its forward now and, when
 * the context records, a node whose backward (called by mf_backward through kernels/ops.c)
 * does the matching communication. Declared once in kernels/ops.def (MF_TP_OP). They run
 * on any backend: the arithmetic between the collectives is the backend's (tp_embed_*,
 * bias_*, tp_xent_*), and the communicator takes the backend's buffers (on a GPU: NCCL or
 * the staged one, parallel/grid.h).
 *
 *   tp_copy    Megatron's f: identity forward; backward all-reduces the gradient.
 *              Goes in front of a column-parallel layer.
 *   tp_reduce  Megatron's g: all-reduce forward (then + bias, once); identity backward,
 *              bias gradient = column sums. Goes after a row-parallel layer.
 *   tp_embed   vocabulary-parallel embedding: this rank's rows [v0, v0+Vl) of wte; ids
 *              outside them give zero rows; all-reduce; + positions (replicated).
 *   tp_xent    vocabulary-parallel cross-entropy over logits [N, Vl] (columns [v0, v0+Vl)
 *              of the vocabulary, V real): max and sum all-reduces make the logsumexp; the
 *              rank holding a row's target contributes its logit. Logits are consumed
 *              (overwritten by the probabilities), as softmax_xent does. */
#ifndef MF_TP_OPS_H
#define MF_TP_OPS_H

#include "core/tape.h"

struct mf_comm;

mf_tensor *mf_tp_copy(mf_ctx *c, mf_tensor *x, struct mf_comm *tp);
mf_tensor *mf_tp_reduce(mf_ctx *c, mf_tensor *x, mf_tensor *bias, struct mf_comm *tp);
mf_tensor *mf_tp_embed(mf_ctx *c, mf_tensor *idx, mf_tensor *wte, mf_tensor *wpe, int v0, struct mf_comm *tp);
mf_tensor *mf_tp_xent(mf_ctx *c, mf_tensor *logits, mf_tensor *targets, int V, int v0, struct mf_comm *tp);

/* backward (kernels/ops.c's table) */
void mf_tp_copy_backward(mf_ctx *c, const mf_node *nd);
void mf_tp_reduce_backward(mf_ctx *c, const mf_node *nd);
void mf_tp_embed_backward(mf_ctx *c, const mf_node *nd);
void mf_tp_xent_backward(mf_ctx *c, const mf_node *nd);

#endif
