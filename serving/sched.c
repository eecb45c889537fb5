/* The GPT model worker: continuous batching over a paged KV pool (see sched.h).
 *
 * One step of the worker:
 *   1. under the lock: take submitted jobs (their choices join the waiting FIFO), and
 *      retire every choice whose job the loop cancelled (its blocks go back at once);
 *   2. admit waiting choices in order while a batch slot and KV blocks for prompt plus
 *      max new tokens are free (reserving up front means a running sequence never runs
 *      out of cache mid-flight, so nothing is ever preempted or dropped);
 *   3. one mf_gpt_serve_step over every active sequence: each decoder feeds its last
 *      token, prefills take chunks of their prompts within the step's token budget (a
 *      long prompt cannot stall the decoders for long);
 *   4. sample, detokenize, check EOS / stop sequences / max tokens, and stage text (held
 *      back while it could still be the start of a stop sequence or ends mid UTF-8);
 *   5. under the lock: publish staged text and finishes, then wake the loop (eventfd).
 * The lock is held only to move pointers and bytes, never across a model step. */
#include "serving/sched.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/h5.h"
#include "core/threads.h"
#include "datasets/bpe.h"
#include "kernels/backend.h"
#include "kernels/cpu/paged.h"
#include "serving/ae.h"
#include "trainers/checkpoint.h"
#include "trainers/gpt_serve.h"
#include "trainers/train.h"

#define KV_DEFAULT_CAP_MIB 1024.0 /* default pool ceiling when --kv-mib is not given */
#define GATHER_MAX_S 0.003        /* after idle: wait at most this long for more arrivals */
#define GATHER_QUIET_S 0.0005     /* ... and stop once none came for this long */

struct mf_model {
  char id[128];
  char path[4096];
  mf_model_info info;
  mf_sched_opts o;
  pthread_t th;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* shared */
  int state;
  char err[300];
  int stop;
  mf_job *in_head, *in_tail; /* submitted, linked by done_next until taken */
  mf_job *done;
  int pool_tokens;
  uint64_t gen_tokens, prompt_tokens, steps, seqs_done;
  int queue_depth, nactive_pub, kv_used, kv_total;
  mf_hist h_seqs, h_tokens, h_step;
  /* worker */
  mf_gpt *g;
  mf_serve_weights sw; /* weight layouts for the step */
  const mf_bpe *bpe;
  mf_kv_pool pool;
  mf_ctx *ctx;
  float *logits;
  mf_serve_seq *sq;
  mf_choice **stepch, **active, **rowch;
  int32_t *rowtok;
  int nactive;
  mf_choice *wait_head, *wait_tail;
  int nwait;
};

/* ---- model files ---- */

mf_status mf_model_probe(const char *path, mf_model_info *info) {
  memset(info, 0, sizeof *info);
  mf_config cfg;
  mf_config_defaults(&cfg);
  MF_TRY(mf_ckpt_read_config(path, &cfg));
  MF_TRY(mf_config_validate(&cfg, 1));
  snprintf(info->family, sizeof info->family, "%s", cfg.model.family);
  info->n_layer = cfg.model.n_layer;
  info->n_head = cfg.model.n_head;
  info->n_embd = cfg.model.n_embd;
  info->block_size = cfg.model.block_size;
  info->vocab_size = cfg.model.vocab_size;
  mf_h5 *h;
  MF_TRY(mf_h5_open(&h, path));
  char *s = NULL;
  snprintf(info->dtype, sizeof info->dtype, "fp32");
  if (mf_h5_has_attr(h, "/", "dtype") && mf_h5_get_str(h, "/", "dtype", &s) == MF_OK) snprintf(info->dtype, sizeof info->dtype, "%s", s);
  free(s);
  s = NULL;
  snprintf(info->kind, sizeof info->kind, "train");
  if (mf_h5_has_attr(h, "/", "kind") && mf_h5_get_str(h, "/", "kind", &s) == MF_OK) snprintf(info->kind, sizeof info->kind, "%s", s);
  free(s);
  mf_h5_close(h);
  int64_t C = info->n_embd;
  info->nparams = (int64_t)info->vocab_size * C + (int64_t)info->block_size * C +
                  (int64_t)info->n_layer * (12 * C * C + 13 * C) + 2 * C;
  return MF_OK;
}

