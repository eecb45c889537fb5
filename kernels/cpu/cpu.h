/* CPU kernels: one file per op family in kernels/cpu/, forward and backward.
 * Argument order (llm.c convention): outputs, saved values, inputs, params, sizes.
 * Parameter gradients accumulate (+=); activation gradients are written (=).
 * kernels/cuda/<op>.cu carries the same names and argument order plus a trailing stream.
 * All float arrays are fp32, row-major, contiguous. Threads come from OpenMP. */
#ifndef MF_KERNELS_CPU_H
#define MF_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- encoder.c: token + position embedding ---- */
/* out[B,T,C] = wte[inp[b,t], :] + wpe[t, :]; inp[B,T] in [0, Vp) */
void encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                     int B, int T, int C);
/* dwte[Vp,C] += , dwpe[maxT,C] += ; either may be NULL (frozen); deterministic (no float atomics) */
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                      int B, int T, int C);
/* vocabulary-parallel: wte[nv,C] holds vocabulary rows [v0, v0+nv); other tokens give zero
 * rows (add_pos 0) or their position row only (add_pos 1: one rank of the group adds the
 * positions, so the all-reduce of the rows gives the embedding exactly) */
void tp_embed_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                      int B, int T, int C, int v0, int nv, int add_pos);
/* dwte[nv,C] += (tokens in [v0, v0+nv) only), dwpe[maxT,C] += ; either may be NULL */
void tp_embed_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                       int B, int T, int C, int v0, int nv);

/* ---- layernorm.c (eps 1e-5, biased variance, as torch.nn.LayerNorm) ---- */
/* out[N,C], saved mean[N], rstd[N]; inp[N,C], weight[C], bias[C] */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C);
/* fused residual + layernorm (one pass): resid[N,C] = a[N,C] + b[N,C], out[N,C] = LN(resid),
 * saved mean[N], rstd[N]; bitwise residual_forward then layernorm_forward. No backward of
 * its own: residual_backward, then layernorm_backward with inp = resid. */
void residual_layernorm_forward(float *out, float *resid, float *mean, float *rstd,
                                const float *a, const float *b, const float *weight,
                                const float *bias, int N, int C);
/* dinp[N,C] = ; dweight[C] += ; dbias[C] += ; any may be NULL; deterministic reductions */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C);

/* ---- matmul.c (OpenBLAS sgemm) ----
 * wt == 0: weight[C,OC] (Hugging Face Conv1D layout, out = inp @ weight)
 * wt == 1: weight[OC,C] (nn.Linear / tied embedding layout, out = inp @ weight^T) */
/* out[N,OC] = inp[N,C] @ W + bias[OC]; bias may be NULL */
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int N, int C, int OC, int wt);
/* dinp[N,C] = (skipped if NULL); dweight += (skipped if NULL); dbias[OC] += (if not NULL) */
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC, int wt);
/* a bias on its own (after a tensor-parallel reduction): out[N,OC] += bias[OC];
 * dbias[OC] += column sums of dout[N,OC] (double, rows in order: deterministic) */
void bias_forward(float *out, const float *bias, int N, int OC);
void bias_backward(float *dbias, const float *dout, int N, int OC);

/* ---- matmul_gelu.c: matmul + bias + GELU (the MLP up-projection), sizes and wt as matmul ----
 * out[N,OC] = gelu(pre_gelu), saved pre_gelu[N,OC] = inp[N,C] @ W + bias[OC] (bias required);
 * bitwise matmul_forward then gelu_forward. */
void matmul_gelu_forward(float *out, float *pre_gelu, const float *inp, const float *weight,
                         const float *bias, int N, int C, int OC, int wt);
/* dpre[N,OC] = gelu'(pre_gelu) dout[N,OC] (scratch the caller provides; may alias dout), then
 * as matmul_backward from dpre: dinp[N,C] = ; dweight += ; dbias[OC] += ; dinp, dweight,
 * dbias may be NULL (skipped) */
void matmul_gelu_backward(float *dinp, float *dweight, float *dbias, float *dpre,
                          const float *dout, const float *inp, const float *weight,
                          const float *pre_gelu, int N, int C, int OC, int wt);

/* gelu_matmul, the MLP down-projection from its pre-GELU input: act[N,C] = gelu(inp[N,C])
 * (saved), out[N,OC] = act @ W + bias[OC] (bias may be NULL); bitwise gelu_forward then
 * matmul_forward. Backward: as matmul_backward on act (dweight += ; dbias += ), and
 * dinp[N,C] = (dout @ W^T) * gelu'(inp) (=); dinp, dweight, dbias may be NULL (skipped) */
void gelu_matmul_forward(float *out, float *act, const float *inp, const float *weight, const float *bias,
                         int N, int C, int OC, int wt);
