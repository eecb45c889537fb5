/* Tensors: dtype + device + shape (<= 4 dims, row-major, contiguous) + data.
 * A tensor never owns memory: data lives in the params buffer, the grads buffer or
 * the step arena. `grad` is NULL until backward needs it. */
#ifndef MF_TENSOR_H
#define MF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum mf_dtype { MF_F32, MF_BF16, MF_F16, MF_I32, MF_I64, MF_U8, MF_U16 } mf_dtype;
typedef enum mf_device { MF_CPU, MF_CUDA } mf_device;

#define MF_MAX_DIMS 4

typedef struct mf_tensor {
  void *data;
  void *grad;          /* same dtype/shape as data; NULL until written */
  mf_dtype dtype;
  mf_device device;
  int ndim;
  int64_t shape[MF_MAX_DIMS];
  int requires_grad;   /* set on params and on anything computed from them */
  int is_param;        /* grad points into the flat grads buffer; kernels accumulate */
  int remat;           /* recomputed activation (core/tape.h): 1 + the tape index of the
                        * node that makes it again in backward; 0: stored */
} mf_tensor;

size_t mf_dtype_size(mf_dtype dt);
const char *mf_dtype_name(mf_dtype dt);
int64_t mf_numel(const mf_tensor *t);
size_t mf_nbytes(const mf_tensor *t);
/* A view over existing memory. */
mf_tensor mf_view(void *data, mf_dtype dt, int ndim, const int64_t *shape);
/* "[4, 64, 768]" into buf. */
const char *mf_shape_str(const mf_tensor *t, char *buf, size_t n);

#endif
