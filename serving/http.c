/* HTTP/1.1 request parser (see http.h). States: the head (request line and headers,
 * parsed in one go once the blank line has arrived), then the body by Content-Length or
 * by chunks (size line, data, CRLF, ..., last chunk, trailers). */
#include "serving/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { ST_HEAD, ST_BODY, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_CRLF, ST_TRAILER, ST_DONE };

#define MAX_CHUNK_LINE 256 /* size + extensions */

void mf_http_reset(mf_http_req *r) { memset(r, 0, sizeof *r); }

static int fail(mf_http_req *r, int status, const char *msg) {
  r->err_status = status;
  snprintf(r->err_msg, sizeof r->err_msg, "%s", msg);
  return MF_HTTP_ERROR;
}

/* RFC 9110 tchar */
static int is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return 1;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value bytes: visible ASCII, SP, HTAB, obs-text; no other controls */
static int is_vchar_ws(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static int ieq(const char *a, size_t n, const char *lit) { return strlen(lit) == n && strncasecmp(a, lit, n) == 0; }

/* comma-separated list contains token (case-insensitive) */
static int list_has(const char *v, size_t n, const char *tok) {
  size_t i = 0, tl = strlen(tok);
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    size_t s = i;
    while (i < n && v[i] != ',') i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
    if (e - s == tl && strncasecmp(v + s, tok, tl) == 0) return 1;
  }
  return 0;
}

static int parse_request_line(mf_http_req *r, const char *p, size_t n) {
  size_t i = 0;
  while (i < n && p[i] != ' ') {
    if (!is_tchar((unsigned char)p[i])) return fail(r, 400, "malformed request line (bad method)");
    i++;
  }
  if (i == 0 || i == n) return fail(r, 400, "malformed request line");
  if (i >= sizeof r->method) return fail(r, 501, "method not implemented");
  memcpy(r->method, p, i);
  r->method[i] = 0;
  size_t t0 = ++i;
  while (i < n && p[i] != ' ') {
    unsigned char c = (unsigned char)p[i];
    if (c <= 0x20 || c >= 0x7f) return fail(r, 400, "malformed request target");
    i++;
  }
  size_t tn = i - t0;
  if (tn == 0 || i == n) return fail(r, 400, "malformed request line");
  const char *t = p + t0;
  /* absolute-form (a proxy request): keep its path */
  if (tn > 7 && (strncasecmp(t, "http://", 7) == 0 || (tn > 8 && strncasecmp(t, "https://", 8) == 0))) {
    const char *s = memchr(t + 8 - (t[4] == ':'), '/', tn - (8 - (t[4] == ':')));
    size_t cut = s ? (size_t)(s - t) : tn;
    t += cut;
    tn -= cut;
    if (tn == 0) t = "/", tn = 1;
  } else if (strcmp(r->method, "OPTIONS") == 0 && tn == 1 && t[0] == '*') {
    /* asterisk-form */
  } else if (t[0] != '/') {
    return fail(r, 400, "malformed request target (expected a path starting with '/')");
  }
  const char *q = memchr(t, '?', tn);
  size_t pn = q ? (size_t)(q - t) : tn;
  if (pn >= sizeof r->path) return fail(r, 414, "request target too long");
  memcpy(r->path, t, pn);
  r->path[pn] = 0;
  if (q) {
    size_t qn = tn - pn - 1;
    if (qn >= sizeof r->query) qn = sizeof r->query - 1;
    memcpy(r->query, q + 1, qn);
    r->query[qn] = 0;
  }
  i++;
  const char *v = p + i;
  size_t vn = n - i;
  if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
    return fail(r, 400, "malformed request line (bad HTTP version)");
  if (v[5] != '1') return fail(r, 505, "HTTP version not supported (use HTTP/1.1)");
  r->minor = v[7] - '0';
  r->keep_alive = r->minor >= 1;
  return 0;
}

