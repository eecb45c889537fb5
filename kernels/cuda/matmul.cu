// Matmul on cuBLASLt with fused epilogues (GPU only: the emulator has no cuBLASLt, so this
// file is left out of the MF_CUDA_EMULATION build; its checks run in tests/gpu).
// Parameter gradients accumulate (+=) into dweight (GEMM with beta = 1) and dbias; the
// activation gradients dinp / dpre are written (=, beta = 0).
//
//   wt == 0: weight[C,OC] (Conv1D layout, out = inp @ weight)
//   wt == 1: weight[OC,C] (nn.Linear / tied embedding layout, out = inp @ weight^T)
// cuBLASLt is column-major: a row-major X[r,c] is the column-major X^T, so out[N,OC] is
// computed as out^T = op(W) inp^T with m = OC, n = N, k = C, and the bias (length m = OC)
// is the epilogue's per-row bias.
//
// Epilogues: BIAS (forward), GELU_AUX_BIAS (forward of the fused matmul + bias + GELU,
// writing the pre-GELU values to aux for the backward), DGELU (the backward through that
// GELU fused into the dinp GEMM of the next matmul). Where cuBLASLt offers no algorithm with
// a GELU epilogue (it may not for fp32), the same result comes from the plain GEMM and our
// gelu kernels. Bias gradients come from bias.cu
// (deterministic, +=): cuBLASLt's BGRAD epilogues write (=) in the output type.
// bf16: bf16 operands, fp32 accumulation (CUBLAS_COMPUTE_32F). fp32: full fp32 by
// default, TF32 tensor cores after matmul_set_tf32(1).
// The heuristic's choice is cached per problem (shape, layout, epilogue, type, pointer
// alignment): in the steady state a call creates four layout descriptors and one matmul
// descriptor and launches.
#if !defined(MF_CUDA_EMULATION)

#include <cublasLt.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#define MF_CUBLAS_CHECK(call)                                                       \
  do {                                                                              \
    cublasStatus_t mf_s_ = (call);                                                  \
    if (mf_s_ != CUBLAS_STATUS_SUCCESS)                                             \
      mf_cuda::die(__FILE__, __LINE__, #call, cublasLtGetStatusString(mf_s_));      \
  } while (0)

#define LT_WORKSPACE ((size_t)32 << 20)  // 32 MiB: what cuBLAS recommends for Hopper
#define LT_CACHE 64

namespace mf_cuda {

// ---------------------------------------------------------------- cuBLASLt state

namespace {

cublasLtHandle_t g_lt = nullptr;
void *g_ws = nullptr;
int g_tf32 = 0;

struct AlgoKey {
  int m, n, k, ta, tb, lda, ldb, ldd, ld_aux, epi, dtype, tf32, accum, align;
  bool operator==(const AlgoKey &o) const { return memcmp(this, &o, sizeof o) == 0; }
};
struct AlgoEntry {
  AlgoKey key;
  cublasLtMatmulAlgo_t algo;
  bool ok;  // false: cuBLASLt has none (remembered, so the heuristic is asked once)
};
AlgoEntry g_cache[LT_CACHE];
int g_cached = 0, g_next = 0;

void lt_init() {
  if (g_lt) return;
  MF_CUBLAS_CHECK(cublasLtCreate(&g_lt));
  MF_CUDA_CHECK(cudaMalloc(&g_ws, LT_WORKSPACE));
}

int align_of(const void *p) {  // 256, 128, .., 2: the largest power of two dividing p
  uintptr_t a = (uintptr_t)p;
  int r = 256;
  while (r > 2 && (a & (uintptr_t)(r - 1))) r >>= 1;
  return p ? r : 256;
}

template <typename T> cudaDataType_t dtype_of();
template <> cudaDataType_t dtype_of<float>() { return CUDA_R_32F; }
template <> cudaDataType_t dtype_of<bf16>() { return CUDA_R_16BF; }

template <typename A> void set_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const A &v) {
  MF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, a, &v, sizeof v));
}

