/* Unit tests of what parses network bytes: the HTTP/1.1 request parser (fed whole, byte
 * by byte and in random pieces, which must agree), chunked bodies, pipelining, every
 * rejection's status; the JSON request decoding of the API (types, ranges, defaults);
 * UTF-8 checks and the JSON string writer; the histogram quantiles. */
#include <stdlib.h>
#include <string.h>

#include "serving/api.h"
#include "serving/http.h"
#include "serving/metrics.h"
#include "test.h"

static const mf_http_limits LIM = {.max_header = 4096, .max_headers = 20, .max_body = 1000};

/* Parses req fed in pieces of `step` bytes (0: all at once). Returns the final code;
 * out gets the request; body copied to body/blen. */
static int feed(const char *req, size_t n, size_t step, mf_http_req *r, char *body, size_t *blen, size_t *consumed) {
  char *buf = malloc(n + 1);
  size_t have = 0, len = 0;
  int rc = MF_HTTP_MORE;
  mf_http_reset(r);
  while (rc == MF_HTTP_MORE && have < n) {
    size_t take = step ? step : n;
    if (take > n - have) take = n - have;
    memcpy(buf + len, req + have, take);
    have += take;
    len += take;
    rc = mf_http_parse(r, buf, &len, &LIM);
  }
  if (rc == MF_HTTP_DONE) {
    memcpy(body, buf + r->body_off, r->body_len);
    *blen = r->body_len;
    /* what follows the request is intact right after it */
    *consumed = r->consumed + (n - have);
    size_t tail = len - r->consumed;
    CHECKF(memcmp(buf + r->consumed, req + have - tail, tail) == 0, "bytes after the request were damaged");
  }
  free(buf);
  return rc;
}

/* the same answer whether fed whole, byte by byte, or in pieces of 7 */
static int parse_all_ways(const char *req, size_t n, mf_http_req *r, char *body, size_t *blen) {
  size_t c0 = 0, c1 = 0, c7 = 0, b1, b7;
  char body1[2000], body7[2000];
  mf_http_req r1, r7;
  int a = feed(req, n, 0, r, body, blen, &c0);
  int b = feed(req, n, 1, &r1, body1, &b1, &c1);
  int c = feed(req, n, 7, &r7, body7, &b7, &c7);
  CHECKF(a == b && b == c, "whole %d, bytewise %d, by 7 %d: %.40s", a, b, c, req);
  if (a == MF_HTTP_DONE && b == MF_HTTP_DONE && c == MF_HTTP_DONE) {
    CHECK(*blen == b1 && b1 == b7 && memcmp(body, body1, b1) == 0 && memcmp(body, body7, b7) == 0);
  }
  if (a == MF_HTTP_ERROR && b == MF_HTTP_ERROR) CHECKF(r->err_status == r1.err_status, "%d vs %d", r->err_status, r1.err_status);
  return a;
}

static int status_of(const char *req) {
  mf_http_req r;
  char body[2000];
  size_t bl;
  int rc = parse_all_ways(req, strlen(req), &r, body, &bl);
  return rc == MF_HTTP_ERROR ? r.err_status : rc == MF_HTTP_DONE ? 200 : 0;
}

