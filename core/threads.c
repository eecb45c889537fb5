#include "core/threads.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int mf_set_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return n;
}

int mf_get_threads(void) { return omp_get_max_threads(); }

/* OpenBLAS built for many CPUs (DYNAMIC_ARCH, as Debian's) picks its kernels once, when it
 * loads, from the CPU's model number; a release older than the CPU does not know it and
 * falls back to its SSE3 kernels ("Prescott"): Debian's 0.3.21 on an AVX-512 Xeon (family
 * 6, model 207) ran our GPT step 2.8x slower than with its SkylakeX kernels. Before any
 * BLAS call (a constructor: libraries' run first, ours before main), a generic choice on
 * a CPU with AVX2/FMA or AVX-512 is switched to the kernels its instructions allow, and
 * OPENBLAS_CORETYPE is exported so child processes (ranks, the PyTorch reference in the
 * benchmarks) get the same (and MF_BLAS_REPLACED, what it replaced, for their notes). A
 * user's OPENBLAS_CORETYPE is left alone. The switch uses OpenBLAS's own start-up entry
 * points (exported by DYNAMIC_ARCH builds; weak, so any other BLAS build links and is left
 * as it is). */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static char g_blas[96] = "OpenBLAS";

/* OpenBLAS's names for x86 kernels without AVX2 (what it falls back to) */
static int generic_core(const char *name) {
  static const char *const old[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                                    "Sandybridge", "Katmai", "Coppermine", "Northwood", "Banias", "Unknown"};
  for (size_t i = 0; i < sizeof old / sizeof *old; i++)
    if (strcasecmp(name, old[i]) == 0) return 1;
  return 0;
}

__attribute__((constructor)) static void pick_blas_kernels(void) {
  const char *have = openblas_get_corename();
  if (!have) have = "Unknown";
  /* a parent's switch, inherited (mforge re-execs itself): "TOOK CHOSEN" */
  const char *rep = getenv("MF_BLAS_REPLACED");
  char took[32] = "", chose[32] = "";
  if (rep && sscanf(rep, "%31s %31s", took, chose) == 2 && strcasecmp(chose, have) == 0)
    snprintf(g_blas, sizeof g_blas, "OpenBLAS %s kernels (it took %s for this CPU)", have, took);
  else
    snprintf(g_blas, sizeof g_blas, "OpenBLAS %s kernels", have);
#if defined(__x86_64__) && defined(__GNUC__)
  if (getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit || !generic_core(have))
    return;
  __builtin_cpu_init();
  const char *want = NULL;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
  if (!want) return;
  snprintf(took, sizeof took, "%s", have);
  setenv("OPENBLAS_CORETYPE", want, 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  have = openblas_get_corename();
  char note[80];
  snprintf(note, sizeof note, "%s %s", took, have);
  setenv("MF_BLAS_REPLACED", note, 1);
  snprintf(g_blas, sizeof g_blas, "OpenBLAS %s kernels (it took %s for this CPU)", have, took);
#endif
}

const char *mf_blas_kernels(void) { return g_blas; }
