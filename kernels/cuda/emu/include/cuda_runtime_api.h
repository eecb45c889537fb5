/* CUDA emulator stand-in for <cuda_runtime_api.h>: everything lives in kernels/cuda/emu/emu.h. */
#include "kernels/cuda/emu/emu.h"
