#!/usr/bin/env bash
# The GPU checks: the one prepared script a lent GPU machine runs (budget: under 8 minutes).
#   1. build with CUDA, no emulation: the CMake build (target test_gpu_ops) when the project's
#      dependencies are installed there; otherwise a direct nvcc/gcc build of just what the op
#      checks need (kernels/cuda, the CPU twins, the test harness; a small CBLAS shim when
#      there is no BLAS). Both compile with -Werror=all-warnings for this GPU's architecture.
#   2. tests/gpu/test_gpu_ops: every CUDA op (the cuBLASLt matmul included) against its CPU
#      twin on fresh random inputs; prints one table (op, dtype, shape, max normalised error,
#      bound, pass/fail) and "test_gpu_ops: N checks, M failed". 2b. benchmarks/gpu_kernels:
#      each op's time, GB/s and TFLOP/s at GPT-2 124M shapes against the ceilings.
#   3. the trainer with device: cuda against the CPU backend (tests/e2e/cuda_emu.sh), when the
#      full CMake build works here; 3b. data and tensor parallel on the GPU vs 1 process
#      (tests/parallel/cuda_emu.sh: NCCL with 2+ GPUs, staged on one); 3c. the NCCL
#      communicator vs the host one (tests/gpu/nccl.sh); 3d. cuda_graph: true vs eager steps: the
#      same losses, and the ms/step of both (tests/gpu/cuda_graph.sh); 4. benchmarks/gpt_train
#      --device cuda vs PyTorch, and ours with --cuda-graph.
# Usage: tests/gpu/run.sh [build-dir]   (logs also under $OUT when the device tool sets it)
# Exit status: 0 when every check passed (or none could run: no GPU), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${1:-build-gpu}
mkdir -p "$BUILD"
LOG=${OUT:-$BUILD}
mkdir -p "$LOG"
JOBS=$(nproc 2>/dev/null || echo 4)
T0=$(date +%s)
say() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }

ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${ARCH:-90}
say "GPU: $(nvidia-smi -L 2>/dev/null | head -1 || echo none); sm_$ARCH; $JOBS cores; nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"

BIN=""
KBENCH=""
# ---- 1a. the CMake build ----
if cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
     -DMF_CUDA_EMULATION=OFF -DMF_NATIVE=ON >"$LOG/cmake.log" 2>&1 &&
   grep -q "CUDA backend ON" "$LOG/cmake.log"; then
  say "CMake configured; building test_gpu_ops"
  if cmake --build "$BUILD" -j "$JOBS" --target test_gpu_ops gpu_kernels >"$LOG/build.log" 2>&1; then
    BIN=$BUILD/tests/test_gpu_ops
    KBENCH=$BUILD/benchmarks/gpu_kernels
  else
    tail -30 "$LOG/build.log"
    say "CMake build FAILED (log: $LOG/build.log)"
    exit 1
  fi
