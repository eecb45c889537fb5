/* Connections, HTTP framing, routing and the endpoints (see server.h).
 *
 * A connection answers one request at a time, in order: while a response is in progress
 * the bytes of pipelined requests wait in its input buffer (reading stops when that
 * holds more than a pipeline's worth), so responses can never overtake each other.
 * Sockets are non-blocking and the loop never waits on a client: a slow or stalled peer
 * costs a buffer and a timer check, not a thread, and the model workers never touch a
 * socket. Completions go to the model's worker; its output comes back through the
 * eventfd and is written as one JSON body or as Server-Sent Events. */
#include "serving/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "datasets/bpe.h"
#include "serving/ae.h"
#include "serving/http.h"
#include "serving/metrics.h"

#define PIPELINE_CAP (64 << 10) /* input bytes read ahead while a response is in progress */
#define MAX_OUT (16 << 20)      /* output a reader may leave unread before it is dropped */
#define TIMER_MS 100

enum { EP_COMPLETIONS, EP_MODELS, EP_HEALTH, EP_METRICS, EP_TOKENIZE, EP_DETOKENIZE, EP_OTHER, EP_N };
static const char *ep_name[EP_N] = {"/v1/completions", "/v1/models", "/health", "/metrics",
                                    "/v1/tokenize", "/v1/detokenize", "other"};

/* a completion in progress on a connection */
typedef struct comp {
  mf_job *job;
  mf_model *model;
  char id[40];
  long created;
  int stream, include_usage, sse_chunked;
  int nchoices, nfinished;
  int *ptoks;           /* prompt tokens per choice */
  char **echo;          /* prompt text per choice when echo (shared per prompt) */
  size_t *echo_len;
  char **echo_own;      /* the distinct echo copies, freed at the end */
  int necho_own;
  mf_buf *text;         /* non-streamed: text per choice */
  const char **reason;  /* per choice */
  int *ntok;
  int *started;         /* streamed: a first event was sent */
  int n_per_prompt;     /* choices per prompt (n) */
  int ttft_done;
} comp;

typedef struct conn {
  struct mf_server *s;
  int fd;
  char *in;
  size_t in_len, in_cap;
  mf_http_req req;
  mf_buf out;
  size_t out_off;
  int busy;             /* an asynchronous response (completion) is in progress */
  int close_after;      /* close once the output is written */
  int peer_closed;
  int keep_alive;
  int sent_continue;
  int head_only;
  int ep, status;
  int minor;            /* the request's HTTP/1.x (its bytes are consumed once dispatched) */
  char method[16], path[96]; /* for the request log */
  double t_first_byte;  /* of the request being received; 0 when none */
  double t_active;      /* last progress either way */
  double t_req;         /* the request was complete */
  comp *comp;
} conn;

struct mf_server {
  mf_server_opts o;
  mf_ae *ae;
  int lfd, port, notify_fd, signal_fd;
  mf_model **models;
  int nmodels;
  mf_job **pending; /* per model: jobs to hand over before the loop sleeps */
  const mf_bpe *bpe;
  conn **conns;     /* by fd */
  int nconns, nbusy;
  int draining;
  double drain_deadline;
  mf_rng rng;
  /* metrics (loop thread only) */
  uint64_t req_count[EP_N][600];
  mf_hist h_dur[EP_N], h_ttft;
  uint64_t conns_total, conns_refused;
  mf_http_limits lim;
  long started; /* the models' "created": when the server started */
};

static void conn_close(mf_server *s, conn *c);
static void process_input(mf_server *s, conn *c);
static void flush_out(mf_server *s, conn *c);
static void conn_event(mf_ae *ae, int fd, void *data, int mask);
static void comp_free(struct comp *p);

/* ---- options ---- */

void mf_server_opts_default(mf_server_opts *o) {
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->port = 8080;
  o->max_connections = 1024;
  o->max_body = 1 << 20;
  o->max_header = 16 << 10;
  o->max_headers = 100;
  o->header_timeout = 10;
  o->request_timeout = 30;
  o->idle_timeout = 60;
  o->drain_timeout = 30;
  o->api = mf_api_default_limits;
}

/* ---- responses ---- */

static void finish_request(mf_server *s, conn *c) {
  double now = mf_ae_now();
  int code = c->status >= 100 && c->status < 600 ? c->status : 500;
  s->req_count[c->ep][code]++;
  mf_hist_add(&s->h_dur[c->ep], now - c->t_req);
  if (s->o.log_requests)
    fprintf(stderr, "mforge serve: %s %s -> %d (%.1f ms)\n", c->method, c->path, code, (now - c->t_req) * 1e3);
  if (!c->keep_alive || s->draining) c->close_after = 1;
}

static void head(mf_server *s, conn *c, int status, const char *ctype, size_t len, const char *extra) {
  mf_buf_printf(&c->out, "HTTP/1.%d %d %s\r\nServer: mforge\r\n", c->minor ? 1 : 0, status, mf_http_reason(status));
  if (ctype) mf_buf_printf(&c->out, "Content-Type: %s\r\n", ctype);
  if (len != (size_t)-1) mf_buf_printf(&c->out, "Content-Length: %zu\r\n", len);
  if (extra) mf_buf_puts(&c->out, extra);
  int keep = c->keep_alive && !s->draining && !c->close_after;
  if (c->minor == 0 && keep) mf_buf_puts(&c->out, "Connection: keep-alive\r\n");
  else if (!keep) mf_buf_puts(&c->out, "Connection: close\r\n");
  mf_buf_puts(&c->out, "\r\n");
}

/* a whole response; the request is done */
static void respond(mf_server *s, conn *c, int status, const char *ctype, const char *body, size_t len,
                    const char *extra) {
  c->status = status;
  head(s, c, status, ctype, len, extra);
  if (!c->head_only) mf_buf_add(&c->out, body, len);
  finish_request(s, c);
  flush_out(s, c);
}

