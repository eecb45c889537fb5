#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { T_INT, T_FLOAT, T_BOOL, T_STR, T_ENUM, T_LIST } ktype;

typedef struct key_def {
  const char *key;
  ktype type;
  size_t off, size;
  const char *def;
  const char *help;
  const char *choices; /* T_ENUM: "a|b|c" */
} key_def;

#define FIELD(path) offsetof(mf_config, path), sizeof(((mf_config *)0)->path)
#define KEY(sect, f, t, d, h) {#f, t, FIELD(sect.f), d, h, NULL}

static const key_def root_keys[] = {
    {"device", T_ENUM, FIELD(device), "auto", "where to run: auto (CUDA when a GPU is present), cpu, cuda", "auto|cpu|cuda"},
    {"precision", T_ENUM, FIELD(precision), "fp32", "fp32, or bf16 (CUDA only) with fp32 master weights", "fp32|bf16"},
    {"tf32", T_BOOL, FIELD(tf32), "false", "device cuda, precision fp32: matmuls on TF32 tensor cores (operands "
     "rounded to 10 mantissa bits, fp32 sums; ~1e-3 relative error, several times faster); an error with device: "
     "cpu, ignored with a note when device: auto picks the CPU", NULL},
    {"recompute", T_INT, FIELD(recompute), "0", "activation recomputation in backward: 0 none, 1 GELU outputs, "
     "2 GELU and layernorm outputs (less memory, the same gradients)", NULL},
    {"cuda_graph", T_BOOL, FIELD(cuda_graph), "false", "device cuda: after one eager micro-step, capture the "
     "next (forward and backward) as a CUDA graph and replay it for every later one (static shapes, one process; "
     "an error with device: cpu, ignored with a note when device: auto picks the CPU)", NULL},
    {"resume", T_STR, FIELD(resume), "", "'' (start fresh), auto (latest checkpoint in run.dir if any), or a checkpoint path", NULL},
    {"init_from", T_STR, FIELD(init_from), "", "fine-tuning: start from this checkpoint's parameters", NULL},
    {"freeze", T_LIST, FIELD(freeze), "[]", "fine-tuning: parameter name globs to keep fixed, e.g. [wte.weight, 'h.0.*']", NULL},
};
static const key_def run_keys[] = {
    KEY(run, dir, T_STR, "runs/default", "run directory: metrics.jsonl and checkpoints"),
    KEY(run, seed, T_INT, "1337", "seed for init, data order and sampling"),
    KEY(run, log_every, T_INT, "1", "steps between metrics rows"),
    KEY(run, progress, T_BOOL, "true", "live progress line when stderr is a terminal"),
};
static const key_def model_keys[] = {
    {"family", T_ENUM, FIELD(model.family), "gpt", "model family", "gpt"},
    KEY(model, n_layer, T_INT, "4", "transformer blocks"),
    KEY(model, n_head, T_INT, "4", "attention heads"),
    KEY(model, n_embd, T_INT, "128", "embedding width"),
    KEY(model, block_size, T_INT, "256", "maximum sequence length (positions)"),
    KEY(model, vocab_size, T_INT, "50257", "vocabulary size (GPT-2 BPE: 50257)"),
};
static const key_def data_keys[] = {
    KEY(data, name, T_STR, "sotu", "data set: sotu, moby-dick or fortunes (mforge data prepare NAME)"),
    KEY(data, dir, T_STR, "data", "where prepared data sets live (<dir>/<name>/train.h5, val.h5)"),
};
static const key_def train_keys[] = {
    KEY(train, steps, T_INT, "1000", "optimizer steps (the LR schedule spans them)"),
    KEY(train, batch_size, T_INT, "16", "global batch: sequences per optimizer step across ranks and micro-steps"),
    KEY(train, micro_batch_size, T_INT, "16", "sequences per forward/backward on one rank"),
    KEY(train, seq_len, T_INT, "64", "tokens per sequence"),
    KEY(train, lr, T_FLOAT, "6e-4", "peak learning rate"),
    KEY(train, min_lr, T_FLOAT, "6e-5", "learning rate at the end of the cosine decay"),
    KEY(train, warmup_steps, T_INT, "100", "linear warmup steps"),
    KEY(train, weight_decay, T_FLOAT, "0.1", "AdamW decoupled weight decay (not on norms and biases)"),
    KEY(train, beta1, T_FLOAT, "0.9", "AdamW beta1"),
    KEY(train, beta2, T_FLOAT, "0.95", "AdamW beta2"),
    KEY(train, eps, T_FLOAT, "1e-8", "AdamW epsilon"),
    KEY(train, grad_clip, T_FLOAT, "1.0", "clip the global gradient norm to this (0 = off)"),
    KEY(train, eval_every, T_INT, "100", "steps between validation passes (0 = only at the end)"),
    KEY(train, eval_batches, T_INT, "20", "micro-batches per validation pass (0 = the whole split)"),
    KEY(train, ckpt_every, T_INT, "500", "steps between checkpoints (0 = only at the end)"),
    KEY(train, keep_ckpts, T_INT, "0", "step checkpoints to keep besides last.h5"),
    KEY(train, stop_after, T_INT, "0", "stop with a checkpoint after this step, as an interruption would (0 = never)"),
    KEY(train, threads, T_INT, "0", "CPU threads (0 = all cores)"),
};
static const key_def parallel_keys[] = {
    KEY(parallel, tp, T_INT, "1", "tensor-parallel degree (data parallel = world / tp)"),
    KEY(parallel, bucket_mb, T_FLOAT, "25", "gradient all-reduce bucket size in MiB"),
    KEY(parallel, zero, T_INT, "0", "1: shard optimizer state across data-parallel ranks (ZeRO-1)"),
    {"device_comm", T_ENUM, FIELD(parallel.device_comm), "auto",
     "device runs with several ranks: how gradients travel: auto (nccl where built with it, else host), nccl, "
     "host (staged through host memory over MPI)", "auto|nccl|host"},
};
static const key_def sample_keys[] = {
    KEY(sample, prompt, T_STR, "The", "prompt for the sample printed after training"),
    KEY(sample, max_tokens, T_INT, "64", "tokens to generate"),
    KEY(sample, temperature, T_FLOAT, "0.8", "sampling temperature (0 = greedy)"),
    KEY(sample, top_k, T_INT, "40", "keep the k most likely tokens (0 = all)"),
    KEY(sample, top_p, T_FLOAT, "0.95", "nucleus sampling mass (1 = off)"),
    KEY(sample, seed, T_INT, "42", "sampling seed"),
};