static void test_http(void) {
  mf_http_req r;
  char body[2000];
  size_t bl;
  const char *get = "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\n\r\n";
  CHECK(parse_all_ways(get, strlen(get), &r, body, &bl) == MF_HTTP_DONE);
  CHECK(strcmp(r.method, "GET") == 0 && strcmp(r.path, "/v1/models") == 0 && strcmp(r.query, "x=1") == 0);
  CHECK(r.keep_alive && r.minor == 1 && strcmp(r.authorization, "Bearer k") == 0 && bl == 0);

  const char *post = "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
  CHECK(parse_all_ways(post, strlen(post), &r, body, &bl) == MF_HTTP_DONE);
  CHECK(bl == 11 && memcmp(body, "hello world", 11) == 0 && !r.keep_alive);

  const char *chunked = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";
  CHECK(parse_all_ways(chunked, strlen(chunked), &r, body, &bl) == MF_HTTP_DONE);
  CHECK(bl == 11 && memcmp(body, "hello world", 11) == 0);

  /* pipelining: two requests in one buffer, the second parsed from where the first ended */
  char two[512];
  snprintf(two, sizeof two, "%s%s", post, get);
  size_t len = strlen(two), cons;
  CHECK(feed(two, len, 0, &r, body, &bl, &cons) == MF_HTTP_DONE && cons == strlen(post));
  CHECK(status_of(two + strlen(post)) == 200);

  const char *http10 = "GET / HTTP/1.0\r\n\r\n";
  CHECK(parse_all_ways(http10, strlen(http10), &r, body, &bl) == MF_HTTP_DONE && !r.keep_alive && r.minor == 0);
  const char *expect = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
  len = strlen(expect);
  char buf[256];
  memcpy(buf, expect, len);
  mf_http_reset(&r);
  CHECK(mf_http_parse(&r, buf, &len, &LIM) == MF_HTTP_MORE && r.head_len == strlen(expect) && r.expect_continue);

  /* rejections and their status */
  struct { const char *req; int status; size_t len; /* 0: strlen */ } bad[] = {
      {"GARBAGE\r\n\r\n", 400, 0},
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, 0}, /* a TLS hello */
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, 0},
      {"GET / HTTP/1.1\r\n\r\n", 400, 0},                      /* no Host */
      {"GET noslash HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0},
      {"GET / HTTP/1.1\nHost: a\n\n", 400, 0},                /* bare LF */
      {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, 0},
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, 0},
      {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 413, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\n", 413, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n", 413, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", 400, 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417, 0},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0},
      {"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 400, 28},
      {"VERYLONGMETHODNAMEXX / HTTP/1.1\r\nHost: a\r\n\r\n", 501, 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = bad[i].len ? bad[i].len : strlen(bad[i].req);
    int rc = parse_all_ways(bad[i].req, n, &r, body, &bl);
    int got = rc == MF_HTTP_ERROR ? r.err_status : rc == MF_HTTP_MORE ? 0 : 200;
    CHECKF(got == bad[i].status, "case %zu: status %d, want %d (%s)", i, got, bad[i].status, r.err_msg);
  }
  /* limits: a huge head, too many headers, a long target */
  char big[9000];
  snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX: %05000d\r\n\r\n", 0);
  CHECK(status_of(big) == 431);
  memset(big, 0, sizeof big);
  strcpy(big, "GET / HTTP/1.1\r\nHost: a\r\n");
  for (int i = 0; i < 30; i++) strcat(big, "X-A: b\r\n");
  strcat(big, "\r\n");
  CHECK(status_of(big) == 431);
  snprintf(big, sizeof big, "GET /%03000d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
  CHECK(status_of(big) == 414);
  /* a head still arriving past the limit is refused without waiting for its end */
  memset(big, 'a', 5000);
  memcpy(big, "GET /", 5);
  len = 5000;
  mf_http_reset(&r);
  CHECK(mf_http_parse(&r, big, &len, &LIM) == MF_HTTP_ERROR && r.err_status == 431);
}

static int api_status(const char *body) {
  mf_completion_req r;
  mf_api_err e;
  if (mf_api_parse_completion(body, strlen(body), &mf_api_default_limits, &r, &e) == 0) {
    mf_completion_req_free(&r);
    return 200;
  }
  return e.status;
}

static void test_api(void) {
  mf_completion_req r;
  mf_api_err e;
  const char *ok = "{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":5,\"temperature\":0,\"top_p\":0.5,\"top_k\":3,"
                   "\"stop\":[\"a\",\"bc\"],\"seed\":-1,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                   "\"n\":2,\"echo\":true,\"user\":\"x\",\"logprobs\":null,\"presence_penalty\":0}";
  CHECK(mf_api_parse_completion(ok, strlen(ok), &mf_api_default_limits, &r, &e) == 0);
  CHECK(strcmp(r.model, "m") == 0 && r.nprompts == 1 && !r.prompts[0].is_ids && strcmp(r.prompts[0].text, "hi") == 0);
  CHECK(r.max_tokens == 5 && r.temperature == 0 && r.top_p == 0.5 && r.top_k == 3 && r.nstop == 2);
  CHECK(r.has_seed && r.seed == UINT64_MAX && r.stream && r.include_usage && r.n == 2 && r.echo);
  mf_completion_req_free(&r);
  const char *defaults = "{\"model\":\"m\",\"prompt\":[[1,2],[3]]}";
  CHECK(mf_api_parse_completion(defaults, strlen(defaults), &mf_api_default_limits, &r, &e) == 0);
  CHECK(r.max_tokens == 16 && r.temperature == 1 && r.top_p == 1 && r.n == 1 && !r.stream && !r.has_seed);
  CHECK(r.nprompts == 2 && r.prompts[0].is_ids && r.prompts[0].nids == 2 && r.prompts[1].ids[0] == 3);
  mf_completion_req_free(&r);
  CHECK(api_status("{\"model\":\"m\",\"prompt\":[5,6,7]}") == 200);
  CHECK(api_status("{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}") == 200);
  CHECK(api_status("{\"model\":\"m\",\"prompt\":\"\"}") == 200);
  const char *bad[] = {
      "", "{", "[]", "{\"prompt\":\"x\"}", "{\"model\":\"m\"}", "{\"model\":5,\"prompt\":\"x\"}",
      "{\"model\":\"m\",\"prompt\":5}", "{\"model\":\"m\",\"prompt\":[]}", "{\"model\":\"m\",\"prompt\":[1,\"a\"]}",
      "{\"model\":\"m\",\"prompt\":[-1]}", "{\"model\":\"m\",\"prompt\":[1.5]}", "{\"model\":\"m\",\"prompt\":[[]]}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":-1}", "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":1e300}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":2.5}", "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":\"5\"}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":-0.1}", "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":1e999}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"top_p\":1.5}", "{\"model\":\"m\",\"prompt\":\"x\",\"n\":0}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"n\":65}", "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":\"yes\"}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":5}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":3}", "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"s\"}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":3}", "{\"model\":\"m\",\"prompt\":\"x\",\"seed\":0.5}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"frequency_penalty\":1}", "{\"model\":\"m\",\"prompt\":\"x\"} x",
      "{\"model\":\"m\",\"prompt\":\"\xff\"}", "{\"model\":\"m\",\"prompt\":\"\xed\xa0\x80\"}",
      "{\"model\":\"m\",\"prompt\":\"x\",\"stream_options\":5}", "{\"model\":\"m\",\"prompt\":[\"a\",[1]],\"n\":40}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int st = api_status(bad[i]);
    CHECKF(st >= 400 && st < 500, "case %zu: %d for %s", i, st, bad[i]);
  }
  /* deep nesting and a NUL byte */
  char deep[20010];
  memset(deep, '[', 10000);
  memset(deep + 10000, ']', 10000);
  deep[20000] = 0;
  CHECK(api_status(deep) == 400);
  const char nul[] = "{\"model\":\"m\",\"prompt\":\"a\0b\"}";
  CHECK(mf_api_parse_completion(nul, sizeof nul - 1, &mf_api_default_limits, &r, &e) == -1 && e.status == 400);
  char model[128], *text;
  size_t tl;
  int32_t *ids;
  int n;
  const char *tk = "{\"text\":\"abc\"}";
  CHECK(mf_api_parse_tokenize(tk, strlen(tk), &mf_api_default_limits, model, &text, &tl, &e) == 0 && tl == 3 && !model[0]);
  free(text);
  const char *dt = "{\"model\":\"m\",\"tokens\":[1,2,3]}";
  CHECK(mf_api_parse_detokenize(dt, strlen(dt), &mf_api_default_limits, model, &ids, &n, &e) == 0 && n == 3 &&
        ids[2] == 3 && strcmp(model, "m") == 0);
  free(ids);
  const char *dbad = "{\"tokens\":[1,-2]}";
  CHECK(mf_api_parse_detokenize(dbad, strlen(dbad), &mf_api_default_limits, model, &ids, &n, &e) == -1 && e.status == 400);
}