static void respond_json(mf_server *s, conn *c, int status, mf_buf *b, const char *extra) {
  if (b->oom) {
    mf_buf_free(b);
    mf_buf_puts(b, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n");
    status = 500;
  }
  respond(s, c, status, "application/json", b->p ? b->p : "", b->len, extra);
  mf_buf_free(b);
}

static void respond_error(mf_server *s, conn *c, const mf_api_err *e) {
  mf_buf b = {0};
  mf_api_error_json(&b, e);
  const char *extra = e->status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL;
  respond_json(s, c, e->status, &b, extra);
}

static void respond_errorf(mf_server *s, conn *c, int status, const char *param, const char *code, const char *msg) {
  mf_api_err e;
  mf_api_fail(&e, status, param, "%s", msg);
  if (code) snprintf(e.code, sizeof e.code, "%s", code);
  respond_error(s, c, &e);
}

/* ---- output ---- */

static void flush_out(mf_server *s, conn *c) {
  while (c->out_off < c->out.len) {
    ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += (size_t)n;
      c->t_active = mf_ae_now();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c->out.len - c->out_off > MAX_OUT) { /* a reader that does not read */
        conn_close(s, c);
        return;
      }
      mf_ae_add(s->ae, c->fd, MF_AE_WRITE, conn_event, c);
      return;
    }
    conn_close(s, c); /* the peer is gone */
    return;
  }
  c->out.len = c->out_off = 0;
  if (mf_ae_mask(s->ae, c->fd) & MF_AE_WRITE) mf_ae_del(s->ae, c->fd, MF_AE_WRITE);
  if (c->close_after && !c->busy) conn_close(s, c);
}

/* ---- connections ---- */

static void conn_close(mf_server *s, conn *c) {
  if (c->comp) {
    if (c->comp->job) mf_job_cancel_release(c->comp->job); /* a client gone mid-request frees its slots now */
    c->comp->job = NULL;
    comp_free(c->comp);
    c->comp = NULL;
  }
  if (c->busy) s->nbusy--;
  mf_ae_del(s->ae, c->fd, MF_AE_READ | MF_AE_WRITE);
  close(c->fd);
  s->conns[c->fd] = NULL;
  s->nconns--;
  free(c->in);
  mf_buf_free(&c->out);
  free(c);
}

static void on_accept(mf_ae *ae, int lfd, void *data, int mask) {
  mf_server *s = data;
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return; /* EAGAIN, or out of fds (EMFILE): the backlog waits for the next round */
    }
    if (s->nconns >= s->o.max_connections || fd >= mf_ae_setsize(ae)) {
      static const char body[] = "{\"error\":{\"message\":\"too many connections\",\"type\":\"overloaded_error\","
                                 "\"param\":null,\"code\":null}}\n";
      char busy[256];
      int n = snprintf(busy, sizeof busy, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                          "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", sizeof body - 1, body);
      ssize_t w = send(fd, busy, (size_t)n, MSG_NOSIGNAL);
      (void)w;
      close(fd);
      s->conns_refused++;
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* streamed tokens go out at once */
    conn *c = calloc(1, sizeof *c);
    if (!c || mf_ae_add(ae, fd, MF_AE_READ, conn_event, c) < 0) {
      free(c);
      close(fd);
      continue;
    }
    c->s = s;
    c->fd = fd;
    c->t_active = mf_ae_now();
    s->conns[fd] = c;
    s->nconns++;
    s->conns_total++;
  }
}