typedef struct section {
  const char *name;
  const key_def *keys;
  int n;
} section;

#define SECT(name, arr) {name, arr, (int)(sizeof arr / sizeof *arr)}
static const section sections[] = {
    SECT("", root_keys),           SECT("run", run_keys),     SECT("model", model_keys),
    SECT("data", data_keys),       SECT("train", train_keys), SECT("parallel", parallel_keys),
    SECT("sample", sample_keys),
};
#define NSECT (int)(sizeof sections / sizeof *sections)

/* ---- lookup ---- */

static const section *find_section(const char *name) {
  for (int i = 1; i < NSECT; i++)
    if (strcmp(sections[i].name, name) == 0) return &sections[i];
  return NULL;
}

static const key_def *find_key(const section *s, const char *key) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->keys[i].key, key) == 0) return &s->keys[i];
  return NULL;
}

static int edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 63 || lb > 63) return 99;
  int d[64][64];
  for (int i = 0; i <= la; i++) d[i][0] = i;
  for (int j = 0; j <= lb; j++) d[0][j] = j;
  for (int i = 1; i <= la; i++)
    for (int j = 1; j <= lb; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      d[i][j] = c;
    }
  return d[la][lb];
}

/* " (did you mean train.lr?)" for the closest known "section.key", or "" */
static void suggest(const char *wanted, char *out, size_t n) {
  int best = 3;
  char cand[128];
  out[0] = 0;
  for (int s = 1; s < NSECT; s++) { /* section names: "trian" -> "train" */
    int d = edit_distance(wanted, sections[s].name);
    if (d < best) {
      best = d;
      snprintf(out, n, " (did you mean %s?)", sections[s].name);
    }
  }
  for (int s = 0; s < NSECT; s++) {
    for (int k = 0; k < sections[s].n; k++) {
      if (sections[s].name[0])
        snprintf(cand, sizeof cand, "%s.%s", sections[s].name, sections[s].keys[k].key);
      else
        snprintf(cand, sizeof cand, "%s", sections[s].keys[k].key);
      int d = edit_distance(wanted, cand);
      const char *dot = strchr(wanted, '.');
      if (dot) { /* also compare the key alone: "train.lrr" vs "lr" */
        int d2 = edit_distance(dot + 1, sections[s].keys[k].key) + (strncmp(wanted, cand, (size_t)(dot - wanted)) != 0);
        if (d2 < d) d = d2;
      }
      if (d < best) {
        best = d;
        snprintf(out, n, " (did you mean %s?)", cand);
      }
    }
  }
}

