/* Errors: every library call returns an mf_status; the message (with source location,
 * rank and the user's file/key where known) is kept per thread. Only main() exits. */
#ifndef MF_STATUS_H
#define MF_STATUS_H

typedef enum mf_status {
  MF_OK = 0,
  MF_ERR_USAGE,    /* bad command line */
  MF_ERR_CONFIG,   /* bad YAML key, type or value */
  MF_ERR_IO,       /* missing/unreadable/unwritable file */
  MF_ERR_FORMAT,   /* corrupt or foreign HDF5 / data file */
  MF_ERR_SHAPE,    /* checkpoint or data of another shape */
  MF_ERR_INPUT,    /* bad user input: empty prompt, token out of range */
  MF_ERR_NOMEM,
  MF_ERR_BACKEND,  /* BLAS/CUDA/MPI failure */
  MF_ERR_INTERRUPTED,
  MF_ERR_INTERNAL,
} mf_status;

/* Records the message (printf-style) with the C source location; returns st. */
mf_status mf_error_at(mf_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define MF_ERR(st, ...) mf_error_at((st), __FILE__, __LINE__, __VA_ARGS__)

/* Prepends context ("loading x.h5: ") to the current message; returns st. */
mf_status mf_error_context(mf_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define MF_TRY(expr)                     \
  do {                                   \
    mf_status mf_try_st_ = (expr);       \
    if (mf_try_st_ != MF_OK) return mf_try_st_; \
  } while (0)

const char *mf_error_message(void);  /* one line, no trailing newline */
const char *mf_error_location(void); /* "core/config.c:123" */
const char *mf_status_name(mf_status st);
void mf_error_clear(void);
void mf_error_set_rank(int rank);    /* prefixes messages with "rank N: " when world > 1 */
int mf_status_exit_code(mf_status st); /* user mistakes: 2, others: 1 */

#endif
