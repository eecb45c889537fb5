/* CUDA emulator stand-in for <cuda_fp16.h>: everything lives in kernels/cuda/emu/emu.h. */
#include "kernels/cuda/emu/emu.h"
