/* The `mforge` command: parses the command line, calls the library, and is the only
 * place that prints errors and exits (user mistakes exit 2, failures 1). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/threads.h"
#include "datasets/bpe.h"
#include "datasets/prepare.h"
#include "kernels/backend.h"
#include "serving/serve.h"
#include "trainers/export.h"
#include "trainers/gpt.h"
#include "trainers/sample.h"
#include "trainers/train.h"

static const char *usage =
    "usage: mforge <command> [options]\n"
    "  data prepare NAME [--out DIR]      text corpus -> GPT-2 tokens -> DIR/NAME/{train,val}.h5\n"
    "                                      (NAME: sotu, moby-dick, fortunes; DIR: data)\n"
    "  tokenize --vocab gpt2 [--decode]   stdin text -> token ids, one per line (or back)\n"
    "  train CONFIG.yaml [--set key=value ...] [--resume [CKPT]]\n"
    "  eval CKPT.h5 [--data PATH] [--batches N] [--json] [--threads N]\n"
    "  generate CKPT.h5 --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]\n"
    "           [--top-p P] [--seed S] [--ids] [--prompt-ids 1,2,3] [--threads N]\n"
    "  export CKPT.h5 -o MODEL.h5 [--dtype fp32|bf16] [--force]   checkpoint -> serving model\n"
    "  serve DIR|MODEL.h5 [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--threads N]\n"
    "                                      OpenAI-compatible HTTP server (serve --help: all flags)\n"
    "  config-help                        every config key with its default\n";

static int fail(mf_status st) {
  int code = mf_status_exit_code(st);
  if (code == 2)
    fprintf(stderr, "mforge: error: %s\n", mf_error_message());
  else
    fprintf(stderr, "mforge: error: %s [%s]\n", mf_error_message(), mf_error_location());
  return code;
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "mforge: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (see: mforge help)\n");
  return 2;
}

/* strict number parsing for flags */
static int parse_int(const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < -2147483647L || v > 2147483647L) return 0;
  *out = (int)v;
  return 1;
}

static int parse_float(const char *s, float *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno) return 0;
  *out = (float)v;
  return 1;
}

/* ---- data prepare ---- */
static int cmd_data(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[1], "prepare") != 0)
    return usage_error("expected: mforge data prepare NAME [--out DIR]%s", "");
  const char *name = argv[2], *out = "data";
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
    else return usage_error("data prepare: unknown option '%s'", argv[i]);
  }
  mf_status st = mf_data_prepare(name, out, 1);
  return st == MF_OK ? 0 : fail(st);
}

/* ---- tokenize ---- */
static char *read_all(FILE *f, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap) break;
    char *nb = realloc(buf, cap *= 2);
    if (!nb) {
      free(buf);
      return NULL;
    }
    buf = nb;
  }
  *len = n;
  return buf;
}

static int cmd_tokenize(int argc, char **argv) {
  int decode = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--decode") == 0) decode = 1;
    else if (strcmp(argv[i], "--vocab") == 0 && i + 1 < argc) {
      if (strcmp(argv[++i], "gpt2") != 0) return usage_error("tokenize: unknown vocabulary '%s' (known: gpt2)", argv[i]);
    } else return usage_error("tokenize: unknown option '%s'", argv[i]);
  }
  mf_bpe *bpe;
  mf_status st = mf_bpe_load_default(&bpe);
  if (st != MF_OK) return fail(st);
  size_t len;
  char *text = read_all(stdin, &len);
  if (!text) {
    mf_bpe_free(bpe);
    return fail(MF_ERR(MF_ERR_NOMEM, "out of memory reading stdin"));
  }
  int32_t *ids = NULL;
  size_t n = 0, cap = 0;
  if (!decode) {
    st = mf_bpe_encode(bpe, text, len, &ids, &n, &cap);
    for (size_t i = 0; st == MF_OK && i < n; i++) printf("%d\n", ids[i]);
  } else {
    char *save = NULL;
    text = realloc(text, len + 1);
    text[len] = 0;
    for (char *tok = strtok_r(text, " \t\r\n,", &save); tok && st == MF_OK; tok = strtok_r(NULL, " \t\r\n,", &save)) {
      int v;
      if (!parse_int(tok, &v)) {
        st = MF_ERR(MF_ERR_INPUT, "tokenize --decode: '%s' is not a token id (expected integers)", tok);
        break;
      }
      if (n == cap) {
        cap = cap ? 2 * cap : 1024;
        ids = realloc(ids, cap * sizeof *ids);
      }
      ids[n++] = v;
    }
    char *out = NULL;
    size_t olen = 0;
    if (st == MF_OK) st = mf_bpe_decode(bpe, ids, n, &out, &olen);
    if (st == MF_OK) fwrite(out, 1, olen, stdout);
    free(out);
  }
  free(ids);
  free(text);
  mf_bpe_free(bpe);
  return st == MF_OK ? 0 : fail(st);
}

