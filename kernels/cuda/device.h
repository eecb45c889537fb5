/* Host-side CUDA queries, callable from C. Present only when built with CUDA
 * (MF_HAVE_CUDA); core/device.c wraps them so the rest of the tree never needs #ifdefs. */
#ifndef MF_CUDA_DEVICE_H
#define MF_CUDA_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
/* Number of usable GPUs; 0 with the reason in why (e.g. "no CUDA-capable device"). */
int mf_cuda_device_count(char *why, int why_len);
int mf_cuda_device_name(int dev, char *name, int len);
/* Makes dev the current device of the calling thread; -1 with the reason in why. */
int mf_cuda_set_device(int dev, char *why, int why_len);
/* Device memory in use on the current device (total - free), bytes; 0 on error. */
size_t mf_cuda_mem_used(void);
#ifdef __cplusplus
}
#endif

#endif