/* reads what is there; 0 when the connection was closed */
static int read_in(mf_server *s, conn *c) {
  size_t limit = s->o.max_header + s->o.max_body + PIPELINE_CAP;
  for (;;) {
    if (c->busy && c->in_len >= PIPELINE_CAP) { /* enough read ahead: wait until the response is done */
      mf_ae_del(s->ae, c->fd, MF_AE_READ);
      return 1;
    }
    if (c->in_len == c->in_cap) {
      if (c->in_cap >= limit) { /* the parser refuses before this; belt and braces */
        mf_ae_del(s->ae, c->fd, MF_AE_READ);
        return 1;
      }
      size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
      if (cap > limit) cap = limit;
      char *p = realloc(c->in, cap);
      if (!p) {
        conn_close(s, c);
        return 0;
      }
      c->in = p;
      c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0) {
      if (c->in_len == 0 && !c->busy && c->t_first_byte == 0) c->t_first_byte = mf_ae_now();
      c->in_len += (size_t)n;
      c->t_active = mf_ae_now();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    /* EOF or error: the peer has stopped sending */
    c->peer_closed = 1;
    mf_ae_del(s->ae, c->fd, MF_AE_READ);
    return 1;
  }
}


static void next_request(conn *c) {
  size_t used = c->req.consumed <= c->in_len ? c->req.consumed : c->in_len;
  memmove(c->in, c->in + used, c->in_len - used);
  c->in_len -= used;
  mf_http_reset(&c->req);
  c->sent_continue = 0;
  c->head_only = 0;
  c->t_first_byte = c->in_len ? mf_ae_now() : 0;
}

static void conn_event(mf_ae *ae, int fd, void *data, int mask) {
  conn *c = data;
  mf_server *s = c->s;
  if (mask & MF_AE_WRITE) {
    flush_out(s, c);
    if (s->conns[fd] != c) return;
  }
  if (mask & (MF_AE_READ | MF_AE_HUP)) {
    if (!read_in(s, c)) return;
    if ((mask & MF_AE_HUP) && !(mask & MF_AE_READ)) c->peer_closed = 1;
  }
  if (c->peer_closed && c->busy) { /* gone mid-request: its job is cancelled and its slots freed */
    conn_close(s, c);
    return;
  }
  if (!c->busy) process_input(s, c);
  if (s->conns[fd] != c) return;
  if (c->peer_closed && !c->busy) {
    if (c->out_off >= c->out.len) conn_close(s, c);
    else c->close_after = 1;
  }
}

/* ---- endpoints ---- */

static mf_model *find_model(mf_server *s, const char *id, int *index) {
  for (int i = 0; i < s->nmodels; i++)
    if (strcmp(mf_model_id(s->models[i]), id) == 0) {
      if (index) *index = i;
      return s->models[i];
    }
  return NULL;
}

static const char *state_name(int st) {
  return st == MF_MODEL_READY ? "ready" : st == MF_MODEL_LOADING ? "loading" : "failed";
}

static void ep_health(mf_server *s, conn *c) {
  int loading = 0, ready = 0, st[s->nmodels > 0 ? s->nmodels : 1];
  for (int i = 0; i < s->nmodels; i++) {
    st[i] = mf_model_state(s->models[i]);
    loading += st[i] == MF_MODEL_LOADING;
    ready += st[i] == MF_MODEL_READY;
  }
  /* 503 while loading (and when stopping, or when no model could load), then 200 */
  const char *status = s->draining ? "stopping" : loading ? "loading" : ready ? "ok" : "error";
  mf_buf b = {0};
  mf_buf_printf(&b, "{\"status\":\"%s\",\"models\":{", status);
  for (int i = 0; i < s->nmodels; i++) {
    const char *id = mf_model_id(s->models[i]);
    if (i) mf_buf_puts(&b, ",");
    mf_buf_json_str(&b, id, strlen(id));
    mf_buf_printf(&b, ":\"%s\"", state_name(st[i]));
  }
  mf_buf_puts(&b, "}}\n");
  respond_json(s, c, strcmp(status, "ok") == 0 ? 200 : 503, &b, NULL);
}

static void model_json(mf_buf *b, mf_model *m, long created) {
  const mf_model_info *in = mf_model_get_info(m);
  const char *id = mf_model_id(m);
  mf_buf_puts(b, "{\"id\":");
  mf_buf_json_str(b, id, strlen(id));
  mf_buf_printf(b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"mforge\",\"status\":\"%s\","
                   "\"family\":\"%s\",\"context_length\":%d,\"n_layer\":%d,\"n_head\":%d,\"n_embd\":%d,"
                   "\"vocab_size\":%d,\"parameters\":%lld,\"dtype\":\"%s\"}",
                created, state_name(mf_model_state(m)), in->family, in->block_size, in->n_layer, in->n_head,
                in->n_embd, in->vocab_size, (long long)in->nparams, in->dtype);
}

static void ep_models(mf_server *s, conn *c) {
  mf_buf b = {0};
  const char *p = c->req.path + strlen("/v1/models");
  if (*p == '/' && p[1]) {
    mf_model *m = find_model(s, p + 1, NULL);
    if (!m) {
      respond_errorf(s, c, 404, "model", "model_not_found", "no such model (see GET /v1/models)");
      return;
    }
    model_json(&b, m, s->started);
    mf_buf_puts(&b, "\n");
    respond_json(s, c, 200, &b, NULL);
    return;
  }
  mf_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
  for (int i = 0; i < s->nmodels; i++) {
    if (i) mf_buf_puts(&b, ",");
    model_json(&b, s->models[i], s->started);
  }
  mf_buf_puts(&b, "]}\n");
  respond_json(s, c, 200, &b, NULL);
}

static void ep_metrics(mf_server *s, conn *c) {
  mf_buf b = {0};
  char lab[160];
  mf_prom_head(&b, "mforge_http_requests_total", "counter", "HTTP requests answered, by endpoint and status code");
  for (int e = 0; e < EP_N; e++)
    for (int k = 100; k < 600; k++)
      if (s->req_count[e][k]) {
        snprintf(lab, sizeof lab, "endpoint=\"%s\",code=\"%d\"", ep_name[e], k);
        mf_prom_value(&b, "mforge_http_requests_total", lab, (double)s->req_count[e][k]);
      }
  mf_prom_head(&b, "mforge_http_request_duration_seconds", "histogram", "request received to response complete");
  for (int e = 0; e < EP_N; e++) {
    snprintf(lab, sizeof lab, "endpoint=\"%s\"", ep_name[e]);
    mf_prom_hist(&b, "mforge_http_request_duration_seconds", lab, &s->h_dur[e]);
  }
  mf_prom_head(&b, "mforge_time_to_first_token_seconds", "histogram", "completion request received to its first token");
  mf_prom_hist(&b, "mforge_time_to_first_token_seconds", "", &s->h_ttft);
  mf_prom_head(&b, "mforge_open_connections", "gauge", "open client connections");
  mf_prom_value(&b, "mforge_open_connections", "", s->nconns);
  mf_prom_head(&b, "mforge_requests_in_flight", "gauge", "completions being generated or streamed");
  mf_prom_value(&b, "mforge_requests_in_flight", "", s->nbusy);
  mf_prom_head(&b, "mforge_connections_total", "counter", "connections accepted");
  mf_prom_value(&b, "mforge_connections_total", "", (double)s->conns_total);
  mf_prom_head(&b, "mforge_connections_refused_total", "counter", "connections refused (limit reached)");
  mf_prom_value(&b, "mforge_connections_refused_total", "", (double)s->conns_refused);
  mf_model_stats st[s->nmodels > 0 ? s->nmodels : 1];
  for (int i = 0; i < s->nmodels; i++) mf_model_get_stats(s->models[i], &st[i]);
  struct {
    const char *name, *type, *help;
    int kind; /* 0 value, 1 histogram */
  } fam[] = {
      {"mforge_model_ready", "gauge", "1 when the model is loaded and serving", 0},
      {"mforge_queue_depth", "gauge", "sequences waiting for a batch slot or KV blocks", 0},
      {"mforge_active_sequences", "gauge", "sequences in the running batch", 0},
      {"mforge_kv_blocks_used", "gauge", "KV cache blocks held by sequences", 0},
      {"mforge_kv_blocks_total", "gauge", "KV cache blocks in the pool", 0},
      {"mforge_generated_tokens_total", "counter", "tokens generated", 0},
      {"mforge_prompt_tokens_total", "counter", "prompt tokens prefilled", 0},
      {"mforge_sequences_finished_total", "counter", "sequences finished (any reason)", 0},
      {"mforge_batch_steps_total", "counter", "model steps run", 0},
      {"mforge_batch_size", "histogram", "sequences per model step", 1},
      {"mforge_batch_tokens", "histogram", "new tokens per model step", 1},
      {"mforge_step_seconds", "histogram", "duration of one model step", 1},
  };
  for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
    mf_prom_head(&b, fam[f].name, fam[f].type, fam[f].help);
    for (int i = 0; i < s->nmodels; i++) {
      snprintf(lab, sizeof lab, "model=\"%s\"", mf_model_id(s->models[i]));
      mf_model_stats *x = &st[i];
      double v[] = {x->state == MF_MODEL_READY, x->queue_depth, x->active, x->kv_used, x->kv_total,
                    (double)x->gen_tokens, (double)x->prompt_tokens, (double)x->seqs_done, (double)x->steps};
      if (!fam[f].kind) mf_prom_value(&b, fam[f].name, lab, v[f]);
      else mf_prom_hist(&b, fam[f].name, lab, f == 9 ? &x->h_seqs : f == 10 ? &x->h_tokens : &x->h_step);
    }
  }
  int status = b.oom ? 500 : 200;
  respond(s, c, status, "text/plain; version=0.0.4; charset=utf-8", b.p ? b.p : "", b.len, NULL);
  mf_buf_free(&b);
}

