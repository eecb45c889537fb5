/* `mforge serve`: flags, the models of a folder (or one file), signals, and the order of
 * starting and stopping: signals are blocked before any thread exists (so only the loop's
 * signalfd sees them), the socket is bound before the models load (GET /health answers
 * 503 "loading" meanwhile), and on SIGTERM/SIGINT the loop drains, then the workers stop. */
#include "serving/serve.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/bpe.h"
#include "serving/sched.h"
#include "serving/server.h"

static const char *help =
    "usage: mforge serve DIR|MODEL.h5 [options]\n"
    "Serves every model file in DIR (or one file) over HTTP/1.1: POST /v1/completions (OpenAI-compatible,\n"
    "stream: true for Server-Sent Events), GET /v1/models, GET /health, GET /metrics, POST /v1/tokenize,\n"
    "POST /v1/detokenize. A model's id is its file name without .h5.\n"
    "  --host H              address to bind (default 127.0.0.1: this machine only)\n"
    "  --port P              TCP port (default 8080; 0: any free port, printed)\n"
    "  --api-key KEY         require 'Authorization: Bearer KEY' (default: $MFORGE_API_KEY if set)\n"
    "  --threads N           threads per model step (default: all cores)\n"
    "  --max-batch N         sequences in one step (default 64)\n"
    "  --batch-tokens N      new tokens in one step; longer prompts are prefilled in chunks (default 512)\n"
    "  --kv-block N          positions per KV-cache block (default 16)\n"
    "  --kv-mib M            KV-cache pool per model in MiB (default: max-batch full contexts, at most 1024)\n"
    "  --max-connections N   open connections (default 1024; more get 503)\n"
    "  --max-body BYTES      request body limit (default 1048576)\n"
    "  --max-prompt-tokens N prompt limit (default: the model's context - 1)\n"
    "  --max-tokens N        limit of max_tokens per choice (default: the model's context)\n"
    "  --header-timeout S    seconds to receive a request head (default 10)\n"
    "  --request-timeout S   seconds to receive a whole request (default 30)\n"
    "  --idle-timeout S      seconds an idle keep-alive or stalled connection stays open (default 60)\n"
    "  --drain-timeout S     seconds in-flight requests may finish after SIGTERM/SIGINT (default 30)\n"
    "  --log                 one line per request on stderr\n";

static int user_error(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "mforge: error: serve: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, " (see: mforge serve --help)\n");
  return 2;
}

static int fail(mf_status st) {
  int code = mf_status_exit_code(st);
  if (code == 2) fprintf(stderr, "mforge: error: serve: %s\n", mf_error_message());
  else fprintf(stderr, "mforge: error: serve: %s [%s]\n", mf_error_message(), mf_error_location());
  return code;
}

static int num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !(v >= lo && v <= hi)) return 0;
  *out = v;
  return 1;
}

typedef struct found {
  char path[PATH_MAX];
  char id[128];
} found;

static int by_id(const void *a, const void *b) { return strcmp(((const found *)a)->id, ((const found *)b)->id); }

/* id = file name without .h5; 0 when it has characters that do not belong in a URL path,
 * a JSON string or a Prometheus label as they are */
static int model_id(char *id, size_t n, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  snprintf(id, n, "%s", base);
  size_t l = strlen(id);
  if (l > 3 && strcmp(id + l - 3, ".h5") == 0) id[l - 3] = 0;
  if (!id[0] || strlen(base) >= n) return 0;
  for (const char *p = id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("._-:", *p))) return 0;
  return 1;
}

#define ID_RULE "model ids are file names without .h5 made of letters, digits and . _ - :"

