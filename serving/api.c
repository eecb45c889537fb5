/* JSON request decoding and response text helpers (see api.h). Every field is checked
 * for type and range here, so the endpoints downstream see only sane values and every
 * mistake comes back as a 400 that names the field. */
#include "serving/api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const mf_api_limits mf_api_default_limits = {
    .max_prompts = 64, .max_choices = 64, .max_ids = 1 << 20, .max_stop_len = 256, .max_depth = 32};

/* ---- buffer ---- */

static int grow(mf_buf *b, size_t n) {
  if (b->oom) return 0;
  if (b->len + n + 1 <= b->cap) return 1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return 0;
  }
  b->p = p;
  b->cap = cap;
  return 1;
}

void mf_buf_add(mf_buf *b, const void *data, size_t n) {
  if (!grow(b, n)) return;
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = 0;
}

void mf_buf_puts(mf_buf *b, const char *s) { mf_buf_add(b, s, strlen(s)); }

void mf_buf_printf(mf_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[512];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    mf_buf_add(b, tmp, (size_t)n);
    return;
  }
  if (!grow(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void mf_buf_free(mf_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ---- UTF-8 ---- */

/* length of the valid sequence starting at s (1..4), 0 if invalid, -k if valid so far
 * but cut short after k bytes */
static int utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;      /* no overlong forms */
    else if (c == 0xed) hi = 0x9f; /* no surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    else if (c == 0xf4) hi = 0x8f; /* <= U+10FFFF */
  } else return 0;
  for (int i = 1; i < len; i++) {
    if ((size_t)i >= n) return -i;
    unsigned char d = s[i];
    if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xbf)) return 0;
  }
  return len;
}

int mf_utf8_valid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    int k = utf8_seq(u + i, n - i);
    if (k <= 0) return 0;
    i += (size_t)k;
  }
  return 1;
}

size_t mf_utf8_complete(const char *s, size_t n) {
  /* only the last 3 bytes can start an unfinished sequence */
  size_t from = n > 3 ? n - 3 : 0;
  for (size_t i = from; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0xc0 && utf8_seq((const unsigned char *)s + i, n - i) < 0) return i;
  }
  return n;
}

void mf_buf_json_str(mf_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  mf_buf_add(b, "\"", 1);
  size_t run = 0; /* bytes copied as they are, flushed in one go */
  for (size_t i = 0; i < n;) {
    unsigned char c = u[i];
    int k = c < 0x80 ? 1 : utf8_seq(u + i, n - i);
    if (c >= 0x20 && c != '"' && c != '\\' && k > 0) {
      i += (size_t)k;
      run += (size_t)k;
      continue;
    }
    mf_buf_add(b, u + i - run, run);
    run = 0;
    if (k <= 0) {
      mf_buf_add(b, "\\ufffd", 6); /* one replacement per bad byte */
    } else if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      mf_buf_add(b, e, 2);
    } else if (c == '\n') mf_buf_add(b, "\\n", 2);
    else if (c == '\r') mf_buf_add(b, "\\r", 2);
    else if (c == '\t') mf_buf_add(b, "\\t", 2);
    else {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      mf_buf_add(b, e, 6);
    }
    i++;
  }
  mf_buf_add(b, u + n - run, run);
  mf_buf_add(b, "\"", 1);
}

/* ---- errors ---- */

int mf_api_fail(mf_api_err *err, int status, const char *param, const char *fmt, ...) {
  err->status = status;
  snprintf(err->param, sizeof err->param, "%s", param ? param : "");
  err->code[0] = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return -1;
}