/* the model named in a tokenize/detokenize request, or any when none is named */
static int token_model(mf_server *s, conn *c, const char *id, mf_model **m) {
  *m = id[0] ? find_model(s, id, NULL) : NULL;
  if (id[0] && !*m) {
    respond_errorf(s, c, 404, "model", "model_not_found", "no such model (see GET /v1/models)");
    return 0;
  }
  return 1;
}

static void ep_tokenize(mf_server *s, conn *c) {
  char model[128], *text;
  size_t len;
  mf_api_err e;
  mf_model *m;
  if (mf_api_parse_tokenize(c->in + c->req.body_off, c->req.body_len, &s->o.api, model, &text, &len, &e)) {
    respond_error(s, c, &e);
    return;
  }
  if (!token_model(s, c, model, &m)) {
    free(text);
    return;
  }
  int32_t *ids = NULL;
  size_t n = 0, cap = 0;
  mf_status st = mf_bpe_encode(s->bpe, text, len, &ids, &n, &cap);
  free(text);
  if (st != MF_OK) {
    free(ids);
    respond_errorf(s, c, 500, NULL, NULL, mf_error_message());
    return;
  }
  mf_buf b = {0};
  mf_buf_puts(&b, "{\"tokens\":[");
  for (size_t i = 0; i < n; i++) mf_buf_printf(&b, i ? ",%d" : "%d", ids[i]);
  mf_buf_printf(&b, "],\"count\":%zu", n);
  if (m) mf_buf_printf(&b, ",\"max_model_len\":%d", mf_model_context(m));
  mf_buf_puts(&b, "}\n");
  free(ids);
  respond_json(s, c, 200, &b, NULL);
}

static void ep_detokenize(mf_server *s, conn *c) {
  char model[128];
  int32_t *ids;
  int n;
  mf_api_err e;
  mf_model *m;
  if (mf_api_parse_detokenize(c->in + c->req.body_off, c->req.body_len, &s->o.api, model, &ids, &n, &e)) {
    respond_error(s, c, &e);
    return;
  }
  if (!token_model(s, c, model, &m)) {
    free(ids);
    return;
  }
  int V = mf_bpe_vocab_size(s->bpe);
  for (int i = 0; i < n; i++)
    if (ids[i] >= V) {
      char msg[120];
      snprintf(msg, sizeof msg, "token id %d is out of range [0, %d)", ids[i], V);
      free(ids);
      respond_errorf(s, c, 400, "tokens", NULL, msg);
      return;
    }
  char *text = NULL;
  size_t len = 0;
  mf_status st = mf_bpe_decode(s->bpe, ids, (size_t)n, &text, &len);
  free(ids);
  if (st != MF_OK) {
    free(text);
    respond_errorf(s, c, 400, "tokens", NULL, mf_error_message());
    return;
  }
  mf_buf b = {0};
  mf_buf_puts(&b, "{\"prompt\":");
  mf_buf_json_str(&b, text, len);
  mf_buf_puts(&b, "}\n");
  free(text);
  respond_json(s, c, 200, &b, NULL);
}

/* ---- completions ---- */

static void comp_free(comp *p) {
  if (!p) return;
  for (int i = 0; i < p->nchoices; i++) mf_buf_free(&p->text[i]);
  for (int i = 0; i < p->necho_own; i++) free(p->echo_own[i]);
  free(p->echo_own);
  free(p->text);
  free(p->ptoks);
  free(p->echo);
  free(p->echo_len);
  free(p->reason);
  free(p->ntok);
  free(p->started);
  free(p);
}

static comp *comp_new(int nchoices, int nprompts) {
  comp *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->nchoices = nchoices;
  p->text = calloc((size_t)nchoices, sizeof *p->text);
  p->ptoks = calloc((size_t)nchoices, sizeof *p->ptoks);
  p->echo = calloc((size_t)nchoices, sizeof *p->echo);
  p->echo_len = calloc((size_t)nchoices, sizeof *p->echo_len);
  p->echo_own = calloc((size_t)nprompts, sizeof *p->echo_own);
  p->reason = calloc((size_t)nchoices, sizeof *p->reason);
  p->ntok = calloc((size_t)nchoices, sizeof *p->ntok);
  p->started = calloc((size_t)nchoices, sizeof *p->started);
  if (!p->text || !p->ptoks || !p->echo || !p->echo_len || !p->echo_own || !p->reason || !p->ntok || !p->started) {
    comp_free(p);
    return NULL;
  }
  return p;
}

/* usage: prompt tokens count once per prompt (not per n), completions per choice */
static void usage_json(mf_buf *b, const comp *p, int n_per_prompt) {
  long pt = 0, ct = 0;
  for (int i = 0; i < p->nchoices; i++) {
    if (i % n_per_prompt == 0) pt += p->ptoks[i];
    ct += p->ntok[i];
  }
  mf_buf_printf(b, "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}", pt, ct, pt + ct);
}

static void choice_json(mf_buf *b, const comp *p, int i, const char *t, size_t n, const char *reason) {
  mf_buf_puts(b, "{\"text\":");
  if (p->echo[i] && !p->started[i]) { /* echo: the prompt leads the first text of a choice */
    mf_buf tmp = {0};
    mf_buf_add(&tmp, p->echo[i], p->echo_len[i]);
    mf_buf_add(&tmp, t, n);
    mf_buf_json_str(b, tmp.p ? tmp.p : "", tmp.len);
    mf_buf_free(&tmp);
  } else {
    mf_buf_json_str(b, t, n);
  }
  mf_buf_printf(b, ",\"index\":%d,\"logprobs\":null,\"finish_reason\":", i);
  if (reason) mf_buf_printf(b, "\"%s\"}", reason);
  else mf_buf_puts(b, "null}");
}