const char *mf_model_id(const mf_model *m) { return m->id; }
const mf_model_info *mf_model_get_info(const mf_model *m) { return &m->info; }
int mf_model_context(const mf_model *m) { return m->info.block_size; }
void mf_model_lock(mf_model *m) { pthread_mutex_lock(&m->mu); }
void mf_model_unlock(mf_model *m) { pthread_mutex_unlock(&m->mu); }

int mf_model_state(mf_model *m) {
  mf_model_lock(m);
  int s = m->state;
  mf_model_unlock(m);
  return s;
}

const char *mf_model_error(mf_model *m) { return m->err; } /* written once, before FAILED is published */

int mf_model_pool_tokens(mf_model *m) {
  mf_model_lock(m);
  int t = m->pool_tokens;
  mf_model_unlock(m);
  return t;
}

/* ---- jobs ---- */

mf_job *mf_job_new(mf_model *m, int nchoices) {
  mf_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->ch = calloc((size_t)nchoices, sizeof *j->ch);
  if (!j->ch) {
    free(j);
    return NULL;
  }
  j->model = m;
  j->nchoices = nchoices;
  j->refs = 2; /* the loop's and the worker's */
  for (int i = 0; i < nchoices; i++) j->ch[i].job = j;
  return j;
}

static void job_free(mf_job *j) {
  for (int i = 0; i < j->nchoices; i++) {
    mf_choice *c = &j->ch[i];
    free(c->prompt);
    mf_buf_free(&c->out);
    mf_buf_free(&c->seg);
    mf_buf_free(&c->text);
    free(c->blocks);
    if (c->has_smp) mf_sampler_free(&c->smp);
  }
  for (int i = 0; i < j->nstop; i++) free(j->stop[i]);
  free(j->ch);
  free(j);
}

/* under the lock: drop one reference; 1 when the caller must free the job (after unlocking) */
static int unref_locked(mf_job *j) { return --j->refs == 0 && !j->in_done; }

void mf_job_release(mf_job *j) {
  mf_model *m = j->model;
  mf_model_lock(m);
  int f = unref_locked(j);
  mf_model_unlock(m);
  if (f) job_free(j);
}

void mf_job_cancel_release(mf_job *j) {
  mf_model *m = j->model;
  mf_model_lock(m);
  j->cancelled = 1;
  j->owner = NULL;
  int f = unref_locked(j);
  pthread_cond_signal(&m->cv);
  mf_model_unlock(m);
  if (f) job_free(j);
}

void mf_model_submit(mf_model *m, mf_job *list) {
  if (!list) return;
  mf_model_lock(m);
  for (mf_job *j = list, *next; j; j = next) {
    next = j->pending_next;
    j->pending_next = NULL;
    j->done_next = NULL;
    if (m->in_tail) m->in_tail->done_next = j;
    else m->in_head = j;
    m->in_tail = j;
  }
  pthread_cond_signal(&m->cv);
  mf_model_unlock(m);
}

mf_job *mf_model_take_done(mf_model *m) {
  mf_job *out = NULL, **tail = &out, *dead = NULL;
  mf_model_lock(m);
  for (mf_job *j = m->done, *next; j; j = next) {
    next = j->done_next;
    j->in_done = 0;
    j->done_next = NULL;
    /* the loop has let go of it already: cancelled, or released after it finished while
     * this last push was pending (nobody would free it, and its owner may be gone) */
    if (j->cancelled || j->refs == 0) {
      if (j->refs == 0) {
        j->done_next = dead;
        dead = j;
      }
      continue;
    }
    *tail = j;
    tail = &j->taken_next;
  }
  *tail = NULL;
  m->done = NULL;
  mf_model_unlock(m);
  while (dead) {
    mf_job *n = dead->done_next;
    job_free(dead);
    dead = n;
  }
  return out;
}

