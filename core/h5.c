#include "core/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mf_h5 {
  hid_t file;
  char path[1024];  /* the real name */
  char tmp[1100];   /* writing: the temporary name */
  int writing;
};

static void quiet(void) {
  static int done;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages replace HDF5's stack dumps */
    done = 1;
  }
}

static hid_t h5type(mf_dtype dt) {
  switch (dt) {
  case MF_F32: return H5T_NATIVE_FLOAT;
  case MF_I32: return H5T_NATIVE_INT32;
  case MF_I64: return H5T_NATIVE_INT64;
  case MF_U16: return H5T_NATIVE_UINT16;
  case MF_U8: return H5T_NATIVE_UINT8;
  default: return -1;
  }
}

const char *mf_h5_path(const mf_h5 *h) { return h->path; }

mf_status mf_h5_create(mf_h5 **out, const char *path) {
  quiet();
  mf_h5 *h = calloc(1, sizeof *h);
  if (!h) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  snprintf(h->path, sizeof h->path, "%s", path);
  snprintf(h->tmp, sizeof h->tmp, "%s.tmp.%d", path, (int)getpid());
  h->file = H5Fcreate(h->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (h->file < 0) {
    free(h);
    return MF_ERR(MF_ERR_IO, "cannot create '%s' (does the directory exist and is it writable?)", path);
  }
  h->writing = 1;
  *out = h;
  return MF_OK;
}

static int fsync_path(const char *p, int dir) {
  int fd = open(p, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return -1;
  int r = fsync(fd);
  close(fd);
  return r;
}

mf_status mf_h5_commit(mf_h5 *h) {
  mf_status st = MF_OK;
  if (H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(h->file) < 0) {
    st = MF_ERR(MF_ERR_IO, "writing '%s' failed (disk full?)", h->path);
  } else if (fsync_path(h->tmp, 0) != 0) {
    st = MF_ERR(MF_ERR_IO, "fsync '%s': %s", h->tmp, strerror(errno));
  } else if (rename(h->tmp, h->path) != 0) {
    st = MF_ERR(MF_ERR_IO, "rename to '%s': %s", h->path, strerror(errno));
  } else {
    char d[1024];
    snprintf(d, sizeof d, "%s", h->path);
    fsync_path(dirname(d), 1); /* make the rename itself durable */
  }
  if (st != MF_OK) unlink(h->tmp);
  free(h);
  return st;
}

void mf_h5_abort(mf_h5 *h) {
  if (!h) return;
  H5Fclose(h->file);
  if (h->writing) unlink(h->tmp);
  free(h);
}

mf_status mf_h5_open(mf_h5 **out, const char *path) {
  quiet();
  if (access(path, R_OK) != 0)
    return MF_ERR(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  htri_t is = H5Fis_hdf5(path);
  if (is <= 0)
    return MF_ERR(MF_ERR_FORMAT, "'%s' is not an HDF5 file (truncated or corrupt?)", path);
  mf_h5 *h = calloc(1, sizeof *h);
  if (!h) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  snprintf(h->path, sizeof h->path, "%s", path);
  h->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (h->file < 0) {
    free(h);
    return MF_ERR(MF_ERR_FORMAT, "'%s' cannot be read as HDF5 (truncated or corrupt?)", path);
  }
  *out = h;
  return MF_OK;
}

void mf_h5_close(mf_h5 *h) {
  if (!h) return;
  H5Fclose(h->file);
  free(h);
}

int mf_h5_exists(mf_h5 *h, const char *path) {
  /* H5Lexists needs each parent to exist: walk the path */
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (H5Lexists(h->file, buf, H5P_DEFAULT) <= 0) return 0;
    *p = '/';
  }
  return H5Lexists(h->file, buf, H5P_DEFAULT) > 0;
}

mf_status mf_h5_write(mf_h5 *h, const char *path, mf_dtype dt, const void *data, int ndim,
                      const int64_t *shape) {
  hsize_t dims[MF_MAX_DIMS];
  for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t space = H5Screate_simple(ndim, dims, NULL);
  hid_t ds = H5Dcreate2(h->file, path, h5type(dt), space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  herr_t w = ds >= 0 ? H5Dwrite(ds, h5type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : -1;
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(lcpl);
  if (w < 0) return MF_ERR(MF_ERR_IO, "writing %s to '%s' failed (disk full?)", path, h->path);
  return MF_OK;
}

mf_status mf_h5_shape(mf_h5 *h, const char *path, int *ndim, int64_t *shape) {
  if (!mf_h5_exists(h, path))
    return MF_ERR(MF_ERR_FORMAT, "'%s' has no dataset %s", h->path, path);
  hid_t ds = H5Dopen2(h->file, path, H5P_DEFAULT);
  if (ds < 0) return MF_ERR(MF_ERR_FORMAT, "'%s': %s is not a dataset", h->path, path);
  hid_t space = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(space);
  hsize_t dims[16];
  if (nd < 0 || nd > MF_MAX_DIMS) {
    H5Sclose(space);
    H5Dclose(ds);
    return MF_ERR(MF_ERR_FORMAT, "'%s': %s has %d dimensions (at most %d)", h->path, path, nd, MF_MAX_DIMS);
  }
  H5Sget_simple_extent_dims(space, dims, NULL);
  *ndim = nd;
  for (int i = 0; i < nd; i++) shape[i] = (int64_t)dims[i];
  H5Sclose(space);
  H5Dclose(ds);
  return MF_OK;
}

static void shape_str(char *b, size_t n, int nd, const int64_t *s) {
  size_t o = (size_t)snprintf(b, n, "[");
  for (int i = 0; i < nd && o < n; i++) o += (size_t)snprintf(b + o, n - o, i ? ", %lld" : "%lld", (long long)s[i]);
  if (o < n) snprintf(b + o, n - o, "]");
}

mf_status mf_h5_read(mf_h5 *h, const char *path, mf_dtype dt, void *dst, int ndim,
                     const int64_t *shape) {
  int nd;
  int64_t got[MF_MAX_DIMS];
  MF_TRY(mf_h5_shape(h, path, &nd, got));
  int same = nd == ndim;
  for (int i = 0; same && i < nd; i++) same = got[i] == shape[i];
  if (!same) {
    char a[96], b[96];
    shape_str(a, sizeof a, nd, got);
    shape_str(b, sizeof b, ndim, shape);
    return MF_ERR(MF_ERR_SHAPE, "'%s': %s has shape %s, expected %s", h->path, path, a, b);
  }
  hid_t ds = H5Dopen2(h->file, path, H5P_DEFAULT);
  herr_t r = H5Dread(ds, h5type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
  H5Dclose(ds);
  if (r < 0) return MF_ERR(MF_ERR_FORMAT, "'%s': reading %s failed (corrupt file?)", h->path, path);
  return MF_OK;
}

mf_status mf_h5_read_range(mf_h5 *h, const char *path, mf_dtype dt, void *dst, int64_t start,
                           int64_t count) {
  int nd;
  int64_t got[MF_MAX_DIMS];
  MF_TRY(mf_h5_shape(h, path, &nd, got));
  if (nd != 1 || start < 0 || start + count > got[0])
    return MF_ERR(MF_ERR_FORMAT, "'%s': %s: range [%lld, %lld) outside the dataset", h->path, path,
                  (long long)start, (long long)(start + count));
  hid_t ds = H5Dopen2(h->file, path, H5P_DEFAULT);
  hid_t fs = H5Dget_space(ds);
  hsize_t off = (hsize_t)start, cnt = (hsize_t)count;
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, &off, NULL, &cnt, NULL);
  hid_t ms = H5Screate_simple(1, &cnt, NULL);
  herr_t r = H5Dread(ds, h5type(dt), ms, fs, H5P_DEFAULT, dst);
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(ds);
  if (r < 0) return MF_ERR(MF_ERR_FORMAT, "'%s': reading %s failed (corrupt file?)", h->path, path);
  return MF_OK;
}

/* ---- attributes ---- */

static hid_t open_obj(mf_h5 *h, const char *obj, int create) {
  if (strcmp(obj, "/") == 0) return H5Oopen(h->file, "/", H5P_DEFAULT);
  if (!mf_h5_exists(h, obj)) {
    if (!create) return -1;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(h->file, obj, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    return g;
  }
  return H5Oopen(h->file, obj, H5P_DEFAULT);
}

static mf_status set_attr(mf_h5 *h, const char *obj, const char *name, hid_t type, const void *v) {
  hid_t o = open_obj(h, obj, 1);
  if (o < 0) return MF_ERR(MF_ERR_IO, "'%s': cannot create %s", h->path, obj);
  if (H5Aexists(o, name) > 0) H5Adelete(o, name);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(o, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t r = a >= 0 ? H5Awrite(a, type, v) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Oclose(o);
  if (r < 0) return MF_ERR(MF_ERR_IO, "'%s': writing attribute %s of %s failed", h->path, name, obj);
  return MF_OK;
}

mf_status mf_h5_set_str(mf_h5 *h, const char *obj, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(value) + 1); /* fixed-length: h5dump and h5py read it plainly */
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  mf_status st = set_attr(h, obj, name, t, value);
  H5Tclose(t);
  return st;
}

mf_status mf_h5_set_i64(mf_h5 *h, const char *obj, const char *name, int64_t v) {
  return set_attr(h, obj, name, H5T_NATIVE_INT64, &v);
}

mf_status mf_h5_set_f64(mf_h5 *h, const char *obj, const char *name, double v) {
  return set_attr(h, obj, name, H5T_NATIVE_DOUBLE, &v);
}

int mf_h5_has_attr(mf_h5 *h, const char *obj, const char *name) {
  hid_t o = open_obj(h, obj, 0);
  if (o < 0) return 0;
  int r = H5Aexists(o, name) > 0;
  H5Oclose(o);
  return r;
}

static hid_t open_attr(mf_h5 *h, const char *obj, const char *name, hid_t *o) {
  *o = open_obj(h, obj, 0);
  if (*o < 0) return -1;
  if (H5Aexists(*o, name) <= 0) {
    H5Oclose(*o);
    return -1;
  }
  return H5Aopen(*o, name, H5P_DEFAULT);
}

mf_status mf_h5_get_str(mf_h5 *h, const char *obj, const char *name, char **value) {
  hid_t o, a = open_attr(h, obj, name, &o);
  if (a < 0) return MF_ERR(MF_ERR_FORMAT, "'%s' has no attribute %s on %s (not an mforge file?)", h->path, name, obj);
  hid_t ft = H5Aget_type(a);
  mf_status st = MF_OK;
  if (H5Tget_class(ft) != H5T_STRING) {
    st = MF_ERR(MF_ERR_FORMAT, "'%s': attribute %s of %s is not a string", h->path, name, obj);
  } else if (H5Tis_variable_str(ft) > 0) {
    char *s = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    if (H5Aread(a, mt, &s) < 0 || !s) st = MF_ERR(MF_ERR_FORMAT, "'%s': cannot read %s", h->path, name);
    else *value = strdup(s);
    if (s) H5free_memory(s);
    H5Tclose(mt);
  } else {
    size_t n = H5Tget_size(ft);
    char *s = calloc(n + 1, 1);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, n + 1);
    if (!s || H5Aread(a, mt, s) < 0) {
      free(s);
      st = MF_ERR(MF_ERR_FORMAT, "'%s': cannot read %s", h->path, name);
    } else {
      *value = s;
    }
    H5Tclose(mt);
  }
  H5Tclose(ft);
  H5Aclose(a);
  H5Oclose(o);
  return st;
}

static mf_status get_num(mf_h5 *h, const char *obj, const char *name, hid_t type, void *v) {
  hid_t o, a = open_attr(h, obj, name, &o);
  if (a < 0) return MF_ERR(MF_ERR_FORMAT, "'%s' has no attribute %s on %s (not an mforge file?)", h->path, name, obj);
  herr_t r = H5Aread(a, type, v);
  H5Aclose(a);
  H5Oclose(o);
  if (r < 0) return MF_ERR(MF_ERR_FORMAT, "'%s': attribute %s of %s is not a number", h->path, name, obj);
  return MF_OK;
}

mf_status mf_h5_get_i64(mf_h5 *h, const char *obj, const char *name, int64_t *v) {
  return get_num(h, obj, name, H5T_NATIVE_INT64, v);
}

mf_status mf_h5_get_f64(mf_h5 *h, const char *obj, const char *name, double *v) {
  return get_num(h, obj, name, H5T_NATIVE_DOUBLE, v);
}

long mf_h5_group_size(mf_h5 *h, const char *group) {
  if (!mf_h5_exists(h, group)) return -1;
  H5G_info_t info;
  if (H5Gget_info_by_name(h->file, group, &info, H5P_DEFAULT) < 0) return -1;
  return (long)info.nlinks;
}
