#!/usr/bin/env bash
# Runs the HTTP/JSON request fuzz target for a bounded time from the seed corpus.
#   run_fuzz.sh FUZZ_BINARY SECONDS WORKDIR
# New inputs go to WORKDIR/corpus (the seeds in tests/fuzz/corpus stay as they are); a
# crash leaves WORKDIR/crash-* and fails the test.
set -u
bin="$1"; secs="$2"; work="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$work/corpus"
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
       -dict="$here/http.dict" -artifact_prefix="$work/" "$work/corpus" "$here/corpus" >"$work/fuzz.log" 2>&1
rc=$?
grep -E "stat::number_of_executed_units|stat::new_units_added|^#[0-9]+ +DONE" "$work/fuzz.log" | tr '\n' ' '
echo
if [ $rc -ne 0 ]; then
  echo "fuzz_http: FAILED (exit $rc); log: $work/fuzz.log" >&2
  grep -E "ERROR|SUMMARY|deadly|crash-" "$work/fuzz.log" | head -20 >&2
  exit 1
fi
echo "fuzz_http: ${secs}s, no crash"