/* ---- values ---- */

static mf_status set_value(mf_config *c, const key_def *k, const char *full, const char *val,
                           const char *where) {
  char *p = (char *)c + k->off, *end;
  switch (k->type) {
  case T_INT: {
    errno = 0;
    long long v = strtoll(val, &end, 10);
    while (*end && isspace((unsigned char)*end)) end++;
    if (!*val || *end || errno || v < -2147483647LL || v > 2147483647LL)
      return MF_ERR(MF_ERR_CONFIG, "%s: %s: expected an integer, got '%s'", where, full, val);
    *(int *)p = (int)v;
    return MF_OK;
  }
  case T_FLOAT: {
    errno = 0;
    double v = strtod(val, &end);
    while (*end && isspace((unsigned char)*end)) end++;
    if (!*val || *end || errno || !isfinite(v))
      return MF_ERR(MF_ERR_CONFIG, "%s: %s: expected a number, got '%s'", where, full, val);
    *(float *)p = (float)v;
    return MF_OK;
  }
  case T_BOOL: {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
      if (strcasecmp(val, yes[i]) == 0) return *(int *)p = 1, MF_OK;
      if (strcasecmp(val, no[i]) == 0) return *(int *)p = 0, MF_OK;
    }
    return MF_ERR(MF_ERR_CONFIG, "%s: %s: expected true or false, got '%s'", where, full, val);
  }
  case T_ENUM: {
    const char *ch = k->choices;
    size_t lv = strlen(val);
    while (*ch) {
      const char *bar = strchr(ch, '|');
      size_t l = bar ? (size_t)(bar - ch) : strlen(ch);
      if (l == lv && strncmp(ch, val, l) == 0) {
        snprintf(p, k->size, "%s", val);
        return MF_OK;
      }
      ch += l + (bar ? 1 : 0);
    }
    return MF_ERR(MF_ERR_CONFIG, "%s: %s: '%s' is not one of %s", where, full, val, k->choices);
  }
  case T_STR:
    if (strlen(val) >= k->size)
      return MF_ERR(MF_ERR_CONFIG, "%s: %s: value longer than %zu characters", where, full, k->size - 1);
    snprintf(p, k->size, "%s", val);
    return MF_OK;
  case T_LIST: {
    /* "[a, b]" or "a, b" or "a" (from --set); YAML sequences come item by item */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", val);
    char *s = buf;
    while (isspace((unsigned char)*s)) s++;
    size_t l = strlen(s);
    if (*s == '[') {
      if (l < 2 || s[l - 1] != ']')
        return MF_ERR(MF_ERR_CONFIG, "%s: %s: unterminated list '%s'", where, full, val);
      s[l - 1] = 0;
      s++;
    }
    c->n_freeze = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      while (isspace((unsigned char)*tok) || *tok == '\'' || *tok == '"') tok++;
      char *e = tok + strlen(tok);
      while (e > tok && (isspace((unsigned char)e[-1]) || e[-1] == '\'' || e[-1] == '"')) *--e = 0;
      if (!*tok) continue;
      if (c->n_freeze == MF_CFG_LIST)
        return MF_ERR(MF_ERR_CONFIG, "%s: %s: more than %d items", where, full, MF_CFG_LIST);
      if (strlen(tok) >= sizeof c->freeze[0])
        return MF_ERR(MF_ERR_CONFIG, "%s: %s: item '%s' too long", where, full, tok);
      snprintf(c->freeze[c->n_freeze++], sizeof c->freeze[0], "%s", tok);
    }
    return MF_OK;
  }
  }
  return MF_ERR(MF_ERR_INTERNAL, "bad key type");
}

void mf_config_defaults(mf_config *c) {
  memset(c, 0, sizeof *c);
  for (int s = 0; s < NSECT; s++)
    for (int k = 0; k < sections[s].n; k++)
      (void)set_value(c, &sections[s].keys[k], sections[s].keys[k].key, sections[s].keys[k].def, "default");
}

/* ---- YAML ---- */