static int parse_header(mf_http_req *r, const char *p, size_t n, const mf_http_limits *lim) {
  if (p[0] == ' ' || p[0] == '\t') return fail(r, 400, "obsolete header line folding is not accepted");
  const char *colon = memchr(p, ':', n);
  if (!colon || colon == p) return fail(r, 400, "malformed header line");
  size_t kn = (size_t)(colon - p);
  for (size_t i = 0; i < kn; i++)
    if (!is_tchar((unsigned char)p[i])) return fail(r, 400, "malformed header name");
  const char *v = colon + 1;
  size_t vn = n - kn - 1;
  for (size_t i = 0; i < vn; i++)
    if (!is_vchar_ws((unsigned char)v[i])) return fail(r, 400, "control character in a header value");
  while (vn && (*v == ' ' || *v == '\t')) v++, vn--;
  while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t')) vn--;
  if (ieq(p, kn, "content-length")) {
    if (vn == 0) return fail(r, 400, "empty Content-Length");
    uint64_t x = 0;
    for (size_t i = 0; i < vn; i++) {
      if (v[i] < '0' || v[i] > '9') return fail(r, 400, "Content-Length must be a decimal number");
      if (x > (UINT64_MAX - 9) / 10) return fail(r, 413, "Content-Length too large");
      x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (r->has_length && x != r->content_length) return fail(r, 400, "conflicting Content-Length headers");
    r->has_length = 1;
    r->content_length = x;
    if (x > lim->max_body) return fail(r, 413, "request body too large");
  } else if (ieq(p, kn, "transfer-encoding")) {
    if (r->chunked || !ieq(v, vn, "chunked"))
      return fail(r, 501, "unsupported Transfer-Encoding (only a single 'chunked' is accepted)");
    r->chunked = 1;
  } else if (ieq(p, kn, "connection")) {
    if (list_has(v, vn, "close")) r->keep_alive = 0;
    else if (list_has(v, vn, "keep-alive")) r->keep_alive = 1;
  } else if (ieq(p, kn, "expect")) {
    if (!ieq(v, vn, "100-continue")) return fail(r, 417, "unsupported Expect value (only 100-continue)");
    r->expect_continue = 1;
  } else if (ieq(p, kn, "host")) {
    if (r->has_host) return fail(r, 400, "more than one Host header");
    r->has_host = 1;
  } else if (ieq(p, kn, "authorization")) {
    size_t c = vn < sizeof r->authorization - 1 ? vn : sizeof r->authorization - 1;
    memcpy(r->authorization, v, c);
    r->authorization[c] = 0;
    r->auth_truncated = vn != c;
  }
  return 0;
}

/* the request line or a header line (n bytes, CRLF excluded) */
static int head_line(mf_http_req *r, const char *p, size_t n, const mf_http_limits *lim) {
  if (memchr(p, '\r', n)) return fail(r, 400, "stray CR in the header block");
  if (memchr(p, '\0', n)) return fail(r, 400, "NUL byte in the header block");
  if (!r->method[0]) return parse_request_line(r, p, n) < 0 ? MF_HTTP_ERROR : 0;
  if (++r->nheaders > lim->max_headers) return fail(r, 431, "too many header lines");
  return parse_header(r, p, n, lim) < 0 ? MF_HTTP_ERROR : 0;
}

/* the head, one CRLF-terminated line at a time as lines complete. Every check looks at a
 * prefix of the input only and runs at the same byte position however the bytes were cut
 * into reads, so the verdict never depends on the cut (the fuzz target checks this). */
static int parse_head(mf_http_req *r, const char *buf, size_t len, const mf_http_limits *lim) {
  for (;;) {
    const char *p = buf + r->pos;
    if (!r->method[0]) { /* a request line of garbage is refused from its first bytes */
      size_t k = 0;
      while (k < len - r->pos && (p[k] == '\r' || p[k] == '\n')) k++;
      for (size_t e = k + 16; k < len - r->pos && k < e; k++) {
        unsigned char c = (unsigned char)p[k];
        if (c == ' ' || c == '\r' || c == '\n') break;
        if (!is_tchar(c)) return fail(r, 400, "malformed request line");
      }
    }
    const char *nl = memchr(buf + r->scan, '\n', len - r->scan);
    size_t end = nl ? (size_t)(nl - buf) + 1 : len;
    if (end > lim->max_header) return fail(r, 431, "request header block too large");
    if (!nl) {
      r->scan = len;
      return MF_HTTP_MORE;
    }
    size_t n = end - r->pos;
    if (n < 2 || p[n - 2] != '\r') return fail(r, 400, "header lines must end with CRLF");
    n -= 2;
    r->pos = r->scan = end;
    if (n == 0) {
      if (r->method[0]) break; /* the blank line: the head is complete */
      if (++r->nheaders > 4) return fail(r, 400, "empty lines instead of a request line"); /* RFC 9112 2.2 */
      continue;
    }
    if (head_line(r, p, n, lim) < 0) return MF_HTTP_ERROR;
  }
  if (r->chunked && r->has_length) return fail(r, 400, "both Content-Length and Transfer-Encoding");
  if (r->chunked && r->minor == 0) return fail(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
  if (r->minor >= 1 && !r->has_host) return fail(r, 400, "missing Host header");
  return MF_HTTP_DONE;
}

int mf_http_parse(mf_http_req *r, char *buf, size_t *lenp, const mf_http_limits *lim) {
  size_t len = *lenp;
  if (r->state == ST_DONE) return MF_HTTP_DONE;
  if (r->state == ST_HEAD) {
    int rc = parse_head(r, buf, len, lim);
    if (rc != MF_HTTP_DONE) return rc;
    size_t end = r->pos;
    r->head_len = end;
    r->body_off = end;
    r->scan = 0; /* from here: trailer bytes seen */
    if (r->chunked) r->state = ST_CHUNK_SIZE;
    else if (r->has_length && r->content_length > 0) r->state = ST_BODY;
    else {
      r->consumed = end;
      r->state = ST_DONE;
      return MF_HTTP_DONE;
    }
  }
  if (r->state == ST_BODY) {
    if (len - r->head_len < r->content_length) return MF_HTTP_MORE;
    r->body_len = (size_t)r->content_length;
    r->consumed = r->head_len + r->body_len;
    r->state = ST_DONE;
    return MF_HTTP_DONE;
  }
  /* chunked: decoded bytes go to body_off + body_len, never past pos */
  for (;;) {
    size_t avail = len - r->pos;
    const char *p = buf + r->pos;
    if (r->state == ST_CHUNK_SIZE || r->state == ST_TRAILER) {
      const char *nl = memchr(p, '\n', avail);
      if (!nl) {
        /* a partial line already longer than any accepted one (+ its CR) */
        if (avail > MAX_CHUNK_LINE + 1 && r->state == ST_CHUNK_SIZE) return fail(r, 400, "chunk size line too long");
        if (r->state == ST_TRAILER && r->scan + avail > lim->max_header) return fail(r, 431, "trailer section too large");
        break;
      }
      size_t n = (size_t)(nl - p);
      /* a trailer line's size is judged first, as a partial line is judged by its size alone */
      if (r->state == ST_TRAILER && (r->scan += n + 1) > lim->max_header)
        return fail(r, 431, "trailer section too large");
      if (n == 0 || p[n - 1] != '\r') return fail(r, 400, "bad chunked encoding (lines must end with CRLF)");
      n--;
      if (r->state == ST_TRAILER) {
        if (n == 0) {
          r->pos += 2;
          r->consumed = r->pos;
          r->state = ST_DONE;
          break;
        }
        for (size_t k = 0; k < n; k++)
          if (!is_vchar_ws((unsigned char)p[k])) return fail(r, 400, "bad chunked encoding (trailer)");
        if (!memchr(p, ':', n) || p[0] == ' ' || p[0] == '\t' || p[0] == ':') return fail(r, 400, "bad chunked encoding (trailer)");
        r->pos += n + 2;
        continue;
      }
      if (n > MAX_CHUNK_LINE) return fail(r, 400, "chunk size line too long");
      uint64_t size = 0;
      size_t k = 0;
      for (; k < n; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
        if (d < 0) break;
        if (size > (lim->max_body >> 4) + 1) return fail(r, 413, "request body too large");
        size = size * 16 + (uint64_t)d;
      }
      if (k == 0) return fail(r, 400, "bad chunked encoding (chunk size is not hex)");
      /* chunk extensions: ';' name[=value], ignored; optional whitespace before ';' */
      size_t e = k;
      while (e < n && (p[e] == ' ' || p[e] == '\t')) e++;
      if (e < n && p[e] != ';') return fail(r, 400, "bad chunked encoding (junk after the chunk size)");
      for (; e < n; e++)
        if (!is_vchar_ws((unsigned char)p[e])) return fail(r, 400, "bad chunked encoding (chunk extension)");
      if (r->body_len + size > lim->max_body) return fail(r, 413, "request body too large");
      r->pos += n + 2;
      if (size == 0) {
        r->state = ST_TRAILER;
      } else {
        r->chunk_left = size;
        r->state = ST_CHUNK_DATA;
      }
    } else if (r->state == ST_CHUNK_DATA) {
      if (avail == 0) break;
      size_t take = avail < r->chunk_left ? avail : (size_t)r->chunk_left;
      memmove(buf + r->body_off + r->body_len, p, take);
      r->body_len += take;
      r->pos += take;
      r->chunk_left -= take;
      if (r->chunk_left == 0) r->state = ST_CHUNK_CRLF;
    } else if (r->state == ST_CHUNK_CRLF) {
      if (avail < 2) {
        if (avail == 1 && p[0] != '\r') return fail(r, 400, "bad chunked encoding (chunk data longer than its size)");
        break;
      }
      if (p[0] != '\r' || p[1] != '\n') return fail(r, 400, "bad chunked encoding (chunk data longer than its size)");
      r->pos += 2;
      r->state = ST_CHUNK_SIZE;
    } else {
      break;
    }
  }
  /* squeeze the consumed framing out: unparsed bytes move down to the decoded end */
  size_t dend = r->body_off + r->body_len;
  if (r->pos > dend) {
    memmove(buf + dend, buf + r->pos, len - r->pos);
    *lenp = len - (r->pos - dend);
    if (r->state == ST_DONE) r->consumed = dend;
    r->pos = dend;
  }
  return r->state == ST_DONE ? MF_HTTP_DONE : MF_HTTP_MORE;
}

const char *mf_http_reason(int s) {
  switch (s) {
  case 100: return "Continue";
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}