static void obj_head(mf_buf *b, const comp *p) {
  const char *id = mf_model_id(p->model);
  mf_buf_printf(b, "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":", p->id, p->created);
  mf_buf_json_str(b, id, strlen(id));
  mf_buf_puts(b, ",\"system_fingerprint\":null,\"choices\":[");
}

/* one Server-Sent Event, in an HTTP chunk when the response is chunked */
static void sse_send(conn *c, const char *data, size_t n) {
  comp *p = c->comp;
  if (p->sse_chunked) mf_buf_printf(&c->out, "%zx\r\n", n + 2);
  mf_buf_add(&c->out, data, n);
  mf_buf_add(&c->out, "\n\n", 2);
  if (p->sse_chunked) mf_buf_add(&c->out, "\r\n", 2);
}

static void end_completion(mf_server *s, conn *c) {
  comp *p = c->comp;
  if (p->job) mf_job_release(p->job);
  p->job = NULL;
  comp_free(p);
  c->comp = NULL;
  c->busy = 0;
  s->nbusy--;
}

/* after an asynchronous response: the next pipelined request, if any */
static void resume(mf_server *s, conn *c) {
  int fd = c->fd;
  flush_out(s, c);
  if (s->conns[fd] != c) return;
  c->t_first_byte = c->in_len ? mf_ae_now() : 0; /* pipelined bytes: their timeouts start now */
  if (!c->peer_closed && !c->close_after && !(mf_ae_mask(s->ae, fd) & MF_AE_READ))
    mf_ae_add(s->ae, fd, MF_AE_READ, conn_event, c);
  process_input(s, c);
  if (s->conns[fd] != c) return;
  if (c->peer_closed && !c->busy && c->out_off >= c->out.len) conn_close(s, c);
}

/* the worker published output for c's job */
static void on_output(mf_server *s, conn *c) {
  comp *p = c->comp;
  mf_job *j = p->job;
  int nch = p->nchoices;
  mf_buf delta[nch], seg[nch];
  const char *fin[nch];
  int failed;
  char err[sizeof j->err];
  mf_model_lock(p->model);
  for (int i = 0; i < nch; i++) {
    delta[i] = j->ch[i].out;
    seg[i] = j->ch[i].seg;
    memset(&j->ch[i].out, 0, sizeof j->ch[i].out);
    memset(&j->ch[i].seg, 0, sizeof j->ch[i].seg);
    p->ntok[i] = j->ch[i].ntokens;
    fin[i] = NULL;
    if (j->ch[i].finished && !p->reason[i]) {
      fin[i] = j->ch[i].finish_reason ? j->ch[i].finish_reason : "error";
      p->reason[i] = fin[i];
      p->nfinished++;
    }
  }
  failed = j->failed;
  memcpy(err, j->err, sizeof err);
  double t_first = j->t_first, t_submit = j->t_submit;
  mf_model_unlock(p->model);
  int all = p->nfinished == nch;
  if (t_first > 0 && !(p->ttft_done)) {
    mf_hist_add(&s->h_ttft, t_first - t_submit);
    p->ttft_done = 1;
  }
  if (p->stream) {
    for (int i = 0; i < nch && !failed; i++) {
      if (!delta[i].len && !fin[i] && !(p->echo[i] && !p->started[i])) continue;
      /* one event per published piece (token); the finish rides on the last one */
      size_t npiece = seg[i].len / sizeof(uint32_t), off = 0;
      for (size_t k = 0; k < (npiece ? npiece : 1); k++) {
        uint32_t n = 0;
        if (npiece) memcpy(&n, seg[i].p + k * sizeof n, sizeof n);
        if (off + n > delta[i].len) n = (uint32_t)(delta[i].len - off); /* never past the text */
        int last = k + 1 >= npiece;
        if (last) n = (uint32_t)(delta[i].len - off);
        const char *r = last ? fin[i] : NULL;
        mf_buf ev = {0};
        mf_buf_puts(&ev, "data: ");
        obj_head(&ev, p);
        choice_json(&ev, p, i, delta[i].p ? delta[i].p + off : "", n, r);
        mf_buf_puts(&ev, "]");
        if (r && all && !p->include_usage) {
          mf_buf_puts(&ev, ",\"usage\":");
          usage_json(&ev, p, p->n_per_prompt);
        }
        mf_buf_puts(&ev, "}");
        p->started[i] = 1;
        sse_send(c, ev.p, ev.len);
        mf_buf_free(&ev);
        off += n;
      }
    }
    if (all) {
      if (failed) {
        mf_api_err e;
        mf_api_fail(&e, 500, NULL, "%s", err);
        mf_buf ev = {0};
        mf_buf_puts(&ev, "data: ");
        mf_api_error_json(&ev, &e);
        while (ev.len && ev.p[ev.len - 1] == '\n') ev.len--;
        sse_send(c, ev.p, ev.len);
        mf_buf_free(&ev);
      } else if (p->include_usage) {
        mf_buf ev = {0};
        mf_buf_puts(&ev, "data: ");
        obj_head(&ev, p);
        mf_buf_puts(&ev, "],\"usage\":");
        usage_json(&ev, p, p->n_per_prompt);
        mf_buf_puts(&ev, "}");
        sse_send(c, ev.p, ev.len);
        mf_buf_free(&ev);
      }
      sse_send(c, "data: [DONE]", 12);
      if (p->sse_chunked) mf_buf_puts(&c->out, "0\r\n\r\n");
      c->status = failed ? 500 : 200;
    }
  } else {
    for (int i = 0; i < nch; i++) mf_buf_add(&p->text[i], delta[i].p ? delta[i].p : "", delta[i].len);
  }
  for (int i = 0; i < nch; i++) {
    mf_buf_free(&delta[i]);
    mf_buf_free(&seg[i]);
  }
  if (!all) {
    if (p->stream) flush_out(s, c);
    return;
  }
  if (p->stream) {
    finish_request(s, c);
    end_completion(s, c);
    resume(s, c);
    return;
  }
  mf_buf b = {0};
  int status = 200;
  if (failed) {
    mf_api_err e;
    mf_api_fail(&e, 500, NULL, "%s", err);
    mf_api_error_json(&b, &e);
    status = 500;
  } else {
    obj_head(&b, p);
    for (int i = 0; i < nch; i++) {
      if (i) mf_buf_puts(&b, ",");
      choice_json(&b, p, i, p->text[i].p ? p->text[i].p : "", p->text[i].len, p->reason[i]);
    }
    mf_buf_puts(&b, "],\"usage\":");
    usage_json(&b, p, p->n_per_prompt);
    mf_buf_puts(&b, "}\n");
  }
  end_completion(s, c);
  c->status = status;
  head(s, c, status, "application/json", b.len, NULL);
  mf_buf_add(&c->out, b.p ? b.p : "", b.len);
  mf_buf_free(&b);
  finish_request(s, c);
  resume(s, c);
}

/* a random seed for requests without one */
static uint64_t fresh_seed(mf_server *s) { return mf_rng_u64(&s->rng); }

static void ep_completions(mf_server *s, conn *c) {
  mf_completion_req r;
  mf_api_err e;
  if (mf_api_parse_completion(c->in + c->req.body_off, c->req.body_len, &s->o.api, &r, &e)) {
    respond_error(s, c, &e);
    return;
  }
  int mi = 0;
  mf_model *m = find_model(s, r.model, &mi);
  char msg[300];
  int32_t **ids = NULL;
  int *nids = NULL, np = r.nprompts, failed = 1;
  comp *p = NULL;
  mf_job *j = NULL;
  if (!m) {
    snprintf(msg, sizeof msg, "the model '%.150s' does not exist (see GET /v1/models)", r.model);
    respond_errorf(s, c, 404, "model", "model_not_found", msg);
    goto out;
  }
  int st = mf_model_state(m);
  if (st != MF_MODEL_READY) {
    if (st == MF_MODEL_LOADING) snprintf(msg, sizeof msg, "the model '%s' is still loading; retry when GET /health says ok", r.model);
    else snprintf(msg, sizeof msg, "the model '%s' failed to load: %.200s", r.model, mf_model_error(m));
    respond_errorf(s, c, 503, "model", NULL, msg);
    goto out;
  }
  const mf_model_info *info = mf_model_get_info(m);
  int ctx = info->block_size, V = info->vocab_size, pool = mf_model_pool_tokens(m);
  int max_new = s->o.max_new_tokens > 0 && s->o.max_new_tokens < ctx ? s->o.max_new_tokens : ctx;
  int max_prompt = s->o.max_prompt_tokens > 0 && s->o.max_prompt_tokens < ctx - 1 ? s->o.max_prompt_tokens : ctx - 1;
  if (r.max_tokens > max_new) {
    snprintf(msg, sizeof msg, "max_tokens is %d; this server generates at most %d tokens per choice (the model's context is %d)",
             r.max_tokens, max_new, ctx);
    respond_errorf(s, c, 400, "max_tokens", NULL, msg);
    goto out;
  }
  ids = calloc((size_t)np, sizeof *ids);
  nids = calloc((size_t)np, sizeof *nids);
  p = comp_new(np * r.n, np);
  j = p ? mf_job_new(m, np * r.n) : NULL;
  if (!ids || !nids || !j) {
    respond_errorf(s, c, 500, NULL, NULL, "out of memory");
    goto out;
  }
  int eot = mf_bpe_eot(s->bpe);
  for (int i = 0; i < np; i++) { /* tokenize; check ids and lengths */
    mf_api_prompt *q = &r.prompts[i];
    if (q->is_ids) {
      for (int k = 0; k < q->nids; k++)
        if (q->ids[k] >= V) {
          snprintf(msg, sizeof msg, "prompt %d: token id %d is out of range [0, %d)", i, q->ids[k], V);
          respond_errorf(s, c, 400, "prompt", NULL, msg);
          goto out;
        }
      ids[i] = q->ids;
      nids[i] = q->nids;
      q->ids = NULL;
    } else {
      size_t n = 0, cap = 0;
      if (mf_bpe_encode(s->bpe, q->text, q->len, &ids[i], &n, &cap) != MF_OK) {
        respond_errorf(s, c, 500, NULL, NULL, mf_error_message());
        goto out;
      }
      nids[i] = (int)n;
    }
    if (nids[i] == 0) { /* an empty prompt starts from <|endoftext|>, as OpenAI's models do */
      free(ids[i]);
      ids[i] = malloc(sizeof **ids);
      if (!ids[i]) {
        respond_errorf(s, c, 500, NULL, NULL, "out of memory");
        goto out;
      }
      ids[i][0] = eot;
      nids[i] = 1;
    }
    if (nids[i] > max_prompt) {
      snprintf(msg, sizeof msg, "prompt %d has %d tokens; at most %d fit (the model's context is %d tokens)", i,
               nids[i], max_prompt, ctx);
      respond_errorf(s, c, 400, "prompt", "context_length_exceeded", msg);
      goto out;
    }
    if (r.echo) { /* the prompt text for echo: as given, or decoded from ids */
      if (q->text) {
        p->echo_own[p->necho_own] = q->text;
        p->echo_len[i * r.n] = q->len;
        q->text = NULL;
      } else {
        size_t tl = 0;
        char *t = NULL;
        if (mf_bpe_decode(s->bpe, ids[i], (size_t)nids[i], &t, &tl) != MF_OK) {
          free(t);
          respond_errorf(s, c, 400, "prompt", NULL, mf_error_message());
          goto out;
        }
        p->echo_own[p->necho_own] = t;
        p->echo_len[i * r.n] = tl;
      }
      for (int k = 0; k < r.n; k++) {
        p->echo[i * r.n + k] = p->echo_own[p->necho_own];
        p->echo_len[i * r.n + k] = p->echo_len[i * r.n];
      }
      p->necho_own++;
    }
  }
  uint64_t base = r.has_seed ? r.seed : fresh_seed(s);
  for (int i = 0; i < np; i++)
    for (int k = 0; k < r.n; k++) {
      mf_choice *ch = &j->ch[i * r.n + k];
      int P = nids[i], room = (ctx < pool ? ctx : pool) - P + 1;
      ch->prompt = malloc((size_t)P * sizeof *ch->prompt);
      if (!ch->prompt) {
        respond_errorf(s, c, 500, NULL, NULL, "out of memory");
        goto out;
      }
      memcpy(ch->prompt, ids[i], (size_t)P * sizeof *ch->prompt);
      ch->nprompt = P;
      ch->max_new = r.max_tokens < room ? r.max_tokens : room; /* the context ends generation ("length") */
      ch->temperature = (float)r.temperature;
      ch->top_p = (float)r.top_p;
      ch->top_k = r.top_k;
      ch->seed = base + (uint64_t)k; /* choice 0 of each prompt gets the seed itself */
      p->ptoks[i * r.n + k] = P;
    }
  for (int i = 0; i < r.nstop; i++) {
    j->stop[i] = r.stop[i];
    j->stop_len[i] = r.stop_len[i];
    r.stop[i] = NULL;
  }
  j->nstop = r.nstop;
  r.nstop = 0;
  j->ignore_eos = r.ignore_eos;
  j->t_submit = c->t_req;
  j->owner = c;
  p->job = j;
  p->model = m;
  p->n_per_prompt = r.n;
  p->stream = r.stream;
  p->include_usage = r.include_usage;
  p->sse_chunked = c->req.minor >= 1;
  p->created = (long)time(NULL);
  snprintf(p->id, sizeof p->id, "cmpl-%016llx%08x", (unsigned long long)mf_rng_u64(&s->rng),
           (unsigned)mf_rng_u64(&s->rng));
  c->comp = p;
  c->busy = 1;
  s->nbusy++;
  c->ep = EP_COMPLETIONS;
  if (r.stream) { /* the head goes now; events follow as tokens come */
    c->status = 200;
    if (!p->sse_chunked) c->close_after = 1; /* HTTP/1.0: the body ends with the connection */
    head(s, c, 200, "text/event-stream", (size_t)-1,
         p->sse_chunked ? "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" : "Cache-Control: no-cache\r\n");
    flush_out(s, c);
  }
  /* handed to the worker before the loop sleeps, with whatever else arrived this round */
  j->pending_next = NULL;
  mf_job **tail = &s->pending[mi];
  while (*tail) tail = &(*tail)->pending_next;
  *tail = j;
  failed = 0;
out:
  if (failed) {
    if (j) { /* never submitted: both references go here */
      mf_job_release(j);
      mf_job_release(j);
    }
    comp_free(p);
  }
  for (int i = 0; ids && i < np; i++) free(ids[i]);
  free(ids);
  free(nids);
  mf_completion_req_free(&r);
}

/* ---- requests ---- */

static int auth_ok(mf_server *s, conn *c) {
  const char *a = c->req.authorization, *key = s->o.api_key;
  if (c->req.auth_truncated || strncasecmp(a, "Bearer ", 7) != 0) return 0;
  a += 7;
  while (*a == ' ') a++;
  size_t n = strlen(a), k = strlen(key);
  unsigned char diff = n != k; /* compare every byte whatever the mismatch: no timing hint */
  for (size_t i = 0; i < k; i++) diff |= (unsigned char)(key[i] ^ (i < n ? a[i] : 0));
  return diff == 0;
}

static void dispatch(mf_server *s, conn *c) {
  const char *m = c->req.method, *path = c->req.path;
  int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
  c->head_only = strcmp(m, "HEAD") == 0;
  c->ep = strcmp(path, "/v1/completions") == 0                                      ? EP_COMPLETIONS
          : strcmp(path, "/v1/models") == 0 || strncmp(path, "/v1/models/", 11) == 0 ? EP_MODELS
          : strcmp(path, "/health") == 0                                             ? EP_HEALTH
          : strcmp(path, "/metrics") == 0                                            ? EP_METRICS
          : strcmp(path, "/v1/tokenize") == 0 || strcmp(path, "/tokenize") == 0      ? EP_TOKENIZE
          : strcmp(path, "/v1/detokenize") == 0 || strcmp(path, "/detokenize") == 0  ? EP_DETOKENIZE
                                                                                     : EP_OTHER;
  if (s->o.api_key && !auth_ok(s, c)) {
    respond_errorf(s, c, 401, NULL, "invalid_api_key", "missing or wrong API key (send the header Authorization: Bearer KEY)");
    return;
  }
  int want_post = c->ep == EP_COMPLETIONS || c->ep == EP_TOKENIZE || c->ep == EP_DETOKENIZE;
  if (c->ep == EP_OTHER) {
    char msg[300];
    snprintf(msg, sizeof msg, "no endpoint %.200s (endpoints: POST /v1/completions, GET /v1/models, GET /health, GET /metrics, "
                              "POST /v1/tokenize, POST /v1/detokenize)", path);
    respond_errorf(s, c, 404, NULL, NULL, msg);
    return;
  }
  if (want_post ? !post : !get) {
    c->head_only = 0;
    mf_api_err e;
    mf_api_fail(&e, 405, NULL, "%s %s: use %s", m, path, want_post ? "POST" : "GET");
    mf_buf b = {0};
    mf_api_error_json(&b, &e);
    respond_json(s, c, 405, &b, want_post ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n");
    return;
  }
  if (post && !c->req.has_length && !c->req.chunked) {
    respond_errorf(s, c, 411, NULL, NULL, "a POST needs a body with Content-Length (or chunked encoding)");
    return;
  }
  switch (c->ep) {
  case EP_COMPLETIONS: ep_completions(s, c); break;
  case EP_MODELS: ep_models(s, c); break;
  case EP_HEALTH: ep_health(s, c); break;
  case EP_METRICS: ep_metrics(s, c); break;
  case EP_TOKENIZE: ep_tokenize(s, c); break;
  case EP_DETOKENIZE: ep_detokenize(s, c); break;
  }
}

static void process_input(mf_server *s, conn *c) {
  int fd = c->fd;
  while (!c->busy && !c->close_after && c->in_len > 0) {
    size_t len = c->in_len;
    int r = mf_http_parse(&c->req, c->in, &len, &s->lim);
    c->in_len = len;
    if (r == MF_HTTP_MORE) {
      if (c->req.head_len && c->req.expect_continue && !c->sent_continue) {
        c->sent_continue = 1;
        mf_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        flush_out(s, c);
      }
      return;
    }
    c->t_req = mf_ae_now();
    if (r == MF_HTTP_ERROR) { /* the framing is lost: answer and close */
      c->ep = EP_OTHER;
      c->keep_alive = 0;
      c->close_after = 1;
      c->minor = 1;
      snprintf(c->method, sizeof c->method, "-");
      snprintf(c->path, sizeof c->path, "-");
      char msg[sizeof c->req.err_msg];
      memcpy(msg, c->req.err_msg, sizeof msg);
      respond_errorf(s, c, c->req.err_status, NULL, NULL, msg);
      return;
    }
    c->keep_alive = c->req.keep_alive;
    c->minor = c->req.minor;
    snprintf(c->method, sizeof c->method, "%s", c->req.method);
    snprintf(c->path, sizeof c->path, "%s", c->req.path);
    dispatch(s, c);
    if (s->conns[fd] != c) return;
    next_request(c); /* the request's bytes are done with, even while its answer is generated */
  }
  /* reading may have stopped at the buffer limit; a finished request makes room */
  if (!c->busy && !c->close_after && !c->peer_closed && !(mf_ae_mask(s->ae, fd) & MF_AE_READ))
    mf_ae_add(s->ae, fd, MF_AE_READ, conn_event, c);
}

/* ---- loop hooks ---- */

static void on_notify(mf_ae *ae, int fd, void *data, int mask) {
  mf_server *s = data;
  uint64_t v;
  while (read(fd, &v, sizeof v) > 0) {
  }
  for (int i = 0; i < s->nmodels; i++)
    for (mf_job *j = mf_model_take_done(s->models[i]), *next; j; j = next) {
      next = j->taken_next;
      conn *c = j->owner;
      if (c && c->comp && c->comp->job == j) on_output(s, c);
    }
  if (s->draining && s->nbusy == 0) mf_ae_stop(ae);
}

static void start_drain(mf_server *s) {
  double now = mf_ae_now();
  if (s->draining) { /* a second signal: stop now */
    s->drain_deadline = now;
    return;
  }
  s->draining = 1;
  s->drain_deadline = now + s->o.drain_timeout;
  if (s->lfd >= 0) {
    mf_ae_del(s->ae, s->lfd, MF_AE_READ);
    close(s->lfd);
    s->lfd = -1;
  }
  for (int fd = 0; fd < mf_ae_setsize(s->ae); fd++) {
    conn *c = s->conns[fd];
    if (!c) continue;
    c->close_after = 1;
    if (!c->busy && c->out_off >= c->out.len) conn_close(s, c);
  }
  fprintf(stderr, "mforge serve: stopping: finishing %d request%s (at most %.0f s)\n", s->nbusy, s->nbusy == 1 ? "" : "s",
          s->o.drain_timeout);
  if (s->nbusy == 0) mf_ae_stop(s->ae);
}

static void on_signal(mf_ae *ae, int fd, void *data, int mask) {
  struct signalfd_siginfo si;
  while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) start_drain(data);
}

static void on_timer(mf_ae *ae, void *data) {
  mf_server *s = data;
  double now = mf_ae_now();
  for (int fd = 0; fd < mf_ae_setsize(ae); fd++) {
    conn *c = s->conns[fd];
    if (!c) continue;
    if (c->out_off < c->out.len && now - c->t_active > s->o.idle_timeout) { /* a reader that stopped reading */
      conn_close(s, c);
      continue;
    }
    if (c->busy) continue;
    if (c->t_first_byte > 0) {
      double age = now - c->t_first_byte;
      const char *why = !c->req.head_len && age > s->o.header_timeout ? "timed out waiting for the request head"
                        : age > s->o.request_timeout                  ? "timed out waiting for the request body"
                                                                      : NULL;
      if (why) {
        c->ep = EP_OTHER;
        c->keep_alive = 0;
        c->close_after = 1;
        c->t_req = now;
        c->minor = 1;
        snprintf(c->method, sizeof c->method, "-");
        snprintf(c->path, sizeof c->path, "(timeout)");
        respond_errorf(s, c, 408, NULL, NULL, why);
      }
    } else if (c->out_off >= c->out.len && now - c->t_active > s->o.idle_timeout) {
      conn_close(s, c);
    }
  }
  if (s->draining && (s->nbusy == 0 || now >= s->drain_deadline)) mf_ae_stop(ae);
}

static void before_sleep(mf_ae *ae, void *data) {
  mf_server *s = data;
  for (int i = 0; i < s->nmodels; i++)
    if (s->pending[i]) {
      mf_model_submit(s->models[i], s->pending[i]);
      s->pending[i] = NULL;
    }
}

/* ---- lifecycle ---- */

static mf_status listen_on(mf_server *s) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
  char port[16];
  snprintf(port, sizeof port, "%d", s->o.port);
  int rc = getaddrinfo(s->o.host, port, &hints, &res);
  if (rc != 0) return MF_ERR(MF_ERR_USAGE, "cannot resolve --host '%s': %s", s->o.host, gai_strerror(rc));
  int err = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
      struct sockaddr_storage ss;
      socklen_t sl = sizeof ss;
      getsockname(fd, (struct sockaddr *)&ss, &sl);
      s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
      s->lfd = fd;
      freeaddrinfo(res);
      return MF_OK;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(res);
  return MF_ERR(MF_ERR_IO, "cannot listen on %s:%d: %s", s->o.host, s->o.port, strerror(err));
}

