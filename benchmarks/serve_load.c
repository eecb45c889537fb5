/* serve_load: a load generator for `mforge serve` (its own HTTP client, one thread per
 * simulated client, keep-alive connections, streamed completions).
 *
 *   serve_load [--shapes tiny,124m] [--conc 1,8,32,64] [--requests N] [--max-tokens 32]
 *              [--prompt-tokens 16] [--rounds 2] [--leak N] [--threads 2] [--mforge PATH]
 *
 * For each GPT shape (random weights, as the llama-server figures in ANCHORS.md) it writes
 * a model file, starts `mforge serve` on it and, per concurrency level, runs closed-loop
 * clients that each send streamed completions of max_tokens new tokens (ignore_eos, so
 * every request generates exactly that many) until N requests are done. Reported per
 * level: requests/s, generated tokens/s, latency p50/p95/p99, time to first token
 * p50/p95/p99, errors. Levels run in alternation for --rounds rounds (the machine is
 * shared: a level's figure is its median round). Then, with --leak N (default 10000; 0: none), N more requests
 * (short ones, at concurrency 32) while the server's RSS is sampled: it must stay flat. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#include "core/rng.h"
#include "trainers/checkpoint.h"
#include "trainers/gpt.h"

typedef struct shape {
  const char *name;
  int L, NH, C;
  double anchor[3]; /* llama-server tok/s at 1, 8, 32 clients (ANCHORS.md) */
} shape;

static const shape SHAPES[] = {
    {"tiny", 4, 4, 128, {195, 640, 812}},
    {"124m", 12, 12, 768, {24.7, 111, 173}},
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- client ---- */

static int g_port;
static int g_max_tokens = 32, g_prompt_tokens = 16;

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval tv = {.tv_sec = 300};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

typedef struct result {
  double latency, ttft;
  int tokens, ok;
} result;

typedef struct conn {
  int fd;
  char *buf;
  size_t len, cap;
} conn;

static int fill(conn *c) {
  if (c->len + 65536 > c->cap) c->buf = realloc(c->buf, c->cap = (c->len + 65536) * 2);
  ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
  if (r <= 0) return 0;
  c->len += (size_t)r;
  c->buf[c->len] = 0;
  return 1;
}

/* one streamed completion on a keep-alive connection */
static result one_request(conn *c, uint64_t seed, int stream) {
  result res = {0};
  char body[8192], req[9000];
  int n = snprintf(body, sizeof body, "{\"model\":\"m\",\"prompt\":[");
  mf_rng r;
  mf_rng_seed(&r, seed, 9);
  for (int i = 0; i < g_prompt_tokens; i++) n += snprintf(body + n, sizeof body - (size_t)n, "%s%d", i ? "," : "", (int)mf_rng_below(&r, 50000));
  n += snprintf(body + n, sizeof body - (size_t)n, "],\"max_tokens\":%d,\"temperature\":0.8,\"top_k\":40,\"top_p\":0.95,"
                "\"seed\":%llu,\"ignore_eos\":true,\"stream\":%s}", g_max_tokens, (unsigned long long)seed, stream ? "true" : "false");
  int rn = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                                     "Content-Length: %d\r\n\r\n%s", n, body);
  if (c->fd < 0 && (c->fd = dial()) < 0) return res;
  double t0 = now_s();
  if (send(c->fd, req, (size_t)rn, MSG_NOSIGNAL) != rn) goto fail;
  c->len = 0; /* one response in flight per connection (closed loop): start afresh */
  if (c->buf) c->buf[0] = 0;
  char *hend;
  while (!(c->buf && (hend = strstr(c->buf, "\r\n\r\n"))))
    if (!fill(c)) goto fail;
  if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0) goto fail;
  size_t body0 = (size_t)(hend - c->buf) + 4;
  if (stream) { /* chunked SSE: until the terminating 0-size chunk */
    int first = 0;
    while (!strstr(c->buf + body0, "\r\n0\r\n\r\n") && !(c->len - body0 >= 5 && strncmp(c->buf + body0, "0\r\n\r\n", 5) == 0)) {
      if (!first && strstr(c->buf + body0, "data: {")) {
        res.ttft = now_s() - t0;
        first = 1;
      }
      if (!fill(c)) goto fail;
    }
    if (!first) res.ttft = now_s() - t0;
  } else {
    char *cl = strcasestr(c->buf, "Content-Length:");
    size_t len = cl ? strtoul(cl + 15, NULL, 10) : 0;
    while (c->len - body0 < len)
      if (!fill(c)) goto fail;
    res.ttft = now_s() - t0;
  }
  res.latency = now_s() - t0;
  char *u = strstr(c->buf + body0, "\"completion_tokens\":");
  res.tokens = u ? atoi(u + 20) : 0;
  res.ok = res.tokens > 0;
  return res;
