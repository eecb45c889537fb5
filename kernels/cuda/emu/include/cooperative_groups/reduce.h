/* CUDA emulator stand-in for <cooperative_groups/reduce.h> (reduce is in the main header). */
#include "../cooperative_groups.h"
