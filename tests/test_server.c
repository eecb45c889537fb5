/* `mforge export` and `mforge serve` end to end, over real sockets on loopback.
 * argv[1]: the mforge binary. The test makes its own model: a random-init GPT whose
 * embedding is scaled up so its logits are far apart (greedy choices do not hinge on the
 * last bit of a float), saved as a training checkpoint (with optimizer state) and then
 * exported twice (fp32, bf16) into a model folder.
 *
 * Checked: export (drops /optim, refuses to overwrite, bf16 halves the file and reads back
 * as the rounded fp32); CLI mistakes exit 2 with one line; health 503 while loading then
 * 200; requests that do not fit the KV pool wait and are answered exactly; completions
 * equal to `mforge generate` (greedy and seeded sampling, text and token-id prompts, both
 * dtypes); streaming (SSE events, [DONE], the same text); keep-alive and pipelining;
 * 64 concurrent clients all answered exactly;
 * prompt arrays, n > 1, echo, stop sequences; tokenize/detokenize; auth (401); limits;
 * a corpus of malformed requests (each a 4xx, the server stays up); header and idle
 * timeouts; max connections; clients that disconnect mid-stream free their slots; metrics;
 * SIGTERM finishes in-flight requests and exits 0. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/bf16.h"
#include "core/h5.h"
#include "core/rng.h"
#include "test.h"
#include "trainers/checkpoint.h"
#include "trainers/export.h"
#include "trainers/gpt.h"

static const char *MF;
static char dir[256];
static const char *KEY = "test-key-123";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the model ---- */

static int make_model(const char *ckpt) {
  mf_config cfg;
  mf_config_defaults(&cfg);
  cfg.model.n_layer = 2;
  cfg.model.n_head = 4;
  cfg.model.n_embd = 64;
  cfg.model.block_size = 512;
  mf_gpt *g = NULL;
  if (mf_gpt_create(&g, &cfg.model) != MF_OK) return 0;
  mf_params_init(&g->params, 7);
  /* far-apart logits: scale the (tied) embedding; random norms and biases too */
  float *w = g->wte->data;
  for (int64_t i = 0; i < (int64_t)g->V * g->C; i++) w[i] *= 40.0f;
  mf_rng r;
  mf_rng_seed(&r, 5, 1);
  for (int i = 0; i < g->params.n; i++) {
    mf_param *p = &g->params.p[i];
    if (p->t.ndim == 1)
      for (int64_t k = 0; k < mf_numel(&p->t); k++) ((float *)p->t.data)[k] += 0.2f * mf_rng_normal(&r);
  }
  float *m = calloc(g->params.numel, sizeof(float)), *v = calloc(g->params.numel, sizeof(float));
  mf_train_state st = {.step = 3, .loss = 1, .val_loss = 1};
  mf_status s = mf_ckpt_save(ckpt, &cfg, &g->params, m, v, &st, "train");
  free(m);
  free(v);
  mf_gpt_free(g);
  return s == MF_OK;
}

/* runs a command line; its exit code; stdout into out (may be NULL) */
static int run(const char *cmd, char *out, size_t cap) {
  FILE *f = popen(cmd, "r");
  if (!f) return -1;
  size_t n = 0;
  char tmp[4096];
  size_t got;
  while ((got = fread(tmp, 1, sizeof tmp, f)) > 0)
    if (out && n + got < cap) {
      memcpy(out + n, tmp, got);
      n += got;
    }
  if (out) out[n] = 0;
  int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the server process ---- */

typedef struct server {
  pid_t pid;
  int port;
  char log[300];
} server;

static int start_server(server *s, const char *extra_env, const char *args) {
  static int k;
  snprintf(s->log, sizeof s->log, "%s/server%d.log", dir, k++);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s exec %s serve %s/models --port 0 %s 2>%s", extra_env ? extra_env : "", MF, dir, args, s->log);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  s->pid = pid;
  s->port = 0;
  for (int i = 0; i < 600 && !s->port; i++) { /* up to 30 s */
    usleep(50000);
    FILE *f = fopen(s->log, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
      char *p = strstr(line, "listening on http://127.0.0.1:");
      if (p) s->port = atoi(p + strlen("listening on http://127.0.0.1:"));
    }
    if (f) fclose(f);
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      fprintf(stderr, "server exited early; log %s\n", s->log);
      return 0;
    }
  }
  return s->port > 0;
}

/* SIGTERM and wait; the exit code (-1 if it did not exit within `secs`) */
static int stop_server(server *s, double secs) {
  kill(s->pid, SIGTERM);
  double t0 = now_s();
  int st;
  while (now_s() - t0 < secs) {
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    usleep(20000);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, &st, 0);
  return -1;
}

/* ---- a small HTTP client ---- */

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  struct timeval tv = {.tv_sec = 60};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

typedef struct rbuf {
  char *p;
  size_t len, off, cap;
} rbuf;

/* at least n unread bytes in b (reading fd); 0 on EOF/error */
static int need(int fd, rbuf *b, size_t n) {
  while (b->len - b->off < n) {
    if (b->len + 65536 > b->cap) {
      b->cap = (b->len + 65536) * 2;
      b->p = realloc(b->p, b->cap);
    }
    ssize_t r = recv(fd, b->p + b->len, b->cap - b->len, 0);
    if (r <= 0) return 0;
    b->len += (size_t)r;
  }
  return 1;
}

typedef struct resp {
  int status;
  char head[8192];
  char *body;
  size_t blen;
  int closed; /* the server closed the connection after it */
} resp;

static void resp_free(resp *r) {
  free(r->body);
  r->body = NULL;
}