/* ---- sampling ----
 * trainers/sample.c's mf_sample, operation for operation (so a seeded completion equals
 * `mforge generate --seed`), but thread-safe: its sort key goes through qsort_r instead
 * of a global, so the worker samples every sequence of a step in parallel. Keep the two
 * in step. */

static int by_prob_desc_r(const void *a, const void *b, void *key) {
  const float *k = key;
  float x = k[*(const int *)a], y = k[*(const int *)b];
  if (x != y) return x < y ? 1 : -1;
  return *(const int *)a - *(const int *)b;
}

static void partial_select(int *idx, int n, int k, const float *key) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    float pivot = key[idx[(lo + hi) / 2]];
    int i = lo, j = hi;
    while (i <= j) {
      while (key[idx[i]] > pivot) i++;
      while (key[idx[j]] < pivot) j--;
      if (i <= j) {
        int t = idx[i];
        idx[i++] = idx[j];
        idx[j--] = t;
      }
    }
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else break;
  }
}

/* the k+1 largest logits' indices by a min-heap on (logit, then higher index first) */
static void heap_down(int *h, int n, int i, const float *x) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && (x[h[l]] < x[h[m]] || (x[h[l]] == x[h[m]] && h[l] > h[m]))) m = l;
    if (r < n && (x[h[r]] < x[h[m]] || (x[h[r]] == x[h[m]] && h[r] > h[m]))) m = r;
    if (m == i) return;
    int t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

/* top-k with 0 < k < V-1: mf_sample computes exp over the whole vocabulary and
 * quickselects by probability; the kept set is the k largest probabilities, which are
 * the k largest logits (exp is monotonic) unless rounding makes the k-th and (k+1)-th
 * probabilities equal, the one case where its quickselect's order decides: then -1 and
 * the caller takes the exact path. Otherwise the same kept set, sorted the same way,
 * sampled with the same draw: the same token, for a fraction of the work. */
static int sample_top_k(mf_sampler *s, const float *logits, float mx) {
  int V = s->V, k = s->top_k, n = k + 1, *h = s->idx;
  for (int i = 0; i < n; i++) h[i] = i;
  for (int i = n / 2 - 1; i >= 0; i--) heap_down(h, n, i, logits);
  for (int i = n; i < V; i++) {
    float x = logits[i], top = logits[h[0]];
    if (x > top) { /* equal logits: the lower index stays (it is already in) */
      h[0] = i;
      heap_down(h, n, 0, logits);
    }
  }
  int out = h[0]; /* the (k+1)-th largest */
  float pout = expf((logits[out] - mx) / s->temperature);
  h[0] = h[--n];
  for (int i = 0; i < n; i++) {
    s->prob[h[i]] = expf((logits[h[i]] - mx) / s->temperature);
    if (s->prob[h[i]] == pout) return -1;
  }
  qsort_r(h, (size_t)k, sizeof *h, by_prob_desc_r, s->prob);
  double total = 0;
  for (int i = 0; i < k; i++) total += s->prob[h[i]];
  if (s->top_p < 1.0f) {
    double acc = 0;
    int keep = 0;
    while (keep < k) {
      acc += s->prob[h[keep++]];
      if (acc >= s->top_p * total) break;
    }
    k = keep;
    total = acc;
  }
  double u = mf_rng_uniform_d(&s->rng) * total, acc = 0;
  for (int i = 0; i < k; i++) {
    acc += s->prob[h[i]];
    if (u < acc) return h[i];
  }
  return h[k - 1];
}

