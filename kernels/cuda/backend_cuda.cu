// The CUDA backend tables (kernels/backend.h): the launchers of kernels/cuda behind the CPU
// kernels' types, all on one stream, plus device memory. mf_backend_cuda stores everything
// in fp32; mf_backend_cuda_bf16 keeps activations, gradients and a weight copy in bf16
// (fp32 master weights, AdamW state, losses and statistics). The trainer, the tape and
// kernels/ops.c stay unchanged: they pass device pointers where the CPU backend has host
// ones, and move data with .to_device / .to_host.
//
// Parameter gradients accumulate (+=) and activation gradients are written (=), as in the
// kernels. In the emulation build (MF_CUDA_EMULATION) cuBLASLt is not there: the matmuls
// use the SIMT GEMM of matmul_simt.cu, so a whole training step runs on the emulator.
#include "kernels/backend.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace {

// ---- the stream and device memory ----

// One non-blocking stream for all work of the step; copies to the host wait on it.
cudaStream_t stream() {
  static cudaStream_t s;
  if (!s) MF_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void *cu_stream() { return (void *)stream(); }

void *cu_alloc(size_t bytes) {
  void *p = nullptr;
  if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
    (void)cudaGetLastError();  // out of memory is the caller's error to report
    return nullptr;
  }
  return p;
}
void cu_free(void *p) {
  if (p) MF_CUDA_CHECK(cudaFree(p));
}
void cu_memset0(void *p, size_t bytes) {
  if (bytes) MF_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream()));
}
void cu_to_device(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  MF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  MF_CUDA_CHECK(cudaStreamSynchronize(stream()));  // src is pageable and the caller's again
}
void cu_copy(void *dst, const void *src, size_t bytes) {
  if (bytes) MF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}
void cu_to_host(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  MF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  MF_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

// ---- CUDA graphs of the stream's work (kernels/backend.h) ----
// Thread-local capture: only this thread's calls that would wait or allocate break it
// (OpenMP workers of host code are not concerned).

struct Graph {
  cudaGraphExec_t exec;
  unsigned long scratch_gen;  // the scratch area the recorded launchers used
};

const char *graph_error(const char *what, cudaError_t e) {
  static thread_local char buf[256];
  (void)cudaGetLastError();  // not sticky: the caller reports it
  snprintf(buf, sizeof buf, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  return buf;
}

const char *cu_graph_begin() {
  cudaError_t e = cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal);
  return e == cudaSuccess ? nullptr : graph_error("cudaStreamBeginCapture", e);
}
const char *cu_graph_end(void **out) {
  *out = nullptr;
  cudaGraph_t g = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream(), &g);
  if (e != cudaSuccess)
    return graph_error("cudaStreamEndCapture (a call during the capture waited for the device or allocated)", e);
  cudaGraphExec_t x = nullptr;
  e = cudaGraphInstantiate(&x, g, 0);
  MF_CUDA_CHECK(cudaGraphDestroy(g));
  if (e != cudaSuccess) return graph_error("cudaGraphInstantiate", e);
  *out = new Graph{x, mf_cuda::scratch_generation()};
  return nullptr;
}
const char *cu_graph_launch(void *p) {
  Graph *g = static_cast<Graph *>(p);
  if (g->scratch_gen != mf_cuda::scratch_generation())
    return "the CUDA scratch area was reallocated after the capture (a larger shape ran since)";
  cudaError_t e = cudaGraphLaunch(g->exec, stream());
  if (e == cudaSuccess) e = cudaGetLastError();  // the emulator reports failed replays here
  return e == cudaSuccess ? nullptr : graph_error("cudaGraphLaunch", e);
}
void cu_graph_free(void *p) {
  if (!p) return;
  Graph *g = static_cast<Graph *>(p);
  MF_CUDA_CHECK(cudaGraphExecDestroy(g->exec));
  delete g;
}

// ---- the kernels, with the CPU kernels' signatures; T = the storage type (float, bf16) ----
// float * arguments carry T except where kernels/backend.h says fp32 (losses, statistics,
// master weights, m, v).

using namespace mf_cuda;
#define S(p) reinterpret_cast<T *>(p)
#define CS(p) reinterpret_cast<const T *>(p)

