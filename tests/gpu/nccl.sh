#!/usr/bin/env bash
# NCCL checks for a lent GPU machine: builds tests/gpu/test_nccl (the CMake target when the
# project's dependencies are there, else a direct gcc build of the communicator alone) and
# runs it: one rank per GPU (mpirun when there are several GPUs and an MPI launcher, a
# 1-rank NCCL communicator otherwise). It compares every collective of parallel/comm.h
# on device buffers with the host communicator on the same data, including the
# data-parallel bucket all-reduce and ZeRO-1's reduce-scatter + all-gather.
# Usage: tests/gpu/nccl.sh [build-dir] (a bundle's build dir: its test_nccl as it is).
# Exit 0 when every check passed (or no GPU: skipped).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${1:-build-gpu}
LOG=${MF_GPU_LOG:-${OUT:-$BUILD}} # run.sh: its own log folder
mkdir -p "$BUILD" "$LOG"
CUDA=${CUDA_HOME:-/usr/local/cuda}
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
echo "== NCCL check: $NGPU GPU(s); $(grep -m1 NCCL_MAJOR -A2 "$CUDA/include/nccl.h" 2>/dev/null | tr -s ' \n' ' ')"

BIN=""
if [ -x "$BUILD/tests/test_nccl" ] && [ ! -f "$BUILD/CMakeCache.txt" ]; then
  BIN=$BUILD/tests/test_nccl # prebuilt (tests/gpu/bundle.sh)
elif cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$LOG/nccl_cmake.log" 2>&1 &&
   grep -q "NCCL ON" "$LOG/nccl_cmake.log" &&
   cmake --build "$BUILD" -j "$(nproc)" --target test_nccl >"$LOG/nccl_build.log" 2>&1; then
  BIN=$BUILD/tests/test_nccl
else
  echo "== CMake build unavailable (see $LOG/nccl_cmake.log); direct build of the communicator"
  CC=gcc
  MPI_SRC=""
  DEFS="-DMF_HAVE_NCCL=1"
  if command -v mpicc >/dev/null 2>&1; then CC=mpicc; MPI_SRC=parallel/comm_mpi.c; DEFS="$DEFS -DMF_HAVE_MPI=1"; fi
  $CC -std=gnu11 -O2 -D_GNU_SOURCE $DEFS -I"$ROOT" -I"$CUDA/include" \
    core/status.c parallel/comm.c parallel/comm_single.c parallel/comm_nccl.c $MPI_SRC \
    tests/test_util.c tests/gpu/test_nccl.c -L"$CUDA/lib64" -L"$CUDA/lib" -Wl,-rpath,"$CUDA/lib64" \
    -lnccl -lcudart -lm -o "$BUILD/test_nccl" 2>&1 | tee "$LOG/nccl_build.log"
  [ -x "$BUILD/test_nccl" ] || { echo "== direct build FAILED"; exit 1; }
  BIN=$BUILD/test_nccl
fi
if [ "$NGPU" -gt 1 ] && command -v mpirun >/dev/null 2>&1; then
  RUN=(mpirun --allow-run-as-root --oversubscribe -np "$NGPU" "$BIN")
else
  RUN=("$BIN")
fi
echo "== ${RUN[*]}"
"${RUN[@]}" 2>&1 | tee "$LOG/test_nccl.log"
exit "${PIPESTATUS[0]}"
