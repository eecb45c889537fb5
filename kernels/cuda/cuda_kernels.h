// CUDA kernels of the GPT job: the launchers (C++, namespace mf_cuda). Each has the name
// and argument order of its CPU twin in kernels/cpu/cpu.h (outputs, saved values, inputs,
// params, sizes) plus a trailing stream; fused ops add their extra outputs at the end of
// the outputs. Parameter gradients accumulate (+=); activation gradients are written (=).
//
// T is the storage type, float or bf16 (__nv_bfloat16); arithmetic is fp32 (sums of
// squares in double). Saved statistics (mean, rstd, lse) and losses are always fp32.
// All pointers are device pointers to row-major contiguous arrays; launchers abort with
// file:line on a violated precondition (sizes, 16-byte alignment) and check the launch.
// Launchers never synchronise the stream (except the one-time growth of the scratch area,
// see common.cuh). matmul.cu needs cuBLASLt: GPU only, not built under MF_CUDA_EMULATION
// (matmul_simt.cu stands in for it there).
#ifndef MF_CUDA_KERNELS_H
#define MF_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#if defined(MF_CUDA_EMULATION)
#include "kernels/cuda/emu/emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

namespace mf_cuda {

typedef __nv_bfloat16 bf16;

// ---- encoder.cu: token + position embedding (C % (16/sizeof(T)) == 0) ----
// out[B,T,C] = wte[inp[b,t],:] + wpe[t,:]; inp[B,T] in [0,Vp); wte[Vp,C], wpe[maxT,C]
template <typename T>
void encoder_forward(T *out, const int32_t *inp, const T *wte, const T *wpe, int B, int Tn, int C,
                     cudaStream_t stream);
// dwte[Vp,C] += , dwpe[maxT,C] += (either may be NULL); dout[B,T,C], inp[B,T].
// Deterministic: each element's terms are summed in a fixed order, no atomics.
template <typename T>
void encoder_backward(T *dwte, T *dwpe, const T *dout, const int32_t *inp, int B, int Tn, int C,
                      cudaStream_t stream);

// vocabulary-parallel (parallel/tp_ops.c): wte[nv,C] holds rows [v0, v0+nv); other tokens
// give zero rows, plus wpe[t] when add_pos; backward adds only the rows held here
template <typename T>
void tp_embed_forward(T *out, const int32_t *inp, const T *wte, const T *wpe, int B, int Tn, int C,
                      int v0, int nv, int add_pos, cudaStream_t stream);
template <typename T>
void tp_embed_backward(T *dwte, T *dwpe, const T *dout, const int32_t *inp, int B, int Tn, int C,
                       int v0, int nv, cudaStream_t stream);

// ---- layernorm.cu (eps 1e-5, biased variance; C % (16/sizeof(T)) == 0) ----
// out[N,C], mean[N], rstd[N] (either stat may be NULL); inp[N,C], weight[C], bias[C]
template <typename T>
void layernorm_forward(T *out, float *mean, float *rstd, const T *inp, const T *weight,
                       const T *bias, int N, int C, cudaStream_t stream);
// fused residual + layernorm: resid[N,C] = a + b (rounded to T), out = LN(resid);
// the LN input is the stored (rounded) sum, so layernorm_backward on resid is its backward
template <typename T>
void residual_layernorm_forward(T *out, T *resid, float *mean, float *rstd, const T *a,
                                const T *b, const T *weight, const T *bias, int N, int C,
                                cudaStream_t stream);
// dinp[N,C] = (may alias dout); dweight[C] += ; dbias[C] += ; any may be NULL.
// Deterministic: per-block partial sums then an ordered second pass (scratch area).
template <typename T>
void layernorm_backward(T *dinp, T *dweight, T *dbias, const T *dout, const T *inp,
                        const T *weight, const float *mean, const float *rstd, int N, int C,
                        cudaStream_t stream);

// ---- gelu.cu: tanh approximation ----
template <typename T> void gelu_forward(T *out, const T *inp, size_t N, cudaStream_t stream);
template <typename T>  // dinp[N] = (may alias dout)
void gelu_backward(T *dinp, const T *inp, const T *dout, size_t N, cudaStream_t stream);

// ---- residual.cu ----
template <typename T>  // out[N] = a + b
void residual_forward(T *out, const T *a, const T *b, size_t N, cudaStream_t stream);
template <typename T>  // da[N] = dout, db[N] = dout; either may be NULL
void residual_backward(T *da, T *db, const T *dout, size_t N, cudaStream_t stream);
template <typename T>  // acc[N] += x[N]
void accumulate(T *acc, const T *x, size_t N, cudaStream_t stream);

// ---- attention.cu: fused causal flash attention, hs = C/NH a multiple of 16, <= 128 ----
// qkv[B,T,3C] (q | k | v, head h owns columns h*hs..), out[B,T,C], saved lse[B,NH,T].
// No T x T matrix in memory; bf16 tile products on tensor cores (WMMA), fp32 accumulation.
template <typename T>
void attention_forward(T *out, float *lse, const T *qkv, int B, int Tn, int C, int NH,
                       cudaStream_t stream);
// dqkv[B,T,3C] = ; dout[B,T,C], qkv, out, lse as saved by the forward. Deterministic (no
// atomics): one kernel owns dK/dV per key block, another dQ per query block.
template <typename T>
void attention_backward(T *dqkv, const T *dout, const T *qkv, const T *out, const float *lse,
                        int B, int Tn, int C, int NH, cudaStream_t stream);

// ---- softmax_xent.cu: fused softmax + cross-entropy over a padded vocabulary ----
// logits[N,Vp], columns >= V masked; targets[N] in [0,V) or -1 (ignored: loss 0, grad 0).
// losses[N] (fp32) = logsumexp(logits[i,:V]) - logits[i,target]; probs[N,Vp] = softmax
// (0 in padded columns); probs may alias logits.
template <typename T>
void softmax_xent_forward(float *losses, T *probs, const T *logits, const int32_t *targets, int N,
                          int V, int Vp, cudaStream_t stream);
// dlogits[N,Vp] = (probs - onehot(target)) * dlosses[i]; may alias probs; dlosses[N] fp32
template <typename T>
void softmax_xent_backward(T *dlogits, const float *dlosses, const T *probs,
                           const int32_t *targets, int N, int V, int Vp, cudaStream_t stream);
// The training path: forward and backward in one pass over the logits (read once, the
// gradient written once, in place if dlogits == logits). dlosses[N] fp32 as above.
template <typename T>
void softmax_xent_forward_backward(float *losses, T *dlogits, const T *logits,
                                   const int32_t *targets, const float *dlosses, int N, int V,
                                   int Vp, cudaStream_t stream);

// ---- adamw.cu: fused AdamW over a flat fp32 master buffer (PyTorch semantics, t from 1) ----
// params[n], m[n], v[n] fp32 updated in place; params_copy[n] (T, may be NULL) receives the
// updated params in T (the bf16 weights the forward reads); grads[n] in T.
template <typename T>
void adamw_update(float *params, float *m, float *v, T *params_copy, const T *grads, size_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay,
                  float grad_scale, int t, cudaStream_t stream);
// *out (device, one double) = sum of x[i]^2, accumulated in double; deterministic
// two-stage reduction (fixed grid, ordered second stage). Does not synchronise.
template <typename T> void sumsq(double *out, const T *x, size_t n, cudaStream_t stream);
// *norm (device, one float) = sqrt(sum of x[i]^2): the global gradient norm of the flat
// grads buffer, same reduction as sumsq.
template <typename T> void global_norm(float *norm, const T *x, size_t n, cudaStream_t stream);

// ---- cast.cu ----
void cast(bf16 *out, const float *in, size_t n, cudaStream_t stream);  // round to nearest even
void cast(float *out, const bf16 *in, size_t n, cudaStream_t stream);  // exact

// ---- bias.cu: the bias gradient of a matmul (used by matmul_backward) ----
// dbias[OC] += sum over rows of dout[N,OC]; deterministic (per-block partials + ordered pass)
template <typename T>
void bias_backward(T *dbias, const T *dout, int N, int OC, cudaStream_t stream);
// out[N,OC] += bias[OC] (the bias after a tensor-parallel reduction; any OC)
template <typename T> void bias_forward(T *out, const T *bias, int N, int OC, cudaStream_t stream);

// ---- tp_xent.cu: vocabulary-parallel cross-entropy, the phases between tp_xent's
// all-reduces (kernels/cpu/cpu.h has the semantics); M, S (double), losses fp32 ----
template <typename T>
void tp_xent_max(float *M, const T *logits, int N, int Vl, int nreal, cudaStream_t stream);
template <typename T>
void tp_xent_exp(double *S, T *ex, const T *logits, const float *M, const int32_t *targets, int N,
                 int Vl, int nreal, int v0, cudaStream_t stream);
template <typename T>
void tp_xent_finish(float *losses, T *probs, const double *S, const float *M,
                    const int32_t *targets, int N, int Vl, int nreal, cudaStream_t stream);
template <typename T>
void tp_xent_backward(T *dlogits, const float *dlosses, const T *probs, const int32_t *targets,
                      int N, int Vl, int v0, cudaStream_t stream);

// ---- matmul.cu: cuBLASLt with fused epilogues (GPU only) ----
// wt == 0: weight[C,OC] (out = inp @ weight); wt == 1: weight[OC,C] (out = inp @ weight^T)
// out[N,OC] = inp[N,C] @ W + bias[OC] (bias may be NULL; fused in the epilogue)
template <typename T>
void matmul_forward(T *out, const T *inp, const T *weight, const T *bias, int N, int C, int OC,
                    int wt, cudaStream_t stream);
// out[N,OC] = gelu(inp @ W + bias); saved pre_gelu[N,OC] = inp @ W + bias (bias not NULL)
template <typename T>
void matmul_bias_gelu_forward(T *out, T *pre_gelu, const T *inp, const T *weight, const T *bias,
                              int N, int C, int OC, int wt, cudaStream_t stream);
// dinp[N,C] = dout @ W^T (NULL: skipped); dweight += (NULL: skipped); dbias[OC] += (NULL:
// skipped; bias_backward, deterministic)
template <typename T>
void matmul_backward(T *dinp, T *dweight, T *dbias, const T *dout, const T *inp, const T *weight,
                     int N, int C, int OC, int wt, cudaStream_t stream);
// The backward through gelu fused into the dinp GEMM of the matmul that follows it:
// dpre[N,C] = (dout[N,OC] @ W^T) * gelu'(pre_gelu[N,C]) (the DGELU epilogue), and
// dbias_pre[C] += sum over rows of dpre (the bias of the layer that produced pre_gelu;
// may be NULL). C % 8 == 0.
template <typename T>
void matmul_backward_dgelu(T *dpre, T *dbias_pre, const T *dout, const T *weight,
                           const T *pre_gelu, int N, int C, int OC, int wt, cudaStream_t stream);
// fp32 GEMMs on TF32 tensor cores (off by default: fp32 then matches the CPU to ~1e-6)
void matmul_set_tf32(int on);
// cuBLASLt handle and workspace (32 MiB); created on first use, released here
void matmul_shutdown();

// ---- matmul_simt.cu: shared-memory tiled SIMT GEMM, no library (emulation, cross-checks) ----
// same semantics and argument order as matmul_forward / matmul_backward above
// (any N >= 0, C, OC >= 1; fp32 sums, deterministic; dbias: OC % (16/sizeof(T)) == 0, as
// bias_backward)
template <typename T>
void matmul_simt_forward(T *out, const T *inp, const T *weight, const T *bias, int N, int C,
                         int OC, int wt, cudaStream_t stream);
template <typename T>
void matmul_simt_backward(T *dinp, T *dweight, T *dbias, const T *dout, const T *inp,
                          const T *weight, int N, int C, int OC, int wt, cudaStream_t stream);
// operands rounded to TF32 before the fp32 sums, as matmul_set_tf32 does on tensor cores
void matmul_simt_set_tf32(int on);

}  // namespace mf_cuda

#endif