/* the model files at path: a file, or the *.h5 of a folder that are GPT checkpoints */
static mf_status find_models(const char *path, found **out, int *n) {
  struct stat st;
  *out = NULL;
  *n = 0;
  if (stat(path, &st) != 0) return MF_ERR(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  mf_model_info info;
  if (!S_ISDIR(st.st_mode)) {
    MF_TRY(mf_model_probe(path, &info));
    if (strcmp(info.family, "gpt") != 0)
      return MF_ERR(MF_ERR_INPUT, "'%s' is a '%s' model; this server serves gpt models so far", path, info.family);
    *out = calloc(1, sizeof **out);
    if (!*out) return MF_ERR(MF_ERR_NOMEM, "out of memory");
    snprintf((*out)[0].path, sizeof (*out)[0].path, "%s", path);
    if (!model_id((*out)[0].id, sizeof (*out)[0].id, path))
      return MF_ERR(MF_ERR_INPUT, "cannot serve '%s' under its name: " ID_RULE "; rename the file", path);
    *n = 1;
    return MF_OK;
  }
  DIR *d = opendir(path);
  if (!d) return MF_ERR(MF_ERR_IO, "cannot read the folder '%s': %s", path, strerror(errno));
  int cap = 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t l = strlen(e->d_name);
    if (l <= 3 || strcmp(e->d_name + l - 3, ".h5") != 0 || e->d_name[0] == '.') continue;
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s/%s", path, e->d_name);
    char id[128];
    if (!model_id(id, sizeof id, full)) {
      fprintf(stderr, "mforge serve: skipping %s: " ID_RULE "\n", full);
      continue;
    }
    if (mf_model_probe(full, &info) != MF_OK) {
      fprintf(stderr, "mforge serve: skipping %s: %s\n", full, mf_error_message());
      mf_error_clear();
      continue;
    }
    if (strcmp(info.family, "gpt") != 0) {
      fprintf(stderr, "mforge serve: skipping %s: family '%s' is not served yet\n", full, info.family);
      continue;
    }
    if (*n == cap) {
      found *f = realloc(*out, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *f);
      if (!f) {
        closedir(d);
        return MF_ERR(MF_ERR_NOMEM, "out of memory");
      }
      *out = f;
    }
    snprintf((*out)[*n].path, sizeof (*out)[*n].path, "%s", full);
    snprintf((*out)[*n].id, sizeof (*out)[*n].id, "%s", id);
    (*n)++;
  }
  closedir(d);
  if (*n == 0) return MF_ERR(MF_ERR_INPUT, "no model files (*.h5 written by mforge export) in '%s'", path);
  qsort(*out, (size_t)*n, sizeof **out, by_id);
  return MF_OK;
}

int mf_cmd_serve(int argc, char **argv) {
  mf_server_opts o;
  mf_server_opts_default(&o);
  mf_sched_opts so = {.threads = 0, .max_batch = 64, .batch_tokens = 512, .kv_block = 16, .kv_mib = 0};
  const char *path = NULL;
  o.api_key = getenv("MFORGE_API_KEY");
  if (o.api_key && !*o.api_key) o.api_key = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double x;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(help, stdout);
      return 0;
    }
    if (strcmp(a, "--log") == 0) {
      o.log_requests = 1;
      continue;
    }
    if (a[0] != '-') {
      if (path) return user_error("unexpected argument '%s'%s", a, "");
      path = a;
      continue;
    }
    if (!v) return user_error("option '%s' needs a value%s", a, "");
    i++;