void mf_api_error_json(mf_buf *b, const mf_api_err *err) {
  const char *type = err->status == 401 ? "authentication_error"
                     : err->status == 404 ? "not_found_error"
                     : err->status == 429 || err->status == 503 ? "overloaded_error"
                     : err->status >= 500 ? "server_error"
                                          : "invalid_request_error";
  mf_buf_puts(b, "{\"error\":{\"message\":");
  mf_buf_json_str(b, err->msg, strlen(err->msg));
  mf_buf_printf(b, ",\"type\":\"%s\",\"param\":", type);
  if (err->param[0]) mf_buf_json_str(b, err->param, strlen(err->param));
  else mf_buf_puts(b, "null");
  mf_buf_puts(b, ",\"code\":");
  if (err->code[0]) mf_buf_json_str(b, err->code, strlen(err->code));
  else mf_buf_puts(b, "null");
  mf_buf_puts(b, "}}\n");
}

/* ---- parsing ---- */

/* nesting depth of the JSON text (outside strings), stopping early past max */
static int json_depth(const char *s, size_t n, int max) {
  int d = 0, top = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = 0;
    } else if (c == '"') in_str = 1;
    else if (c == '[' || c == '{') {
      if (++d > top) top = d;
      if (top > max) return top;
    } else if (c == ']' || c == '}') d--;
  }
  return top;
}

static cJSON *parse_root(const char *body, size_t len, const mf_api_limits *lim, mf_api_err *err) {
  if (len == 0) {
    mf_api_fail(err, 400, NULL, "the request body is empty (expected a JSON object)");
    return NULL;
  }
  if (memchr(body, 0, len)) {
    mf_api_fail(err, 400, NULL, "the request body contains a NUL byte");
    return NULL;
  }
  if (!mf_utf8_valid(body, len)) {
    mf_api_fail(err, 400, NULL, "the request body is not valid UTF-8");
    return NULL;
  }
  if (json_depth(body, len, lim->max_depth) > lim->max_depth) {
    mf_api_fail(err, 400, NULL, "JSON nested deeper than %d levels", lim->max_depth);
    return NULL;
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
  if (!root) {
    size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
    mf_api_fail(err, 400, NULL, "invalid JSON in the request body (near byte %zu)", at);
    return NULL;
  }
  for (const char *p = end; p && p < body + len; p++)
    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
      cJSON_Delete(root);
      mf_api_fail(err, 400, NULL, "invalid JSON in the request body (data after the value, byte %zu)",
                  (size_t)(p - body));
      return NULL;
    }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    mf_api_fail(err, 400, NULL, "the request body must be a JSON object");
    return NULL;
  }
  return root;
}

/* a field: absent and null are the same ("not given") */
static const cJSON *field(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_bool(const cJSON *o, const char *k, int *out, mf_api_err *err) {
  const cJSON *v = field(o, k);
  if (!v) return 0;
  if (!cJSON_IsBool(v)) return mf_api_fail(err, 400, k, "'%s' must be true or false", k);
  *out = cJSON_IsTrue(v);
  return 0;
}

static int get_num(const cJSON *o, const char *k, double lo, double hi, double *out, mf_api_err *err) {
  const cJSON *v = field(o, k);
  if (!v) return 0;
  if (!cJSON_IsNumber(v)) return mf_api_fail(err, 400, k, "'%s' must be a number", k);
  double x = v->valuedouble;
  if (!isfinite(x) || x < lo || x > hi) return mf_api_fail(err, 400, k, "'%s' must be in [%g, %g]", k, lo, hi);
  *out = x;
  return 0;
}

static int is_int(const cJSON *v, double lo, double hi) {
  return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
         v->valuedouble >= lo && v->valuedouble <= hi;
}

static int get_int(const cJSON *o, const char *k, int lo, int hi, int *out, mf_api_err *err) {
  const cJSON *v = field(o, k);
  if (!v) return 0;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
    return mf_api_fail(err, 400, k, "'%s' must be an integer", k);
  if (v->valuedouble < lo || v->valuedouble > hi) return mf_api_fail(err, 400, k, "'%s' must be in [%d, %d]", k, lo, hi);
  *out = (int)v->valuedouble;
  return 0;
}

static int get_model(const cJSON *o, int required, char model[128], mf_api_err *err) {
  const cJSON *v = field(o, "model");
  model[0] = 0;
  if (!v) return required ? mf_api_fail(err, 400, "model", "missing field 'model' (see GET /v1/models)") : 0;
  if (!cJSON_IsString(v)) return mf_api_fail(err, 400, "model", "'model' must be a string");
  size_t n = strlen(v->valuestring);
  if (n == 0 || n >= 128) return mf_api_fail(err, 404, "model", "unknown model (see GET /v1/models)");
  memcpy(model, v->valuestring, n + 1);
  return 0;
}

/* an array of integer token ids */
static int get_ids(const cJSON *a, const char *k, int *budget, int32_t **ids, int *nids, mf_api_err *err) {
  int n = cJSON_GetArraySize(a);
  if (n > *budget) return mf_api_fail(err, 400, k, "too many token ids in '%s' (at most %d per request)", k, *budget);
  *budget -= n;
  *ids = malloc((size_t)(n ? n : 1) * sizeof **ids);
  if (!*ids) return mf_api_fail(err, 500, k, "out of memory");
  *nids = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, a) {
    if (!is_int(e, 0, 2147483647.0))
      return mf_api_fail(err, 400, k, "'%s' must hold token ids (integers >= 0)", k);
    (*ids)[(*nids)++] = (int32_t)e->valuedouble;
  }
  return 0;
}

