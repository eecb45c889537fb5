/* The ops models call. Each runs its forward kernel on the context's backend, takes its
 * output from the step arena and, when recording, appends a tape node. On failure an op
 * returns NULL and the context keeps the error (mf_ctx_status); ops given NULL pass it on,
 * so model code checks once per forward. */
#ifndef MF_OPS_H
#define MF_OPS_H

#include "core/tape.h"

/* idx[B,T] i32, wte[Vp,C], wpe[maxT,C] -> [B,T,C] */
mf_tensor *mf_encoder(mf_ctx *c, mf_tensor *idx, mf_tensor *wte, mf_tensor *wpe);
/* x[..,C], w[C], b[C] -> [..,C] */
mf_tensor *mf_layernorm(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b);
/* x[..,C] @ w[C,OC] (wt=0) or w[OC,C]^T (wt=1) + b[OC] (may be NULL) -> [..,OC] */
mf_tensor *mf_matmul(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b, int wt);
/* gelu(x[..,C] @ w + b[OC]) -> [..,OC], w as mf_matmul, bias required: mf_gelu(mf_matmul())
 * in one op (the GPU applies the GELU in the GEMM's epilogue); the matmul output is saved
 * for the backward, the GELU output is recomputable (MF_REMAT_GELU) as mf_gelu's */
mf_tensor *mf_matmul_gelu(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b, int wt);
/* gelu(x[..,C]) @ w + b (may be NULL) -> [..,OC], w as mf_matmul: mf_matmul(mf_gelu(x)) in
 * one op whose input is the pre-GELU activation; the GELU output is saved and recomputable
 * (MF_REMAT_GELU), and backward gives x's gradient straight from the GEMM (on the GPU, the
 * GELU derivative in cuBLASLt's DGELU epilogue: no d(gelu) buffer, no separate pass) */
mf_tensor *mf_gelu_matmul(mf_ctx *c, mf_tensor *x, mf_tensor *w, mf_tensor *b, int wt);
/* The transformer MLP: gelu(x[..,C] @ w1[C,H] + b1[H]) @ w2[H,OC] + b2[OC] (b2 may be NULL:
 * a row-parallel layer adds it after its reduction). Forward: the up-projection's GEMM makes
 * the pre-GELU activation and its GELU (matmul_gelu's kernel: the epilogue's GELU on the GPU),
 * then the down-projection's. Not an op of ops.def: it records a matmul node (x -> pre) and a
 * gelu_matmul node (pre -> out), so each GELU is fused into a GEMM both ways. *act_out (may
 * be NULL) receives the GELU output. */
mf_tensor *mf_mlp(mf_ctx *c, mf_tensor *x, mf_tensor *w1, mf_tensor *b1, mf_tensor *w2, mf_tensor *b2,
                  mf_tensor **act_out);
mf_tensor *mf_gelu(mf_ctx *c, mf_tensor *x);
mf_tensor *mf_residual(mf_ctx *c, mf_tensor *a, mf_tensor *b);
/* mf_layernorm(mf_residual(a, b), w, bias) with one forward kernel: a[..,C] + b[..,C] -> the
 * layernorm output [..,C]; *resid_out receives the sum (the residual stream goes on). Not an
 * op of ops.def: it records a residual node and a layernorm node, whose backward (and
 * recompute, and gradient recycling) are the unfused pair's. */
mf_tensor *mf_residual_layernorm(mf_ctx *c, mf_tensor *a, mf_tensor *b, mf_tensor *w, mf_tensor *bias,
                                 mf_tensor **resid_out);
/* qkv[B,T,3C] -> [B,T,C], causal, n_head heads */
mf_tensor *mf_attention(mf_ctx *c, mf_tensor *qkv, int n_head);
/* logits[N,Vp] (consumed: overwritten by the softmax), targets[N] i32 (-1 = ignore),
 * V real classes -> per-row losses [N] */
mf_tensor *mf_softmax_xent(mf_ctx *c, mf_tensor *logits, mf_tensor *targets, int V);

/* Runs one node's backward kernels (called by mf_backward). */
void mf_op_backward(mf_ctx *c, const mf_node *nd);
/* Runs a recomputable node's forward kernel again into its output (mf_backward, under
 * `recompute`; gelu, matmul_gelu and layernorm), or gelu_matmul's into its saved GELU output. */
void mf_op_recompute(mf_ctx *c, const mf_node *nd);

#endif