static void test_text(void) {
  CHECK(mf_utf8_valid("h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
  CHECK(!mf_utf8_valid("\xc0\x80", 2));  /* overlong */
  CHECK(!mf_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
  CHECK(!mf_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
  CHECK(mf_utf8_complete("ab\xe2\x82", 4) == 2);
  CHECK(mf_utf8_complete("ab\xe2\x82\xac", 5) == 5);
  CHECK(mf_utf8_complete("ab\xff", 3) == 3); /* invalid is not "incomplete": it goes out (as U+FFFD) */
  mf_buf b = {0};
  mf_buf_json_str(&b, "a\"\\\n\x01\xff\xc3\xa9", 8);
  CHECKF(strcmp(b.p, "\"a\\\"\\\\\\n\\u0001\\ufffd\xc3\xa9\"") == 0, "%s", b.p);
  mf_buf_free(&b);
  mf_api_err e;
  mf_api_fail(&e, 404, "model", "no \"x\"");
  mf_api_error_json(&b, &e);
  CHECKF(strstr(b.p, "\"message\":\"no \\\"x\\\"\"") && strstr(b.p, "\"param\":\"model\"") &&
             strstr(b.p, "\"type\":\"not_found_error\""), "%s", b.p);
  mf_buf_free(&b);
  mf_hist h;
  mf_hist_init(&h, mf_buckets_latency, mf_buckets_latency_n);
  for (int i = 0; i < 100; i++) mf_hist_add(&h, 0.003);
  double q = mf_hist_quantile(&h, 0.5);
  CHECKF(q > 0.0025 && q <= 0.005, "p50 %g", q);
}

int main(void) {
  test_http();
  test_api();
  test_text();
  return mf_test_report("test_http");
}