static int set_text(mf_api_prompt *p, const char *s, mf_api_err *err) {
  p->len = strlen(s);
  p->text = malloc(p->len + 1);
  if (!p->text) return mf_api_fail(err, 500, "prompt", "out of memory");
  memcpy(p->text, s, p->len + 1);
  return 0;
}

static int get_prompts(const cJSON *o, const mf_api_limits *lim, mf_completion_req *r, mf_api_err *err) {
  const cJSON *v = field(o, "prompt");
  if (!v) return mf_api_fail(err, 400, "prompt", "missing field 'prompt'");
  int budget = lim->max_ids;
  const char *bad = "'prompt' must be a string, an array of strings, an array of token ids, or an array of such arrays";
  if (cJSON_IsString(v)) {
    r->prompts = calloc(1, sizeof *r->prompts);
    if (!r->prompts) return mf_api_fail(err, 500, "prompt", "out of memory");
    r->nprompts = 1;
    return set_text(&r->prompts[0], v->valuestring, err);
  }
  if (!cJSON_IsArray(v)) return mf_api_fail(err, 400, "prompt", "%s", bad);
  int n = cJSON_GetArraySize(v);
  if (n == 0) return mf_api_fail(err, 400, "prompt", "'prompt' is an empty array");
  const cJSON *first = v->child;
  if (cJSON_IsNumber(first)) { /* one prompt of token ids */
    r->prompts = calloc(1, sizeof *r->prompts);
    if (!r->prompts) return mf_api_fail(err, 500, "prompt", "out of memory");
    r->nprompts = 1;
    r->prompts[0].is_ids = 1;
    return get_ids(v, "prompt", &budget, &r->prompts[0].ids, &r->prompts[0].nids, err);
  }
  if (n > lim->max_prompts) return mf_api_fail(err, 400, "prompt", "at most %d prompts per request", lim->max_prompts);
  r->prompts = calloc((size_t)n, sizeof *r->prompts);
  if (!r->prompts) return mf_api_fail(err, 500, "prompt", "out of memory");
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    mf_api_prompt *p = &r->prompts[r->nprompts++];
    if (cJSON_IsString(e)) {
      if (set_text(p, e->valuestring, err)) return -1;
    } else if (cJSON_IsArray(e)) {
      p->is_ids = 1;
      if (get_ids(e, "prompt", &budget, &p->ids, &p->nids, err)) return -1;
      if (p->nids == 0) return mf_api_fail(err, 400, "prompt", "a prompt of token ids is empty");
    } else {
      return mf_api_fail(err, 400, "prompt", "%s", bad);
    }
  }
  return 0;
}

