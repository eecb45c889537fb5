// The CUDA backend table (kernels/backend.h): the launchers of kernels/cuda in fp32 behind
// the CPU kernels' types, all on one stream, plus device memory. The trainer, the tape and
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
void cu_to_host(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  MF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  MF_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

// ---- the kernels, fp32, with the CPU kernels' signatures ----

using namespace mf_cuda;

void cu_encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B,
                        int T, int C) {
  encoder_forward<float>(out, inp, wte, wpe, B, T, C, stream());
}
void cu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B,
                         int T, int C) {
  encoder_backward<float>(dwte, dwpe, dout, inp, B, T, C, stream());
}
void cu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int N, int C) {
  layernorm_forward<float>(out, mean, rstd, inp, weight, bias, N, C, stream());
}
void cu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int N, int C) {
  layernorm_backward<float>(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, stream());
}
void cu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                       int C, int OC, int wt) {
#if defined(MF_CUDA_EMULATION)
  matmul_simt_forward<float>(out, inp, weight, bias, N, C, OC, wt, stream());
#else
  matmul_forward<float>(out, inp, weight, bias, N, C, OC, wt, stream());
#endif
}
void cu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC, int wt) {
#if defined(MF_CUDA_EMULATION)
  matmul_simt_backward<float>(dinp, dweight, dbias, dout, inp, weight, N, C, OC, wt, stream());
#else
  matmul_backward<float>(dinp, dweight, dbias, dout, inp, weight, N, C, OC, wt, stream());
#endif
}
void cu_gelu_forward(float *out, const float *inp, size_t N) {
  gelu_forward<float>(out, inp, N, stream());
}
void cu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
  gelu_backward<float>(dinp, inp, dout, N, stream());
}
void cu_residual_forward(float *out, const float *a, const float *b, size_t N) {
  residual_forward<float>(out, a, b, N, stream());
}
void cu_residual_backward(float *da, float *db, const float *dout, size_t N) {
  residual_backward<float>(da, db, dout, N, stream());
}
void cu_accumulate(float *acc, const float *x, size_t N) { accumulate<float>(acc, x, N, stream()); }
void cu_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH) {
  attention_forward<float>(out, lse, qkv, B, T, C, NH, stream());
}
void cu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                           const float *lse, int B, int T, int C, int NH) {
  attention_backward<float>(dqkv, dout, qkv, out, lse, B, T, C, NH, stream());
}
void cu_softmax_xent_forward(float *losses, float *probs, const float *logits,
                             const int32_t *targets, int N, int V, int Vp) {
  softmax_xent_forward<float>(losses, probs, logits, targets, N, V, Vp, stream());
}
void cu_softmax_xent_backward(float *dlogits, const float *dlosses, const float *probs,
                              const int32_t *targets, int N, int V, int Vp) {
  softmax_xent_backward<float>(dlogits, dlosses, probs, targets, N, V, Vp, stream());
}
void cu_adamw_update(float *params, float *m, float *v, const float *grads, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                     int t) {
  adamw_update<float>(params, m, v, nullptr, grads, n, lr, beta1, beta2, eps, weight_decay,
                      grad_scale, t, stream());
}
// the host needs the value (clipping, logging): one double comes back, the stream drains
double cu_sumsq(const float *x, size_t n) {
  static double *d_out;
  if (!d_out) MF_CUDA_CHECK(cudaMalloc(&d_out, sizeof *d_out));
  double h = 0;
  sumsq<float>(d_out, x, n, stream());
  cu_to_host(&h, d_out, sizeof h);
  return h;
}

mf_backend make_backend() {
  mf_backend b = {};
  b.name = "cuda";
  b.device = MF_CUDA;
#define MF_OP(name, fields)                  \
  b.name##_forward = cu_##name##_forward;    \
  b.name##_backward = cu_##name##_backward;
#include "kernels/ops.def"
#undef MF_OP
  b.accumulate = cu_accumulate;
  b.adamw_update = cu_adamw_update;
  b.sumsq = cu_sumsq;
  b.attention_kv_forward = nullptr;  // generation and serving run on the CPU backend
  b.alloc = cu_alloc;
  b.free = cu_free;
  b.memset0 = cu_memset0;
  b.to_device = cu_to_device;
  b.to_host = cu_to_host;
  return b;
}

}  // namespace

// filled before main (no kernel runs then); C linkage, declared in kernels/backend.h
extern "C" const mf_backend mf_backend_cuda = make_backend();