int mf_sched_sample(mf_sampler *s, const float *logits) {
  int V = s->V;
  if (s->temperature <= 0.0f) {
    int best = 0;
    for (int i = 1; i < V; i++)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  if (s->top_k > 0 && s->top_k < V - 1) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    int t = sample_top_k(s, logits, mx); /* draws only when it decides */
    if (t >= 0) return t;
  }
  float mx = logits[0];
  for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
  double sum = 0;
  for (int i = 0; i < V; i++) {
    s->prob[i] = expf((logits[i] - mx) / s->temperature);
    sum += s->prob[i];
    s->idx[i] = i;
  }
  int n = V;
  if (s->top_k > 0 && s->top_k < V) {
    partial_select(s->idx, V, s->top_k, s->prob);
    n = s->top_k;
  }
  if (s->top_p < 1.0f || n < V) {
    qsort_r(s->idx, (size_t)n, sizeof *s->idx, by_prob_desc_r, s->prob);
    double total = 0;
    for (int i = 0; i < n; i++) total += s->prob[s->idx[i]];
    if (s->top_p < 1.0f) {
      double acc = 0;
      int keep = 0;
      while (keep < n) {
        acc += s->prob[s->idx[keep++]];
        if (acc >= s->top_p * total) break;
      }
      n = keep;
      total = acc;
    }
    sum = total;
  }
  double u = mf_rng_uniform_d(&s->rng) * sum, acc = 0;
  for (int i = 0; i < n; i++) {
    acc += s->prob[s->idx[i]];
    if (u < acc) return s->idx[i];
  }
  return s->idx[n - 1];
}

/* ---- the worker ---- */

/* under the lock: the loop should look at j */
static int push_done_locked(mf_model *m, mf_job *j) {
  if (j->in_done || j->cancelled) return 0;
  int was_empty = m->done == NULL;
  j->in_done = 1;
  j->done_next = m->done;
  m->done = j;
  return was_empty;
}

static void notify(mf_model *m) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(m->o.notify_fd, &one, sizeof one);
  while (r < 0 && errno == EINTR);
}

static mf_status load(mf_model *m) {
  mf_config cfg;
  /* test hook: MFORGE_SERVE_TEST_LOAD_DELAY_MS holds the model in "loading" a while, so
   * tests can see GET /health answer 503 before 200 */
  const char *delay = getenv("MFORGE_SERVE_TEST_LOAD_DELAY_MS");
  if (delay && atoi(delay) > 0) usleep((useconds_t)atoi(delay) * 1000);
  MF_TRY(mf_model_open(m->path, &cfg, &m->g));
  m->bpe = m->o.bpe;
  if (!m->bpe) return MF_ERR(MF_ERR_INTERNAL, "no tokenizer given to the model worker");
  mf_gpt *g = m->g;
  int bs = m->o.kv_block, ctxb = (g->maxT + bs - 1) / bs;
  double per_block = (double)mf_kv_bytes_per_token(g) * bs;
  double mib = m->o.kv_mib;
  if (mib <= 0) {
    mib = (double)m->o.max_batch * ctxb * per_block / 1048576.0;
    if (mib > KV_DEFAULT_CAP_MIB) mib = KV_DEFAULT_CAP_MIB;
  }
  int nblocks = (int)(mib * 1048576.0 / per_block);
  if (nblocks < ctxb) nblocks = ctxb; /* always room for one full context */
  MF_TRY(mf_kv_pool_create(&m->pool, g, bs, nblocks));
  m->ctx = mf_ctx_create(&mf_backend_cpu, 16 << 20);
  MF_TRY(mf_serve_weights_create(&m->sw, g));
  m->logits = malloc((size_t)m->o.max_batch * g->Vp * sizeof(float));
  m->sq = calloc((size_t)m->o.max_batch, sizeof *m->sq);
  m->stepch = calloc((size_t)m->o.max_batch, sizeof *m->stepch);
  m->active = calloc((size_t)m->o.max_batch, sizeof *m->active);
  m->rowch = calloc((size_t)m->o.max_batch, sizeof *m->rowch);
  m->rowtok = calloc((size_t)m->o.max_batch, sizeof *m->rowtok);
  if (!m->ctx || !m->logits || !m->sq || !m->stepch || !m->active || !m->rowch || !m->rowtok)
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  mf_ctx_set_record(m->ctx, 0);
  mf_model_lock(m);
  m->pool_tokens = nblocks * bs;
  m->kv_total = nblocks;
  mf_model_unlock(m);
  return MF_OK;
}

/* worker, no lock: longest suffix of t[0..n) that is a proper prefix of a stop sequence */
static size_t stop_holdback(const mf_job *j, const char *t, size_t n) {
  size_t hold = 0;
  for (int s = 0; s < j->nstop; s++) {
    size_t sl = j->stop_len[s];
    for (size_t k = sl - 1 < n ? sl - 1 : n; k > hold; k--)
      if (memcmp(t + n - k, j->stop[s], k) == 0) {
        hold = k;
        break;
      }
  }
  return hold;
}