else
  # ---- 1b. direct build (the GPU image lacks HDF5/libyaml/... that the full build needs) ----
  say "CMake configure unavailable here ($(grep -m1 -i 'error\|could not' "$LOG/cmake.log" || echo 'no CUDA'));" \
      "direct build of the op checks"
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
  for f in encoder layernorm matmul gelu residual attention softmax_xent tp_xent adamw vecmath; do
    $CC -c "kernels/cpu/$f.c" -o "$SB/cpu_$f.o" || exit 1
  done
  gcc -std=gnu11 -O2 -I"$ROOT" -c tests/test_util.c -o "$SB/test_util.o" || exit 1
  ok=1
  for p in "${pids[@]}"; do wait "$p" || ok=0; done
  [ $ok = 1 ] || { say "direct build FAILED"; exit 1; }
  nvcc -arch=sm_$ARCH -o "$SB/test_gpu_ops" "$SB"/*.o -lcublasLt -lcublas $BLAS -Xcompiler -fopenmp -lm ||
    { say "link FAILED"; exit 1; }
  BIN=$SB/test_gpu_ops
  # the per-kernel benchmark: the same objects with its own main
  mkdir -p "$SB/bench"
  $NV -c benchmarks/gpu_kernels.cu -o "$SB/bench/gpu_kernels.o" &&
    nvcc -arch=sm_$ARCH -o "$SB/gpu_kernels" "$SB/bench/gpu_kernels.o" $(ls "$SB"/*.o | grep -v test_gpu_ops.o) \
      -lcublasLt -lcublas $BLAS -Xcompiler -fopenmp -lm || say "gpu_kernels build FAILED"
  KBENCH=$SB/gpu_kernels
fi
say "built $BIN"

# ---- 2. the op checks ----
"$BIN" 2>&1 | tee "$LOG/test_gpu_ops.log"
RC=${PIPESTATUS[0]}
say "test_gpu_ops exit status $RC"

# ---- 2b. per-kernel benchmark: GB/s and TFLOP/s of every op at GPT-2 124M shapes against
# this machine's ceilings (validated against the CPU twins first); never fails the script
if [ -x "$KBENCH" ]; then
  say "benchmark: per-kernel (benchmarks/gpu_kernels.cu)"
  timeout 120 "$KBENCH" --B 8 --T 1024 2>&1 | tee "$LOG/kernels.txt" || say "gpu_kernels did not finish"
fi

# ---- 3. the trainer on the GPU (needs the CMake build: HDF5, libyaml, ... on this machine) ----
# tests/e2e/cuda_emu.sh with the real mforge on both sides: `device: cuda` (fp32) trains the
# tiny model to the CPU's losses and gradient norms (rel 1e-5), checkpoints move CPU <-> GPU.
if [ "$BIN" = "$BUILD/tests/test_gpu_ops" ]; then
  if cmake --build "$BUILD" -j "$JOBS" --target mforge gpt_train ckpt_compare >>"$LOG/build.log" 2>&1 &&
     "$BUILD/mforge" data prepare moby-dick --out "$BUILD/testdata" >"$LOG/data.log" 2>&1; then
    say "trainer on the GPU vs the CPU (tests/e2e/cuda_emu.sh)"
    bash tests/e2e/cuda_emu.sh "$BUILD/mforge" "$BUILD/testdata" "$BUILD/mforge" 2>&1 | tee "$LOG/train_gpu.log"
    [ "${PIPESTATUS[0]}" = 0 ] || RC=1
    # ---- 3b. data and tensor parallel on the GPU vs 1 process (DP, ZeRO-1, TP 2, DP 2 x TP 2), the emulation
    # build's checks (tests/parallel/cuda_emu.sh) with the real mforge; NCCL with 2+ GPUs,
    # the staged communicator on one (NCCL refuses two ranks on one device)
    NG=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    if command -v mpirun >/dev/null 2>&1; then
      DC=host
      [ "${NG:-0}" -ge 2 ] && DC=nccl
      say "data and tensor parallel on the GPU, device_comm $DC (tests/parallel/cuda_emu.sh)"
      DEVICE_COMM=$DC bash tests/parallel/cuda_emu.sh "$BUILD/mforge" "$BUILD/testdata" \
        "mpirun --allow-run-as-root --oversubscribe" "$BUILD/tests/ckpt_compare" none "$BUILD/mforge" 2>&1 |
        tee "$LOG/dp_gpu.log"
      [ "${PIPESTATUS[0]}" = 0 ] || RC=1
    else
      say "skipped: data parallel on the GPU (no mpirun here)"
    fi
    # ---- 3c. the NCCL communicator against the host one (every collective)
    bash tests/gpu/nccl.sh "$BUILD" 2>&1 | tee "$LOG/nccl.log"
    [ "${PIPESTATUS[0]}" = 0 ] || RC=1
    # ---- 3d. the micro-step replayed as a CUDA graph against eager steps (fp32, bf16)
    say "cuda_graph: graph replay vs eager steps on the GPU (tests/gpu/cuda_graph.sh)"
    timeout 240 bash tests/gpu/cuda_graph.sh "$BUILD/mforge" "$BUILD/testdata" 2>&1 | tee "$LOG/cuda_graph.log"
    [ "${PIPESTATUS[0]}" = 0 ] || RC=1
    # ---- 4. benchmark: GPT-2 124M, T 1024, ours vs PyTorch on this GPU; never fails the script
    say "benchmark: gpt_train --device cuda (bf16, then fp32)"
    timeout 200 "$BUILD/benchmarks/gpt_train" --device cuda --precision bf16 --shapes 124m --T 1024 --B 16 \
      --rounds 2 --steps 10 --warmup 3 2>&1 | tee "$LOG/bench.txt" || say "bf16 benchmark did not finish"
    timeout 100 "$BUILD/benchmarks/gpt_train" --device cuda --shapes 124m --T 1024 --B 8 --rounds 1 \
      --steps 10 --warmup 3 2>&1 | tee -a "$LOG/bench.txt" || say "fp32 benchmark did not finish"
    timeout 100 "$BUILD/benchmarks/gpt_train" --device cuda --precision bf16 --shapes 124m --T 1024 --B 16 \
      --rounds 1 --steps 10 --warmup 3 --no-torch --cuda-graph 2>&1 | tee -a "$LOG/bench.txt" ||
      say "bf16 --cuda-graph benchmark did not finish"
  else
    say "skipped: trainer on the GPU (mforge or the moby-dick data could not be built here; see $LOG)"
  fi
else
  say "skipped: trainer on the GPU (no CMake build on this machine)"
fi

say "done in $(( $(date +%s) - T0 ))s"
exit $RC
