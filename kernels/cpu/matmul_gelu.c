/* The MLP up-projection as one op: out = gelu(inp @ W + bias), keeping the matmul output
 * (pre_gelu) for the backward. On the CPU it is the two kernels back to back, so results
 * are bitwise those of matmul + gelu; the op exists for the GPU, where cuBLASLt applies
 * the GELU in the GEMM's epilogue (kernels/cuda/matmul.cu).
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