/* earliest stop sequence ending after byte `from` of t[0..n); 1 and its start in *at */
static int stop_find(const mf_job *j, const char *t, size_t n, size_t from, size_t *at) {
  int found = 0;
  for (int s = 0; s < j->nstop; s++) {
    size_t sl = j->stop_len[s], st = from >= sl ? from - sl + 1 : 0;
    if (st >= n) continue;
    const char *p = memmem(t + st, n - st, j->stop[s], sl);
    if (p && (!found || (size_t)(p - t) < *at)) {
      *at = (size_t)(p - t);
      found = 1;
    }
  }
  return found;
}

/* staged by the worker for the next publish */
typedef struct stage {
  mf_choice *c;
  size_t pub_to;       /* text bytes to hand out */
  const char *finish;  /* finish reason, or NULL: still running */
  int done;            /* finished now (stop, length, cancelled or failed) */
} stage;

static void retire(mf_model *m, mf_choice *c) {
  if (c->nblocks) mf_kv_pool_release(&m->pool, c->nblocks, c->blocks);
  c->nblocks = 0;
  if (c->has_smp) mf_sampler_free(&c->smp);
  c->has_smp = 0;
}

/* under the lock: hand staged text and finishes to the loop; 1 when it must be woken */
static int publish_locked(mf_model *m, stage *st, int n, int *freeq, mf_job **tofree) {
  int wake = 0;
  for (int i = 0; i < n; i++) {
    mf_choice *c = st[i].c;
    mf_job *j = c->job;
    if (st[i].pub_to > c->published) {
      uint32_t piece = (uint32_t)(st[i].pub_to - c->published);
      mf_buf_add(&c->out, c->text.p + c->published, piece);
      mf_buf_add(&c->seg, &piece, sizeof piece);
      c->published = st[i].pub_to;
    }
    if (st[i].done) {
      c->finished = 1;
      c->finish_reason = st[i].finish;
      m->seqs_done++;
      if (++j->nfinished == j->nchoices && unref_locked(j)) tofree[(*freeq)++] = j;
    }
    if (!j->cancelled) wake |= push_done_locked(m, j);
  }
  return wake;
}

static void fail_all(mf_model *m, const char *why);

/* one admission: blocks for prompt + max new tokens, a sampler; 0 when it must wait */
static int admit(mf_model *m, mf_choice *c) {
  int need = c->nprompt + (c->max_new > 0 ? c->max_new - 1 : 0);
  int nb = mf_kv_blocks_for(&m->pool, need);
  if (!c->blocks) c->blocks = malloc((size_t)(nb ? nb : 1) * sizeof *c->blocks);
  if (!c->blocks || !mf_kv_pool_alloc(&m->pool, nb, c->blocks)) return 0;
  c->nblocks = nb;
  c->has_smp = mf_sampler_init(&c->smp, m->g->V, c->temperature, c->top_k, c->top_p, c->seed);
  if (!c->has_smp) {
    mf_sampler_free(&c->smp);
    retire(m, c);
    return 0;
  }
  c->pos = 0;
  return 1;
}