static int get_stop(const cJSON *o, const mf_api_limits *lim, mf_completion_req *r, mf_api_err *err) {
  const cJSON *v = field(o, "stop");
  if (!v) return 0;
  const cJSON *one = cJSON_IsString(v) ? v : NULL, *e;
  if (!one && !cJSON_IsArray(v)) return mf_api_fail(err, 400, "stop", "'stop' must be a string or an array of strings");
  if (!one && cJSON_GetArraySize(v) > MF_API_MAX_STOP)
    return mf_api_fail(err, 400, "stop", "at most %d stop sequences", MF_API_MAX_STOP);
  for (e = one ? one : v->child; e; e = one ? NULL : e->next) {
    if (!cJSON_IsString(e)) return mf_api_fail(err, 400, "stop", "'stop' must be a string or an array of strings");
    size_t n = strlen(e->valuestring);
    if (n == 0) continue; /* an empty stop sequence stops nothing */
    if (n > (size_t)lim->max_stop_len) return mf_api_fail(err, 400, "stop", "stop sequences are limited to %d bytes", lim->max_stop_len);
    r->stop[r->nstop] = malloc(n + 1);
    if (!r->stop[r->nstop]) return mf_api_fail(err, 500, "stop", "out of memory");
    memcpy(r->stop[r->nstop], e->valuestring, n + 1);
    r->stop_len[r->nstop++] = n;
  }
  return 0;
}

/* fields we know but do not implement: accepted only at their neutral value */
static int unsupported(const cJSON *o, mf_api_err *err) {
  const cJSON *v;
  if ((v = field(o, "logprobs")) && !(is_int(v, 0, 0)))
    return mf_api_fail(err, 400, "logprobs", "'logprobs' is not supported by this server (leave it null)");
  if ((v = field(o, "suffix")) && !(cJSON_IsString(v) && !v->valuestring[0]))
    return mf_api_fail(err, 400, "suffix", "'suffix' is not supported by this server");
  if ((v = field(o, "logit_bias")) && !(cJSON_IsObject(v) && !v->child))
    return mf_api_fail(err, 400, "logit_bias", "'logit_bias' is not supported by this server");
  const char *pen[] = {"presence_penalty", "frequency_penalty"};
  for (int i = 0; i < 2; i++)
    if ((v = field(o, pen[i])) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
      return mf_api_fail(err, 400, pen[i], "'%s' is not supported by this server (leave it 0)", pen[i]);
  return 0;
}

int mf_api_parse_completion(const char *body, size_t len, const mf_api_limits *lim, mf_completion_req *r,
                            mf_api_err *err) {
  memset(r, 0, sizeof *r);
  r->max_tokens = 16;
  r->temperature = 1;
  r->top_p = 1;
  r->n = 1;
  cJSON *o = parse_root(body, len, lim, err);
  if (!o) return -1;
  int best_of = 0;
  double seed = 0;
  const cJSON *so;
  int rc = get_model(o, 1, r->model, err);
  if (!rc) rc = get_prompts(o, lim, r, err);
  if (!rc) rc = get_int(o, "max_tokens", 0, 1 << 30, &r->max_tokens, err);
  if (!rc) rc = get_num(o, "temperature", 0, 2, &r->temperature, err);
  if (!rc) rc = get_num(o, "top_p", 0, 1, &r->top_p, err);
  if (!rc) rc = get_int(o, "top_k", 0, 1 << 30, &r->top_k, err);
  if (!rc) rc = get_int(o, "n", 1, lim->max_choices, &r->n, err);
  if (!rc) rc = get_int(o, "best_of", 1, lim->max_choices, &best_of, err);
  if (!rc && best_of && best_of != r->n)
    rc = mf_api_fail(err, 400, "best_of", "'best_of' other than n is not supported by this server");
  if (!rc && field(o, "seed")) {
    const cJSON *v = field(o, "seed");
    if (!is_int(v, -9223372036854775808.0, 18446744073709551615.0))
      rc = mf_api_fail(err, 400, "seed", "'seed' must be an integer");
    else {
      seed = v->valuedouble;
      r->has_seed = 1;
      r->seed = seed < 0 ? (uint64_t)(int64_t)seed : seed >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)seed;
    }
  }
  if (!rc) rc = get_stop(o, lim, r, err);
  if (!rc) rc = get_bool(o, "stream", &r->stream, err);
  if (!rc) rc = get_bool(o, "echo", &r->echo, err);
  if (!rc) rc = get_bool(o, "ignore_eos", &r->ignore_eos, err);
  if (!rc && (so = field(o, "stream_options"))) {
    if (!cJSON_IsObject(so)) rc = mf_api_fail(err, 400, "stream_options", "'stream_options' must be an object");
    else rc = get_bool(so, "include_usage", &r->include_usage, err);
  }
  if (!rc) rc = unsupported(o, err);
  if (!rc && (long)r->nprompts * r->n > lim->max_choices)
    rc = mf_api_fail(err, 400, "n", "prompts x n = %ld choices; at most %d per request", (long)r->nprompts * r->n,
                     lim->max_choices);
  cJSON_Delete(o);
  if (rc) mf_completion_req_free(r);
  return rc;
}