typedef struct walker {
  mf_config *c;
  yaml_document_t *doc;
  const char *origin;
} walker;

static mf_status where_at(char *buf, size_t n, const walker *w, yaml_node_t *node) {
  snprintf(buf, n, "%s:%zu", w->origin, node->start_mark.line + 1);
  return MF_OK;
}

static mf_status apply_node(walker *w, const section *s, const char *key, yaml_node_t *val,
                            yaml_node_t *keynode) {
  char where[MF_CFG_STR + 32], full[160], hint[160];
  where_at(where, sizeof where, w, keynode);
  if (s->name[0])
    snprintf(full, sizeof full, "%s.%s", s->name, key);
  else
    snprintf(full, sizeof full, "%s", key);
  const key_def *k = find_key(s, key);
  if (!k) {
    if (!s->name[0] && find_section(key))
      return MF_ERR(MF_ERR_CONFIG, "%s: '%s' must be a mapping of keys (e.g. '%s:\\n  key: value')", where, key, key);
    suggest(full, hint, sizeof hint);
    return MF_ERR(MF_ERR_CONFIG, "%s: unknown key '%s'%s", where, full, hint);
  }
  if (val->type == YAML_SEQUENCE_NODE) {
    if (k->type != T_LIST)
      return MF_ERR(MF_ERR_CONFIG, "%s: %s: expected a single value, got a list", where, full);
    char joined[1024] = "";
    size_t off = 0;
    for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top; it++) {
      yaml_node_t *item = yaml_document_get_node(w->doc, *it);
      if (!item || item->type != YAML_SCALAR_NODE)
        return MF_ERR(MF_ERR_CONFIG, "%s: %s: list items must be plain strings", where, full);
      off += (size_t)snprintf(joined + off, sizeof joined - off, "%s%s", off ? "," : "",
                              (const char *)item->data.scalar.value);
      if (off >= sizeof joined) return MF_ERR(MF_ERR_CONFIG, "%s: %s: list too long", where, full);
    }
    return set_value(w->c, k, full, joined, where);
  }
  if (val->type != YAML_SCALAR_NODE)
    return MF_ERR(MF_ERR_CONFIG, "%s: %s: expected a value, got a mapping", where, full);
  where_at(where, sizeof where, w, val);
  return set_value(w->c, k, full, (const char *)val->data.scalar.value, where);
}

static mf_status walk_mapping(walker *w, const section *s, yaml_node_t *map) {
  for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
    yaml_node_t *kn = yaml_document_get_node(w->doc, pr->key);
    yaml_node_t *vn = yaml_document_get_node(w->doc, pr->value);
    char where[MF_CFG_STR + 32];
    where_at(where, sizeof where, w, kn);
    if (kn->type != YAML_SCALAR_NODE)
      return MF_ERR(MF_ERR_CONFIG, "%s: keys must be plain strings", where);
    const char *key = (const char *)kn->data.scalar.value;
    if (vn->type == YAML_MAPPING_NODE) {
      const section *sub = s->name[0] ? NULL : find_section(key);
      if (!sub) {
        char hint[160];
        suggest(key, hint, sizeof hint);
        if (s->name[0] || find_key(s, key))
          return MF_ERR(MF_ERR_CONFIG, "%s: %s%s%s: expected a value, got a mapping", where,
                        s->name, s->name[0] ? "." : "", key);
        return MF_ERR(MF_ERR_CONFIG, "%s: unknown section '%s'%s (sections: run, model, data, train, parallel, sample)",
                      where, key, hint);
      }
      MF_TRY(walk_mapping(w, sub, vn));
    } else {
      MF_TRY(apply_node(w, s, key, vn, kn));
    }
  }
  return MF_OK;
}

mf_status mf_config_parse(mf_config *c, const char *yaml, size_t len, const char *origin) {
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) return MF_ERR(MF_ERR_NOMEM, "yaml: out of memory");
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    mf_status st = MF_ERR(MF_ERR_CONFIG, "%s:%zu: invalid YAML: %s%s%s", origin,
                          parser.problem_mark.line + 1, parser.problem ? parser.problem : "syntax error",
                          parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    return st;
  }
  mf_status st = MF_OK;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (root) {
    walker w = {c, &doc, origin};
    if (root->type != YAML_MAPPING_NODE)
      st = MF_ERR(MF_ERR_CONFIG, "%s:%zu: the config must be a mapping of sections (run:, model:, train: ...)",
                  origin, root->start_mark.line + 1);
    else
      st = walk_mapping(&w, &sections[0], root);
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return st;
}

