#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];
static _Thread_local char g_loc[128];
static int g_rank = -1;

void mf_error_set_rank(int rank) { g_rank = rank; }

mf_status mf_error_at(mf_status st, const char *file, int line, const char *fmt, ...) {
  char body[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  /* messages are one line: fold newlines that came from library text */
  for (char *p = body; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  if (g_rank >= 0)
    snprintf(g_msg, sizeof g_msg, "rank %d: %s", g_rank, body);
  else
    snprintf(g_msg, sizeof g_msg, "%s", body);
  const char *f = strstr(file, "mforge/");
  snprintf(g_loc, sizeof g_loc, "%s:%d", f ? f + 7 : file, line);
  return st;
}

mf_status mf_error_context(mf_status st, const char *fmt, ...) {
  char pre[512], old[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, g_msg, sizeof old);
  size_t np = strlen(pre);
  if (np >= sizeof g_msg) np = sizeof g_msg - 1;
  memcpy(g_msg, pre, np);
  size_t room = sizeof g_msg - 1 - np, no = strnlen(old, sizeof old - 1);
  if (no > room) no = room;
  memcpy(g_msg + np, old, no);
  g_msg[np + no] = 0;
  return st;
}

const char *mf_error_message(void) { return g_msg[0] ? g_msg : "unknown error"; }
const char *mf_error_location(void) { return g_loc; }
void mf_error_clear(void) { g_msg[0] = g_loc[0] = 0; }

const char *mf_status_name(mf_status st) {
  switch (st) {
  case MF_OK: return "ok";
  case MF_ERR_USAGE: return "usage";
  case MF_ERR_CONFIG: return "config";
  case MF_ERR_IO: return "io";
  case MF_ERR_FORMAT: return "format";
  case MF_ERR_SHAPE: return "shape";
  case MF_ERR_INPUT: return "input";
  case MF_ERR_NOMEM: return "out of memory";
  case MF_ERR_BACKEND: return "backend";
  case MF_ERR_INTERRUPTED: return "interrupted";
  case MF_ERR_INTERNAL: return "internal";
  }
  return "?";
}

int mf_status_exit_code(mf_status st) {
  switch (st) {
  case MF_OK: return 0;
  case MF_ERR_USAGE: case MF_ERR_CONFIG: case MF_ERR_IO: case MF_ERR_FORMAT:
  case MF_ERR_SHAPE: case MF_ERR_INPUT:
    return 2;
  default:
    return 1;
  }
}