void mf_completion_req_free(mf_completion_req *r) {
  for (int i = 0; i < r->nprompts; i++) {
    free(r->prompts[i].text);
    free(r->prompts[i].ids);
  }
  free(r->prompts);
  for (int i = 0; i < r->nstop; i++) free(r->stop[i]);
  memset(r, 0, sizeof *r);
}

int mf_api_parse_tokenize(const char *body, size_t len, const mf_api_limits *lim, char model[128], char **text,
                          size_t *text_len, mf_api_err *err) {
  *text = NULL;
  cJSON *o = parse_root(body, len, lim, err);
  if (!o) return -1;
  int rc = get_model(o, 0, model, err);
  const char *keys[] = {"prompt", "text", "content"};
  const cJSON *v = NULL;
  for (int i = 0; i < 3 && !v; i++) v = field(o, keys[i]);
  if (!rc && !v) rc = mf_api_fail(err, 400, "prompt", "missing field 'prompt' (the text to tokenize)");
  if (!rc && !cJSON_IsString(v)) rc = mf_api_fail(err, 400, "prompt", "'prompt' must be a string");
  if (!rc) {
    *text_len = strlen(v->valuestring);
    *text = malloc(*text_len + 1);
    if (!*text) rc = mf_api_fail(err, 500, NULL, "out of memory");
    else memcpy(*text, v->valuestring, *text_len + 1);
  }
  cJSON_Delete(o);
  return rc;
}

int mf_api_parse_detokenize(const char *body, size_t len, const mf_api_limits *lim, char model[128], int32_t **ids,
                            int *nids, mf_api_err *err) {
  *ids = NULL;
  *nids = 0;
  cJSON *o = parse_root(body, len, lim, err);
  if (!o) return -1;
  int rc = get_model(o, 0, model, err), budget = lim->max_ids;
  const cJSON *v = field(o, "tokens");
  if (!rc && !v) rc = mf_api_fail(err, 400, "tokens", "missing field 'tokens' (an array of token ids)");
  if (!rc && !cJSON_IsArray(v)) rc = mf_api_fail(err, 400, "tokens", "'tokens' must be an array of token ids");
  if (!rc) rc = get_ids(v, "tokens", &budget, ids, nids, err);
  if (rc) {
    free(*ids);
    *ids = NULL;
  }
  cJSON_Delete(o);
  return rc;
}
