/* Config tables: defaults, YAML loading, errors that quote file:line:key, --set,
 * validation, and the dump -> parse round trip that checkpoints rely on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "tests/test.h"

static const char *write_tmp(const char *text) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/mf_cfg_%d.yaml", (int)getpid());
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

/* loads text; returns status and leaves the message in mf_error_message() */
static mf_status load(mf_config *c, const char *text) {
  mf_config_defaults(c);
  return mf_config_load(c, write_tmp(text));
}

static int msg_has(const char *needle) {
  int ok = strstr(mf_error_message(), needle) != NULL;
  if (!ok) fprintf(stderr, "  message was: %s\n  expected to contain: %s\n", mf_error_message(), needle);
  return ok;
}

int main(void) {
  mf_config c;
  mf_config_defaults(&c);
  CHECK(mf_config_validate(&c, 1) == MF_OK);
  CHECK(c.train.lr > 5.9e-4f && c.train.lr < 6.1e-4f);
  CHECK(strcmp(c.device, "auto") == 0 && strcmp(c.data.name, "sotu") == 0);

  /* a good file */
  CHECK(load(&c, "run:\n  dir: runs/x\n  seed: 5\nmodel:\n  n_layer: 2\n  n_embd: 64\n"
                 "train:\n  lr: 1e-3\n  steps: 7\nfreeze: [wte.weight, 'h.0.*']\ndevice: cpu\n") == MF_OK);
  CHECK(strcmp(c.run.dir, "runs/x") == 0 && c.run.seed == 5 && c.model.n_layer == 2 && c.model.n_embd == 64);
  CHECK(c.train.steps == 7 && c.train.lr > 0.99e-3f && c.train.lr < 1.01e-3f);
  CHECK(c.n_freeze == 2 && strcmp(c.freeze[0], "wte.weight") == 0 && strcmp(c.freeze[1], "h.0.*") == 0);
  CHECK(strcmp(c.device, "cpu") == 0);
  /* block-style list too */
  CHECK(load(&c, "freeze:\n  - wpe.weight\n  - ln_f.*\n") == MF_OK && c.n_freeze == 2 &&
        strcmp(c.freeze[1], "ln_f.*") == 0);
  /* an empty file keeps the defaults */
  CHECK(load(&c, "") == MF_OK && c.model.n_layer == 4);

  /* errors quote file:line and the key, and suggest */
  CHECK(load(&c, "train:\n  steps: 3\n  lrr: 0.1\n") == MF_ERR_CONFIG);
  CHECK(msg_has(":3: unknown key 'train.lrr'") && msg_has("did you mean train.lr?"));
  CHECK(load(&c, "model:\n  n_layer: four\n") == MF_ERR_CONFIG);
  CHECK(msg_has(":2: model.n_layer: expected an integer, got 'four'"));
  CHECK(load(&c, "train:\n  lr: fast\n") == MF_ERR_CONFIG && msg_has("train.lr: expected a number"));
  CHECK(load(&c, "run:\n  progress: maybe\n") == MF_ERR_CONFIG && msg_has("expected true or false"));
  CHECK(load(&c, "device: tpu\n") == MF_ERR_CONFIG && msg_has("'tpu' is not one of auto|cpu|cuda"));
  CHECK(load(&c, "trian:\n  steps: 1\n") == MF_ERR_CONFIG && msg_has("unknown section 'trian'") &&
        msg_has("did you mean"));
  CHECK(load(&c, "train: 5\n") == MF_ERR_CONFIG && msg_has("'train' must be a mapping"));
  CHECK(load(&c, "train:\n  steps: [1, 2]\n") == MF_ERR_CONFIG && msg_has("expected a single value"));
  CHECK(load(&c, "model:\n  n_layer: 2\n   n_head: 3\n") == MF_ERR_CONFIG && msg_has("invalid YAML"));
  CHECK(load(&c, "- a\n- b\n") == MF_ERR_CONFIG && msg_has("must be a mapping"));
  CHECK(load(&c, "train:\n  steps: 99999999999\n") == MF_ERR_CONFIG);
  mf_config_defaults(&c);
  CHECK(mf_config_load(&c, "/nonexistent/x.yaml") == MF_ERR_IO && msg_has("/nonexistent/x.yaml"));

  /* --set */
  mf_config_defaults(&c);
  CHECK(mf_config_set(&c, "train.lr=3e-4") == MF_OK && c.train.lr > 2.9e-4f && c.train.lr < 3.1e-4f);
  CHECK(mf_config_set(&c, "device=cpu") == MF_OK && strcmp(c.device, "cpu") == 0);
  CHECK(mf_config_set(&c, "freeze=[a, b, c]") == MF_OK && c.n_freeze == 3 && strcmp(c.freeze[2], "c") == 0);
  CHECK(mf_config_set(&c, "train.lrr=1") == MF_ERR_USAGE && msg_has("did you mean train.lr?"));
  CHECK(mf_config_set(&c, "nosuch.key=1") == MF_ERR_USAGE);
  CHECK(mf_config_set(&c, "train.steps=x") == MF_ERR_USAGE && msg_has("expected an integer"));
  CHECK(mf_config_set(&c, "novalue") == MF_ERR_USAGE);

  /* validation names the keys */
  mf_config_defaults(&c);
  c.train.batch_size = 10;
  c.train.micro_batch_size = 4;
  CHECK(mf_config_validate(&c, 1) == MF_ERR_CONFIG && msg_has("train.batch_size (10)") &&
        msg_has("train.micro_batch_size"));
  mf_config_defaults(&c);
  c.train.batch_size = 8;
  c.train.micro_batch_size = 4;
  CHECK(mf_config_validate(&c, 1) == MF_OK && mf_config_validate(&c, 2) == MF_OK &&
        mf_config_validate(&c, 4) == MF_ERR_CONFIG);
  mf_config_defaults(&c);
  c.model.n_embd = 130;
  CHECK(mf_config_validate(&c, 1) == MF_ERR_CONFIG && msg_has("model.n_embd (130)"));
  mf_config_defaults(&c);
  c.train.seq_len = 1000;
  CHECK(mf_config_validate(&c, 1) == MF_ERR_CONFIG && msg_has("train.seq_len"));

  /* dump -> parse gives the same struct */
  CHECK(load(&c, "run:\n  dir: \"odd \\\"dir\\\" name\"\ntrain:\n  lr: 1.2345678e-4\n  min_lr: 0\n"
                 "freeze: [x.*]\nsample:\n  prompt: \"a: b # c\"\n") == MF_OK);
  char *y = mf_config_dump(&c);
  mf_config d;
  mf_config_defaults(&d);
  CHECK(mf_config_parse(&d, y, strlen(y), "dump") == MF_OK);
  memset(c.source, 0, sizeof c.source);
  memset(d.source, 0, sizeof d.source);
  CHECKF(memcmp(&c, &d, sizeof c) == 0, "dump/parse round trip differs:\n%s", y);
  CHECK(strcmp(d.run.dir, "odd \"dir\" name") == 0 && strcmp(d.sample.prompt, "a: b # c") == 0);
  free(y);
  unlink(write_tmp(""));
  return mf_test_report("test_config");
}
