/* Minimal CBLAS for tests/gpu/run.sh's direct build on a machine without a BLAS: only what
 * kernels/cpu/matmul.c calls (cblas_sgemm, row-major). Never used by the CMake build. */
#ifndef MF_GPU_SHIM_CBLAS_H
#define MF_GPU_SHIM_CBLAS_H
#ifdef __cplusplus
extern "C" {
#endif
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);
#ifdef __cplusplus
}
#endif
#endif