// D[m,n] (column-major, ld ldd) = op(A)[m,k] op(B)[k,n] (+ D if accum), then the epilogue.
// A is [m,k] (ld lda) or, with ta, [k,m] transposed; likewise B with tb. bias: [m];
// aux: [m,n] column-major, ld ld_aux. Returns false, launching nothing, when cuBLASLt has no
// algorithm for it and may_fail is set (the GELU epilogues then fall back to separate
// kernels); otherwise no algorithm is an error.
template <typename T>
bool lt_matmul(T *D, const T *A, const T *B, int m, int n, int k, int ta, int tb, int lda,
               int ldb, int ldd, int accum, cublasLtEpilogue_t epi, const T *bias, T *aux,
               int ld_aux, cudaStream_t stream, bool may_fail = false) {
  lt_init();
  const cudaDataType_t dt = dtype_of<T>();
  const int tf32 = dt == CUDA_R_32F && g_tf32;
  const cublasComputeType_t ct = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  cublasLtMatmulDesc_t op;
  MF_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, ct, CUDA_R_32F));
  set_attr(op, CUBLASLT_MATMUL_DESC_TRANSA, (int32_t)(ta ? CUBLAS_OP_T : CUBLAS_OP_N));
  set_attr(op, CUBLASLT_MATMUL_DESC_TRANSB, (int32_t)(tb ? CUBLAS_OP_T : CUBLAS_OP_N));
  set_attr(op, CUBLASLT_MATMUL_DESC_EPILOGUE, (uint32_t)epi);
  if (bias) {
    set_attr(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, (const void *)bias);
    set_attr(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, (int32_t)dt);
  }
  if (aux) {
    set_attr(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, (void *)aux);
    set_attr(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, (int64_t)ld_aux);
  }
  cublasLtMatrixLayout_t la, lb, ld;
  MF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, dt, ta ? k : m, ta ? m : k, lda));
  MF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, dt, tb ? n : k, tb ? k : n, ldb));
  MF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, dt, m, n, ldd));

  int al = align_of(A);
  if (align_of(B) < al) al = align_of(B);
  if (align_of(D) < al) al = align_of(D);
  if (align_of(bias) < al) al = align_of(bias);
  if (align_of(aux) < al) al = align_of(aux);
  const AlgoKey key{m, n, k, ta, tb, lda, ldb, ldd, ld_aux, (int)epi, (int)dt, tf32, accum, al};
  const cublasLtMatmulAlgo_t *algo = nullptr;
  bool known = false;
  for (int i = 0; i < g_cached && !known; i++)
    if (g_cache[i].key == key) {
      known = true;
      algo = g_cache[i].ok ? &g_cache[i].algo : nullptr;
    }
  if (!known) {
    cublasLtMatmulPreference_t pref;
    MF_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = LT_WORKSPACE;
    uint32_t a32 = (uint32_t)al;
    MF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    MF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a32, sizeof a32));
    MF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a32, sizeof a32));
    MF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a32, sizeof a32));
    MF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a32, sizeof a32));
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(g_lt, op, la, lb, ld, ld, pref, 1, &res, &found);
    if (hs == CUBLAS_STATUS_NOT_SUPPORTED) found = 0;  // e.g. an epilogue this type lacks
    else MF_CUBLAS_CHECK(hs);
    MF_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    int slot = g_cached < LT_CACHE ? g_cached++ : (g_next++ % LT_CACHE);
    g_cache[slot].key = key;
    g_cache[slot].algo = res.algo;
    g_cache[slot].ok = found > 0;
    algo = found > 0 ? &g_cache[slot].algo : nullptr;
  }
  if (!algo) {
    if (may_fail) {
      MF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
      MF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
      MF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(ld));
      MF_CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
      return false;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "no cuBLASLt algorithm for m=%d n=%d k=%d ta=%d tb=%d epilogue=%d dtype=%d align=%d",
             m, n, k, ta, tb, (int)epi, (int)dt, al);
    die(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", msg);
  }
  const float alpha = 1.0f, beta = accum ? 1.0f : 0.0f;
  MF_CUBLAS_CHECK(cublasLtMatmul(g_lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, algo, g_ws,
                                 LT_WORKSPACE, stream));
  MF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
  MF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
  MF_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(ld));
  MF_CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
  return true;
}

void mm_check(int N, int C, int OC, int wt) {
  MF_REQUIRE(N >= 0 && C > 0 && OC > 0 && (wt == 0 || wt == 1), "N=%d C=%d OC=%d wt=%d", N, C, OC,
             wt);
}

}  // namespace

// ---------------------------------------------------------------- launchers

void matmul_set_tf32(int on) { g_tf32 = on != 0; }

void matmul_shutdown() {
  if (g_lt) {
    MF_CUDA_CHECK(cudaDeviceSynchronize());
    MF_CUBLAS_CHECK(cublasLtDestroy(g_lt));
    MF_CUDA_CHECK(cudaFree(g_ws));
  }
  g_lt = nullptr;
  g_ws = nullptr;
  g_cached = g_next = 0;
}

template <typename T>
void matmul_forward(T *out /* [N,OC] */, const T *inp /* [N,C] */,
                    const T *weight /* wt ? [OC,C] : [C,OC] */, const T *bias /* [OC] or NULL */,
                    int N, int C, int OC, int wt, cudaStream_t stream) {
  mm_check(N, C, OC, wt);
  if (N == 0) return;
  // out^T[OC,N] = op(W)[OC,C] inp^T[C,N]
  lt_matmul<T>(out, weight, inp, OC, N, C, wt, 0, wt ? C : OC, C, OC, 0,
               bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, bias, nullptr, 0, stream);
}

