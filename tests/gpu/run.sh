#!/usr/bin/env bash
# The GPU checks: the one prepared script a lent GPU machine runs, inside a time budget
# (MF_GPU_BUDGET seconds, default 540: one device call of at most 600 s).
#
# On the GPU machine's image (CUDA, PyTorch; no HDF5, libyaml, OpenBLAS or Open MPI, and no
# installs) the full build is possible only from the bundle that tests/gpu/bundle.sh prepares
# on a machine without a GPU:
#   here:    tests/gpu/bundle.sh                 (.gpu_bundle.tgz, git-ignored)
#   device:  run command "tests/gpu/run.sh", carry [".gpu_bundle.tgz"]
# The bundle is used when its source hash (tests/gpu/srchash.sh) matches this tree and its
# mforge starts here; otherwise the script builds: the CMake build when the dependencies are
# installed, else a direct nvcc/gcc build of the op checks alone (steps 3+ are then skipped).
#
# Steps, in order of what they prove (each under a timeout cut to the budget left; what does
# not fit is reported "skipped: out of time"):
#   ops        tests/gpu/test_gpu_ops: every CUDA op (cuBLASLt matmul included) vs its CPU twin on
#              fresh random inputs, outputs poisoned; a table, "test_gpu_ops: N checks, M failed"
#   trainer    tests/e2e/cuda_emu.sh with the real mforge: device: cuda (fp32, recompute 2, bf16)
#              trains to the CPU's losses and grad norms; checkpoints move CPU <-> GPU
#   bench      benchmarks/gpt_train --device cuda: GPT-2 124M, T 1024, bf16, the largest micro-batch
#              that fits both (--B max), vs PyTorch (autocast
#              bf16, fused AdamW, SDPA) on this GPU, then ours as a CUDA graph
#   graph      tests/gpu/cuda_graph.sh: cuda_graph: true vs eager steps (fp32, bf16), ms/step
#   parallel   tests/parallel/cuda_emu.sh with the real mforge: DP, ZeRO-1, TP 2, DP 2 x TP 2 on the
#              GPU vs one process (NCCL with 2+ GPUs; the staged communicator on one)
#   nccl       tests/gpu/nccl.sh: every collective of the NCCL communicator vs the host one
#   kernels    benchmarks/gpu_kernels: each op's time, GB/s, TFLOP/s at GPT-2 124M shapes
#   bench_tc   the bf16 benchmark again with PyTorch under torch.compile
#   bench_fp32 the fp32 benchmark (TF32 off on both sides)
# MF_GPU_STEPS=ops,trainer,... runs only those steps (a second, shorter call after a fix).
# Without a GPU it builds (or checks the bundle) and reports every step "skipped: no GPU".
# Usage: tests/gpu/run.sh [build-dir]. Logs: $OUT/gpu_logs.tgz and $OUT/summary.txt (the device
# tool brings back at most 8 files), else under the build dir. Exit 0 when no step failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${1:-build-gpu}
BUDGET=${MF_GPU_BUDGET:-540}
T0=$(date +%s)
LOG=$(mktemp -d /tmp/mf_gpu_logs.XXXXXX)
export MF_GPU_LOG=$LOG # nccl.sh logs there too
JOBS=$(nproc 2>/dev/null || echo 4)
say() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
STEPS=()
note() { STEPS+=("$(printf '%-11s %-30s %5ss  %s' "$1" "$2" "$3" "${4:-}")"); } # NAME STATUS SECONDS DETAIL
RC=0
finish() {
  {
    echo "== summary ($(( $(date +%s) - T0 ))s of a ${BUDGET}s budget; logs: gpu_logs.tgz)"
    printf '%-11s %-30s %6s  %s\n' step status time detail
    printf '%s\n' "${STEPS[@]}"
  } | tee "$LOG/summary.txt"
  if [ -n "${OUT:-}" ]; then
    cp "$LOG/summary.txt" "$OUT/summary.txt"
    tar -czf "$OUT/gpu_logs.tgz" -C "$LOG" . 2>/dev/null
  else
    mkdir -p "$BUILD" && cp -r "$LOG"/. "$BUILD/" 2>/dev/null && echo "logs in $BUILD"
  fi
  exit $RC
}

NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
NGPU=${NGPU:-0}
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${ARCH:-90}
say "GPU: $([ "$NGPU" -gt 0 ] && nvidia-smi -L | head -1 || echo none) ($NGPU); sm_$ARCH; $JOBS cores;" \
    "nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p'); $(grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null | cut -d'"' -f2)"

# ---- 1. binaries: the bundle, else a build here ----
BIN="" KBENCH="" FULL=0
t=$(date +%s)
if [ -f .gpu_bundle.tgz ]; then
  B=/tmp/mf_gpu_bundle
  rm -rf "$B" && mkdir -p "$B" && tar -xzf .gpu_bundle.tgz -C "$B"
  want=$(tests/gpu/srchash.sh) have=$(cat "$B/srchash" 2>/dev/null)
  if [ "$want" != "$have" ]; then
    say "bundle ignored: built from other sources (hash $have, this tree $want); rebuild it with tests/gpu/bundle.sh"
  elif ! (source "$B/env.sh" && "$B/build/mforge" config-help >/dev/null 2>"$LOG/bundle_start.log"); then
    say "bundle ignored: its mforge does not start here: $(head -c 300 "$LOG/bundle_start.log")"
  else
    # shellcheck disable=SC1091
    source "$B/env.sh"
    BUILD=$B/build BIN=$BUILD/tests/test_gpu_ops KBENCH=$BUILD/benchmarks/gpu_kernels FULL=1
    say "using the bundle: $(head -1 "$B/MANIFEST"); $(sed -n 2p "$B/MANIFEST")"
    note build "bundle" $(( $(date +%s) - t )) "$(head -1 "$B/MANIFEST")"
  fi