void gelu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, const float *act, int N, int C, int OC, int wt);

/* ---- gelu.c: tanh approximation, as torch gelu(approximate="tanh") ---- */
void gelu_forward(float *out, const float *inp, size_t N);            /* out[N], inp[N] */
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t N); /* dinp[N] = */

/* ---- residual.c ---- */
void residual_forward(float *out, const float *a, const float *b, size_t N); /* out = a + b */
/* da = dout, db = dout; either may be NULL (that input needs no gradient) */
void residual_backward(float *da, float *db, const float *dout, size_t N);
/* acc[N] += x[N]: the tape uses it when an activation feeds several ops */
void accumulate(float *acc, const float *x, size_t N);

/* ---- attention.c: causal multi-head self-attention, flash-style on CPU ----
 * qkv[B,T,3C]: q = [..., 0:C], k = [..., C:2C], v = [..., 2C:3C]; head h owns columns
 * h*hs .. h*hs+hs-1 of each, hs = C/NH; scale 1/sqrt(hs). Online softmax over key tiles:
 * no T x T buffer exists, only one tile per thread.
 * out[B,T,C]; saved lse[B,NH,T] = log-sum-exp of the scaled scores of each query row. */
void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
/* dqkv[B,T,3C] = ; recomputes scores tile by tile from qkv and lse */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int NH);

/* ---- softmax_xent.c: fused softmax + cross-entropy over a padded vocabulary ----
 * logits[N,Vp]; only columns < V are real (padded columns are masked out).
 * targets[N] in [0,V) or -1 (ignored: loss 0, gradient 0).
 * losses[N] = logsumexp(logits[i,:V]) - logits[i,target]; saved probs[N,Vp] = softmax
 * (0 in padded columns). probs may alias logits: the exp pass runs once. */
void softmax_xent_forward(float *losses, float *probs, const float *logits,
                          const int32_t *targets, int N, int V, int Vp);
/* dlogits[N,Vp] = (probs - onehot(target)) * dlosses[i]; may alias probs */
void softmax_xent_backward(float *dlogits, const float *dlosses, const float *probs,
                           const int32_t *targets, int N, int V, int Vp);

/* ---- tp_xent.c: vocabulary-parallel cross-entropy (parallel/tp_ops.c runs the phases
 * with an all-reduce between each) ----
 * logits[N,Vl]: columns [v0, v0+Vl) of the vocabulary, the first nreal real.
 * targets[N] (whole-vocabulary ids, -1 = ignored). */
/* M[N] = max over the real columns (-inf when none) */
void tp_xent_max(float *M, const float *logits, int N, int Vl, int nreal);
/* ex[N,Vl] = exp(logits - M) (0 in padded columns; may alias logits), S[N,2] (double) =
 * {sum of ex, the target's logit if this rank holds it else 0} */
void tp_xent_exp(double *S, float *ex, const float *logits, const float *M,
                 const int32_t *targets, int N, int Vl, int nreal, int v0);
/* with S and M all-reduced: probs = ex / S (in place), losses[N] = log S + M - logit_t */
void tp_xent_finish(float *losses, float *probs, const double *S, const float *M,
                    const int32_t *targets, int N, int Vl, int nreal);
/* dlogits[N,Vl] = (probs - onehot(target - v0)) * dlosses[i]; may alias probs */
void tp_xent_backward(float *dlogits, const float *dlosses, const float *probs,
                      const int32_t *targets, int N, int Vl, int v0);

/* ---- adamw.c: fused AdamW over a flat range (PyTorch's AdamW semantics) ----
 * g = grads * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (wd * p + (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)); t counts from 1.
 * params_copy (may be NULL) receives the updated params, as the CUDA twin's bf16 copy. */
void adamw_update(float *params, float *m, float *v, float *params_copy, const float *grads, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                  int t);
/* sum of squares in double (for the global gradient norm); bitwise reproducible for a
 * fixed thread count */
double sumsq(const float *x, size_t n);

/* ---- attention_kv.c: inference attention against a KV cache ----
 * q[B,Tq,C] (row stride q_stride floats), kcache/vcache[B,NH,Tmax,hs]; query t of
 * sequence b sits at position pos0[b] + t and attends keys 0 .. pos0[b]+t, which the
 * caller has already written to the cache (pos0[b] + Tq <= Tmax). out[B,Tq,C]. */
void attention_kv_forward(float *out, const float *q, const float *kcache, const float *vcache,
                          const int *pos0, int q_stride, int B, int Tq, int C, int NH, int Tmax);

/* ---- vecmath.c ---- */
/* y[i] = exp(x[i]), vectorised; relative error < 2e-7 wherever exp(x) is a normal float;
 * 0 below FLT_MIN (x < -87.34, -inf), +inf above FLT_MAX; y may alias x */
void vexpf(float *y, const float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
