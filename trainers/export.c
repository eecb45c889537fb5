/* `mforge export` (see export.h). The file is written with the HDF5 API directly, not
 * core/h5.h, because bf16 needs a custom float type that the thin layer does not expose;
 * the atomic-write rule is the same: temporary name, flush, fsync, rename. */
#include "trainers/export.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/bf16.h"
#include "trainers/checkpoint.h"
#include "trainers/train.h"

/* bf16 as an HDF5 float: fp32's layout cut to its top 16 bits */
static hid_t bf16_type(void) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  if (t < 0) return -1;
  if (H5Tset_fields(t, 15, 7, 8, 0, 7) < 0 || H5Tset_offset(t, 0) < 0 || H5Tset_precision(t, 16) < 0 ||
      H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 127) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

static int attr_str(hid_t obj, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
  H5Tset_size(t, strlen(value) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  int ok = a >= 0 && H5Awrite(a, t, value) >= 0;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return ok;
}

static int attr_i64(hid_t obj, const char *name, int64_t v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
  int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return ok;
}

/* /params/<name>: the stored rows of one parameter, fp32 or bf16 */
static int write_param(hid_t params, const mf_param *p, const float *base, hid_t bf16, uint16_t *scratch) {
  hsize_t dims[MF_MAX_DIMS];
  size_t n = 1;
  for (int i = 0; i < p->t.ndim; i++) {
    dims[i] = (hsize_t)(i == 0 ? p->ckpt_rows : p->t.shape[i]);
    n *= dims[i];
  }
  const float *src = base + p->offset;
  hid_t sp = H5Screate_simple(p->t.ndim, dims, NULL);
  hid_t ft = bf16 >= 0 ? bf16 : H5T_IEEE_F32LE;
  hid_t ds = H5Dcreate2(params, p->name, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int ok = ds >= 0;
  if (ok && bf16 >= 0) {
    for (size_t i = 0; i < n; i++) scratch[i] = mf_f32_to_bf16(src[i]);
    ok = H5Dwrite(ds, bf16, H5S_ALL, H5S_ALL, H5P_DEFAULT, scratch) >= 0 && attr_str(ds, "dtype", "bf16");
  } else if (ok) {
    ok = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) >= 0;
  }
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp);
  return ok;
}

