// fp32 <-> bf16 casts on CUDA (round to nearest even one way, exact the other).
// Parameter gradients accumulate (+=); activation gradients are written (=): a cast has
// neither; it writes its output. Used to make the bf16 copies of fp32 data (inputs,
// exported weights) and to read bf16 results back in fp32.
//
// One thread per 8 elements: 32 bytes of fp32 and 16 of bf16, all 16-byte accesses; the
// last group of a ragged n goes element by element.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace mf_cuda {

// ---------------------------------------------------------------- kernels

__global__ void cast_f32_bf16_kernel(bf16 *__restrict__ out /* [n] */,
                                     const float *__restrict__ in /* [n] */, size_t n) {
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
  if (i >= n) return;
  if (i + 8 <= n) {
    V16<float> a = ld16(in + i), b = ld16(in + i + 4);
    V16<bf16> o;
    MF_UNROLL
    for (int k = 0; k < 4; k++) {
      o.v[k] = __float2bfloat16(a.v[k]);
      o.v[4 + k] = __float2bfloat16(b.v[k]);
    }
    st16(out + i, o);
  } else {
    for (; i < n; i++) out[i] = __float2bfloat16(in[i]);
  }
}

__global__ void cast_bf16_f32_kernel(float *__restrict__ out /* [n] */,
                                     const bf16 *__restrict__ in /* [n] */, size_t n) {
  size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
  if (i >= n) return;
  if (i + 8 <= n) {
    V16<bf16> x = ld16(in + i);
    V16<float> a, b;
    MF_UNROLL
    for (int k = 0; k < 4; k++) {
      a.v[k] = __bfloat162float(x.v[k]);
      b.v[k] = __bfloat162float(x.v[4 + k]);
    }
    st16(out + i, a);
    st16(out + i + 4, b);
  } else {
    for (; i < n; i++) out[i] = __bfloat162float(in[i]);
  }
}

// ---------------------------------------------------------------- launchers

void cast(bf16 *out /* [n] */, const float *in /* [n] */, size_t n, cudaStream_t stream) {
  MF_REQUIRE(aligned16(out) && aligned16(in), "16-byte aligned arrays");
  if (n == 0) return;
  const int threads = 256;
  MF_LAUNCH(cast_f32_bf16_kernel, (unsigned)CEIL_DIV(CEIL_DIV(n, (size_t)8), (size_t)threads),
            threads, 0, stream, out, in, n);
  MF_CHECK_LAUNCH();
}

void cast(float *out /* [n] */, const bf16 *in /* [n] */, size_t n, cudaStream_t stream) {
  MF_REQUIRE(aligned16(out) && aligned16(in), "16-byte aligned arrays");
  if (n == 0) return;
  const int threads = 256;
  MF_LAUNCH(cast_bf16_f32_kernel, (unsigned)CEIL_DIV(CEIL_DIV(n, (size_t)8), (size_t)threads),
            threads, 0, stream, out, in, n);
  MF_CHECK_LAUNCH();
}

}  // namespace mf_cuda