/* ---- train ---- */
static int cmd_train(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') return usage_error("train: expected a config file: mforge train CONFIG.yaml%s", "");
  mf_config cfg;
  mf_config_defaults(&cfg);
  mf_status st = mf_config_load(&cfg, argv[1]);
  for (int i = 2; i < argc && st == MF_OK; i++) {
    if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) st = mf_config_set(&cfg, argv[++i]);
    else if (strncmp(argv[i], "--set=", 6) == 0) st = mf_config_set(&cfg, argv[i] + 6);
    else if (strcmp(argv[i], "--resume") == 0) {
      const char *v = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : "auto";
      snprintf(cfg.resume, sizeof cfg.resume, "%s", v);
    } else return usage_error("train: unknown option '%s'", argv[i]);
  }
  if (st == MF_OK) st = mf_train(&cfg);
  return st == MF_OK ? 0 : fail(st);
}

/* ---- eval ---- */
static int cmd_eval(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') return usage_error("eval: expected a checkpoint: mforge eval CKPT.h5%s", "");
  const char *ckpt = argv[1], *data = NULL;
  int json = 0, batches = 0, threads = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) data = argv[++i];
    else if (strcmp(argv[i], "--json") == 0) json = 1;
    else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc) {
      if (!parse_int(argv[++i], &batches) || batches < 0) return usage_error("eval: --batches needs an integer >= 0, got '%s'", argv[i]);
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      if (!parse_int(argv[++i], &threads) || threads < 0) return usage_error("eval: --threads needs an integer >= 0, got '%s'", argv[i]);
    } else return usage_error("eval: unknown option '%s'", argv[i]);
  }
  mf_set_threads(threads);
  mf_config cfg;
  mf_gpt *g = NULL;
  mf_status st = mf_model_open(ckpt, &cfg, &g);
  if (st != MF_OK) return fail(st);
  char path[4096];
  if (data) snprintf(path, sizeof path, "%s", data);
  else mf_tokens_path(path, sizeof path, cfg.data.dir, cfg.data.name, "val");
  mf_token_set ts;
  st = mf_tokens_load(&ts, path, cfg.model.vocab_size);
  double loss = 0;
  int64_t ntok = 0;
  if (st == MF_OK) {
    mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 64 << 20);
    int T = cfg.train.seq_len;
    st = mf_eval_loss(g, c, &ts, T, cfg.train.micro_batch_size, batches, &loss, &ntok);
    mf_ctx_destroy(c);
    mf_tokens_free(&ts);
  }
  mf_gpt_free(g);
  if (st != MF_OK) return fail(st);
  if (json)
    printf("{\"checkpoint\":\"%s\",\"data\":\"%s\",\"val_loss\":%.6f,\"perplexity\":%.4f,\"tokens\":%lld}\n", ckpt, path,
           loss, exp(loss), (long long)ntok);
  else
    printf("%s on %s: val_loss %.4f perplexity %.2f (%lld tokens)\n", ckpt, path, loss, exp(loss), (long long)ntok);
  return 0;
}