mf_status mf_server_create(mf_server **out, const mf_server_opts *o, mf_model **models, int nmodels,
                           const struct mf_bpe *bpe, int notify_fd, int signal_fd) {
  mf_server *s = calloc(1, sizeof *s);
  if (!s) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  s->o = *o;
  s->lfd = -1;
  s->models = models;
  s->nmodels = nmodels;
  s->bpe = bpe;
  s->notify_fd = notify_fd;
  s->signal_fd = signal_fd;
  s->lim = (mf_http_limits){.max_header = o->max_header, .max_headers = o->max_headers, .max_body = o->max_body};
  mf_rng_seed(&s->rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32), 11);
  for (int e = 0; e < EP_N; e++) mf_hist_init(&s->h_dur[e], mf_buckets_latency, mf_buckets_latency_n);
  mf_hist_init(&s->h_ttft, mf_buckets_latency, mf_buckets_latency_n);
  s->started = (long)time(NULL);
  int setsize = o->max_connections + 64; /* + listening socket, eventfd, signalfd, stdio, HDF5 files */
  s->ae = mf_ae_create(setsize);
  s->conns = calloc((size_t)setsize, sizeof *s->conns);
  s->pending = calloc((size_t)(nmodels ? nmodels : 1), sizeof *s->pending);
  mf_status st = s->ae && s->conns && s->pending ? MF_OK : MF_ERR(MF_ERR_NOMEM, "out of memory");
  if (st == MF_OK) st = listen_on(s);
  if (st == MF_OK && (mf_ae_add(s->ae, s->lfd, MF_AE_READ, on_accept, s) < 0 ||
                      mf_ae_add(s->ae, notify_fd, MF_AE_READ, on_notify, s) < 0 ||
                      (signal_fd >= 0 && mf_ae_add(s->ae, signal_fd, MF_AE_READ, on_signal, s) < 0)))
    st = MF_ERR(MF_ERR_INTERNAL, "epoll: %s", strerror(errno));
  if (st != MF_OK) {
    mf_server_free(s);
    return st;
  }
  mf_ae_set_timer(s->ae, TIMER_MS, on_timer, s);
  mf_ae_set_before_sleep(s->ae, before_sleep, s);
  *out = s;
  return MF_OK;
}

int mf_server_port(const mf_server *s) { return s->port; }

mf_status mf_server_run(mf_server *s) {
  mf_ae_run(s->ae);
  return MF_OK;
}

void mf_server_free(mf_server *s) {
  if (!s) return;
  if (s->ae) {
    for (int fd = 0; fd < mf_ae_setsize(s->ae); fd++)
      if (s->conns && s->conns[fd]) conn_close(s, s->conns[fd]);
    before_sleep(s->ae, s); /* jobs not yet handed over: the workers retire them */
  }
  if (s->lfd >= 0) close(s->lfd);
  mf_ae_destroy(s->ae);
  free(s->conns);
  free(s->pending);
  free(s);
}
