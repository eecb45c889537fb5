/* Token data sets and their loader.
 * A prepared data set is <data.dir>/<name>/{train,val}.h5, each holding /tokens (u16,
 * GPT-2 BPE ids, documents separated by <|endoftext|>) and attributes saying how it was
 * made. The loader cuts the tokens into windows of seq_len+1 (stride seq_len) and walks a
 * seeded permutation of them per epoch. Its position is (epoch, cursor) in units of
 * windows of the global batch, so any world size and micro-batch split sees the same
 * windows in the same order, and a resumed run continues exactly where it stopped. */
#ifndef MF_TOKENS_H
#define MF_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mf_token_set {
  uint16_t *tok; /* [n] */
  int64_t n;
} mf_token_set;

/* Reads /tokens; every id must be < vocab_size (MF_ERR_FORMAT otherwise). */
mf_status mf_tokens_load(mf_token_set *ts, const char *path, int vocab_size);
void mf_tokens_free(mf_token_set *ts);
/* Writes /tokens plus attributes (vocab, source, split, documents) atomically. */
mf_status mf_tokens_write(const char *path, const uint16_t *tok, int64_t n, const char *source,
                          const char *split, int64_t docs);
/* "<dir>/<name>/<split>.h5" */
void mf_tokens_path(char *out, size_t n, const char *dir, const char *name, const char *split);

typedef struct mf_loader {
  const mf_token_set *ts;
  int T;             /* seq_len */
  int64_t nwin;      /* windows of T+1 tokens at stride T */
  int shuffle;
  uint64_t seed;
  int64_t epoch;     /* position: epoch and window index within its permutation */
  int64_t cursor;
  int64_t *perm;     /* [nwin] permutation of this epoch (identity when not shuffled) */
} mf_loader;

mf_status mf_loader_init(mf_loader *l, const mf_token_set *ts, int T, uint64_t seed, int shuffle);
void mf_loader_free(mf_loader *l);
/* Moves to (epoch, cursor), e.g. from a checkpoint. */
void mf_loader_seek(mf_loader *l, int64_t epoch, int64_t cursor);
/* Before a global batch of `batch` windows: starts a new epoch when this one has fewer
 * than `batch` windows left (the remainder is dropped, as torch's drop_last). */
void mf_loader_begin_batch(mf_loader *l, int64_t batch);
/* Data parallelism: micro-batch k (of B windows) of data-parallel rank q (of dp) is
 * windows [(k*dp + q)*B, (k*dp + q + 1)*B) of the global batch. Together the ranks cover
 * the global batch once, whatever dp is, so a checkpointed (epoch, cursor) resumes at any
 * world size without a window seen twice or skipped. */
static inline int64_t mf_loader_rank_offset(int k, int dp, int q, int B) {
  return ((int64_t)k * dp + q) * B;
}
/* Windows [cursor+offset, cursor+offset+B) of the current batch: inputs and targets [B,T]. */
void mf_loader_fill(const mf_loader *l, int64_t offset, int B, int32_t *inputs, int32_t *targets);
void mf_loader_advance(mf_loader *l, int64_t batch);

#endif
