/* CUDA emulator stand-in for <device_launch_parameters.h>: everything lives in kernels/cuda/emu/emu.h. */
#include "kernels/cuda/emu/emu.h"
