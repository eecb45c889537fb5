/* The connection side of `mforge serve`: listening socket, connections, HTTP framing,
 * routing, authentication, limits and timeouts, the endpoints, metrics and the graceful
 * stop. Runs entirely on the event-loop thread (serving/ae.h); generation is handed to
 * the model workers (serving/sched.h) and their output comes back through an eventfd. */
#ifndef MF_SERVING_SERVER_H
#define MF_SERVING_SERVER_H

#include <stddef.h>

#include "core/status.h"
#include "serving/api.h"
#include "serving/sched.h"

struct mf_bpe;

typedef struct mf_server_opts {
  const char *host;         /* default 127.0.0.1 */
  int port;                 /* 0: any free port (printed) */
  const char *api_key;      /* NULL: no authentication */
  int max_connections;
  size_t max_body;          /* bytes */
  size_t max_header;        /* bytes of request line + headers */
  int max_headers;
  int max_prompt_tokens;    /* 0: the model's context - 1 */
  int max_new_tokens;       /* 0: the model's context */
  double header_timeout;    /* s: first byte of a request to the end of its head */
  double request_timeout;   /* s: first byte to the end of its body */
  double idle_timeout;      /* s: a keep-alive connection with nothing to do; a stalled writer */
  double drain_timeout;     /* s: in-flight requests may finish after SIGTERM/SIGINT */
  int log_requests;         /* one stderr line per request */
  mf_api_limits api;
} mf_server_opts;

void mf_server_opts_default(mf_server_opts *o);

typedef struct mf_server mf_server;

/* Binds and listens (MF_ERR_IO naming host:port when it cannot). The models are
 * started already (they may still be loading); notify_fd is the eventfd they write;
 * signal_fd a signalfd for SIGTERM/SIGINT (blocked in every thread). */
mf_status mf_server_create(mf_server **out, const mf_server_opts *o, mf_model **models, int nmodels,
                           const struct mf_bpe *bpe, int notify_fd, int signal_fd);
int mf_server_port(const mf_server *s);
/* Serves until a signal arrives and the in-flight requests have finished (or the drain
 * timeout passed). */
mf_status mf_server_run(mf_server *s);
/* Closes every connection (cancelling their jobs); the models are the caller's. */
void mf_server_free(mf_server *s);

#endif
