/* bf16 <-> fp32 on the host: bf16 is fp32's top 16 bits; rounding to nearest, ties to
 * even, NaN kept quiet (the hardware's conversion, as the CUDA emulator checks). */
#ifndef MF_BF16_H
#define MF_BF16_H

#include <stdint.h>

uint16_t mf_f32_to_bf16(float x);
float mf_bf16_to_f32(uint16_t h);

#endif
