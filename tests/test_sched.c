/* The model worker's hand-over to the event loop (serving/sched.c), without sockets:
 * jobs of different lengths share the batch and finish at different steps, and the "loop"
 * here takes their output with mf_model_take_done while the worker goes on publishing.
 * A taken list must stay as it was while the loop walks it, however the worker pushes
 * those jobs onto its next list meanwhile (the two once shared a link: walks then skipped
 * jobs, which never got their last tokens, or ran into the next list and handled jobs
 * twice, reading freed connections in the server). Every job ends with exactly its
 * max_new tokens, finish_reason "length", and the text the worker generated. */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "datasets/bpe.h"
#include "serving/sched.h"
#include "test.h"
#include "trainers/checkpoint.h"
#include "trainers/gpt.h"

enum { NJOB = 12, WALKS = 2000 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int walk(mf_job *l, mf_job **out, int max) {
  int n = 0;
  for (mf_job *j = l; j && n < max; j = j->taken_next) out[n++] = j;
  return n;
}

int main(void) {
  char dir[] = "/tmp/mf_sched_test.XXXXXX", path[64];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/m.h5", dir);
  mf_config cfg;
  mf_config_defaults(&cfg);
  cfg.model.n_layer = 1;
  cfg.model.n_head = 2;
  cfg.model.n_embd = 32;
  cfg.model.block_size = 128;
  mf_gpt *g = NULL;
  CHECK(mf_gpt_create(&g, &cfg.model) == MF_OK);
  mf_params_init(&g->params, 3);
  CHECK(mf_ckpt_save(path, &cfg, &g->params, NULL, NULL, NULL, "export") == MF_OK);
  mf_gpt_free(g);

  mf_bpe *bpe = NULL;
  CHECK(mf_bpe_load_default(&bpe) == MF_OK);
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  mf_sched_opts o = {.threads = 1, .max_batch = 16, .batch_tokens = 256, .kv_block = 16, .kv_mib = 4,
                     .notify_fd = efd, .bpe = bpe};
  mf_model *m = NULL;
  CHECK(bpe && efd >= 0 && mf_model_start(&m, "t", path, &o) == MF_OK);
  for (double t0 = now_s(); m && mf_model_state(m) == MF_MODEL_LOADING && now_s() - t0 < 30;) usleep(1000);
  CHECK(m && mf_model_state(m) == MF_MODEL_READY);
  if (!m || mf_model_state(m) != MF_MODEL_READY) return mf_test_report("test_sched");

  /* lengths 2, 7, 12, ...: each step some jobs finish and drop out of the worker's pushes */
  mf_job *jobs[NJOB], *list = NULL, **tail = &list;
  size_t got[NJOB] = {0};
  int done[NJOB] = {0}, ntok[NJOB] = {0}, want[NJOB];
  const char *reason[NJOB] = {0};
  for (int i = 0; i < NJOB; i++) {
    mf_job *j = mf_job_new(m, 1);
    mf_choice *c = &j->ch[0];
    c->nprompt = 3;
    c->prompt = malloc(3 * sizeof *c->prompt);
    for (int k = 0; k < 3; k++) c->prompt[k] = 100 + 7 * i + k;
    c->max_new = want[i] = 2 + 5 * i;
    c->temperature = 0;
    c->top_p = 1;
    c->seed = (uint64_t)i;
    j->ignore_eos = 1;
    j->t_submit = now_s();
    j->owner = &jobs[i];
    jobs[i] = j;
    *tail = j;
    tail = &j->pending_next;
  }
  mf_model_submit(m, list);

  int remaining = NJOB, changed = 0, walks = 0;
  mf_job *a[NJOB + 1], *b[NJOB + 1];
  for (double t0 = now_s(); remaining > 0 && now_s() - t0 < 60;) {
    uint64_t v;
    while (read(efd, &v, sizeof v) > 0) {
    }
    mf_job *l = mf_model_take_done(m);
    if (!l) {
      usleep(200);
      continue;
    }
    /* walk the list, let the worker run a few steps, walk it again: the same jobs */
    int na = walk(l, a, NJOB + 1);
    usleep(walks++ < WALKS ? 3000 : 0);
    int nb = walk(l, b, NJOB + 1);
    if (na != nb || memcmp(a, b, (size_t)na * sizeof *a) != 0) changed++;
    CHECKF(na <= NJOB, "a taken list of %d jobs: it ran into another list", na);
    for (int k = 0; k < na && k <= NJOB; k++) {
      mf_job *j = a[k];
      int i = (int)((mf_job **)j->owner - jobs);
      CHECKF(i >= 0 && i < NJOB && !done[i], "taken list entry %d: job %d (done %d)", k, i, i >= 0 && i < NJOB ? done[i] : -1);
      if (i < 0 || i >= NJOB || done[i]) continue;
      mf_model_lock(m);
      mf_choice *c = &j->ch[0];
      got[i] += c->out.len;
      mf_buf_free(&c->out);
      mf_buf_free(&c->seg);
      ntok[i] = c->ntokens;
      int fin = c->finished;
      reason[i] = c->finish_reason;
      mf_model_unlock(m);
      if (fin) {
        done[i] = 1;
        remaining--;
        mf_job_release(j);
      }
    }
  }
  CHECKF(remaining == 0, "%d of %d jobs never finished", remaining, NJOB);
  CHECKF(changed == 0, "%d taken lists changed while being walked (the worker's pushes relinked them)", changed);
  for (int i = 0; i < NJOB; i++) {
    CHECKF(!done[i] || ntok[i] == want[i], "job %d: %d tokens, want %d", i, ntok[i], want[i]);
    CHECKF(!done[i] || (reason[i] && strcmp(reason[i], "length") == 0), "job %d: finish %s", i,
           reason[i] ? reason[i] : "(null)");
    CHECKF(!done[i] || got[i] >= (size_t)want[i], "job %d: %zu bytes of text for %d tokens", i, got[i], want[i]);
  }
  printf("test_sched: %d jobs, %d list walks, %d changed under the walk\n", NJOB, walks, changed);
  mf_model_stop(m);
  mf_bpe_free(bpe);
  close(efd);
  unlink(path);
  rmdir(dir);
  return mf_test_report("test_sched");
}