mf_status mf_config_load(mf_config *c, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return MF_ERR(MF_ERR_IO, "cannot open config '%s': %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n < 0 || n > (1 << 24)) {
    fclose(f);
    return MF_ERR(MF_ERR_CONFIG, "config '%s' is not a readable YAML file", path);
  }
  char *buf = malloc((size_t)n + 1);
  if (!buf) {
    fclose(f);
    return MF_ERR(MF_ERR_NOMEM, "out of memory reading %s", path);
  }
  size_t got = fread(buf, 1, (size_t)n, f);
  fclose(f);
  buf[got] = 0;
  snprintf(c->source, sizeof c->source, "%s", path);
  mf_status st = mf_config_parse(c, buf, got, path);
  free(buf);
  return st;
}

mf_status mf_config_set(mf_config *c, const char *asg) {
  const char *eq = strchr(asg, '=');
  if (!eq || eq == asg)
    return MF_ERR(MF_ERR_USAGE, "--set '%s': expected section.key=value (e.g. --set train.lr=3e-4)", asg);
  char full[160];
  size_t kl = (size_t)(eq - asg);
  if (kl >= sizeof full) return MF_ERR(MF_ERR_USAGE, "--set: key too long");
  memcpy(full, asg, kl);
  full[kl] = 0;
  const section *s = &sections[0];
  const char *key = full;
  char *dot = strchr(full, '.');
  if (dot) {
    *dot = 0;
    s = find_section(full);
    key = dot + 1;
    if (!s) {
      *dot = '.';
      char hint[160];
      suggest(full, hint, sizeof hint);
      return MF_ERR(MF_ERR_USAGE, "--set: unknown key '%s'%s", full, hint);
    }
  }
  const key_def *k = find_key(s, key);
  if (dot) *dot = '.';
  if (!k) {
    char hint[160];
    suggest(full, hint, sizeof hint);
    return MF_ERR(MF_ERR_USAGE, "--set: unknown key '%s'%s", full, hint);
  }
  mf_status st = set_value(c, k, full, eq + 1, "--set");
  return st == MF_OK ? MF_OK : MF_ERR_USAGE;
}

mf_status mf_config_validate(const mf_config *c, int dp) {
  const mf_model_cfg *m = &c->model;
  const mf_train_cfg *t = &c->train;
  const char *src = c->source[0] ? c->source : "config";
#define REQUIRE(cond, ...) \
  if (!(cond)) return mf_error_context(MF_ERR(MF_ERR_CONFIG, __VA_ARGS__), "%s: ", src)
  REQUIRE(m->n_layer >= 1, "model.n_layer must be >= 1");
  REQUIRE(m->n_head >= 1 && m->n_embd >= 1, "model.n_head and model.n_embd must be >= 1");
  REQUIRE(m->n_embd % m->n_head == 0, "model.n_embd (%d) must be a multiple of model.n_head (%d)", m->n_embd, m->n_head);
  REQUIRE(m->block_size >= 1, "model.block_size must be >= 1");
  REQUIRE(m->vocab_size >= 2 && m->vocab_size <= 65536 * 16, "model.vocab_size must be in [2, 1048576]");
  REQUIRE(t->seq_len >= 1 && t->seq_len <= m->block_size,
          "train.seq_len (%d) must be in [1, model.block_size = %d]", t->seq_len, m->block_size);
  REQUIRE(t->steps >= 1, "train.steps must be >= 1");
  REQUIRE(t->micro_batch_size >= 1, "train.micro_batch_size must be >= 1");
  REQUIRE(t->batch_size >= 1 && t->batch_size % (t->micro_batch_size * dp) == 0,
          "train.batch_size (%d) must be a multiple of train.micro_batch_size x data-parallel ranks (%d x %d)",
          t->batch_size, t->micro_batch_size, dp);
  REQUIRE(t->lr > 0 && t->min_lr >= 0 && t->min_lr <= t->lr, "need 0 <= train.min_lr <= train.lr and train.lr > 0");
  REQUIRE(t->warmup_steps >= 0, "train.warmup_steps must be >= 0");
  REQUIRE(t->beta1 >= 0 && t->beta1 < 1 && t->beta2 >= 0 && t->beta2 < 1, "train.beta1 and train.beta2 must be in [0, 1)");
  REQUIRE(t->eps > 0, "train.eps must be > 0");
  REQUIRE(t->weight_decay >= 0, "train.weight_decay must be >= 0");
  REQUIRE(t->grad_clip >= 0, "train.grad_clip must be >= 0 (0 = off)");
  REQUIRE(t->eval_every >= 0 && t->eval_batches >= 0 && t->ckpt_every >= 0 && t->keep_ckpts >= 0,
          "train.eval_every, eval_batches, ckpt_every and keep_ckpts must be >= 0");
  REQUIRE(t->stop_after >= 0, "train.stop_after must be >= 0 (0 = never)");
  REQUIRE(t->threads >= 0 && t->threads <= 1024, "train.threads must be in [0, 1024]");
  REQUIRE(c->run.log_every >= 1, "run.log_every must be >= 1");
  REQUIRE(c->run.dir[0], "run.dir must be set");
  REQUIRE(c->parallel.tp >= 1, "parallel.tp must be >= 1");
  REQUIRE(c->recompute >= 0 && c->recompute <= 2, "recompute must be 0, 1 or 2");
  REQUIRE(c->parallel.zero == 0 || c->parallel.zero == 1, "parallel.zero must be 0 or 1");
  REQUIRE(c->sample.max_tokens >= 0 && c->sample.temperature >= 0 && c->sample.top_k >= 0 &&
              c->sample.top_p > 0 && c->sample.top_p <= 1,
          "sample: need max_tokens >= 0, temperature >= 0, top_k >= 0, 0 < top_p <= 1");
#undef REQUIRE
  return MF_OK;
}

