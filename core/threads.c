#include "core/threads.h"

#include <cblas.h>
#include <omp.h>

int mf_set_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return n;
}

int mf_get_threads(void) { return omp_get_max_threads(); }
