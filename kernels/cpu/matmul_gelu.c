/* The MLP's two GELU-fused matmuls. matmul_gelu, the up-projection: out = gelu(inp @ W +
 * bias), keeping the matmul output (pre_gelu) for the backward. gelu_matmul, the
 * down-projection: out = gelu(inp) @ W + bias where inp is that pre-GELU activation, keeping
 * act = gelu(inp); its backward gives the gradient of inp directly. On the CPU each is the
 * kernels back to back, so results are bitwise those of matmul + gelu (and gelu + matmul);
 * the ops exist for the GPU, where cuBLASLt applies the GELU in the forward GEMM's epilogue
 * and its derivative in the backward dinp GEMM's (kernels/cuda/matmul.cu).
 * Parameter gradients accumulate (+=) into dweight/dbias; the activation gradient dinp is
 * written (=), and so is the scratch dpre. */
#include "kernels/cpu/cpu.h"

void matmul_gelu_forward(float *out /* [N,OC] */, float *pre_gelu /* [N,OC] */,
                         const float *inp /* [N,C] */, const float *weight /* wt ? [OC,C] : [C,OC] */,
                         const float *bias /* [OC] */, int N, int C, int OC, int wt) {
  matmul_forward(pre_gelu, inp, weight, bias, N, C, OC, wt);
  gelu_forward(out, pre_gelu, (size_t)N * OC);
}

void matmul_gelu_backward(float *dinp /* [N,C] or NULL */, float *dweight /* wt ? [OC,C] : [C,OC], or NULL */,
                          float *dbias /* [OC] or NULL */, float *dpre /* [N,OC] */,
                          const float *dout /* [N,OC] */, const float *inp /* [N,C] */,
                          const float *weight /* wt ? [OC,C] : [C,OC] */, const float *pre_gelu /* [N,OC] */,
                          int N, int C, int OC, int wt) {
  gelu_backward(dpre, pre_gelu, dout, (size_t)N * OC);
  matmul_backward(dinp, dweight, dbias, dpre, inp, weight, N, C, OC, wt);
}

void gelu_matmul_forward(float *out /* [N,OC] */, float *act /* [N,C] */, const float *inp /* [N,C] */,
                         const float *weight /* wt ? [OC,C] : [C,OC] */, const float *bias /* [OC] or NULL */,
                         int N, int C, int OC, int wt) {
  gelu_forward(act, inp, (size_t)N * C);
  matmul_forward(out, act, weight, bias, N, C, OC, wt);
}

void gelu_matmul_backward(float *dinp /* [N,C] or NULL */, float *dweight /* wt ? [OC,C] : [C,OC], or NULL */,
                          float *dbias /* [OC] or NULL */, const float *dout /* [N,OC] */,
                          const float *inp /* [N,C] */, const float *weight /* wt ? [OC,C] : [C,OC] */,
                          const float *act /* [N,C] */, int N, int C, int OC, int wt) {
  matmul_backward(dinp, dweight, dbias, dout, act, weight, N, C, OC, wt);
  if (dinp) gelu_backward(dinp, inp, dinp, (size_t)N * C); /* in place: elementwise */
}