static void *worker_main(void *arg) {
  mf_model *m = arg;
  mf_set_threads(m->o.threads);
  mf_status st = load(m);
  mf_model_lock(m);
  if (st != MF_OK) {
    snprintf(m->err, sizeof m->err, "%s", mf_error_message());
    m->state = MF_MODEL_FAILED;
  } else {
    m->state = MF_MODEL_READY;
  }
  mf_model_unlock(m);
  if (st != MF_OK) fprintf(stderr, "mforge serve: model '%s' failed to load: %s\n", m->id, m->err);
  int maxb = m->o.max_batch;
  stage *stg = calloc((size_t)maxb * 2 + 64, sizeof *stg);
  int stg_cap = maxb * 2 + 64;
  mf_job **tofree = calloc((size_t)stg_cap, sizeof *tofree);
  int eot = m->bpe ? mf_bpe_eot(m->bpe) : -1;
  for (;;) {
    int nst = 0, nfree = 0, wake = 0;
    /* 1. new jobs and cancellations */
    mf_model_lock(m);
    int idle = !m->in_head && !m->wait_head && !m->nactive;
    while (!m->stop && !m->in_head && !m->wait_head && !m->nactive) pthread_cond_wait(&m->cv, &m->mu);
    if (m->stop && !m->in_head && !m->wait_head && !m->nactive) {
      mf_model_unlock(m);
      break;
    }
    /* Woken from idle: requests that arrive together (clients in step with each other)
     * trickle in over a millisecond or two. Gather them into the first step rather than
     * starting with the first few and making the rest wait a whole step. */
    for (double t_end = mf_ae_now() + GATHER_MAX_S; idle && !m->stop;) {
      mf_job *tail = m->in_tail;
      double now = mf_ae_now();
      if (now >= t_end) break;
      double until = now + GATHER_QUIET_S < t_end ? now + GATHER_QUIET_S : t_end;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      double ns = ts.tv_nsec + (until - now) * 1e9;
      ts.tv_sec += (time_t)(ns / 1e9);
      ts.tv_nsec = (long)(ns - (double)(time_t)(ns / 1e9) * 1e9);
      pthread_cond_timedwait(&m->cv, &m->mu, &ts);
      if (m->in_tail == tail && mf_ae_now() >= until) break; /* quiet: go */
    }
    for (mf_job *j = m->in_head, *next; j; j = next) {
      next = j->done_next;
      j->done_next = NULL;
      for (int i = 0; i < j->nchoices; i++) {
        mf_choice *c = &j->ch[i];
        c->next = NULL;
        if (m->wait_tail) m->wait_tail->next = c;
        else m->wait_head = c;
        m->wait_tail = c;
        m->nwait++;
      }
    }
    m->in_head = m->in_tail = NULL;
    int failed = m->state != MF_MODEL_READY || !stg || !tofree;
    /* retire cancelled (and, on a failed model, everything): waiting ones, then active */
    for (mf_choice **pp = &m->wait_head; *pp;) {
      mf_choice *c = *pp;
      if (!c->job->cancelled && !failed && nst < stg_cap) {
        pp = &c->next;
        continue;
      }
      if (nst >= stg_cap) break;
      *pp = c->next;
      m->nwait--;
      if (failed && !c->job->failed) {
        c->job->failed = 1;
        snprintf(c->job->err, sizeof c->job->err, "model '%s' is not available: %s", m->id, m->err);
      }
      stg[nst++] = (stage){.c = c, .pub_to = c->published, .finish = NULL, .done = 1};
    }
    m->wait_tail = NULL;
    for (mf_choice *c = m->wait_head; c; c = c->next) m->wait_tail = c;
    for (int i = 0; i < m->nactive;) {
      mf_choice *c = m->active[i];
      if (!c->job->cancelled || nst >= stg_cap) {
        i++;
        continue;
      }
      retire(m, c);
      stg[nst++] = (stage){.c = c, .pub_to = c->published, .done = 1};
      m->active[i] = m->active[--m->nactive];
    }
    if (nst) wake |= publish_locked(m, stg, nst, &nfree, tofree);
    mf_model_unlock(m);
    for (int i = 0; i < nfree; i++) job_free(tofree[i]);
    if (wake) notify(m);
    if (failed) continue;
    nst = nfree = wake = 0;

    /* 2. admission, in arrival order */
    while (m->wait_head && m->nactive < maxb) {
      mf_choice *c = m->wait_head;
      if (c->max_new == 0) { /* nothing to generate (echo only) */
        stg[nst++] = (stage){.c = c, .pub_to = 0, .finish = "length", .done = 1};
      } else if (admit(m, c)) {
        m->active[m->nactive++] = c;
        mf_model_lock(m);
        m->prompt_tokens += (uint64_t)c->nprompt;
        mf_model_unlock(m);
      } else {
        break;
      }
      m->wait_head = c->next;
      if (!m->wait_head) m->wait_tail = NULL;
      m->nwait--;
      if (nst >= maxb) break;
    }

    /* 3. one step over the active sequences */
    int ns = 0, budget = m->o.batch_tokens, ntok = 0;
    for (int i = 0; i < m->nactive; i++) { /* decoders first: one token each */
      mf_choice *c = m->active[i];
      if (c->pos < c->nprompt) continue;
      m->sq[ns] = (mf_serve_seq){.tokens = &c->last, .n = 1, .pos0 = c->pos, .tiled = 0, .blocks = c->blocks, .want_logits = 1};
      m->stepch[ns++] = c;
      budget--;
    }
    for (int i = 0; i < m->nactive && budget > 0; i++) { /* then prompt chunks, oldest first */
      mf_choice *c = m->active[i];
      if (c->pos >= c->nprompt) continue;
      int n = c->nprompt - c->pos;
      if (n > budget) n = budget;
      m->sq[ns] = (mf_serve_seq){.tokens = c->prompt + c->pos, .n = n, .pos0 = c->pos,
                                 .tiled = c->nprompt > MF_PAGED_DECODE_MAX, .blocks = c->blocks,
                                 .want_logits = c->pos + n == c->nprompt};
      m->stepch[ns++] = c;
      budget -= n;
    }
    mf_status sst = MF_OK;
    double t0 = mf_ae_now();
    if (ns) sst = mf_gpt_serve_step(m->g, m->ctx, &m->pool, &m->sw, m->sq, ns, m->logits);
    double dt = mf_ae_now() - t0;
    if (sst != MF_OK) {
      fprintf(stderr, "mforge serve: model '%s': step failed: %s\n", m->id, mf_error_message());
      fail_all(m, mf_error_message());
      continue;
    }

    /* 4. sample (every sequence at once: each has its own sampler), then stage in order */
    int nrow = 0, sampled = 0;
    for (int i = 0; i < ns; i++)
      if (m->sq[i].want_logits) m->rowch[nrow++] = m->stepch[i];
#pragma omp parallel for schedule(dynamic, 1) if (nrow > 1)
    for (int r = 0; r < nrow; r++) m->rowtok[r] = mf_sched_sample(&m->rowch[r]->smp, m->logits + (size_t)r * m->g->Vp);
    for (int i = 0, row = 0; i < ns; i++) {
      mf_choice *c = m->stepch[i];
      c->pos += m->sq[i].n;
      ntok += m->sq[i].n;
      if (!m->sq[i].want_logits) continue;
      int32_t tok = m->rowtok[row++];
      c->ntokens++;
      sampled++;
      c->last = tok;
      const char *fin = NULL;
      size_t pub = c->published;
      if (tok == eot && !c->job->ignore_eos) {
        fin = "stop";
        pub = c->text.len;
      } else {
        size_t len, old = c->text.len;
        const char *bytes = mf_bpe_token_bytes(m->bpe, tok, &len);
        if (bytes) mf_buf_add(&c->text, bytes, len);
        size_t at = 0;
        if (c->job->nstop && stop_find(c->job, c->text.p, c->text.len, old, &at)) {
          fin = "stop";
          pub = at;
        } else if (c->ntokens >= c->max_new) {
          fin = "length";
          pub = c->text.len;
        } else {
          pub = c->text.len - stop_holdback(c->job, c->text.p, c->text.len);
          pub = mf_utf8_complete(c->text.p, pub);
        }
      }
      if (fin) retire(m, c);
      if (pub > c->published || fin) stg[nst++] = (stage){.c = c, .pub_to = pub, .finish = fin, .done = fin != NULL};
    }
    for (int i = 0; i < m->nactive;) { /* finished ones leave the batch */
      if (!m->active[i]->has_smp) m->active[i] = m->active[--m->nactive];
      else i++;
    }

    /* 5. publish */
    mf_model_lock(m);
    for (int i = 0; i < ns && sampled; i++)
      if (m->sq[i].want_logits && m->stepch[i]->job->t_first == 0) m->stepch[i]->job->t_first = mf_ae_now();
    if (nst) wake = publish_locked(m, stg, nst, &nfree, tofree);
    if (ns) {
      m->steps++;
      mf_hist_add(&m->h_seqs, ns);
      mf_hist_add(&m->h_tokens, ntok);
      mf_hist_add(&m->h_step, dt);
    }
    m->gen_tokens += (uint64_t)sampled;
    m->queue_depth = m->nwait;
    m->nactive_pub = m->nactive;
    m->kv_used = m->pool.nblocks - m->pool.nfree;
    mf_model_unlock(m);
    for (int i = 0; i < nfree; i++) job_free(tofree[i]);
    if (wake) notify(m);
  }
  free(stg);
  free(tofree);
  return NULL;
}

