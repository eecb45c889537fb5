#!/usr/bin/env bash
# Data-parallel scaling on this machine, same global batch:
#   A  1 process  x 2 threads                     (micro-batch = the global batch)
#   B  2 ranks    x 1 thread, buckets overlapped with backward (parallel.bucket_mb)
#   C  2 ranks    x 1 thread, one all-reduce after backward (parallel.bucket_mb: 0)
# Runs alternate A B C A B C ... (shared machines drift); each run's step time is the
# median ms_per_step over its steps after the first two; printed: every round, then the
# median over rounds of the ratios A/B (DP speed-up) and C/B (overlap over after-backward).
# Separate runs see different load; benchmarks/dp_overlap (run last) alternates B and C
# step by step inside one pair of processes, the steadier figure for overlap.
#   benchmarks/dp_scaling.sh [--rounds 3] [--steps 12] [--bucket-mb 1] [--set key=value ...]
# Defaults: the gpt2_tiny shape (L4 H4 C128, 7.2M parameters), batch 16 x 64 tokens, on the
# moby-dick data (prepared into build/benchdata on first use).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
MF=${MF:-$root/build/mforge}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe"}
rounds=3 steps=12 bucket=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --bucket-mb) bucket=$2; shift 2 ;;
    --set) extra+=(--set "$2"); shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--steps N] [--bucket-mb MB] [--set key=value ...]" >&2; exit 2 ;;
  esac
done
data=${DATA:-$root/build/benchdata}
[ -f "$data/moby-dick/train.h5" ] || "$MF" data prepare moby-dick --out "$data" >/dev/null
tmp=$(mktemp -d /tmp/mf_dp_scaling.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/cfg.yaml" <<YAML
run: {dir: $tmp/run, seed: 1, log_every: 1, progress: false}
model: {n_layer: 4, n_head: 4, n_embd: 128, block_size: 64}
data: {name: moby-dick, dir: $data}
train: {steps: $steps, batch_size: 16, micro_batch_size: 16, seq_len: 64, lr: 1e-3, warmup_steps: 2,
        eval_every: 0, eval_batches: 1, ckpt_every: 0}
YAML

# median ms/step of the last run (steps 3..N)
ms() { grep '"loss"' "$tmp/run/metrics.jsonl" | sed -E 's/.*"ms_per_step":([^,]+),.*/\1/' | tail -n +3 | sort -g |
       awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
one() { rm -rf "$tmp/run"; "$@" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }; ms; }

echo "# DP scaling: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ms/step (median of steps 3-$steps)"
printf "# %-6s %12s %12s %12s %10s %10s\n" round "A:1x2thr" "B:2x1 overlap" "C:2x1 after" "A/B" "C/B"
ra=() rc=()
for r in $(seq 1 "$rounds"); do
  a=$(one "$MF" train "$tmp/cfg.yaml" --set train.threads=2 "${extra[@]}")
  b=$(one $MPIRUN -np 2 "$MF" train "$tmp/cfg.yaml" --set train.threads=1 --set train.micro_batch_size=8 \
        --set parallel.bucket_mb="$bucket" "${extra[@]}")
  c=$(one $MPIRUN -np 2 "$MF" train "$tmp/cfg.yaml" --set train.threads=1 --set train.micro_batch_size=8 \
        --set parallel.bucket_mb=0 "${extra[@]}")
  x=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')
  y=$(awk -v c="$c" -v b="$b" 'BEGIN { printf "%.3f", c / b }')
  ra+=("$x"); rc+=("$y")
  printf "  %-6s %12.1f %12.1f %12.1f %10s %10s\n" "$r" "$a" "$b" "$c" "$x" "$y"
done
med() { printf "%s\n" "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "# median A/B (2 ranks x 1 thread vs 1 x 2 threads; > 1: DP faster): $(med "${ra[@]}")"
echo "# median C/B (overlapped buckets vs all-reduce after backward; > 1: overlap faster): $(med "${rc[@]}")"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
ov="$(dirname "$MF")/benchmarks/dp_overlap"
if [ -x "$ov" ]; then
  echo "# paired, one run: $MPIRUN -np 2 $ov --pairs 10 --bucket-mb $bucket (load $(cut -d' ' -f1 /proc/loadavg))"
  $MPIRUN -np 2 "$ov" --pairs 10 --bucket-mb "$bucket" | grep '^#'
fi