fail:
  close(c->fd);
  c->fd = -1;
  return res;
}

typedef struct job {
  int total, stream;
  int next; /* requests handed out */
  pthread_mutex_t mu;
  result *res;
} job;

static void *client_main(void *arg) {
  job *j = arg;
  conn c = {.fd = -1};
  for (;;) {
    pthread_mutex_lock(&j->mu);
    int k = j->next < j->total ? j->next++ : -1;
    pthread_mutex_unlock(&j->mu);
    if (k < 0) break;
    j->res[k] = one_request(&c, 1000 + (uint64_t)k, j->stream);
  }
  if (c.fd >= 0) close(c.fd);
  free(c.buf);
  return NULL;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
  if (n == 0) return 0;
  int i = (int)(p * (n - 1) + 0.5);
  return v[i];
}

typedef struct level {
  double rps, tps, lat[3], ttft[3];
  int errors;
} level;

static level run_level(int conc, int total, int stream) {
  job j = {.total = total, .stream = stream, .res = calloc((size_t)total, sizeof(result))};
  pthread_mutex_init(&j.mu, NULL);
  pthread_t th[conc];
  double t0 = now_s();
  for (int i = 0; i < conc; i++) pthread_create(&th[i], NULL, client_main, &j);
  for (int i = 0; i < conc; i++) pthread_join(th[i], NULL);
  double wall = now_s() - t0;
  level L = {0};
  double *lat = malloc(sizeof(double) * total), *tt = malloc(sizeof(double) * total);
  long toks = 0;
  int ok = 0;
  for (int i = 0; i < total; i++) {
    if (!j.res[i].ok) {
      L.errors++;
      continue;
    }
    lat[ok] = j.res[i].latency;
    tt[ok++] = j.res[i].ttft;
    toks += j.res[i].tokens;
  }
  qsort(lat, (size_t)ok, sizeof *lat, cmp_d);
  qsort(tt, (size_t)ok, sizeof *tt, cmp_d);
  L.rps = ok / wall;
  L.tps = toks / wall;
  double ps[3] = {0.5, 0.95, 0.99};
  for (int k = 0; k < 3; k++) {
    L.lat[k] = pct(lat, ok, ps[k]);
    L.ttft[k] = pct(tt, ok, ps[k]);
  }
  free(lat);
  free(tt);
  free(j.res);
  pthread_mutex_destroy(&j.mu);
  return L;
}

/* ---- server process ---- */

static long rss_kb(pid_t pid) {
  char p[64], line[256];
  snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
  FILE *f = fopen(p, "r");
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
  if (f) fclose(f);
  return kb;
}

static pid_t start_server(const char *mforge, const char *dir, int threads, const char *log) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "exec %s serve %s --port 0 --threads %d 2>%s", mforge, dir, threads, log);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  g_port = 0;
  for (int i = 0; i < 1200 && !g_port; i++) {
    usleep(50000);
    FILE *f = fopen(log, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
      char *p = strstr(line, "listening on http://127.0.0.1:");
      if (p) g_port = atoi(p + 30);
    }
    if (f) fclose(f);
  }
  /* ready when /health says 200 */
  for (int i = 0; i < 1200 && g_port; i++) {
    int fd = dial();
    char buf[512];
    const char *req = "GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
    ssize_t got = fd >= 0 && send(fd, req, strlen(req), 0) > 0 ? recv(fd, buf, sizeof buf - 1, 0) : -1;
    if (fd >= 0) close(fd);
    if (got > 12 && strncmp(buf, "HTTP/1.1 200", 12) == 0) return pid;
    usleep(50000);
  }
  kill(pid, SIGKILL);
  return -1;
}