/* reads one response from fd (b carries bytes over for keep-alive); 0 on failure */
static int read_resp(int fd, rbuf *b, resp *r) {
  memset(r, 0, sizeof *r);
  size_t end;
  for (;;) {
    char *e = b->len > b->off ? memmem(b->p + b->off, b->len - b->off, "\r\n\r\n", 4) : NULL;
    if (e) {
      end = (size_t)(e - b->p) + 4;
      break;
    }
    if (!need(fd, b, b->len - b->off + 1)) return 0;
  }
  size_t hl = end - b->off < sizeof r->head - 1 ? end - b->off : sizeof r->head - 1;
  memcpy(r->head, b->p + b->off, hl);
  r->head[hl] = 0;
  b->off = end;
  if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return 0;
  if (r->status == 100) return read_resp(fd, b, r);
  char *cl = strcasestr(r->head, "\r\nContent-Length:");
  int chunked = strcasestr(r->head, "\r\nTransfer-Encoding: chunked") != NULL;
  r->closed = strcasestr(r->head, "\r\nConnection: close") != NULL;
  size_t cap = 1024, n = 0;
  r->body = malloc(cap);
  if (cl) {
    size_t len = strtoul(cl + 17, NULL, 10);
    if (!need(fd, b, len)) return 0;
    r->body = realloc(r->body, len + 1);
    memcpy(r->body, b->p + b->off, len);
    b->off += len;
    n = len;
  } else if (chunked) {
    for (;;) {
      char *e;
      while (!(e = memmem(b->p + b->off, b->len - b->off, "\r\n", 2)))
        if (!need(fd, b, b->len - b->off + 1)) return 0;
      size_t size = strtoul(b->p + b->off, NULL, 16);
      b->off = (size_t)(e - b->p) + 2;
      if (!need(fd, b, size + 2)) return 0;
      if (n + size + 1 > cap) r->body = realloc(r->body, cap = (n + size + 1) * 2);
      memcpy(r->body + n, b->p + b->off, size);
      n += size;
      if (memcmp(b->p + b->off + size, "\r\n", 2) != 0) return 0;
      b->off += size + 2;
      if (size == 0) break;
    }
  } else { /* until the server closes */
    while (need(fd, b, b->len - b->off + 1)) {
    }
    n = b->len - b->off;
    r->body = realloc(r->body, n + 1);
    memcpy(r->body, b->p + b->off, n);
    b->off = b->len;
    r->closed = 1;
  }
  r->body = realloc(r->body, n + 1);
  r->body[n] = 0;
  r->blen = n;
  return 1;
}

/* one request on a fresh connection */
static int request(int port, const char *method, const char *path, const char *body, const char *auth, resp *r) {
  memset(r, 0, sizeof *r);
  int fd = dial(port);
  if (fd < 0) return 0;
  char head[1024];
  int hn = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\n%s%s%sContent-Type: application/json\r\n"
                                       "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    method, path, auth ? "Authorization: Bearer " : "", auth ? auth : "", auth ? "\r\n" : "",
                    body ? strlen(body) : 0);
  rbuf b = {0};
  int ok = send_all(fd, head, (size_t)hn) == 0 && (!body || send_all(fd, body, strlen(body)) == 0) && read_resp(fd, &b, r);
  free(b.p);
  close(fd);
  return ok;
}

static int post(int port, const char *path, const char *body, resp *r) { return request(port, "POST", path, body, KEY, r); }
static int get(int port, const char *path, resp *r) { return request(port, "GET", path, NULL, KEY, r); }

/* raw bytes on a fresh connection; the status of the answer (0: none) */
static int raw_status(int port, const char *bytes, size_t n) {
  int fd = dial(port);
  if (fd < 0) return 0;
  rbuf b = {0};
  resp r = {0};
  int st = send_all(fd, bytes, n) == 0 && read_resp(fd, &b, &r) ? r.status : 0;
  resp_free(&r);
  free(b.p);
  close(fd);
  return st;
}

/* the text of choice i of a completion response */
static char *choice_text(const char *json, int i, char *reason, size_t rn) {
  cJSON *o = cJSON_Parse(json);
  cJSON *c = o ? cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), i) : NULL;
  cJSON *t = c ? cJSON_GetObjectItem(c, "text") : NULL;
  char *s = t && cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
  cJSON *fr = c ? cJSON_GetObjectItem(c, "finish_reason") : NULL;
  if (reason) snprintf(reason, rn, "%s", fr && cJSON_IsString(fr) ? fr->valuestring : "null");
  cJSON_Delete(o);
  return s;
}

/* SSE body: concatenated text of choice `want` (-1: all), events counted; 1 if it ended with [DONE] */
static int sse_text(const char *body, int want, char *out, size_t cap, int *events, char *reason) {
  size_t n = 0;
  int done = 0;
  *events = 0;
  out[0] = 0;
  for (const char *p = body; (p = strstr(p, "data: "));) {
    p += 6;
    const char *e = strstr(p, "\n\n");
    if (!e) break;
    if (strncmp(p, "[DONE]", 6) == 0) {
      done = 1;
      break;
    }
    char *js = strndup(p, (size_t)(e - p));
    cJSON *o = cJSON_Parse(js);
    free(js);
    if (!o) return 0;
    (*events)++;
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(o, "choices")) {
      int idx = cJSON_GetObjectItem(c, "index")->valueint;
      const char *t = cJSON_GetObjectItem(c, "text")->valuestring;
      if (want < 0 || idx == want) {
        size_t tl = strlen(t);
        if (n + tl < cap) memcpy(out + n, t, tl + 1), n += tl;
        cJSON *fr = cJSON_GetObjectItem(c, "finish_reason");
        if (reason && cJSON_IsString(fr)) strcpy(reason, fr->valuestring);
      }
    }
    cJSON_Delete(o);
    p = e;
  }
  return done;
}

static double metric(int port, const char *name) {
  resp r;
  double v = -1;
  if (get(port, "/metrics", &r) && r.status == 200) {
    char *p = strstr(r.body, name);
    while (p && p > r.body && p[-1] != '\n') p = strstr(p + 1, name);
    if (p) v = strtod(strchr(p, ' ') + 1, NULL);
  }
  resp_free(&r);
  return v;
}

/* ---- tests ---- */

