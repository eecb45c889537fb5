/* Picks the backend for `device: auto|cpu|cuda` and `precision`. */
#ifndef MF_DEVICE_H
#define MF_DEVICE_H

#include <stddef.h>

#include "core/config.h"

struct mf_backend;

/* Sets *be to the backend to use and describes it in desc (for the start-up line).
 * cuda asked for where there is none, or bf16 on the CPU: MF_ERR_CONFIG saying what to change. */
mf_status mf_device_select(const mf_config *cfg, const struct mf_backend **be, char *desc, int n);
/* GPUs visible to this process (0 without a CUDA build or driver). */
int mf_device_gpu_count(char *why, int n);
/* The CUDA backend table, fp32 or (bf16 != 0) bf16 mixed precision (loaded on first use,
 * see device.c), or NULL with the reason. */
const struct mf_backend *mf_device_cuda_backend(int bf16, char *why, int n);
/* Several ranks on a node: this rank's GPU is local_rank modulo the visible GPUs, made
 * current before the backend creates its stream or memory (*dev set to it). */
mf_status mf_device_bind(int local_rank, int *dev);
/* Device memory in use (bytes; 0 without CUDA): the benchmarks' peak-memory figure. */
size_t mf_device_mem_used(void);

#endif
