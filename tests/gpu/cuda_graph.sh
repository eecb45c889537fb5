#!/usr/bin/env bash
# cuda_graph: true on a real GPU (tests/gpu/run.sh step 3d): the tiny test model trains with
# the micro-step replayed as a CUDA graph and without, fp32 and bf16, 2 micro-steps per
# step; the losses and gradient norms must agree (bit for bit is expected: the same kernels
# on the same data; 1e-6 relative is allowed in case cuBLASLt picks differently), and the
# median ms/step of both is printed (steps 3.. only: the first ones capture).
# Usage: tests/gpu/cuda_graph.sh MFORGE DATA
set -uo pipefail
MF="$1"
DATA="$2"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d /tmp/mf_graph.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
RC=0
run() { # DIR ARGS...: the tiny model on the GPU for 40 steps
  "$MF" train "$ROOT/tests/configs/tiny_test.yaml" --set run.dir="$1" --set data.dir="$DATA" --set device=cuda \
    --set train.steps=40 --set train.eval_every=0 --set train.eval_batches=1 --set train.ckpt_every=0 "${@:2}" \
    >"$1.out" 2>&1
}
# median ms_per_step of steps >= 3
ms() { grep '"loss"' "$1/metrics.jsonl" | awk -F'"ms_per_step":' '{split($2, a, ","); s = $0;
  sub(/.*"step":/, "", s); sub(/,.*/, "", s); if (s + 0 >= 3) print a[1] }' | sort -g |
  awk '{v[NR] = $1} END { print NR ? (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) : "?" }'; }
# the largest relative difference of loss and grad_norm between two runs, and whether all are equal
cmp_runs() {
  paste <(grep '"loss"' "$1/metrics.jsonl") <(grep '"loss"' "$2/metrics.jsonl") | awk '
    function val(s, k) { if (!match(s, "\"" k "\":[-0-9.eE+]+")) return "x"; return substr(s, RSTART + length(k) + 3, RLENGTH - length(k) - 3) }
    { split($0, h, "\t"); for (i = 0; i < 2; i++) { k = i ? "grad_norm" : "loss"; a = val(h[1], k); b = val(h[2], k)
        if (a != b) same = 0; d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a; r = m > 0 ? d / m : d; if (r > worst) worst = r }
      n++ }
    BEGIN { same = 1; worst = 0 } END { printf "%d %s %g\n", n, same ? "bitwise" : "different", worst }'
}
for prec in fp32 bf16; do
  mkdir -p "$TMP/$prec"
  g="$TMP/$prec/graph" e="$TMP/$prec/eager"
  run "$g" --set precision=$prec --set cuda_graph=true || { echo "FAIL: $prec graph run: $(tail -n 3 "$g.out")"; RC=1; continue; }
  run "$e" --set precision=$prec || { echo "FAIL: $prec eager run: $(tail -n 3 "$e.out")"; RC=1; continue; }
  read -r n how worst <<<"$(cmp_runs "$g" "$e")"
  echo "cuda_graph $prec: $(grep 'cuda graph:' "$g.out"); $n steps: losses and grad norms $how (max rel diff $worst);" \
       "ms/step median: graph $(ms "$g"), eager $(ms "$e")"
  if [ "$n" != 40 ] || ! awk -v w="$worst" 'BEGIN { exit !(w <= 1e-6) }'; then
    echo "FAIL: cuda_graph $prec: the runs disagree"
    RC=1
  fi
done
exit $RC