#define NUM(flag, lo, hi, dst)                                                                 \
  if (strcmp(a, flag) == 0) {                                                                  \
    if (!num(v, lo, hi, &x)) return user_error("bad value '%s' for %s", v, flag);              \
    dst;                                                                                       \
    continue;                                                                                  \
  }
    if (strcmp(a, "--host") == 0) {
      o.host = v;
      continue;
    }
    if (strcmp(a, "--api-key") == 0) {
      if (!*v) return user_error("--api-key is empty%s%s", "", "");
      o.api_key = v;
      continue;
    }
    NUM("--port", 0, 65535, o.port = (int)x)
    NUM("--threads", 0, 1024, so.threads = (int)x)
    NUM("--max-batch", 1, 4096, so.max_batch = (int)x)
    NUM("--batch-tokens", 1, 1 << 20, so.batch_tokens = (int)x)
    NUM("--kv-block", 1, 4096, so.kv_block = (int)x)
    NUM("--kv-mib", 0, 1 << 20, so.kv_mib = x)
    NUM("--max-connections", 1, 1 << 20, o.max_connections = (int)x)
    NUM("--max-body", 1, 1 << 30, o.max_body = (size_t)x)
    NUM("--max-prompt-tokens", 1, 1 << 30, o.max_prompt_tokens = (int)x)
    NUM("--max-tokens", 1, 1 << 30, o.max_new_tokens = (int)x)
    NUM("--header-timeout", 0.01, 1e6, o.header_timeout = x)
    NUM("--request-timeout", 0.01, 1e6, o.request_timeout = x)
    NUM("--idle-timeout", 0.01, 1e6, o.idle_timeout = x)
    NUM("--drain-timeout", 0, 1e6, o.drain_timeout = x)
#undef NUM
    return user_error("unknown option '%s'%s", a, "");
  }
  if (!path) return user_error("expected a model folder or file: mforge serve DIR|MODEL.h5%s%s", "", "");
  if (so.batch_tokens < so.max_batch) so.batch_tokens = so.max_batch; /* every decoder gets its token */

  found *fm = NULL;
  int nm = 0;
  mf_bpe *bpe = NULL;
  mf_status st = find_models(path, &fm, &nm);
  if (st == MF_OK) st = mf_bpe_load_default(&bpe);
  if (st != MF_OK) {
    free(fm);
    return fail(st);
  }
  /* signals: blocked here, before any thread starts, so every thread inherits the mask
   * and only the loop's signalfd receives them */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
  so.bpe = bpe;
  so.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  mf_model **models = calloc((size_t)nm, sizeof *models);
  mf_server *srv = NULL;
  if (sfd < 0 || so.notify_fd < 0 || !models) st = MF_ERR(MF_ERR_INTERNAL, "cannot set up the event loop: %s", strerror(errno));
  /* bind first (a taken port is reported before minutes of loading) ... */
  if (st == MF_OK) st = mf_server_create(&srv, &o, models, nm, bpe, so.notify_fd, sfd);
  /* ... then load in the background: /health says "loading" meanwhile */
  int started = 0;
  for (int i = 0; i < nm && st == MF_OK; i++) {
    st = mf_model_start(&models[i], fm[i].id, fm[i].path, &so);
    if (st == MF_OK) {
      started++;
      const mf_model_info *in = mf_model_get_info(models[i]);
      fprintf(stderr, "mforge serve: model '%s': %s, %d layers, %d heads, %d wide, context %d, %s, %.1fM params (%s)\n",
              fm[i].id, in->family, in->n_layer, in->n_head, in->n_embd, in->block_size, in->dtype,
              in->nparams / 1e6, fm[i].path);
    }
  }
  if (st == MF_OK) {
    const char *h = o.host;
    int v6 = strchr(h, ':') != NULL;
    fprintf(stderr, "mforge serve: listening on http://%s%s%s:%d%s\n", v6 ? "[" : "", h, v6 ? "]" : "",
            mf_server_port(srv), o.api_key ? " (API key required)" : "");
    fflush(stderr);
    st = mf_server_run(srv);
  }
  mf_server_free(srv); /* closes connections: their jobs are cancelled */
  for (int i = 0; i < started; i++) mf_model_stop(models[i]);
  free(models);
  free(fm);
  mf_bpe_free(bpe);
  if (so.notify_fd >= 0) close(so.notify_fd);
  if (sfd >= 0) close(sfd);
  if (st != MF_OK) return fail(st);
  fprintf(stderr, "mforge serve: stopped\n");
  return 0;
}