/* ---- generate ---- */
static int cmd_generate(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') return usage_error("generate: expected a checkpoint: mforge generate CKPT.h5 --prompt TEXT%s", "");
  const char *ckpt = argv[1], *prompt = NULL, *prompt_ids = NULL;
  int max_tokens = -1, top_k = -1, seed = -1, ids_out = 0, threads = 0;
  float temperature = -1, top_p = -1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = 1;
    if (strcmp(a, "--ids") == 0) { ids_out = 1; continue; }
    if (!v) return usage_error("generate: option '%s' needs a value or is unknown", a);
    if (strcmp(a, "--prompt") == 0) prompt = v;
    else if (strcmp(a, "--prompt-ids") == 0) prompt_ids = v;
    else if (strcmp(a, "--max-tokens") == 0) ok = parse_int(v, &max_tokens) && max_tokens >= 0;
    else if (strcmp(a, "--temperature") == 0) ok = parse_float(v, &temperature) && temperature >= 0;
    else if (strcmp(a, "--top-k") == 0) ok = parse_int(v, &top_k) && top_k >= 0;
    else if (strcmp(a, "--top-p") == 0) ok = parse_float(v, &top_p) && top_p > 0 && top_p <= 1;
    else if (strcmp(a, "--seed") == 0) ok = parse_int(v, &seed);
    else if (strcmp(a, "--threads") == 0) ok = parse_int(v, &threads) && threads >= 0;
    else return usage_error("generate: unknown option '%s'", a);
    if (!ok) {
      fprintf(stderr, "mforge: error: generate: bad value '%s' for %s (max-tokens, top-k: integers >= 0; "
                      "temperature >= 0; 0 < top-p <= 1)\n", v, a);
      return 2;
    }
    i++;
  }
  if (!prompt && !prompt_ids) return usage_error("generate: give --prompt TEXT (or --prompt-ids)%s", "");
  mf_set_threads(threads);
  mf_config cfg;
  mf_gpt *g = NULL;
  mf_bpe *bpe = NULL;
  mf_status st = mf_model_open(ckpt, &cfg, &g);
  if (st == MF_OK) st = mf_bpe_load_default(&bpe);
  int32_t *ids = NULL;
  size_t n = 0, cap = 0;
  if (st == MF_OK && prompt) {
    if (!*prompt) st = MF_ERR(MF_ERR_INPUT, "--prompt is empty: give some text to continue");
    else st = mf_bpe_encode(bpe, prompt, strlen(prompt), &ids, &n, &cap);
  } else if (st == MF_OK) {
    char *buf = strdup(prompt_ids), *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok && st == MF_OK; tok = strtok_r(NULL, ", ", &save)) {
      int v;
      if (!parse_int(tok, &v) || v < 0 || v >= g->V) {
        st = MF_ERR(MF_ERR_INPUT, "--prompt-ids: '%s' is not a token id in [0, %d)", tok, g->V);
        break;
      }
      if (n == cap) ids = realloc(ids, (cap = cap ? 2 * cap : 64) * sizeof *ids);
      ids[n++] = v;
    }
    free(buf);
    if (st == MF_OK && n == 0) st = MF_ERR(MF_ERR_INPUT, "--prompt-ids is empty");
  }
  if (st == MF_OK && (int)n >= g->maxT)
    st = MF_ERR(MF_ERR_INPUT, "the prompt has %zu tokens; the model's context is %d (model.block_size)", n, g->maxT);
  if (st != MF_OK) {
    free(ids);
    mf_bpe_free(bpe);
    mf_gpt_free(g);
    return fail(st);
  }
  if (max_tokens < 0) max_tokens = cfg.sample.max_tokens;
  if (temperature < 0) temperature = cfg.sample.temperature;
  if (top_k < 0) top_k = cfg.sample.top_k;
  if (top_p < 0) top_p = cfg.sample.top_p;
  if (seed < 0) seed = cfg.sample.seed;

  mf_gpt_kv kv;
  mf_sampler smp;
  mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 16 << 20);
  float *logits = malloc((size_t)g->Vp * sizeof *logits);
  st = mf_gpt_kv_create(&kv, g, 1, g->maxT);
  if (st == MF_OK && (!c || !logits || !mf_sampler_init(&smp, g->V, temperature, top_k, top_p, (uint64_t)seed)))
    st = MF_ERR(MF_ERR_NOMEM, "out of memory");
  if (st == MF_OK && !ids_out && prompt) {
    fputs(prompt, stdout);
    fflush(stdout);
  }
  int pos = 0, produced = 0;
  const int32_t *feed = ids;
  int nfeed = (int)n;
  int32_t tok;
  while (st == MF_OK && produced < max_tokens) {
    if (pos + nfeed > g->maxT) {
      fprintf(stderr, "\n(stopped: reached the model's context of %d tokens)\n", g->maxT);
      break;
    }
    mf_ctx_reset(c);
    st = mf_gpt_step(g, c, &kv, feed, 1, nfeed, &pos, logits);
    if (st != MF_OK) break;
    pos += nfeed;
    tok = mf_sample(&smp, logits);
    produced++;
    if (ids_out) {
      printf("%d\n", tok);
    } else {
      if (tok == mf_bpe_eot(bpe)) break;
      size_t len;
      const char *bytes = mf_bpe_token_bytes(bpe, tok, &len);
      fwrite(bytes, 1, len, stdout);
      fflush(stdout);
    }
    feed = &tok;
    nfeed = 1;
  }
  if (!ids_out) putchar('\n');
  mf_ctx_destroy(c);
  mf_sampler_free(&smp);
  mf_gpt_kv_free(&kv);
  free(logits);
  free(ids);
  mf_bpe_free(bpe);
  mf_gpt_free(g);
  return st == MF_OK ? 0 : fail(st);
}

/* OpenMP threads that spin while idle collapse throughput on shared machines (a busy
 * neighbour core turns every barrier into a wait for a descheduled thread: 3-4x slower
 * measured here). libgomp reads the policy only at start-up, so set it and re-exec once;
 * a user's own OMP_WAIT_POLICY is respected. */
static void prefer_passive_threads(char **argv) {
  if (getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv); /* returns only on failure: carry on as we are */
}

int main(int argc, char **argv) {
  prefer_passive_threads(argv);
  if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "data") == 0) return cmd_data(argc - 1, argv + 1);
  if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
  if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
  if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
  if (strcmp(cmd, "generate") == 0) return cmd_generate(argc - 1, argv + 1);
  if (strcmp(cmd, "export") == 0) return mf_cmd_export(argc - 1, argv + 1);
  if (strcmp(cmd, "serve") == 0) return mf_cmd_serve(argc - 1, argv + 1);
  if (strcmp(cmd, "config-help") == 0) {
    mf_config_print_help();
    return 0;
  }
  fprintf(stderr, "mforge: error: unknown command '%s' (commands: data, tokenize, train, eval, generate, export, serve, "
                  "config-help; see: mforge help)\n", cmd);
  return 2;
}
