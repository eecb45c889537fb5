/* `mforge train` with fault injection, for the failure tests (tests/parallel/fault.sh):
 *   test_fault_train CONFIG [--set key=value ...]
 * MF_FAULT="exit:RANK:STEP"  rank RANK calls exit(3) in the middle of step STEP
 *          "error:RANK:STEP" rank RANK fails that step with an error
 *          "hang:RANK:STEP"  rank RANK stops responding in that step
 * The trainer is the real one (mf_train); only this binary installs the hook, so the
 * shipped mforge has no fault switch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "trainers/train.h"

static char kind[16];
static int fault_rank = -1, fault_step = -1;

static mf_status hook(int rank, int step) {
  if (rank != fault_rank || step != fault_step) return MF_OK;
  if (strcmp(kind, "exit") == 0) {
    fprintf(stderr, "rank %d: fault injection: exit(3) in the middle of step %d\n", rank, step);
    fflush(stderr);
    exit(3);
  }
  if (strcmp(kind, "hang") == 0) {
    fprintf(stderr, "rank %d: fault injection: not responding from step %d on\n", rank, step);
    fflush(stderr);
    for (;;) sleep(1000);
  }
  return MF_ERR(MF_ERR_BACKEND, "fault injection: simulated failure in step %d", step);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_fault_train CONFIG [--set key=value ...]\n");
    return 2;
  }
  const char *f = getenv("MF_FAULT");
  if (f && sscanf(f, "%15[a-z]:%d:%d", kind, &fault_rank, &fault_step) == 3) mf_train_set_hook(hook);
  mf_config cfg;
  mf_config_defaults(&cfg);
  mf_status st = mf_config_load(&cfg, argv[1]);
  for (int i = 2; i < argc && st == MF_OK; i++) {
    if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) st = mf_config_set(&cfg, argv[++i]);
    else if (strcmp(argv[i], "--resume") == 0) snprintf(cfg.resume, sizeof cfg.resume, "auto");
  }
  if (st == MF_OK) st = mf_train(&cfg);
  if (st != MF_OK) {
    fprintf(stderr, "mforge: error: %s\n", mf_error_message());
    return mf_status_exit_code(st);
  }
  return 0;
}
