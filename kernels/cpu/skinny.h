/* Matmuls with few rows (a decode step of a small batch), forward only, for the server.
 *
 * A decode step reads every weight once and does little else. OpenBLAS's sgemm packs
 * (copies) its weight operand on every call whatever the number of rows, which at one to
 * a few rows costs more than the product. This kernel takes the weight as [OC, C] (each
 * output's weights contiguous: the tied embedding as it is, Conv1D weights transposed
 * once at load), reads each weight row once and reuses it from L1 for every input row:
 * 2-5x faster than sgemm up to 8 rows here, even at 16; sgemm wins past that.
 * The sums run in another order than sgemm's: results agree to float rounding, not bits. */
#ifndef MF_KERNELS_CPU_SKINNY_H
#define MF_KERNELS_CPU_SKINNY_H

#ifdef __cplusplus
extern "C" {
#endif

/* out[M,OC] = inp[M,C] @ weight[OC,C]^T + bias[OC] (bias may be NULL) */
void matmul_skinny_t_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int C, int OC);
/* Rows up to which it beats sgemm here. */
int skinny_rows_max(void);

#ifdef __cplusplus
}
#endif

#endif