static int fsync_path(const char *p, int dir) {
  int fd = open(p, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return -1;
  int r = fsync(fd);
  close(fd);
  return r;
}

static mf_status write_file(const char *out, const char *tmp, const char *src, const mf_config *cfg,
                            const mf_params *ps, int64_t step, mf_export_dtype dtype) {
  char *yaml = mf_config_dump(cfg);
  size_t maxn = 0;
  for (int i = 0; i < ps->n; i++) {
    size_t n = (size_t)(mf_numel(&ps->p[i].t) / ps->p[i].t.shape[0] * ps->p[i].ckpt_rows);
    if (n > maxn) maxn = n;
  }
  uint16_t *scratch = dtype == MF_EXPORT_BF16 ? malloc(maxn * sizeof *scratch) : NULL;
  if (!yaml || (dtype == MF_EXPORT_BF16 && !scratch)) {
    free(yaml);
    free(scratch);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our one-line messages replace HDF5's stack dumps */
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) {
    free(yaml);
    free(scratch);
    return MF_ERR(MF_ERR_IO, "cannot create '%s' (does the directory exist and is it writable?)", out);
  }
  const char *dname = dtype == MF_EXPORT_BF16 ? "bf16" : "fp32";
  hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
  int ok = root >= 0 && attr_str(root, "format", "mforge-checkpoint") && attr_i64(root, "version", MF_CKPT_VERSION) &&
           attr_str(root, "family", cfg->model.family) && attr_str(root, "kind", "export") &&
           attr_str(root, "dtype", dname) && attr_str(root, "source", src) && attr_i64(root, "step", step);
  if (root >= 0) H5Gclose(root);
  hid_t g = ok ? H5Gcreate2(f, "/config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  ok = g >= 0 && attr_str(g, "yaml", yaml) && attr_str(g, "family", cfg->model.family) &&
       attr_i64(g, "version", MF_CKPT_VERSION) && attr_str(g, "tokenizer", "gpt2");
  if (g >= 0) H5Gclose(g);
  hid_t bf16 = dtype == MF_EXPORT_BF16 ? bf16_type() : -1;
  if (dtype == MF_EXPORT_BF16 && bf16 < 0) ok = 0;
  hid_t pg = ok ? H5Gcreate2(f, "/params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  ok = ok && pg >= 0;
  for (int i = 0; i < ps->n && ok; i++) ok = write_param(pg, &ps->p[i], ps->data, bf16, scratch);
  if (pg >= 0) H5Gclose(pg);
  if (bf16 >= 0) H5Tclose(bf16);
  free(yaml);
  free(scratch);
  ok = ok && H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0;
  ok = H5Fclose(f) >= 0 && ok;
  mf_status st = MF_OK;
  if (!ok) st = MF_ERR(MF_ERR_IO, "writing '%s' failed (disk full?)", out);
  else if (fsync_path(tmp, 0) != 0) st = MF_ERR(MF_ERR_IO, "fsync '%s': %s", tmp, strerror(errno));
  else if (rename(tmp, out) != 0) st = MF_ERR(MF_ERR_IO, "rename to '%s': %s", out, strerror(errno));
  if (st != MF_OK) {
    unlink(tmp);
    return st;
  }
  char d[PATH_MAX];
  snprintf(d, sizeof d, "%s", out);
  fsync_path(dirname(d), 1); /* the rename itself durable */
  return MF_OK;
}

mf_status mf_export(const char *ckpt, const char *out, mf_export_dtype dtype, int force) {
  struct stat so, si;
  if (stat(out, &so) == 0) {
    if (stat(ckpt, &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
      return MF_ERR(MF_ERR_USAGE, "export: the output '%s' is the input checkpoint; choose another -o", out);
    if (!force) return MF_ERR(MF_ERR_USAGE, "export: '%s' exists; pass --force to overwrite it", out);
    if (S_ISDIR(so.st_mode)) return MF_ERR(MF_ERR_USAGE, "export: '%s' is a directory; -o names the model file", out);
  }
  mf_config cfg;
  mf_gpt *g = NULL;
  MF_TRY(mf_model_open(ckpt, &cfg, &g));
  mf_train_state ts;
  int64_t step = 0;
  if (mf_ckpt_load_state(ckpt, &ts) == MF_OK) step = ts.step;
  else mf_error_clear(); /* an export of an export has no /state: its step is unknown */
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
  mf_status st = write_file(out, tmp, ckpt, &cfg, &g->params, step, dtype);
  mf_gpt_free(g);
  return st;
}

int mf_cmd_export(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL, *dt = "fp32";
  int force = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if ((strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--dtype") == 0) && i + 1 >= argc) {
      fprintf(stderr, "mforge: error: export: %s needs a value (see: mforge help)\n", a);
      return 2;
    }
    if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) out = argv[++i];
    else if (strcmp(a, "--dtype") == 0) dt = argv[++i];
    else if (strcmp(a, "--force") == 0) force = 1;
    else if (a[0] == '-' || ckpt) {
      fprintf(stderr, "mforge: error: export: unknown argument '%s' (usage: mforge export CKPT.h5 -o MODEL.h5 "
                      "[--dtype fp32|bf16] [--force])\n", a);
      return 2;
    } else ckpt = a;
  }
  if (!ckpt || !out) {
    fprintf(stderr, "mforge: error: export: expected: mforge export CKPT.h5 -o MODEL.h5 [--dtype fp32|bf16] [--force]\n");
    return 2;
  }
  mf_export_dtype dtype;
  if (strcmp(dt, "fp32") == 0) dtype = MF_EXPORT_FP32;
  else if (strcmp(dt, "bf16") == 0) dtype = MF_EXPORT_BF16;
  else {
    fprintf(stderr, "mforge: error: export: --dtype must be fp32 or bf16, got '%s'\n", dt);
    return 2;
  }
  mf_status st = mf_export(ckpt, out, dtype, force);
  if (st != MF_OK) {
    int code = mf_status_exit_code(st);
    if (code == 2) fprintf(stderr, "mforge: error: %s\n", mf_error_message());
    else fprintf(stderr, "mforge: error: %s [%s]\n", mf_error_message(), mf_error_location());
    return code;
  }
  struct stat s;
  long long bytes = stat(out, &s) == 0 ? (long long)s.st_size : -1;
  printf("exported %s -> %s (%s, %.1f MiB)\n", ckpt, out, dt, bytes / 1048576.0);
  return 0;
}
