/* `mforge export`: a training checkpoint -> a serving model file. The optimizer moments
 * and the training state are dropped; the config (with the model family), the tokenizer
 * reference and the parameters stay, in fp32 or bf16.
 *
 * File layout (an mforge checkpoint with kind=export, so every reader of checkpoints,
 * `mforge generate` and `mforge serve` included, opens it unchanged):
 *   /        attrs format="mforge-checkpoint", version, family, kind="export", dtype,
 *            source (the checkpoint it came from), step (training steps it had)
 *   /config  attrs yaml, family, version, tokenizer ("gpt2")
 *   /params/<name>  fp32, or bf16 as a 16-bit HDF5 float type (sign 1, exponent 8,
 *            mantissa 7: the top half of an fp32) with attr dtype="bf16". HDF5 converts
 *            it to fp32 on read, so loading needs no special path; h5dump shows values. */
#ifndef MF_EXPORT_H
#define MF_EXPORT_H

#include <stdint.h>

#include "core/status.h"

typedef enum mf_export_dtype { MF_EXPORT_FP32, MF_EXPORT_BF16 } mf_export_dtype;

/* Writes out (atomically: temporary name, fsync, rename). An existing out is an error
 * unless force. */
mf_status mf_export(const char *ckpt, const char *out, mf_export_dtype dtype, int force);

/* The command: parses its flags, prints one summary line; returns the exit code
 * (user mistakes: 2 with a one-line "mforge: error: ..."). argv[0] is "export". */
int mf_cmd_export(int argc, char **argv);

#endif
