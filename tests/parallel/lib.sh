# Helpers for the multi-rank trainer tests. Arguments: MF DATA "MPIRUN..." CKPT_COMPARE
# FAULT_BIN (tests/parallel.cmake passes them). Sources the e2e helpers (TMP, ok, bad,
# report, CFG).
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
MPIRUN="$3"
CMP="$4"
FAULT="$5"

# run NAME NP [--set ...]: the tiny test model, 1 thread per rank, into $TMP/NAME
run() {
  local name="$1" np="$2"
  shift 2
  local cmd=("$MF" train "$CFG" --set run.dir="$TMP/$name" --set data.dir="$DATA" --set train.threads=1 "$@")
  if [ "$np" = 1 ]; then "${cmd[@]}" >"$TMP/$name.log" 2>&1
  else $MPIRUN -np "$np" "${cmd[@]}" >"$TMP/$name.log" 2>&1; fi
  local rc=$?
  [ $rc -eq 0 ] || bad "$name (np $np $*): exit $rc: $(tail -5 "$TMP/$name.log")"
  return $rc
}

# "step loss" lines of a run's metrics
losses() { grep '"loss"' "$TMP/$1/metrics.jsonl" | sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/'; }
val_loss() { grep '"val_loss"' "$TMP/$1/metrics.jsonl" | tail -1 | sed -E 's/.*"val_loss":([^,]+),.*/\1/'; }

# same_losses A B FROM TO [TOL]: steps FROM..TO present in both, relative difference <= TOL
# (default 1e-5)
same_losses() {
  local a="$1" b="$2" from="$3" to="$4" tol="${5:-1e-5}" out
  out=$(join <(losses "$a" | sort -k1,1) <(losses "$b" | sort -k1,1) | sort -n | awk -v f="$from" -v t="$to" -v tol="$tol" '
    $1 >= f && $1 <= t { n++; d = $2 - $3; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > m) m = r }
    END { printf "%d %.3g", n, m; exit !(n == t - f + 1 && m <= tol) }')
  local rc=$?
  if [ $rc -eq 0 ]; then ok; echo "ok: losses $a vs $b, steps $from-$to: $out (steps, max relative difference)"
  else bad "losses $a vs $b, steps $from-$to: $out (steps, max relative difference)"
    paste <(losses "$a") <(losses "$b") >&2; fi
}

# same_params A B [--optim]: checkpoints agree (relative L2 <= 1e-5; elements to 1e-5)
same_params() {
  local a="$1" b="$2"
  shift 2
  if "$CMP" "$TMP/$a/last.h5" "$TMP/$b/last.h5" "$@" >"$TMP/cmp.out" 2>&1; then
    ok; echo "ok: params $a vs $b: $(grep 'relative L2' "$TMP/cmp.out" | tr '\n' ' ')"
  else bad "params $a vs $b:"; cat "$TMP/cmp.out" >&2; fi
}

state_attr() { h5dump -a "/state/$2" "$TMP/$1/last.h5" | grep -oE '\(0\): -?[0-9]+' | grep -oE -- '-?[0-9]+$'; }