template <typename T>
void cu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B,
                        int T_, int C) {
  encoder_forward<T>(S(out), inp, CS(wte), CS(wpe), B, T_, C, stream());
}
template <typename T>
void cu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B,
                         int T_, int C) {
  encoder_backward<T>(S(dwte), S(dwpe), CS(dout), inp, B, T_, C, stream());
}
template <typename T>
void cu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int N, int C) {
  layernorm_forward<T>(S(out), mean, rstd, CS(inp), CS(weight), CS(bias), N, C, stream());
}
template <typename T>
void cu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int N, int C) {
  layernorm_backward<T>(S(dinp), S(dweight), S(dbias), CS(dout), CS(inp), CS(weight), mean, rstd,
                        N, C, stream());
}
template <typename T>
void cu_residual_layernorm_forward(float *out, float *resid, float *mean, float *rstd,
                                   const float *a, const float *b, const float *weight,
                                   const float *bias, int N, int C) {
  residual_layernorm_forward<T>(S(out), S(resid), mean, rstd, CS(a), CS(b), CS(weight), CS(bias),
                                N, C, stream());
}
template <typename T>
void cu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                       int C, int OC, int wt) {
#if defined(MF_CUDA_EMULATION)
  matmul_simt_forward<T>(S(out), CS(inp), CS(weight), CS(bias), N, C, OC, wt, stream());
#else
  matmul_forward<T>(S(out), CS(inp), CS(weight), CS(bias), N, C, OC, wt, stream());
#endif
}
template <typename T>
void cu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC, int wt) {
#if defined(MF_CUDA_EMULATION)
  matmul_simt_backward<T>(S(dinp), S(dweight), S(dbias), CS(dout), CS(inp), CS(weight), N, C, OC,
                          wt, stream());
#else
  matmul_backward<T>(S(dinp), S(dweight), S(dbias), CS(dout), CS(inp), CS(weight), N, C, OC, wt,
                     stream());
#endif
}
// The GELU in cuBLASLt's epilogue where it can (its aux output needs OC % 8 == 0), else
// the two kernels. Under recompute the tape makes out again with gelu_forward from
// pre_gelu, which agrees with the epilogue to rounding (bitwise on the emulator).
template <typename T>
void cu_matmul_gelu_forward(float *out, float *pre_gelu, const float *inp, const float *weight,
                            const float *bias, int N, int C, int OC, int wt) {
#if defined(MF_CUDA_EMULATION)
  matmul_simt_forward<T>(S(pre_gelu), CS(inp), CS(weight), CS(bias), N, C, OC, wt, stream());
  gelu_forward<T>(S(out), CS(pre_gelu), (size_t)N * OC, stream());
#else
  if (OC % 8 == 0) {
    matmul_bias_gelu_forward<T>(S(out), S(pre_gelu), CS(inp), CS(weight), CS(bias), N, C, OC, wt,
                                stream());
  } else {
    matmul_forward<T>(S(pre_gelu), CS(inp), CS(weight), CS(bias), N, C, OC, wt, stream());
    gelu_forward<T>(S(out), CS(pre_gelu), (size_t)N * OC, stream());
  }
#endif
}
// dpre = gelu'(pre_gelu) dout, then the matmul's backward from it (matmul_backward_dgelu
// fuses the other side, the GELU before a matmul: cu_gelu_matmul_backward)
template <typename T>
void cu_matmul_gelu_backward(float *dinp, float *dweight, float *dbias, float *dpre,
                             const float *dout, const float *inp, const float *weight,
                             const float *pre_gelu, int N, int C, int OC, int wt) {
  gelu_backward<T>(S(dpre), CS(pre_gelu), CS(dout), (size_t)N * OC, stream());
  cu_matmul_backward<T>(dinp, dweight, dbias, dpre, inp, weight, N, C, OC, wt);
}
// act = gelu(inp), out = act @ W + bias (the standalone op; mf_mlp makes act with the
// up-projection's epilogue instead)
template <typename T>
void cu_gelu_matmul_forward(float *out, float *act, const float *inp, const float *weight,
                            const float *bias, int N, int C, int OC, int wt) {
  gelu_forward<T>(S(act), CS(inp), (size_t)N * C, stream());
  cu_matmul_forward<T>(out, act, weight, bias, N, C, OC, wt);
}
// dweight, dbias from act; dinp = (dout @ W^T) * gelu'(inp) in one GEMM with cuBLASLt's DGELU
// epilogue where it can (aux ld C % 8 == 0), else the GEMM then gelu_backward in place. The
// up-projection's bias gradient stays with its own node (bias.cu: deterministic, +=).
template <typename T>
void cu_gelu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *act, int N, int C,
                             int OC, int wt) {
#if !defined(MF_CUDA_EMULATION)
  if (dinp && C % 8 == 0) {
    matmul_backward<T>(nullptr, S(dweight), S(dbias), CS(dout), CS(act), CS(weight), N, C, OC, wt,
                       stream());
    matmul_backward_dgelu<T>(S(dinp), nullptr, CS(dout), CS(weight), CS(inp), N, C, OC, wt, stream());
    return;
  }
#endif
  cu_matmul_backward<T>(dinp, dweight, dbias, dout, act, weight, N, C, OC, wt);
  if (dinp) gelu_backward<T>(S(dinp), CS(inp), CS(dinp), (size_t)N * C, stream());
}
template <typename T> void cu_gelu_forward(float *out, const float *inp, size_t N) {
  gelu_forward<T>(S(out), CS(inp), N, stream());
}
template <typename T>
void cu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
  gelu_backward<T>(S(dinp), CS(inp), CS(dout), N, stream());
}
template <typename T>
void cu_residual_forward(float *out, const float *a, const float *b, size_t N) {
  residual_forward<T>(S(out), CS(a), CS(b), N, stream());
}
template <typename T> void cu_residual_backward(float *da, float *db, const float *dout, size_t N) {
  residual_backward<T>(S(da), S(db), CS(dout), N, stream());
}
template <typename T> void cu_accumulate(float *acc, const float *x, size_t N) {
  accumulate<T>(S(acc), CS(x), N, stream());
}
template <typename T>
void cu_attention_forward(float *out, float *lse, const float *qkv, int B, int T_, int C, int NH) {
  attention_forward<T>(S(out), lse, CS(qkv), B, T_, C, NH, stream());
}
template <typename T>
void cu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                           const float *lse, int B, int T_, int C, int NH) {
  attention_backward<T>(S(dqkv), CS(dout), CS(qkv), CS(out), lse, B, T_, C, NH, stream());
}
template <typename T>
void cu_softmax_xent_forward(float *losses, float *probs, const float *logits,
                             const int32_t *targets, int N, int V, int Vp) {
  softmax_xent_forward<T>(losses, S(probs), CS(logits), targets, N, V, Vp, stream());
}
template <typename T>
void cu_softmax_xent_backward(float *dlogits, const float *dlosses, const float *probs,
                              const int32_t *targets, int N, int V, int Vp) {
  softmax_xent_backward<T>(S(dlogits), dlosses, CS(probs), targets, N, V, Vp, stream());
}
// the tensor-parallel kernels (parallel/tp_ops.c)
template <typename T>
void cu_tp_embed_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B,
                         int T_, int C, int v0, int nv, int add_pos) {
  tp_embed_forward<T>(S(out), inp, CS(wte), CS(wpe), B, T_, C, v0, nv, add_pos, stream());
}
template <typename T>
void cu_tp_embed_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B,
                          int T_, int C, int v0, int nv) {
  tp_embed_backward<T>(S(dwte), S(dwpe), CS(dout), inp, B, T_, C, v0, nv, stream());
}
template <typename T> void cu_bias_forward(float *out, const float *bias, int N, int OC) {
  bias_forward<T>(S(out), CS(bias), N, OC, stream());
}
template <typename T> void cu_bias_backward(float *dbias, const float *dout, int N, int OC) {
  bias_backward<T>(S(dbias), CS(dout), N, OC, stream());
}
template <typename T> void cu_tp_xent_max(float *M, const float *logits, int N, int Vl, int nreal) {
  tp_xent_max<T>(M, CS(logits), N, Vl, nreal, stream());
}
template <typename T>
void cu_tp_xent_exp(double *S_, float *ex, const float *logits, const float *M,
                    const int32_t *targets, int N, int Vl, int nreal, int v0) {
  tp_xent_exp<T>(S_, S(ex), CS(logits), M, targets, N, Vl, nreal, v0, stream());
}
template <typename T>
void cu_tp_xent_finish(float *losses, float *probs, const double *S_, const float *M,
                       const int32_t *targets, int N, int Vl, int nreal) {
  tp_xent_finish<T>(losses, S(probs), S_, M, targets, N, Vl, nreal, stream());
}
template <typename T>
void cu_tp_xent_backward(float *dlogits, const float *dlosses, const float *probs,
                         const int32_t *targets, int N, int Vl, int v0) {
  tp_xent_backward<T>(S(dlogits), dlosses, CS(probs), targets, N, Vl, v0, stream());
}
// params, m, v: fp32 master and state; grads: T; params_copy (T, or NULL): the weights the
// next forward reads, written in the same pass (no cast_copy after the update)
template <typename T>
void cu_adamw_update(float *params, float *m, float *v, float *params_copy, const float *grads,
                     size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                     float grad_scale, int t) {
  adamw_update<T>(params, m, v, S(params_copy), CS(grads), n, lr, beta1, beta2, eps,
                  weight_decay, grad_scale, t, stream());
}
void cu_cast_copy(float *copy, const float *master, size_t n) {
  cast(reinterpret_cast<bf16 *>(copy), master, n, stream());
}
// config tf32: cuBLASLt's TF32 compute type; in the emulation build the SIMT GEMM rounds its
// operands the same way. Only fp32 GEMMs change (bf16 operands are exact in TF32).
void cu_set_tf32(int on) {
#if defined(MF_CUDA_EMULATION)
  matmul_simt_set_tf32(on);
#else
  matmul_set_tf32(on);
#endif
}
// the host needs the value (clipping, logging): one double comes back, the stream drains
template <typename T> double cu_sumsq(const float *x, size_t n) {
  static double *d_out;
  if (!d_out) MF_CUDA_CHECK(cudaMalloc(&d_out, sizeof *d_out));
  double h = 0;
  sumsq<T>(d_out, CS(x), n, stream());
  cu_to_host(&h, d_out, sizeof h);
  return h;
}
#undef S
#undef CS