static int PORT;

static void test_export(const char *ckpt) {
  char cmd[1024], out[4096];
  snprintf(cmd, sizeof cmd, "%s export %s -o %s/models/tiny.h5 2>&1", MF, ckpt, dir);
  CHECKF(run(cmd, out, sizeof out) == 0, "export: %s", out);
  CHECKF(run(cmd, out, sizeof out) == 2 && strstr(out, "--force"), "export over an existing file: %s", out);
  snprintf(cmd, sizeof cmd, "%s export %s -o %s/models/tiny.h5 --force 2>&1", MF, ckpt, dir);
  CHECKF(run(cmd, out, sizeof out) == 0, "export --force: %s", out);
  snprintf(cmd, sizeof cmd, "%s export %s -o %s/models/tiny-bf16.h5 --dtype bf16 2>&1", MF, ckpt, dir);
  CHECKF(run(cmd, out, sizeof out) == 0, "export bf16: %s", out);
  snprintf(cmd, sizeof cmd, "%s export %s -o %s/x.h5 --dtype fp8 2>&1", MF, ckpt, dir);
  CHECK(run(cmd, out, sizeof out) == 2);
  /* the training checkpoint has optimizer state and the export has none, but its params */
  snprintf(cmd, sizeof cmd, "h5ls -r %s 2>&1 | grep -c '^/optim/'", ckpt);
  run(cmd, out, sizeof out);
  CHECKF(atoi(out) > 0, "h5ls finds no /optim in the training checkpoint (is hdf5-tools installed?): %s", out);
  snprintf(cmd, sizeof cmd, "h5ls -r %s/models/tiny.h5 2>&1 | grep -c '^/params/'", dir);
  run(cmd, out, sizeof out);
  CHECKF(atoi(out) > 0, "h5ls finds no /params in the export: %s", out);
  snprintf(cmd, sizeof cmd, "h5ls -r %s/models/tiny.h5 2>&1 | grep -c optim", dir);
  run(cmd, out, sizeof out);
  CHECKF(atoi(out) == 0, "the export still holds optimizer state");
  struct stat a, b, c;
  char p1[300], p2[300];
  snprintf(p1, sizeof p1, "%s/models/tiny.h5", dir);
  snprintf(p2, sizeof p2, "%s/models/tiny-bf16.h5", dir);
  CHECK(stat(ckpt, &c) == 0 && stat(p1, &a) == 0 && stat(p2, &b) == 0);
  CHECKF(a.st_size < c.st_size / 2 && b.st_size < a.st_size * 0.6, "sizes: ckpt %lld fp32 %lld bf16 %lld",
         (long long)c.st_size, (long long)a.st_size, (long long)b.st_size);
  /* bf16 reads back (HDF5 converts it to fp32) as the round-to-nearest-even of the fp32 */
  mf_h5 *hf, *hb;
  int64_t shape[2] = {64, 192};
  float *x = malloc(64 * 192 * sizeof(float)), *y = malloc(64 * 192 * sizeof(float));
  CHECK(mf_h5_open(&hf, p1) == MF_OK && mf_h5_open(&hb, p2) == MF_OK);
  CHECK(mf_h5_read(hf, "/params/h.0.attn.c_attn.weight", MF_F32, x, 2, shape) == MF_OK);
  CHECK(mf_h5_read(hb, "/params/h.0.attn.c_attn.weight", MF_F32, y, 2, shape) == MF_OK);
  int bad = 0;
  for (int i = 0; i < 64 * 192; i++) {
    uint32_t u = (uint32_t)mf_f32_to_bf16(x[i]) << 16;
    float want;
    memcpy(&want, &u, sizeof want);
    bad += want != y[i];
  }
  CHECKF(bad == 0, "%d bf16 values are not the rounded fp32 ones", bad);
  mf_h5_close(hf);
  mf_h5_close(hb);
  free(x);
  free(y);
}

/* user mistakes: exit 2 with one "mforge: error:" line */
static void test_cli_errors(void) {
  const char *cases[] = {"serve /nonexistent/models", "serve %s/models --port 99999", "serve %s/models --bogus 1", "serve",
                         "serve /etc/passwd", "serve %s/empty"};
  char empty[300];
  snprintf(empty, sizeof empty, "%s/empty", dir);
  mkdir(empty, 0755);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char args[512], cmd[1024], out[4096];
    snprintf(args, sizeof args, cases[i], dir);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1 >/dev/null", MF, args);
    int rc = run(cmd, out, sizeof out);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    CHECKF(rc == 2 && lines == 1 && strncmp(out, "mforge: error: ", 15) == 0, "'%s': exit %d, %d lines: %s", args, rc, lines, out);
  }
}

static void test_loading(void) {
  server s;
  CHECK(start_server(&s, "MFORGE_SERVE_TEST_LOAD_DELAY_MS=1500", "--max-connections 4"));
  resp r;
  CHECK(request(s.port, "GET", "/health", NULL, NULL, &r) && r.status == 503 && strstr(r.body, "loading"));
  resp_free(&r);
  CHECK(request(s.port, "POST", "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"a\"}", NULL, &r) && r.status == 503);
  resp_free(&r);
  /* max connections: four are served, the fifth is told so and closed */
  int fds[5];
  for (int i = 0; i < 4; i++) fds[i] = dial(s.port);
  usleep(100000);
  fds[4] = dial(s.port);
  rbuf b = {0};
  CHECK(fds[4] >= 0 && read_resp(fds[4], &b, &r) && r.status == 503 && strstr(r.body, "too many connections"));
  resp_free(&r);
  free(b.p);
  for (int i = 0; i < 5; i++) close(fds[i]);
  int ok = 0;
  for (int i = 0; i < 100 && !ok; i++) {
    usleep(50000);
    ok = request(s.port, "GET", "/health", NULL, NULL, &r) && r.status == 200 && strstr(r.body, "\"ok\"");
    resp_free(&r);
  }
  CHECKF(ok, "health never became 200");
  CHECK(stop_server(&s, 10) == 0);
}