/* a failed step: every active sequence ends with an error; the model keeps serving */
static void fail_all(mf_model *m, const char *why) {
  stage st[m->nactive > 0 ? m->nactive : 1];
  mf_job *tofree[m->nactive > 0 ? m->nactive : 1];
  int n = 0, nfree = 0;
  mf_model_lock(m);
  for (int i = 0; i < m->nactive; i++) {
    mf_choice *c = m->active[i];
    retire(m, c);
    if (!c->job->failed) {
      c->job->failed = 1;
      snprintf(c->job->err, sizeof c->job->err, "generation failed: %s", why);
    }
    st[n++] = (stage){.c = c, .pub_to = c->published, .done = 1};
  }
  m->nactive = 0;
  int wake = publish_locked(m, st, n, &nfree, tofree);
  mf_model_unlock(m);
  for (int i = 0; i < nfree; i++) job_free(tofree[i]);
  if (wake) notify(m);
}

mf_status mf_model_start(mf_model **out, const char *id, const char *path, const mf_sched_opts *o) {
  mf_model *m = calloc(1, sizeof *m);
  if (!m) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  snprintf(m->id, sizeof m->id, "%s", id);
  snprintf(m->path, sizeof m->path, "%s", path);
  m->o = *o;
  mf_status st = mf_model_probe(path, &m->info);
  if (st != MF_OK) {
    free(m);
    return st;
  }
  pthread_mutex_init(&m->mu, NULL);
  pthread_cond_init(&m->cv, NULL);
  mf_hist_init(&m->h_seqs, mf_buckets_batch, mf_buckets_batch_n);
  mf_hist_init(&m->h_tokens, mf_buckets_batch, mf_buckets_batch_n);
  mf_hist_init(&m->h_step, mf_buckets_latency, mf_buckets_latency_n);
  m->state = MF_MODEL_LOADING;
  if (pthread_create(&m->th, NULL, worker_main, m) != 0) {
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
    return MF_ERR(MF_ERR_INTERNAL, "cannot start a worker thread");
  }
  m->started = 1;
  *out = m;
  return MF_OK;
}

