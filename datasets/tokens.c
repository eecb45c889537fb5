#include "datasets/tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/h5.h"
#include "core/rng.h"

void mf_tokens_path(char *out, size_t n, const char *dir, const char *name, const char *split) {
  snprintf(out, n, "%s/%s/%s.h5", dir, name, split);
}

mf_status mf_tokens_load(mf_token_set *ts, const char *path, int vocab_size) {
  memset(ts, 0, sizeof *ts);
  mf_h5 *h;
  MF_TRY(mf_h5_open(&h, path));
  int nd;
  int64_t shape[4];
  mf_status st = mf_h5_shape(h, "/tokens", &nd, shape);
  if (st == MF_OK && (nd != 1 || shape[0] < 2))
    st = MF_ERR(MF_ERR_FORMAT, "'%s': /tokens must be a 1-D array of at least 2 token ids", path);
  if (st == MF_OK) {
    ts->n = shape[0];
    ts->tok = malloc((size_t)ts->n * sizeof *ts->tok);
    if (!ts->tok) st = MF_ERR(MF_ERR_NOMEM, "out of memory loading %s", path);
  }
  if (st == MF_OK) st = mf_h5_read(h, "/tokens", MF_U16, ts->tok, 1, shape);
  mf_h5_close(h);
  for (int64_t i = 0; st == MF_OK && i < ts->n; i++)
    if (ts->tok[i] >= vocab_size)
      st = MF_ERR(MF_ERR_FORMAT, "'%s': token %d at index %lld is outside the vocabulary (%d ids); "
                  "was it prepared with another tokenizer?", path, ts->tok[i], (long long)i, vocab_size);
  if (st != MF_OK) mf_tokens_free(ts);
  return st;
}

void mf_tokens_free(mf_token_set *ts) {
  free(ts->tok);
  memset(ts, 0, sizeof *ts);
}

mf_status mf_tokens_write(const char *path, const uint16_t *tok, int64_t n, const char *source,
                          const char *split, int64_t docs) {
  mf_h5 *h;
  MF_TRY(mf_h5_create(&h, path));
  mf_status st = mf_h5_write(h, "/tokens", MF_U16, tok, 1, (int64_t[]){n});
  if (st == MF_OK) st = mf_h5_set_str(h, "/", "format", "mforge-tokens");
  if (st == MF_OK) st = mf_h5_set_str(h, "/", "vocab", "gpt2");
  if (st == MF_OK) st = mf_h5_set_str(h, "/", "source", source);
  if (st == MF_OK) st = mf_h5_set_str(h, "/", "split", split);
  if (st == MF_OK) st = mf_h5_set_i64(h, "/", "documents", docs);
  if (st == MF_OK) st = mf_h5_set_i64(h, "/", "tokens", n);
  if (st != MF_OK) {
    mf_h5_abort(h);
    return st;
  }
  return mf_h5_commit(h);
}

/* ---- loader ---- */

static void make_perm(mf_loader *l) {
  if (!l->shuffle) {
    for (int64_t i = 0; i < l->nwin; i++) l->perm[i] = i;
    return;
  }
  mf_rng r;
  mf_rng_seed(&r, l->seed, 0x5eed0000u + (uint64_t)l->epoch);
  mf_rng_permutation(&r, l->perm, l->nwin);
}

mf_status mf_loader_init(mf_loader *l, const mf_token_set *ts, int T, uint64_t seed, int shuffle) {
  memset(l, 0, sizeof *l);
  l->ts = ts;
  l->T = T;
  l->seed = seed;
  l->shuffle = shuffle;
  l->nwin = (ts->n - 1) / T;
  if (l->nwin < 1)
    return MF_ERR(MF_ERR_INPUT, "data set of %lld tokens is too short for seq_len %d", (long long)ts->n, T);
  l->perm = malloc((size_t)l->nwin * sizeof *l->perm);
  if (!l->perm) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  make_perm(l);
  return MF_OK;
}

void mf_loader_free(mf_loader *l) {
  free(l->perm);
  l->perm = NULL;
}

void mf_loader_seek(mf_loader *l, int64_t epoch, int64_t cursor) {
  if (epoch != l->epoch) {
    l->epoch = epoch;
    make_perm(l);
  }
  l->cursor = cursor;
}

void mf_loader_begin_batch(mf_loader *l, int64_t batch) {
  if (l->cursor + batch > l->nwin && l->cursor > 0) {
    l->epoch++;
    l->cursor = 0;
    make_perm(l);
  }
}

void mf_loader_fill(const mf_loader *l, int64_t offset, int B, int32_t *inputs, int32_t *targets) {
  int T = l->T;
  for (int b = 0; b < B; b++) {
    /* a batch larger than the data set wraps around within the epoch */
    int64_t w = l->perm[(l->cursor + offset + b) % l->nwin];
    const uint16_t *src = l->ts->tok + w * T;
    for (int t = 0; t < T; t++) {
      inputs[b * T + t] = src[t];
      targets[b * T + t] = src[t + 1];
    }
  }
}

void mf_loader_advance(mf_loader *l, int64_t batch) { l->cursor += batch; }
