/* The JSON side of the API: request bodies decoded and checked field by field into plain
 * structs (pure functions of the bytes, no model needed, so the fuzz target drives them
 * after the HTTP parser), OpenAI-style error bodies, and the growable buffer and JSON
 * string writer every response uses (always valid UTF-8 out, whatever bytes come in).
 *
 * Parsing uses cJSON after two checks of our own: the body is valid UTF-8 without NUL
 * bytes, and its nesting depth is small (cJSON recurses per level). */
#ifndef MF_SERVING_API_H
#define MF_SERVING_API_H

#include <stddef.h>
#include <stdint.h>

/* ---- growable byte buffer ---- */
typedef struct mf_buf {
  char *p;
  size_t len, cap;
  int oom; /* an append failed: the content is incomplete */
} mf_buf;

void mf_buf_add(mf_buf *b, const void *data, size_t n);
void mf_buf_puts(mf_buf *b, const char *s);
void mf_buf_printf(mf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..n) as a JSON string literal with quotes; invalid UTF-8 becomes U+FFFD */
void mf_buf_json_str(mf_buf *b, const char *s, size_t n);
void mf_buf_free(mf_buf *b);

/* ---- UTF-8 ---- */
int mf_utf8_valid(const char *s, size_t n);
/* Length of s[0..n) without a trailing incomplete (but so far valid) UTF-8 sequence:
 * streamed text is cut there and the rest waits for the next token. */
size_t mf_utf8_complete(const char *s, size_t n);

/* ---- errors ---- */
typedef struct mf_api_err {
  int status;       /* HTTP status */
  char param[40];   /* the offending field, "" if none */
  char code[40];    /* OpenAI error code ("model_not_found", ...), "" for null */
  char msg[300];
} mf_api_err;

/* Fills err; returns -1 (so `return api_fail(...)` reads naturally). */
int mf_api_fail(mf_api_err *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"error":{"message":...,"type":...,"param":...,"code":...}} */
void mf_api_error_json(mf_buf *b, const mf_api_err *err);

/* ---- requests ---- */
typedef struct mf_api_limits {
  int max_prompts;      /* entries of a prompt array */
  int max_choices;      /* prompts x n */
  int max_ids;          /* token ids in one request */
  int max_stop_len;     /* bytes per stop string */
  int max_depth;        /* JSON nesting */
} mf_api_limits;

extern const mf_api_limits mf_api_default_limits;

typedef struct mf_api_prompt {
  int is_ids;
  char *text;           /* NUL-terminated copy (is_ids == 0) */
  size_t len;
  int32_t *ids;         /* is_ids == 1; values >= 0, range checked against the model later */
  int nids;
} mf_api_prompt;

#define MF_API_MAX_STOP 4

typedef struct mf_completion_req {
  char model[128];
  mf_api_prompt *prompts;
  int nprompts;
  int max_tokens;       /* default 16 */
  double temperature;   /* default 1 */
  double top_p;         /* default 1 */
  int top_k;            /* 0 = off (an extension; OpenAI has none) */
  int has_seed;
  uint64_t seed;
  char *stop[MF_API_MAX_STOP];
  size_t stop_len[MF_API_MAX_STOP];
  int nstop;
  int n;                /* choices per prompt */
  int stream, include_usage, echo;
  int ignore_eos;       /* an extension (as vLLM's): keep going past <|endoftext|> */
} mf_completion_req;

/* POST /v1/completions. 0 and *out filled (free with mf_completion_req_free), or -1 and
 * err (400 naming the field: bad JSON, missing field, wrong type, out of range). */
int mf_api_parse_completion(const char *body, size_t len, const mf_api_limits *lim, mf_completion_req *out,
                            mf_api_err *err);
void mf_completion_req_free(mf_completion_req *r);

/* POST /v1/tokenize: {"model"?, "prompt" | "text" | "content": string}. model[0] = 0
 * when absent. The text is a malloc'd copy. */
int mf_api_parse_tokenize(const char *body, size_t len, const mf_api_limits *lim, char model[128], char **text,
                          size_t *text_len, mf_api_err *err);
/* POST /v1/detokenize: {"model"?, "tokens": [int, ...]}. *ids malloc'd. */
int mf_api_parse_detokenize(const char *body, size_t len, const mf_api_limits *lim, char model[128], int32_t **ids,
                            int *nids, mf_api_err *err);

#endif
