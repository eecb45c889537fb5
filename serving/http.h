/* HTTP/1.1 request parsing for the server (RFC 9112), incremental and allocation-free:
 * the connection keeps appending bytes to one buffer that starts at the request, and
 * calls mf_http_parse again; the parser resumes where it stopped. A chunked body is
 * decoded in place (decoded bytes never overtake the raw ones), so a request never needs
 * more than its header, its body and one chunk line of buffer.
 *
 * Strict where leniency lets requests be read two ways (request smuggling): CRLF line
 * ends, no obs-fold, no space before a colon, one Content-Length, never both
 * Content-Length and Transfer-Encoding, chunked as the only transfer coding.
 * Every rejection carries the status to answer (400, 411, 413, 414, 417, 431, 501, 505)
 * and a one-line reason. This is the code the fuzz target drives (tests/fuzz/). */
#ifndef MF_SERVING_HTTP_H
#define MF_SERVING_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct mf_http_limits {
  size_t max_header;  /* request line + headers, bytes (431 beyond) */
  int max_headers;    /* header lines (431 beyond) */
  size_t max_body;    /* decoded body bytes (413 beyond) */
} mf_http_limits;

enum { MF_HTTP_MORE = 0, MF_HTTP_DONE = 1, MF_HTTP_ERROR = -1 };

typedef struct mf_http_req {
  /* parser state: zero the struct (mf_http_reset) before the first call */
  int state;
  size_t scan;        /* head: the line-end search resumes here; body: trailer bytes */
  size_t pos;         /* raw bytes parsed (the next line or chunk starts here) */
  int nheaders;       /* header lines so far (before the request line: empty lines) */
  uint64_t chunk_left;/* bytes left in the current chunk */
  /* the request */
  char method[16];
  char path[2048];    /* request target up to '?' (origin-form) */
  char query[512];    /* after '?', truncated if longer */
  int minor;          /* HTTP/1.<minor> */
  int keep_alive;
  int expect_continue;
  int chunked;
  int has_length;
  uint64_t content_length;
  int has_host;
  char authorization[512]; /* "" when absent; truncated values cannot match a key */
  int auth_truncated;
  size_t head_len;    /* request line + headers + blank line */
  size_t body_off, body_len; /* decoded body in the buffer */
  size_t consumed;    /* MF_HTTP_DONE: raw bytes of this request (the next one starts here) */
  /* MF_HTTP_ERROR */
  int err_status;
  char err_msg[160];
} mf_http_req;

void mf_http_reset(mf_http_req *r);

/* Parses buf[0 .. *len) (the request starts at buf[0]). MF_HTTP_MORE: give more bytes
 * (the head is complete once head_len > 0: answer Expect: 100-continue then); *len may
 * shrink when chunk framing was squeezed out of the buffer. MF_HTTP_DONE: the body is at
 * buf + body_off; the next request starts at buf + consumed. MF_HTTP_ERROR: err_status,
 * err_msg. */
int mf_http_parse(mf_http_req *r, char *buf, size_t *len, const mf_http_limits *lim);

/* "OK", "Not Found", ... ("Unknown" for codes it does not know). */
const char *mf_http_reason(int status);

#endif
