/* `mforge data prepare NAME`: text corpora from installed packages (DATA.md) -> GPT-2 BPE
 * tokens -> <out>/<NAME>/{train,val}.h5. Documents are split into train/val by a seeded
 * draw (about 5% to val, at least one document each), each document starts with
 * <|endoftext|>, and the files record their source and split in attributes. */
#ifndef MF_PREPARE_H
#define MF_PREPARE_H

#include "core/status.h"

/* Names accepted by mf_data_prepare, for messages: "sotu, moby-dick, fortunes". */
const char *mf_data_names(void);
int mf_data_known(const char *name);
/* Writes <out_dir>/<name>/train.h5 and val.h5; prints a one-line summary when verbose. */
mf_status mf_data_prepare(const char *name, const char *out_dir, int verbose);

#endif
