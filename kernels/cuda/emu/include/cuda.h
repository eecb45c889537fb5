/* CUDA emulator stand-in for <cuda.h>: everything lives in kernels/cuda/emu/emu.h. */
#include "kernels/cuda/emu/emu.h"
