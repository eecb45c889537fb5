/* A thin HDF5 layer for checkpoints and data shards: whole-array datasets by path,
 * string and integer attributes, clear one-line errors, and atomic file creation
 * (write to "<path>.tmp.<pid>", flush, fsync, rename): a crash or SIGKILL never leaves
 * a half-written file under the real name. */
#ifndef MF_H5_H
#define MF_H5_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

typedef struct mf_h5 mf_h5;

/* Writing: create the temporary file; commit renames it into place. */
mf_status mf_h5_create(mf_h5 **h, const char *path);
mf_status mf_h5_commit(mf_h5 *h); /* closes h in every case */
void mf_h5_abort(mf_h5 *h);       /* closes h and removes the temporary file */

/* Reading: checks the file is HDF5 first (a truncated file is an error, not a crash). */
mf_status mf_h5_open(mf_h5 **h, const char *path);
void mf_h5_close(mf_h5 *h);
const char *mf_h5_path(const mf_h5 *h);

/* Datasets: path like "/params/wte.weight" (groups are created as needed).
 * dtype: MF_F32, MF_I32, MF_I64, MF_U16, MF_U8; stored with that HDF5 type. */
mf_status mf_h5_write(mf_h5 *h, const char *path, mf_dtype dt, const void *data, int ndim,
                      const int64_t *shape);
/* 1 if the dataset exists. */
int mf_h5_exists(mf_h5 *h, const char *path);
mf_status mf_h5_shape(mf_h5 *h, const char *path, int *ndim, int64_t *shape);
/* Reads into dst, converting to dt; the stored shape must equal `shape`
 * (MF_ERR_SHAPE otherwise, naming both shapes). */
mf_status mf_h5_read(mf_h5 *h, const char *path, mf_dtype dt, void *dst, int ndim,
                     const int64_t *shape);
/* Reads elements [start, start+count) of a 1-D dataset. */
mf_status mf_h5_read_range(mf_h5 *h, const char *path, mf_dtype dt, void *dst, int64_t start,
                           int64_t count);

/* Attributes on an object ("/" or a group/dataset path). */
mf_status mf_h5_set_str(mf_h5 *h, const char *obj, const char *name, const char *value);
mf_status mf_h5_set_i64(mf_h5 *h, const char *obj, const char *name, int64_t value);
mf_status mf_h5_set_f64(mf_h5 *h, const char *obj, const char *name, double value);
mf_status mf_h5_get_str(mf_h5 *h, const char *obj, const char *name, char **value); /* malloc'd */
mf_status mf_h5_get_i64(mf_h5 *h, const char *obj, const char *name, int64_t *value);
mf_status mf_h5_get_f64(mf_h5 *h, const char *obj, const char *name, double *value);
int mf_h5_has_attr(mf_h5 *h, const char *obj, const char *name);
/* Number of links (datasets, groups) directly in a group; -1 if it is absent. */
long mf_h5_group_size(mf_h5 *h, const char *group);

#endif