/* a KV pool with room for about three of these sequences: the rest wait in the queue
 * (never dropped) and every answer is still exact */
typedef struct waiter {
  int port, i, ok;
  char text[4096];
} waiter;

static void *waiter_main(void *arg) {
  waiter *w = arg;
  char body[256];
  snprintf(body, sizeof body, "{\"model\":\"tiny\",\"prompt\":\"wait %d\",\"max_tokens\":300,\"temperature\":0,\"ignore_eos\":true}", w->i);
  resp r;
  w->ok = request(w->port, "POST", "/v1/completions", body, NULL, &r) && r.status == 200;
  char *t = w->ok ? choice_text(r.body, 0, NULL, 0) : NULL;
  snprintf(w->text, sizeof w->text, "%s", t ? t : "");
  free(t);
  resp_free(&r);
  return NULL;
}

static void test_kv_wait(void) {
  server s;
  CHECK(start_server(&s, NULL, "--kv-mib 1 --kv-block 16"));
  int ready = 0;
  for (int i = 0; i < 600 && !ready; i++) {
    resp r;
    ready = request(s.port, "GET", "/health", NULL, NULL, &r) && r.status == 200;
    resp_free(&r);
    if (!ready) usleep(50000);
  }
  waiter w[8], alone;
  pthread_t th[8];
  for (int i = 0; i < 8; i++) {
    w[i] = (waiter){.port = s.port, .i = i};
    pthread_create(&th[i], NULL, waiter_main, &w[i]);
  }
  double maxq = 0, t0 = now_s();
  while (now_s() - t0 < 60) {
    resp r;
    double q = -1, fin = 0;
    if (request(s.port, "GET", "/metrics", NULL, NULL, &r) && r.status == 200) {
      char *p = strstr(r.body, "\nmforge_queue_depth{model=\"tiny\"} ");
      if (p) q = atof(strchr(p + 1, ' ') + 1);
      p = strstr(r.body, "\nmforge_sequences_finished_total{model=\"tiny\"} ");
      if (p) fin = atof(strchr(p + 1, ' ') + 1);
    }
    resp_free(&r);
    if (q > maxq) maxq = q;
    if (fin >= 8) break;
    usleep(20000);
  }
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  CHECKF(maxq >= 1, "no request ever waited for KV blocks (queue depth %g)", maxq);
  for (int i = 0; i < 8; i++) {
    alone = (waiter){.port = s.port, .i = i};
    waiter_main(&alone);
    CHECKF(w[i].ok && alone.ok && strcmp(w[i].text, alone.text) == 0, "request %d under a full KV pool: %d '%.40s' vs '%.40s'",
           i, w[i].ok, w[i].text, alone.text);
  }
  CHECK(stop_server(&s, 10) == 0);
}

static void reference(const char *model, const char *prompt_flag, const char *prompt, int n, const char *more, char *out,
                      size_t cap) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s generate %s/models/%s.h5 %s '%s' --max-tokens %d --threads 1 %s", MF, dir, model,
           prompt_flag, prompt, n, more);
  CHECKF(run(cmd, out, cap) == 0, "%s", cmd);
}

static void test_generate_equal(void) {
  const char *prompts[] = {"The quick brown fox", "Call me Ishmael.", "x"};
  const char *models[] = {"tiny", "tiny-bf16"};
  for (int mi = 0; mi < 2; mi++)
    for (int i = 0; i < 3; i++)
      for (int sampled = 0; sampled < 2; sampled++) {
        char ref[8192], body[1024];
        const char *more = sampled ? "--temperature 0.9 --top-k 50 --seed 1234" : "--temperature 0 --seed 7";
        reference(models[mi], "--prompt", prompts[i], 24, more, ref, sizeof ref);
        size_t pl = strlen(prompts[i]), rl = strlen(ref);
        if (rl && ref[rl - 1] == '\n') ref[--rl] = 0;
        snprintf(body, sizeof body, "{\"model\":\"%s\",\"prompt\":\"%s\",\"max_tokens\":24,%s}", models[mi], prompts[i],
                 sampled ? "\"temperature\":0.9,\"top_k\":50,\"seed\":1234" : "\"temperature\":0,\"seed\":7");
        resp r;
        int ok = post(PORT, "/v1/completions", body, &r);
        CHECKF(ok && r.status == 200, "%d %d %s", ok, r.status, r.body ? r.body : "");
        char *t = choice_text(r.body, 0, NULL, 0);
        CHECKF(t && strncmp(ref, prompts[i], pl) == 0 && strcmp(ref + pl, t) == 0,
               "%s, %s: server '%s' vs generate '%s'", models[mi], more, t ? t : "(null)", ref + pl);
        free(t);
        resp_free(&r);
      }
  /* token-id prompts against --prompt-ids --ids */
  char ref[8192];
  reference("tiny", "--prompt-ids", "464,2068,7586", 12, "--temperature 0 --ids", ref, sizeof ref);
  resp r;
  CHECK(post(PORT, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":[464,2068,7586],\"max_tokens\":12,\"temperature\":0}", &r) &&
        r.status == 200);
  char *t = choice_text(r.body, 0, NULL, 0);
  resp_free(&r);
  /* decode the reference ids through the server */
  char ids[4096] = "{\"tokens\":[";
  for (char *p = strtok(ref, "\n"); p; p = strtok(NULL, "\n")) snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%s", ids[11] ? "," : "", p);
  strcat(ids, "]}");
  CHECK(post(PORT, "/v1/detokenize", ids, &r) && r.status == 200);
  cJSON *o = cJSON_Parse(r.body);
  const char *dec = o ? cJSON_GetObjectItem(o, "prompt")->valuestring : "";
  CHECKF(t && strcmp(dec, t) == 0, "ids: server '%s' vs generate '%s'", t, dec);
  cJSON_Delete(o);
  resp_free(&r);
  free(t);
}

