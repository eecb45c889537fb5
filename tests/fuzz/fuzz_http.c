/* libFuzzer target for everything that parses bytes from the network: the HTTP/1.1
 * request parser (serving/http.c) and the JSON request decoding (serving/api.c).
 *
 * The first input byte picks how the rest is cut into reads (whole, byte by byte, or
 * pseudo-random pieces); the parser must give the same verdict and the same body for any
 * cut, must never read or write outside the buffer (ASan), and must leave the bytes after
 * a request intact for the next (pipelined) one, which is parsed in turn. Each complete
 * body goes through the completion, tokenize and detokenize decoders, and through the
 * JSON string writer, whose output must be valid UTF-8 whatever went in. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serving/api.h"
#include "serving/http.h"

static const mf_http_limits LIM = {.max_header = 2048, .max_headers = 16, .max_body = 4096};

#define REQUIRE(c) \
  do {             \
    if (!(c)) abort(); \
  } while (0)

/* parses one request from data[0..n), cut into reads by `mode`; returns the verdict,
 * the request, its body (copied) and the bytes it used */
static int parse(const uint8_t *data, size_t n, unsigned mode, mf_http_req *r, char **body, size_t *used) {
  char *buf = malloc(n ? n : 1);
  size_t have = 0, len = 0;
  unsigned state = mode * 2654435761u + 1;
  int rc = MF_HTTP_MORE;
  mf_http_reset(r);
  while (rc == MF_HTTP_MORE && have < n) {
    size_t take = n - have;
    if (mode % 3 == 1) take = 1;
    else if (mode % 3 == 2) {
      state = state * 1103515245u + 12345u;
      take = 1 + (state >> 16) % 64;
      if (take > n - have) take = n - have;
    }
    memcpy(buf + len, data + have, take);
    have += take;
    len += take;
    rc = mf_http_parse(r, buf, &len, &LIM);
    REQUIRE(len <= have);
  }
  *body = NULL;
  *used = 0;
  if (rc == MF_HTTP_DONE) {
    REQUIRE(r->body_off + r->body_len <= len && r->consumed <= len);
    REQUIRE(r->body_len <= LIM.max_body);
    *body = malloc(r->body_len + 1);
    memcpy(*body, buf + r->body_off, r->body_len);
    /* what follows the request is the input's own bytes, untouched */
    size_t tail = len - r->consumed;
    REQUIRE(memcmp(buf + r->consumed, data + have - tail, tail) == 0);
    *used = have - tail;
  } else if (rc == MF_HTTP_ERROR) {
    REQUIRE(r->err_status >= 400 && r->err_status < 600 && r->err_msg[0]);
  }
  free(buf);
  return rc;
}

static void decode_body(const char *b, size_t n) {
  mf_completion_req req;
  mf_api_err err;
  if (mf_api_parse_completion(b, n, &mf_api_default_limits, &req, &err) == 0) {
    REQUIRE(req.nprompts >= 1 && req.n >= 1 && req.max_tokens >= 0 && req.temperature >= 0 && req.top_p <= 1);
    mf_completion_req_free(&req);
  } else {
    REQUIRE(err.status >= 400 && err.status < 600);
  }
  char model[128], *text = NULL;
  size_t tl;
  if (mf_api_parse_tokenize(b, n, &mf_api_default_limits, model, &text, &tl, &err) == 0) free(text);
  int32_t *ids = NULL;
  int nids;
  if (mf_api_parse_detokenize(b, n, &mf_api_default_limits, model, &ids, &nids, &err) == 0) {
    for (int i = 0; i < nids; i++) REQUIRE(ids[i] >= 0);
    free(ids);
  }
  mf_buf j = {0};
  mf_buf_json_str(&j, b, n);
  REQUIRE(j.oom || mf_utf8_valid(j.p, j.len));
  mf_buf_free(&j);
  REQUIRE(mf_utf8_complete(b, n) <= n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned mode = data[0];
  data++;
  size--;
  for (int k = 0; k < 4 && size > 0; k++) { /* up to four pipelined requests */
    mf_http_req a, b;
    char *ba, *bb;
    size_t ua, ub;
    int ra = parse(data, size, 0, &a, &ba, &ua);
    int rb = parse(data, size, mode, &b, &bb, &ub);
    REQUIRE(ra == rb);
    if (ra == MF_HTTP_ERROR) REQUIRE(a.err_status == b.err_status);
    if (ra == MF_HTTP_DONE) {
      REQUIRE(ua == ub && a.body_len == b.body_len && memcmp(ba, bb, a.body_len) == 0);
      REQUIRE(strcmp(a.method, b.method) == 0 && strcmp(a.path, b.path) == 0 && a.keep_alive == b.keep_alive);
      decode_body(ba, a.body_len);
    }
    free(ba);
    free(bb);
    if (ra != MF_HTTP_DONE || ua == 0) break;
    data += ua;
    size -= ua;
  }
  return 0;
}
