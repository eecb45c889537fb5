# Shared helpers for the end-to-end shell tests. Sourced with: MF (the mforge binary),
# DATA (the prepared test data dir) set by the caller's arguments.
set -u
MF="$1"
DATA="$2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CFG="$ROOT/tests/configs/tiny_test.yaml"
TMP="$(mktemp -d /tmp/mf_e2e.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT
checks=0
failed=0

ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect_user_error NAME PATTERN CMD...: exit code 2, exactly one stderr line starting
# with "mforge: error:" that contains PATTERN, and no crash.
expect_user_error() {
  local name="$1" pat="$2"
  shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$TMP/err")
  if [ $rc -ne 2 ]; then bad "$name: exit code $rc (want 2): $(head -c 300 "$TMP/err")"; return; fi
  if [ "$lines" -ne 1 ]; then bad "$name: $lines stderr lines (want 1): $(head -c 300 "$TMP/err")"; return; fi
  if ! grep -q "^mforge: error: " "$TMP/err"; then bad "$name: no 'mforge: error:' prefix: $(cat "$TMP/err")"; return; fi
  if ! grep -qF -- "$pat" "$TMP/err"; then bad "$name: message lacks '$pat': $(cat "$TMP/err")"; return; fi
  echo "ok: $name -> $(cat "$TMP/err")"
  ok
}

report() {
  echo "$1: $checks checks, $failed failed"
  [ $failed -eq 0 ]
}

# train_tiny DIR [--set ...]: trains the tiny test model into DIR
train_tiny() {
  local dir="$1"
  shift
  "$MF" train "$CFG" --set run.dir="$dir" --set data.dir="$DATA" "$@"
}

# train_tiny_bg DIR [--set ...]: the same in the background; $! is mforge's own pid, so
# signals reach the trainer and not a wrapping shell
train_tiny_bg() {
  local dir="$1"
  shift
  (exec "$MF" train "$CFG" --set run.dir="$dir" --set data.dir="$DATA" "$@") &
}