static void test_stream(void) {
  const char *body = "{\"model\":\"tiny\",\"prompt\":\"Streaming works\",\"max_tokens\":20,\"temperature\":0,\"stream\":true,\"ignore_eos\":true}";
  resp r;
  CHECK(post(PORT, "/v1/completions", body, &r) && r.status == 200 && strstr(r.head, "text/event-stream"));
  char text[8192], reason[16] = "";
  int ev;
  CHECKF(sse_text(r.body, 0, text, sizeof text, &ev, reason), "no [DONE]: %s", r.body);
  CHECKF(ev >= 15, "only %d events for 20 tokens", ev); /* token by token (a few may be held back mid-UTF-8) */
  CHECK(strcmp(reason, "length") == 0);
  CHECK(strstr(r.body, "\"usage\":{\"prompt_tokens\":") != NULL);
  resp_free(&r);
  char nonstream[1024];
  snprintf(nonstream, sizeof nonstream, "%.*s}", (int)(strstr(body, ",\"stream\"") - body), body);
  CHECK(post(PORT, "/v1/completions", nonstream, &r) && r.status == 200);
  char *t = choice_text(r.body, 0, NULL, 0);
  CHECKF(t && strcmp(t, text) == 0, "stream '%s' vs whole '%s'", text, t);
  free(t);
  resp_free(&r);
  /* include_usage: a last event with empty choices and the usage */
  CHECK(post(PORT, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"a\",\"max_tokens\":3,\"stream\":true,"
                                      "\"stream_options\":{\"include_usage\":true}}", &r) && r.status == 200);
  CHECK(strstr(r.body, "\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":") != NULL);
  resp_free(&r);
}

static void test_keepalive(void) {
  int fd = dial(PORT);
  rbuf b = {0};
  char req[1024];
  const char *body = "{\"model\":\"tiny\",\"prompt\":\"keep\",\"max_tokens\":4,\"temperature\":0}";
  int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                                    "Content-Length: %zu\r\n\r\n%s", KEY, strlen(body), body);
  int ok = 1;
  char *first = NULL;
  for (int i = 0; i < 5 && ok; i++) { /* one connection, several requests */
    resp r;
    ok = send_all(fd, req, (size_t)n) == 0 && read_resp(fd, &b, &r) && r.status == 200 && !r.closed;
    char *t = ok ? choice_text(r.body, 0, NULL, 0) : NULL;
    if (!first) first = t ? strdup(t) : NULL;
    else ok = ok && t && strcmp(t, first) == 0;
    free(t);
    resp_free(&r);
  }
  CHECKF(ok, "keep-alive sequence failed");
  /* pipelining: three requests in one write; answers in order */
  char three[4096];
  snprintf(three, sizeof three, "GET /health HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n%sGET /v1/models HTTP/1.1\r\n"
                                "Host: t\r\nAuthorization: Bearer %s\r\n\r\n", KEY, req, KEY);
  resp r1, r2, r3;
  CHECK(send_all(fd, three, strlen(three)) == 0);
  CHECK(read_resp(fd, &b, &r1) && r1.status == 200 && strstr(r1.body, "\"status\":\"ok\""));
  CHECK(read_resp(fd, &b, &r2) && r2.status == 200 && strstr(r2.body, "text_completion"));
  CHECK(read_resp(fd, &b, &r3) && r3.status == 200 && strstr(r3.body, "\"object\":\"list\""));
  resp_free(&r1);
  resp_free(&r2);
  resp_free(&r3);
  free(first);
  free(b.p);
  close(fd);
}

#define NCLIENT 64

typedef struct client {
  int i, stream, ok, status, err;
  char want[4096];
  char got[4096];
} client;

static void client_body(int i, int stream, char *body, size_t n) {
  snprintf(body, n, "{\"model\":\"tiny\",\"prompt\":\"Client %d asks about %s\",\"max_tokens\":%d,\"temperature\":0%s}", i,
           i % 3 ? "whales" : "the sea and the sky and more", 8 + i % 9, stream ? ",\"stream\":true" : "");
}

static void *client_main(void *arg) {
  client *c = arg;
  char body[512];
  client_body(c->i, c->stream, body, sizeof body);
  resp r;
  errno = 0;
  int sent = post(PORT, "/v1/completions", body, &r);
  c->status = r.status;
  c->err = errno;
  if (!sent || r.status != 200) {
    c->ok = 0;
    snprintf(c->got, sizeof c->got, "(%s)", r.body ? r.body : "no response");
    resp_free(&r);
    return NULL;
  }
  if (c->stream) {
    int ev;
    c->ok = sse_text(r.body, 0, c->got, sizeof c->got, &ev, NULL);
  } else {
    char *t = choice_text(r.body, 0, NULL, 0);
    c->ok = t != NULL;
    if (t) snprintf(c->got, sizeof c->got, "%s", t);
    free(t);
  }
  resp_free(&r);
  return NULL;
}

static void test_concurrent(void) {
  static client cl[NCLIENT];
  /* the answers one at a time first (each alone in its batch: generate's arithmetic) */
  for (int i = 0; i < NCLIENT; i++) {
    char body[512];
    client_body(i, 0, body, sizeof body);
    resp r;
    CHECK(post(PORT, "/v1/completions", body, &r) && r.status == 200);
    char *t = choice_text(r.body, 0, NULL, 0);
    snprintf(cl[i].want, sizeof cl[i].want, "%s", t ? t : "");
    free(t);
    resp_free(&r);
    cl[i].i = i;
    cl[i].stream = i % 2;
  }
  double before = metric(PORT, "mforge_batch_steps_total");
  pthread_t th[NCLIENT];
  for (int i = 0; i < NCLIENT; i++) pthread_create(&th[i], NULL, client_main, &cl[i]);
  for (int i = 0; i < NCLIENT; i++) pthread_join(th[i], NULL);
  int bad = 0;
  for (int i = 0; i < NCLIENT; i++)
    if (!cl[i].ok || strcmp(cl[i].got, cl[i].want) != 0) {
      if (bad++ < 3)
        fprintf(stderr, "client %d: status %d (errno %d): got '%s' want '%s'\n", i, cl[i].status, cl[i].err, cl[i].got,
                cl[i].want);
    }
  CHECKF(bad == 0, "%d of %d concurrent clients got a wrong answer", bad, NCLIENT);
  /* batching happened: far fewer steps than the 64 requests' tokens */
  double steps = metric(PORT, "mforge_batch_steps_total") - before;
  CHECKF(steps > 0 && steps < 64 * 12 * 0.5, "%g steps for 64 concurrent requests (no batching?)", steps);
}

static void test_features(void) {
  resp r;
  /* prompt arrays and n: choices indexed prompt-major; usage counts each prompt once */
  CHECK(post(PORT, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":[\"one\",\"two\"],\"n\":2,\"max_tokens\":5,"
                                      "\"temperature\":0.8,\"seed\":3}", &r) && r.status == 200);
  cJSON *o = cJSON_Parse(r.body), *ch = cJSON_GetObjectItem(o, "choices");
  CHECK(cJSON_GetArraySize(ch) == 4);
  for (int i = 0; i < 4; i++) CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, i), "index")->valueint == i);
  cJSON *u = cJSON_GetObjectItem(o, "usage");
  CHECK(u && cJSON_GetObjectItem(u, "prompt_tokens")->valueint == 2 && cJSON_GetObjectItem(u, "completion_tokens")->valueint == 20);
  CHECK(strcmp(cJSON_GetObjectItem(o, "model")->valuestring, "tiny") == 0);
  cJSON_Delete(o);
  resp_free(&r);
  /* echo */
  CHECK(post(PORT, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Echo me\",\"max_tokens\":3,\"echo\":true}", &r) && r.status == 200);
  char *t = choice_text(r.body, 0, NULL, 0);
  CHECK(t && strncmp(t, "Echo me", 7) == 0 && strlen(t) > 7);
  free(t);
  resp_free(&r);
  CHECK(post(PORT, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Echo\",\"max_tokens\":0,\"echo\":true}", &r) && r.status == 200);
  t = choice_text(r.body, 0, NULL, 0);
  CHECK(t && strcmp(t, "Echo") == 0);
  free(t);
  resp_free(&r);
  /* stop: take the greedy text, stop at a piece of it */
  CHECK(post(PORT, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Stop\",\"max_tokens\":16,\"temperature\":0,\"ignore_eos\":true}", &r));
  char *full = choice_text(r.body, 0, NULL, 0);
  resp_free(&r);
  if (full && strlen(full) > 8) {
    char stop[16], body[512], reason[16];
    snprintf(stop, sizeof stop, "%.3s", full + strlen(full) / 2);
    for (int stream = 0; stream < 2; stream++) {
      snprintf(body, sizeof body, "{\"model\":\"tiny\",\"prompt\":\"Stop\",\"max_tokens\":16,\"temperature\":0,\"ignore_eos\":true,"
                                  "\"stop\":[\"zzzz\",\"%s\"]%s}", stop, stream ? ",\"stream\":true" : "");
      CHECK(post(PORT, "/v1/completions", body, &r) && r.status == 200);
      char got[4096];
      int ev;
      if (stream) sse_text(r.body, 0, got, sizeof got, &ev, reason);
      else {
        char *g = choice_text(r.body, 0, reason, sizeof reason);
        snprintf(got, sizeof got, "%s", g ? g : "");
        free(g);
      }
      char *at = strstr(full, stop);
      CHECKF(at && strlen(got) == (size_t)(at - full) && strncmp(got, full, strlen(got)) == 0 && strcmp(reason, "stop") == 0,
             "stop '%s' in '%s': got '%s' (%s)", stop, full, got, reason);
      resp_free(&r);
    }
  }
  free(full);
  /* tokenize / detokenize round trip */
  CHECK(post(PORT, "/v1/tokenize", "{\"model\":\"tiny\",\"prompt\":\"Hello world\"}", &r) && r.status == 200 &&
        strstr(r.body, "\"tokens\":[15496,995]") && strstr(r.body, "\"max_model_len\":512"));
  resp_free(&r);
  CHECK(post(PORT, "/v1/detokenize", "{\"tokens\":[15496,995]}", &r) && r.status == 200 && strstr(r.body, "\"Hello world\""));
  resp_free(&r);
  CHECK(get(PORT, "/v1/models", &r) && r.status == 200 && strstr(r.body, "\"id\":\"tiny\"") && strstr(r.body, "\"id\":\"tiny-bf16\"") &&
        strstr(r.body, "\"dtype\":\"bf16\""));
  resp_free(&r);
  CHECK(get(PORT, "/v1/models/tiny", &r) && r.status == 200 && strstr(r.body, "\"context_length\":512"));
  resp_free(&r);
  CHECK(get(PORT, "/v1/models/nope", &r) && r.status == 404);
  resp_free(&r);
}