/* ---- dump and help ---- */

static size_t put_value(char *out, size_t n, const mf_config *c, const key_def *k) {
  const char *p = (const char *)c + k->off;
  switch (k->type) {
  case T_INT: return (size_t)snprintf(out, n, "%d", *(const int *)p);
  case T_FLOAT: { /* the shortest text that reads back as the same float */
    float f = *(const float *)p;
    for (int prec = 6; prec < 9; prec++) {
      char b[32];
      snprintf(b, sizeof b, "%.*g", prec, (double)f);
      if (strtof(b, NULL) == f) return (size_t)snprintf(out, n, "%s", b);
    }
    return (size_t)snprintf(out, n, "%.9g", (double)f);
  }
  case T_BOOL: return (size_t)snprintf(out, n, "%s", *(const int *)p ? "true" : "false");
  case T_ENUM: return (size_t)snprintf(out, n, "%s", p);
  case T_STR: {
    size_t o = (size_t)snprintf(out, n, "\"");
    for (; *p && o + 3 < n; p++) {
      if (*p == '"' || *p == '\\') out[o++] = '\\';
      out[o++] = *p;
    }
    return o + (size_t)snprintf(out + o, n - o, "\"");
  }
  case T_LIST: {
    size_t o = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < c->n_freeze; i++)
      o += (size_t)snprintf(out + o, n - o, "%s\"%s\"", i ? ", " : "", c->freeze[i]);
    return o + (size_t)snprintf(out + o, n - o, "]");
  }
  }
  return 0;
}

char *mf_config_dump(const mf_config *c) {
  size_t cap = 16384, o = 0;
  char *out = malloc(cap);
  if (!out) return NULL;
  for (int s = 0; s < NSECT; s++) {
    const char *ind = sections[s].name[0] ? "  " : "";
    if (sections[s].name[0]) o += (size_t)snprintf(out + o, cap - o, "%s:\n", sections[s].name);
    for (int k = 0; k < sections[s].n; k++) {
      o += (size_t)snprintf(out + o, cap - o, "%s%s: ", ind, sections[s].keys[k].key);
      o += put_value(out + o, cap - o, c, &sections[s].keys[k]);
      o += (size_t)snprintf(out + o, cap - o, "\n");
    }
  }
  return out;
}

void mf_config_print_help(void) {
  static const char *tn[] = {"int", "float", "bool", "string", "choice", "list"};
  for (int s = 0; s < NSECT; s++)
    for (int k = 0; k < sections[s].n; k++) {
      const key_def *d = &sections[s].keys[k];
      char full[96];
      snprintf(full, sizeof full, "%s%s%s", sections[s].name, sections[s].name[0] ? "." : "", d->key);
      printf("  %-24s %-7s %-14s %s\n", full, d->choices ? d->choices : tn[d->type], d->def, d->help);
    }
}
