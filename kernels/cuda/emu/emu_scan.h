/* Source scanning for the CUDA emulation build (host-side tool code, not part of kernels).
 *  - mf_emu_rewrite: the one source change the emulator needs, done at build time on a copy:
 *    `__shared__ T x[N];` becomes a reference into the emulated block's shared memory and
 *    `extern __shared__ T s[];` a pointer to its dynamic shared memory. Line numbers are kept.
 *  - mf_emu_list_kernels: every __global__ function defined in a source (for the count of
 *    kernels that exist vs kernels the emulation tests launched). */
#ifndef MF_CUDA_EMU_SCAN_H
#define MF_CUDA_EMU_SCAN_H

#include <string>
#include <vector>

struct mf_emu_kernel_def {
  std::string name;
  int line;
};

/* Rewrites src (named path in messages). Returns false with "path:line: error: ..." in err. */
bool mf_emu_rewrite(const std::string &src, const std::string &path, std::string *out,
                    std::string *err);
/* __global__ function names defined or declared in src, first occurrence of each. */
std::vector<mf_emu_kernel_def> mf_emu_list_kernels(const std::string &src);

#endif
