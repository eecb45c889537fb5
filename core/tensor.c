#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

size_t mf_dtype_size(mf_dtype dt) {
  switch (dt) {
  case MF_F32: case MF_I32: return 4;
  case MF_BF16: case MF_F16: case MF_U16: return 2;
  case MF_I64: return 8;
  case MF_U8: return 1;
  }
  return 0;
}

const char *mf_dtype_name(mf_dtype dt) {
  static const char *names[] = {"f32", "bf16", "f16", "i32", "i64", "u8", "u16"};
  return (unsigned)dt < sizeof names / sizeof *names ? names[dt] : "?";
}

int64_t mf_numel(const mf_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

size_t mf_nbytes(const mf_tensor *t) { return (size_t)mf_numel(t) * mf_dtype_size(t->dtype); }

mf_tensor mf_view(void *data, mf_dtype dt, int ndim, const int64_t *shape) {
  mf_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dt;
  t.device = MF_CPU;
  t.ndim = ndim;
  for (int i = 0; i < ndim && i < MF_MAX_DIMS; i++) t.shape[i] = shape[i];
  return t;
}

const char *mf_shape_str(const mf_tensor *t, char *buf, size_t n) {
  size_t off = 0;
  off += (size_t)snprintf(buf + off, n - off, "[");
  for (int i = 0; i < t->ndim && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (off < n) snprintf(buf + off, n - off, "]");
  return buf;
}