template <typename T>
void matmul_bias_gelu_forward(T *out /* [N,OC] */, T *pre_gelu /* [N,OC] */, const T *inp /* [N,C] */,
                              const T *weight /* wt ? [OC,C] : [C,OC] */, const T *bias /* [OC] */,
                              int N, int C, int OC, int wt, cudaStream_t stream) {
  mm_check(N, C, OC, wt);
  MF_REQUIRE(bias && pre_gelu, "matmul_bias_gelu_forward needs a bias and a pre_gelu buffer");
  MF_REQUIRE(OC % 8 == 0, "OC=%d: the GELU aux leading dimension must be a multiple of 8", OC);
  if (N == 0) return;
  if (!lt_matmul<T>(out, weight, inp, OC, N, C, wt, 0, wt ? C : OC, C, OC, 0,
                    CUBLASLT_EPILOGUE_GELU_AUX_BIAS, bias, pre_gelu, OC, stream, true)) {
    // no fused algorithm for this type/shape: the same result unfused
    lt_matmul<T>(pre_gelu, weight, inp, OC, N, C, wt, 0, wt ? C : OC, C, OC, 0,
                 CUBLASLT_EPILOGUE_BIAS, bias, nullptr, 0, stream);
    gelu_forward(out, (const T *)pre_gelu, (size_t)N * OC, stream);
  }
}

template <typename T>
void matmul_backward(T *dinp /* [N,C] or NULL */, T *dweight /* wt ? [OC,C] : [C,OC], or NULL */,
                     T *dbias /* [OC] or NULL */, const T *dout /* [N,OC] */, const T *inp /* [N,C] */,
                     const T *weight /* wt ? [OC,C] : [C,OC] */, int N, int C, int OC, int wt,
                     cudaStream_t stream) {
  mm_check(N, C, OC, wt);
  if (N == 0) return;
  if (dinp)  // dinp^T[C,N] = op(W)[C,OC] dout^T[OC,N]
    lt_matmul<T>(dinp, weight, dout, C, N, OC, !wt, 0, wt ? C : OC, OC, C, 0,
                 CUBLASLT_EPILOGUE_DEFAULT, nullptr, nullptr, 0, stream);
  if (dweight) {
    if (wt)  // dW[OC,C] += dout^T inp: column-major dW^T[C,OC] += inp^T[C,N] (dout^T)^T[N,OC]
      lt_matmul<T>(dweight, inp, dout, C, OC, N, 0, 1, C, OC, C, 1, CUBLASLT_EPILOGUE_DEFAULT,
                   nullptr, nullptr, 0, stream);
    else  // dW[C,OC] += inp^T dout: column-major dW^T[OC,C] += dout^T[OC,N] inp[N,C]
      lt_matmul<T>(dweight, dout, inp, OC, C, N, 0, 1, OC, C, OC, 1, CUBLASLT_EPILOGUE_DEFAULT,
                   nullptr, nullptr, 0, stream);
  }
  if (dbias) bias_backward(dbias, dout, N, OC, stream);
}

template <typename T>
void matmul_backward_dgelu(T *dpre /* [N,C] */, T *dbias_pre /* [C] or NULL */,
                           const T *dout /* [N,OC] */, const T *weight /* wt ? [OC,C] : [C,OC] */,
                           const T *pre_gelu /* [N,C] */, int N, int C, int OC, int wt,
                           cudaStream_t stream) {
  mm_check(N, C, OC, wt);
  MF_REQUIRE(dpre && pre_gelu, "matmul_backward_dgelu needs dpre and pre_gelu");
  MF_REQUIRE(C % 8 == 0, "C=%d: the GELU aux leading dimension must be a multiple of 8", C);
  if (N == 0) return;
  // dpre^T[C,N] = (op(W)[C,OC] dout^T[OC,N]) * gelu'(pre^T)
  if (!lt_matmul<T>(dpre, weight, dout, C, N, OC, !wt, 0, wt ? C : OC, OC, C, 0,
                    CUBLASLT_EPILOGUE_DGELU, nullptr, const_cast<T *>(pre_gelu), C, stream, true)) {
    lt_matmul<T>(dpre, weight, dout, C, N, OC, !wt, 0, wt ? C : OC, OC, C, 0,
                 CUBLASLT_EPILOGUE_DEFAULT, nullptr, nullptr, 0, stream);
    gelu_backward(dpre, pre_gelu, (const T *)dpre, (size_t)N * C, stream);  // in place
  }
  if (dbias_pre) bias_backward(dbias_pre, dpre, N, C, stream);
}

#define INST(T)                                                                                  \
  template void matmul_forward<T>(T *, const T *, const T *, const T *, int, int, int, int,        \
                                  cudaStream_t);                                                 \
  template void matmul_bias_gelu_forward<T>(T *, T *, const T *, const T *, const T *, int, int,   \
                                            int, int, cudaStream_t);                             \
  template void matmul_backward<T>(T *, T *, T *, const T *, const T *, const T *, int, int, int,  \
                                   int, cudaStream_t);                                           \
  template void matmul_backward_dgelu<T>(T *, T *, const T *, const T *, const T *, int, int, int, \
                                         int, cudaStream_t);
INST(float)
INST(bf16)
#undef INST

}  // namespace mf_cuda

#endif  // !MF_CUDA_EMULATION