void mf_model_stop(mf_model *m) {
  if (!m) return;
  mf_model_lock(m);
  m->stop = 1;
  pthread_cond_signal(&m->cv);
  mf_model_unlock(m);
  if (m->started) pthread_join(m->th, NULL);
  mf_model_take_done(m); /* frees what nobody holds any more */
  for (int i = 0; i < m->nactive; i++) retire(m, m->active[i]);
  mf_kv_pool_free(&m->pool);
  mf_ctx_destroy(m->ctx);
  free(m->logits);
  mf_serve_weights_free(&m->sw);
  free(m->sq);
  free(m->stepch);
  free(m->active);
  free(m->rowch);
  free(m->rowtok);
  mf_gpt_free(m->g);
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
  free(m);
}

void mf_model_get_stats(mf_model *m, mf_model_stats *s) {
  mf_model_lock(m);
  *s = (mf_model_stats){.state = m->state, .queue_depth = m->queue_depth, .active = m->nactive_pub,
                        .kv_used = m->kv_used, .kv_total = m->kv_total, .gen_tokens = m->gen_tokens,
                        .prompt_tokens = m->prompt_tokens, .seqs_done = m->seqs_done, .steps = m->steps,
                        .h_seqs = m->h_seqs, .h_tokens = m->h_tokens, .h_step = m->h_step};
  mf_model_unlock(m);
}