template <typename T> mf_backend make_backend() {
  const bool half = sizeof(T) == 2;
  mf_backend b = {};
  b.name = half ? "cuda-bf16" : "cuda";
  b.device = MF_CUDA;
  b.act = half ? MF_BF16 : MF_F32;
#define MF_OP(name, fields)                     \
  b.name##_forward = cu_##name##_forward<T>;    \
  b.name##_backward = cu_##name##_backward<T>;
#include "kernels/ops.def"
#undef MF_OP
  b.accumulate = cu_accumulate<T>;
  b.adamw_update = cu_adamw_update<T>;
  b.sumsq = cu_sumsq<T>;
  b.attention_kv_forward = nullptr;  // generation and serving run on the CPU backend
  b.tp_embed_forward = cu_tp_embed_forward<T>;
  b.tp_embed_backward = cu_tp_embed_backward<T>;
  b.bias_forward = cu_bias_forward<T>;
  b.bias_backward = cu_bias_backward<T>;
  b.tp_xent_max = cu_tp_xent_max<T>;
  b.tp_xent_exp = cu_tp_xent_exp<T>;
  b.tp_xent_finish = cu_tp_xent_finish<T>;
  b.tp_xent_backward = cu_tp_xent_backward<T>;
  b.residual_layernorm_forward = cu_residual_layernorm_forward<T>;
  b.alloc = cu_alloc;
  b.free = cu_free;
  b.memset0 = cu_memset0;
  b.to_device = cu_to_device;
  b.to_host = cu_to_host;
  b.copy = cu_copy;
  b.cast_copy = half ? cu_cast_copy : nullptr;
  b.set_tf32 = cu_set_tf32;
  b.stream = cu_stream;
  b.graph_begin = cu_graph_begin;
  b.graph_end = cu_graph_end;
  b.graph_launch = cu_graph_launch;
  b.graph_free = cu_graph_free;
  return b;
}

}  // namespace

// filled before main (no kernel runs then); C linkage, declared in kernels/backend.h
extern "C" const mf_backend mf_backend_cuda = make_backend<float>();
extern "C" const mf_backend mf_backend_cuda_bf16 = make_backend<bf16>();