static void test_auth(void) {
  resp r;
  CHECK(request(PORT, "GET", "/health", NULL, NULL, &r) && r.status == 401 && strstr(r.head, "WWW-Authenticate: Bearer") &&
        strstr(r.body, "invalid_api_key"));
  resp_free(&r);
  CHECK(request(PORT, "POST", "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"a\"}", "wrong", &r) && r.status == 401);
  resp_free(&r);
  CHECK(request(PORT, "POST", "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"a\"}", "test-key-1234", &r) && r.status == 401);
  resp_free(&r);
  CHECK(request(PORT, "GET", "/metrics", NULL, KEY, &r) && r.status == 200);
  resp_free(&r);
}

/* malformed and out-of-limit requests: each answered with a 4xx */
static void test_malformed(void) {
  char auth[128];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", KEY);
  struct { const char *head, *body; int lo, hi; } cases[] = {
      {"GARBAGE\r\n\r\n", "", 400, 400},
      {"GET / HTTP/9.9\r\nHost: t\r\n\r\n", "", 505, 505},
      {"GET /health HTTP/1.1\r\n\r\n", "", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sTransfer-Encoding: chunked\r\n\r\n", "zz\r\nhello\r\n0\r\n\r\n", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sTransfer-Encoding: chunked\r\n\r\n", "5\r\nhelloX\r\n", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "abc", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: 99999999\r\n\r\n", "", 413, 413},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%s\r\n", "", 411, 411},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: 0\r\n\r\n", "", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"\xff\xfe\"}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":-3}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":1e308}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":100000}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"x\",\"temperature\":-1e999}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":[99999999]}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":[-1]}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":{}}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":[\"tiny\"],\"prompt\":\"x\"}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"none\",\"prompt\":\"x\"}", 404, 404},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"x\",\"stream\":1}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"x\",\"n\":1000}", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "not json at all", 400, 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"model\":\"tiny\",\"prompt\":\"x\"", 400, 400},
      {"POST /v1/tokenize HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"prompt\":7}", 400, 400},
      {"POST /v1/detokenize HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", "{\"tokens\":[50257]}", 400, 400},
      {"DELETE /v1/models HTTP/1.1\r\nHost: t\r\n%s\r\n", "", 405, 405},
      {"GET /nothing/here HTTP/1.1\r\nHost: t\r\n%s\r\n", "", 404, 404},
      {"GET /health HTTP/1.1\r\nHost: t\r\n%s folded: x\r\n\r\n", "", 400, 400},
      {"GET /health HTTP/1.1\r\nHost: t\r\n%sExpect: 42-fortytwo\r\n\r\n", "", 417, 417},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char req[4096];
    int n = snprintf(req, sizeof req, cases[i].head, auth, strlen(cases[i].body));
    n += snprintf(req + n, sizeof req - (size_t)n, "%s", cases[i].body);
    int st = raw_status(PORT, req, (size_t)n);
    CHECKF(st >= cases[i].lo && st <= cases[i].hi, "case %zu: status %d, want %d (%.60s)", i, st, cases[i].lo, req);
  }
  /* generated corpora: a huge header, many headers, deep JSON, a long prompt, a huge body */
  size_t big = 1 << 21;
  char *req = malloc(big);
  int n = snprintf(req, big, "GET /health HTTP/1.1\r\nHost: t\r\n%sX-Big: ", auth);
  memset(req + n, 'a', 40000);
  n += 40000;
  n += snprintf(req + n, big - (size_t)n, "\r\n\r\n");
  CHECK(raw_status(PORT, req, (size_t)n) == 431);
  n = snprintf(req, big, "GET /health HTTP/1.1\r\nHost: t\r\n%s", auth);
  for (int i = 0; i < 300; i++) n += snprintf(req + n, big - (size_t)n, "X-H%d: v\r\n", i);
  n += snprintf(req + n, big - (size_t)n, "\r\n");
  CHECK(raw_status(PORT, req, (size_t)n) == 431);
  char *body = malloc(big);
  int bn = 0;
  for (int i = 0; i < 5000; i++) body[bn++] = '[';
  for (int i = 0; i < 5000; i++) body[bn++] = ']';
  n = snprintf(req, big, "POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n%.*s", auth, bn, bn, body);
  CHECK(raw_status(PORT, req, (size_t)n) == 400);
  bn = snprintf(body, big, "{\"model\":\"tiny\",\"prompt\":\"");
  for (int i = 0; i < 3000; i++) bn += snprintf(body + bn, big - (size_t)bn, " word");
  bn += snprintf(body + bn, big - (size_t)bn, "\"}");
  n = snprintf(req, big, "POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n%.*s", auth, bn, bn, body);
  int st = raw_status(PORT, req, (size_t)n);
  CHECKF(st == 400, "a prompt longer than the context: %d", st);
  n = snprintf(req, big, "POST /v1/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n", auth, 2000000);
  CHECK(raw_status(PORT, req, (size_t)n) == 413);
  /* random bytes: never a crash, at worst a 400 or a closed connection */
  mf_rng rng;
  mf_rng_seed(&rng, 99, 0);
  for (int k = 0; k < 20; k++) {
    int len = 1 + (int)mf_rng_below(&rng, 300);
    for (int i = 0; i < len; i++) req[i] = (char)mf_rng_below(&rng, 256);
    req[len++] = '\r', req[len++] = '\n', req[len++] = '\r', req[len++] = '\n';
    int s2 = raw_status(PORT, req, (size_t)len);
    CHECKF(s2 == 0 || (s2 >= 400 && s2 < 600), "random bytes: %d", s2);
  }
  free(req);
  free(body);
  resp r;
  CHECK(get(PORT, "/health", &r) && r.status == 200);
  resp_free(&r);
}

