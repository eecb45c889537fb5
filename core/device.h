/* Picks the backend for `device: auto|cpu|cuda` and `precision`. */
#ifndef MF_DEVICE_H
#define MF_DEVICE_H

#include "core/config.h"

struct mf_backend;

/* Sets *be to the backend to use and describes it in desc (for the start-up line).
 * cuda asked for where there is none, or bf16 on the CPU: MF_ERR_CONFIG saying what to change. */
mf_status mf_device_select(const mf_config *cfg, const struct mf_backend **be, char *desc, int n);
/* GPUs visible to this process (0 without a CUDA build or driver). */
int mf_device_gpu_count(char *why, int n);

#endif