static int parse_list(const char *s, int *v, int max) {
  int n = 0;
  char *d = strdup(s), *save = NULL;
  for (char *t = strtok_r(d, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) v[n++] = atoi(t);
  free(d);
  return n;
}

int main(int argc, char **argv) {
  const char *shapes = "tiny,124m", *mforge = NULL;
  int conc[8] = {1, 8, 32, 64}, nconc = 4, requests = 0, rounds = 2, leak = 10000, threads = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (strcmp(a, "--shapes") == 0) shapes = v, i++;
    else if (strcmp(a, "--conc") == 0) nconc = parse_list(v, conc, 8), i++;
    else if (strcmp(a, "--requests") == 0) requests = atoi(v), i++;
    else if (strcmp(a, "--max-tokens") == 0) g_max_tokens = atoi(v), i++;
    else if (strcmp(a, "--prompt-tokens") == 0) g_prompt_tokens = atoi(v), i++;
    else if (strcmp(a, "--rounds") == 0) rounds = atoi(v), i++;
    else if (strcmp(a, "--leak") == 0) leak = atoi(v), i++;
    else if (strcmp(a, "--threads") == 0) threads = atoi(v), i++;
    else if (strcmp(a, "--mforge") == 0) mforge = v, i++;
    else {
      fprintf(stderr, "usage: serve_load [--shapes tiny,124m] [--conc 1,8,32,64] [--requests N] [--max-tokens 32]\n"
                      "                  [--prompt-tokens 16] [--rounds 2] [--leak N] [--threads 2] [--mforge PATH]\n");
      return 2;
    }
  }
  char self[4096] = "";
  if (!mforge) { /* the mforge next to this build's benchmarks/ */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 64);
    if (n > 0) {
      self[n] = 0;
      char *s = strrchr(self, '/');
      if (s) *s = 0;
      s = strrchr(self, '/');
      if (s) strcpy(s, "/mforge");
    }
    mforge = self;
  }
  signal(SIGPIPE, SIG_IGN);
  char dir[] = "/tmp/mf_serve_load.XXXXXX";
  if (!mkdtemp(dir)) return 1;
  printf("serve_load: %d prompt + %d new tokens per request (ignore_eos), temperature 0.8 top-k 40 top-p 0.95, "
         "streamed; %d threads; %d round(s), median shown\n", g_prompt_tokens, g_max_tokens, threads, rounds);
  char *sd = strdup(shapes), *save = NULL;
  for (char *sn = strtok_r(sd, ",", &save); sn; sn = strtok_r(NULL, ",", &save)) {
    const shape *sh = NULL;
    for (size_t k = 0; k < sizeof SHAPES / sizeof SHAPES[0]; k++)
      if (strcmp(SHAPES[k].name, sn) == 0) sh = &SHAPES[k];
    if (!sh) {
      fprintf(stderr, "unknown shape '%s' (tiny, 124m)\n", sn);
      continue;
    }
    char mdir[512], path[600], log[600];
    snprintf(mdir, sizeof mdir, "%s/%s", dir, sh->name);
    mkdir(mdir, 0755);
    snprintf(path, sizeof path, "%s/m.h5", mdir);
    snprintf(log, sizeof log, "%s/server.log", mdir);
    mf_config cfg;
    mf_config_defaults(&cfg);
    cfg.model.n_layer = sh->L;
    cfg.model.n_head = sh->NH;
    cfg.model.n_embd = sh->C;
    cfg.model.block_size = 1024;
    mf_gpt *g = NULL;
    if (mf_gpt_create(&g, &cfg.model) != MF_OK) return 1;
    mf_params_init(&g->params, 1);
    mf_status st = mf_ckpt_save(path, &cfg, &g->params, NULL, NULL, NULL, "export");
    mf_gpt_free(g);
    if (st != MF_OK) {
      fprintf(stderr, "%s\n", mf_error_message());
      return 1;
    }
    pid_t pid = start_server(mforge, mdir, threads, log);
    if (pid < 0) {
      fprintf(stderr, "serve_load: the server did not start (%s)\n", log);
      return 1;
    }
    int maxc = 1;
    for (int k = 0; k < nconc; k++) maxc = conc[k] > maxc ? conc[k] : maxc;
    run_level(maxc, maxc, 1); /* warm up at full width: step arena, KV pool pages, caches */
    level res[8][8];
    for (int r = 0; r < rounds; r++)
      for (int k = 0; k < nconc; k++) {
        int total = requests ? requests : conc[k] * (strcmp(sh->name, "tiny") == 0 ? 8 : 3);
        if (total < conc[k]) total = conc[k];
        res[k][r] = run_level(conc[k], total, 1);
      }
    printf("\n%s (L%d H%d C%d), server RSS %.0f MiB\n", sh->name, sh->L, sh->NH, sh->C, rss_kb(pid) / 1024.0);
    printf("| clients | req/s | gen tok/s | vs llama-server | latency p50/p95/p99 ms | TTFT p50/p95/p99 ms | errors |\n");
    printf("|---|---|---|---|---|---|---|\n");
    double tps1 = 0, tps32 = 0;
    for (int k = 0; k < nconc; k++) {
      /* the median round by tokens/s */
      int order[8] = {0};
      for (int r = 0; r < rounds; r++) order[r] = r;
      for (int a = 0; a < rounds; a++)
        for (int b = a + 1; b < rounds; b++)
          if (res[k][order[b]].tps < res[k][order[a]].tps) {
            int t = order[a];
            order[a] = order[b];
            order[b] = t;
          }
      level *L = &res[k][order[(rounds - 1) / 2]];
      int errors = 0;
      for (int r = 0; r < rounds; r++) errors += res[k][r].errors;
      double anchor = conc[k] == 1 ? sh->anchor[0] : conc[k] == 8 ? sh->anchor[1] : conc[k] == 32 ? sh->anchor[2] : 0;
      char vs[32] = "-";
      if (anchor > 0) snprintf(vs, sizeof vs, "%.2fx (%.0f)", L->tps / anchor, anchor);
      printf("| %d | %.1f | %.0f | %s | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %d |\n", conc[k], L->rps, L->tps, vs,
             L->lat[0] * 1e3, L->lat[1] * 1e3, L->lat[2] * 1e3, L->ttft[0] * 1e3, L->ttft[1] * 1e3, L->ttft[2] * 1e3, errors);
      if (conc[k] == 1) tps1 = L->tps;
      if (conc[k] == 32) {
        tps32 = L->tps;
        printf("  (32 clients: TTFT p99/p50 = %.2f, goal < 2)\n", L->ttft[2] / (L->ttft[0] > 0 ? L->ttft[0] : 1));
      }
    }
    if (tps1 > 0 && tps32 > 0) printf("  batching: tokens/s at 32 clients = %.1fx 1 client (goal >= 5x)\n", tps32 / tps1);
    if (leak > 0 && strcmp(sh->name, "tiny") == 0) {
      int saved = g_max_tokens;
      g_max_tokens = 8;
      long first = 0;
      printf("  RSS over %d requests (32 clients, 8 new tokens, streamed and not):", leak);
      for (int done = 0; done < leak;) {
        int chunk = leak - done < 1000 ? leak - done : 1000;
        run_level(32, chunk / 2, 1);
        run_level(32, chunk - chunk / 2, 0);
        done += chunk;
        long kb = rss_kb(pid);
        if (!first) first = kb;
        if (done % 2000 == 0 || done == leak) printf(" %d: %.1f MiB", done, kb / 1024.0);
        fflush(stdout);
      }
      long last = rss_kb(pid);
      printf("\n  RSS growth from request 1,000 to %d: %+.1f MiB\n", leak, (last - first) / 1024.0);
      g_max_tokens = saved;
    }
    kill(pid, SIGTERM);
    int wst;
    waitpid(pid, &wst, 0);
    printf("  server exit status after SIGTERM: %d\n", WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
    fflush(stdout);
  }
  free(sd);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return 0;
}