static void test_timeouts(void) {
  /* a slow client: half a head, then nothing: 408 after --header-timeout (1 s) */
  int fd = dial(PORT);
  const char *half = "GET /health HTTP/1.1\r\nHost: t\r\n";
  double t0 = now_s();
  rbuf b = {0};
  resp r;
  CHECK(send_all(fd, half, strlen(half)) == 0 && read_resp(fd, &b, &r) && r.status == 408);
  double dt = now_s() - t0;
  CHECKF(dt > 0.8 && dt < 5, "408 after %.2f s", dt);
  resp_free(&r);
  free(b.p);
  close(fd);
  /* the whole head, then 10 of the 100 body bytes it announces, then nothing: 408 after
   * --request-timeout (2 s), not the header timeout, and the connection is closed */
  fd = dial(PORT);
  const char *part = "POST /v1/tokenize HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"model\":";
  t0 = now_s();
  rbuf b2 = {0};
  CHECK(send_all(fd, part, strlen(part)) == 0 && read_resp(fd, &b2, &r) && r.status == 408);
  dt = now_s() - t0;
  CHECKF(dt > 1.8 && dt < 6, "stalled body: 408 after %.2f s (want ~2 s, --request-timeout)", dt);
  CHECKF(r.body && strstr(r.body, "request body"), "stalled body: 408 message: %s", r.body ? r.body : "(none)");
  resp_free(&r);
  free(b2.p);
  close(fd);
  /* an idle keep-alive connection is closed after --idle-timeout (2 s) */
  fd = dial(PORT);
  char buf[16];
  t0 = now_s();
  ssize_t got = recv(fd, buf, sizeof buf, 0);
  dt = now_s() - t0;
  CHECKF(got == 0 && dt > 1.5 && dt < 6, "idle connection: recv %zd after %.2f s", got, dt);
  close(fd);
}

