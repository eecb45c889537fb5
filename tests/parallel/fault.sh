#!/usr/bin/env bash
# Failures under mpirun end the whole job in bounded time with a message that names the
# rank and the cause, and leave no half-written checkpoint:
#   a rank exits mid-step (exit(3)); a rank fails with an error; a rank hangs (the others
#   time out in their collective); a config mistake every rank makes (exit 2, no abort).
source "$(dirname "$0")/lib.sh"
LIMIT=90   # seconds; each case must end well within it

# fault NAME SPEC [env...]: the fault binary on 2 ranks, a checkpoint every 2 steps
fault() {
  local name="$1" spec="$2"
  shift 2
  local t0=$SECONDS
  env MF_FAULT="$spec" "$@" timeout $LIMIT $MPIRUN -np 2 "$FAULT" "$CFG" --set run.dir="$TMP/$name" \
    --set data.dir="$DATA" --set train.threads=1 --set train.ckpt_every=2 >"$TMP/$name.log" 2>&1
  rc=$?
  el=$((SECONDS - t0))
  echo "$name: exit $rc after ${el}s; $(grep -E 'fault injection|mforge: error|exited on signal|Exit code|MPI_ABORT' "$TMP/$name.log" | head -4 | tr '\n' '|')"
  [ $rc -ne 0 ] && ok || bad "$name: the job succeeded"
  [ $rc -ne 124 ] && [ $el -lt $LIMIT ] && ok || bad "$name: not ended within ${LIMIT}s"
  # the last checkpoint (step 2) is whole and loads; no temporary file is left behind
  "$MF" eval "$TMP/$name/last.h5" --batches 1 >/dev/null 2>"$TMP/err" && ok || bad "$name: checkpoint: $(cat "$TMP/err")"
  [ "$(state_attr "$name" step)" = 2 ] && ok || bad "$name: last checkpoint is at step $(state_attr "$name" step), want 2"
  ls "$TMP/$name"/*.tmp.* >/dev/null 2>&1 && bad "$name: a temporary checkpoint file was left" || ok
}
expect() { grep -qF -- "$2" "$TMP/$1.log" && ok || { bad "$1: output lacks '$2':"; tail -20 "$TMP/$1.log" >&2; }; }

fault exit "exit:1:3"
expect exit "rank 1: fault injection: exit(3) in the middle of step 3"
grep -qE "exited on signal|Exit code: *3|exit code 3|non-zero status" "$TMP/exit.log" && ok ||
  bad "exit: the launcher did not report rank 1's exit"

fault error "error:1:3"
expect error "mforge: error: rank 1: fault injection: simulated failure in step 3"

fault hang "hang:1:3" MF_COMM_TIMEOUT_S=5
expect hang "rank 1: fault injection: not responding"
expect hang "mforge: error: rank 0: "
expect hang "no progress for"

# a config mistake: every rank reports it, exit 2, MPI ends normally
$MPIRUN -np 2 "$MF" train "$CFG" --set run.dir="$TMP/cfg" --set data.dir="$DATA" --set parallel.tp=3 \
  >"$TMP/cfg.log" 2>&1
rc=$?
[ $rc -eq 2 ] && ok || bad "config mistake: exit $rc, want 2"
expect cfg "mforge: error: rank 0: parallel.tp (3) must divide the number of ranks (2)"
grep -q MPI_ABORT "$TMP/cfg.log" && bad "config mistake: the job was aborted" || ok
report par_fault