fi
if [ -z "$BIN" ]; then
  mkdir -p "$BUILD"
  if cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
       -DMF_CUDA_EMULATION=OFF -DMF_NATIVE=ON >"$LOG/cmake.log" 2>&1 && grep -q "CUDA backend ON" "$LOG/cmake.log"; then
    say "CMake configured; building"
    if cmake --build "$BUILD" -j "$JOBS" --target test_gpu_ops gpu_kernels mforge gpt_train ckpt_compare \
         >"$LOG/build.log" 2>&1; then
      BIN=$BUILD/tests/test_gpu_ops KBENCH=$BUILD/benchmarks/gpu_kernels FULL=1
      cmake --build "$BUILD" -j "$JOBS" --target test_nccl >>"$LOG/build.log" 2>&1 || true
      note build "cmake" $(( $(date +%s) - t ))
    else
      tail -30 "$LOG/build.log"
      note build "FAILED" $(( $(date +%s) - t )) "see build.log"
      RC=1
      finish
    fi
  else
    # direct build (the GPU image lacks HDF5/libyaml/... that the full build needs)
    say "CMake unavailable ($(grep -m1 -i 'error\|could not' "$LOG/cmake.log" || echo 'no CUDA')); direct build of the op checks"
    SB=$BUILD/direct
    mkdir -p "$SB"
    NV="nvcc -std=c++17 -O3 -arch=sm_$ARCH -Werror=all-warnings -I$ROOT"
    CC="gcc -std=gnu11 -O3 -march=native -fno-math-errno -fopenmp -D_GNU_SOURCE -I$ROOT"
    BLAS="-lopenblas"
    for d in /usr/include/x86_64-linux-gnu /usr/include/openblas /usr/include; do
      [ -f "$d/cblas.h" ] && CC="$CC -I$d" && break
    done
    if ! echo 'int main(void){return 0;}' | gcc -x c - -lopenblas -o "$SB/blas_probe" 2>/dev/null ||
       ! echo '#include <cblas.h>' | $CC -E -x c - >/dev/null 2>&1; then
      say "no BLAS on this machine: CPU matmul reference from tests/gpu/shim"
      CC="$CC -I$ROOT/tests/gpu/shim"
      BLAS=""
      $CC -c tests/gpu/shim/cblas_shim.c -o "$SB/cblas_shim.o" || exit 1
    fi
    pids=()
    for f in kernels/cuda/*.cu tests/gpu/test_gpu_ops.cu; do
      b=$(basename "$f" .cu)
      ( $NV -c "$f" -o "$SB/$b.o" >"$SB/$b.log" 2>&1 || { cat "$SB/$b.log"; exit 1; } ) &
      pids+=($!)
    done
    ok=1
    for f in encoder layernorm matmul gelu residual attention softmax_xent tp_xent adamw vecmath; do
      $CC -c "kernels/cpu/$f.c" -o "$SB/cpu_$f.o" || ok=0
    done
    gcc -std=gnu11 -O2 -I"$ROOT" -c tests/test_util.c -o "$SB/test_util.o" || ok=0
    for p in "${pids[@]}"; do wait "$p" || ok=0; done
    if [ $ok = 1 ] && nvcc -arch=sm_$ARCH -o "$SB/test_gpu_ops" "$SB"/*.o -lcublasLt -lcublas $BLAS -Xcompiler -fopenmp -lm; then
      BIN=$SB/test_gpu_ops
      mkdir -p "$SB/bench"
      $NV -c benchmarks/gpu_kernels.cu -o "$SB/bench/gpu_kernels.o" &&
        nvcc -arch=sm_$ARCH -o "$SB/gpu_kernels" "$SB/bench/gpu_kernels.o" $(ls "$SB"/*.o | grep -v test_gpu_ops.o) \
          -lcublasLt -lcublas $BLAS -Xcompiler -fopenmp -lm && KBENCH=$SB/gpu_kernels
      note build "direct (op checks only)" $(( $(date +%s) - t ))
    else
      note build "FAILED" $(( $(date +%s) - t )) "direct build"
      RC=1
      finish
    fi
  fi
fi
say "built $BIN"

# the PyTorch side of the benchmarks: the python that imports torch with CUDA
MF_PYTHON=""
for p in python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
  if "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    MF_PYTHON=$(command -v "$p"); break
  fi
done
export MF_PYTHON MF_ROOT=$ROOT
[ -n "$MF_PYTHON" ] && say "PyTorch: $MF_PYTHON ($("$MF_PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null))" ||
  say "no python here imports torch with CUDA: the benchmarks run our side only"

# step NAME CAP_S CMD...: runs CMD (output to the terminal and LOG/NAME.log) under a timeout of
# min(CAP_S, budget left - 15); records passed / FAILED / timed out / skipped
step() {
  local name=$1 cap=$2 lim s rc
  shift 2
  if [ -n "${MF_GPU_STEPS:-}" ] && [[ ",$MF_GPU_STEPS," != *",$name,"* ]]; then note "$name" "skipped: not in MF_GPU_STEPS" 0; return; fi
  if [ "$NGPU" -eq 0 ]; then note "$name" "skipped: no GPU" 0; return; fi
  lim=$(( $(left) - 15 ))
  [ "$lim" -gt "$cap" ] && lim=$cap
  if [ "$lim" -lt 20 ]; then note "$name" "skipped: out of time" 0; return; fi
  say "$name (up to ${lim}s): $*"
  s=$(date +%s)
  timeout --kill-after=5 "$lim" "$@" 2>&1 | tee "$LOG/$name.log"
  rc=${PIPESTATUS[0]}
  local detail
  detail=$(grep -E '^(test_gpu_ops|[a-z_ ]+): [0-9]+ checks|^# MFU|^124m|^cuda_graph|^FAIL|^# --B max' "$LOG/$name.log" | head -4 |
    sed 's/^# --B max, [^:]*: //' | tr '\n' ';' | cut -c1-240)
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then note "$name" "timed out" $(( $(date +%s) - s )) "$detail"; RC=1
  elif [ "$rc" = 0 ]; then note "$name" "passed" $(( $(date +%s) - s )) "$detail"
  else note "$name" "FAILED ($rc)" $(( $(date +%s) - s )) "$detail"; RC=1; fi
}
# benchmarks never fail the run: a slow or failed benchmark is reported, the checks decide
bench() { local rc0=$RC; step "$@"; RC=$rc0; }

# ---- 2. the op checks ----
if [ "$NGPU" -eq 0 ]; then "$BIN" 2>&1 | tail -2; fi
step ops 150 "$BIN"

# ---- 3+. the trainer, benchmarks, graphs, parallel, NCCL (need mforge: the bundle or CMake) ----
DATA=${MF_BUNDLE:+$MF_BUNDLE/data}
if [ "$FULL" = 1 ] && [ -z "$DATA" ]; then
  DATA=$BUILD/testdata
  "$BUILD/mforge" data prepare moby-dick --out "$DATA" >"$LOG/data.log" 2>&1 || { FULL=0; say "no test data: $(tail -1 "$LOG/data.log")"; }
fi
if [ "$FULL" = 1 ]; then
  step trainer 150 bash tests/e2e/cuda_emu.sh "$BUILD/mforge" "$DATA" "$BUILD/mforge"
  G=$BUILD/benchmarks/gpt_train
  TORCH=()
  [ -z "$MF_PYTHON" ] && TORCH=(--no-torch)
  # the largest micro-batch that fits both sides (powers of two up to 128), then the same B
  # for the variants (16 if the search did not finish)
  bench bench 240 "$G" --device cuda --precision bf16 --shapes 124m --T 1024 --B max --B-cap 128 --rounds 2 --steps 10 \
    --warmup 3 "${TORCH[@]}"
  BB=$(sed -n 's/.*timing at B=\([1-9][0-9]*\)$/\1/p' "$LOG/bench.log" 2>/dev/null | head -1)
  BB=${BB:-16}
  bench bench_graph 60 "$G" --device cuda --precision bf16 --shapes 124m --T 1024 --B "$BB" --rounds 1 --steps 10 --warmup 3 \
    --no-torch --cuda-graph
  step graph 120 bash tests/gpu/cuda_graph.sh "$BUILD/mforge" "$DATA"
  if command -v mpirun >/dev/null 2>&1; then
    DC=host
    [ "$NGPU" -ge 2 ] && DC=nccl
    step parallel 180 env DEVICE_COMM=$DC bash tests/parallel/cuda_emu.sh "$BUILD/mforge" "$DATA" \
      "mpirun --allow-run-as-root --oversubscribe" "$BUILD/tests/ckpt_compare" none "$BUILD/mforge"
  else
    note parallel "skipped: no mpirun" 0
  fi
  step nccl 60 bash tests/gpu/nccl.sh "$BUILD"
  [ -n "$KBENCH" ] && bench kernels 90 "$KBENCH" --B 8 --T 1024
  [ -n "$MF_PYTHON" ] && bench bench_tc 200 "$G" --device cuda --precision bf16 --shapes 124m --T 1024 --B "$BB" \
    --rounds 1 --steps 10 --warmup 3 --torch-compile
  bench bench_fp32 100 "$G" --device cuda --shapes 124m --T 1024 --B 8 --rounds 1 --steps 10 --warmup 3 "${TORCH[@]}"
else
  [ -n "$KBENCH" ] && bench kernels 90 "$KBENCH" --B 8 --T 1024
  for s in trainer bench graph parallel nccl; do note "$s" "skipped: no mforge build" 0; done
fi
finish