static void test_disconnect(void) {
  /* 8 long streams; each client reads its first event and hangs up */
  double gen0 = metric(PORT, "mforge_generated_tokens_total{model=\"tiny\"}");
  int fds[8];
  const char *body = "{\"model\":\"tiny\",\"prompt\":\"a long story\",\"max_tokens\":480,\"stream\":true,\"ignore_eos\":true}";
  char req[1024];
  int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Length: %zu\r\n\r\n%s",
                   KEY, strlen(body), body);
  for (int i = 0; i < 8; i++) {
    fds[i] = dial(PORT);
    CHECK(send_all(fds[i], req, (size_t)n) == 0);
  }
  for (int i = 0; i < 8; i++) {
    char buf[2048];
    ssize_t got = recv(fds[i], buf, sizeof buf, 0);
    CHECK(got > 0 && strstr(buf, "200 OK"));
    close(fds[i]);
  }
  double t0 = now_s(), active = -1;
  while (now_s() - t0 < 10) {
    active = metric(PORT, "mforge_active_sequences{model=\"tiny\"}");
    if (active == 0) break;
    usleep(20000);
  }
  double freed_after = now_s() - t0;
  CHECKF(active == 0, "sequences still active after the clients left");
  CHECK(metric(PORT, "mforge_kv_blocks_used{model=\"tiny\"}") == 0);
  double gen = metric(PORT, "mforge_generated_tokens_total{model=\"tiny\"}") - gen0;
  CHECKF(gen < 8 * 480 * 0.8, "%g tokens generated for clients that left (slots not freed at once; %.2f s)", gen, freed_after);
}

typedef struct inflight {
  const char *body;
  int ok;
  char text[4096];
} inflight;

static void *inflight_main(void *arg) {
  inflight *f = arg;
  resp r;
  f->ok = post(PORT, "/v1/completions", f->body, &r) && r.status == 200;
  if (f->ok && strstr(f->body, "\"stream\":true")) {
    int ev;
    f->ok = sse_text(r.body, 0, f->text, sizeof f->text, &ev, NULL);
  } else if (f->ok) {
    char *t = choice_text(r.body, 0, NULL, 0);
    f->ok = t && strlen(t) > 0;
    free(t);
  }
  resp_free(&r);
  return NULL;
}

static void test_shutdown(server *s) {
  inflight f[2] = {{.body = "{\"model\":\"tiny\",\"prompt\":\"finish me\",\"max_tokens\":300,\"ignore_eos\":true}"},
                   {.body = "{\"model\":\"tiny\",\"prompt\":\"finish me too\",\"max_tokens\":300,\"ignore_eos\":true,\"stream\":true}"}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, inflight_main, &f[i]);
  double t0 = now_s();
  while (metric(PORT, "mforge_active_sequences{model=\"tiny\"}") < 2 && now_s() - t0 < 10) usleep(5000);
  kill(s->pid, SIGTERM);
  usleep(100000);
  int fd = dial(PORT); /* no longer accepting */
  CHECKF(fd < 0, "a connection was accepted after SIGTERM");
  if (fd >= 0) close(fd);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  CHECKF(f[0].ok && f[1].ok, "in-flight requests were not finished (%d, %d)", f[0].ok, f[1].ok);
  int st = -1;
  t0 = now_s();
  while (now_s() - t0 < 10) {
    int w;
    if (waitpid(s->pid, &w, WNOHANG) == s->pid) {
      st = WIFEXITED(w) ? WEXITSTATUS(w) : 128 + WTERMSIG(w);
      break;
    }
    usleep(20000);
  }
  CHECKF(st == 0, "the server exited with %d after SIGTERM", st);
  if (st < 0) kill(s->pid, SIGKILL);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_server MFORGE\n");
    return 2;
  }
  MF = argv[1];
  signal(SIGPIPE, SIG_IGN);
  snprintf(dir, sizeof dir, "/tmp/mf_serve_test.XXXXXX");
  if (!mkdtemp(dir)) return 1;
  char ckpt[300], cmd[600];
  snprintf(ckpt, sizeof ckpt, "%s/train.h5", dir);
  snprintf(cmd, sizeof cmd, "%s/models", dir);
  mkdir(cmd, 0755);
  CHECK(make_model(ckpt));
  test_export(ckpt);
  test_cli_errors();
  test_loading();
  test_kv_wait();
  server s;
  CHECK(start_server(&s, NULL, "--api-key test-key-123 --header-timeout 1 --request-timeout 2 --idle-timeout 2 --threads 2"));
  PORT = s.port;
  int ready = 0; /* the socket is up at once; the models load behind it */
  for (int i = 0; i < 600 && !ready; i++) {
    resp r;
    ready = get(PORT, "/health", &r) && r.status == 200;
    resp_free(&r);
    if (!ready) usleep(50000);
  }
  CHECKF(ready, "the models did not load");
  test_auth();
  test_generate_equal();
  test_stream();
  test_keepalive();
  test_features();
  test_concurrent();
  test_malformed();
  test_timeouts();
  test_disconnect();
  test_shutdown(&s);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (mf_test_failures == 0) run(cmd, NULL, 0);
  else fprintf(stderr, "kept %s (server logs)\n", dir);
  return mf_test_report("test_server");
}
