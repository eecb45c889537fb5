#!/bin/bash
# benchmarks/gpt_train's --B max on the emulated CUDA backend (gpt_train_emu) with a small
# device (MF_EMU_MEM_MB): the micro-batch it picks runs and twice it does not; its CLI errors;
# and the PyTorch side's --probe (on the CPU here: the first micro-batch of a list that runs).
#   bench_emu.sh GPT_TRAIN_EMU
source "$(dirname "$0")/lib.sh" "$1" none # ok, bad, report, TMP, ROOT
GT="$1"
run() { "$GT" --device cuda --shapes toy --T 32 --no-torch --rounds 1 --steps 1 --warmup 0 "$@"; }

# 8 MiB: toy at T=32 needs ~5 MiB at B=4, ~7 at B=8 and ~10 at B=16 (parameters, AdamW state
# and the step arena), so the cap binds below --B-cap
export MF_EMU_MEM_MB=8
run --B max --B-cap 16 >"$TMP/max" 2>&1 || bad "--B max failed: $(tail -n 3 "$TMP/max")"
B=$(sed -n 's/.*ours fits up to B=\([0-9]*\),.*timing at B=\([0-9]*\)$/\2/p' "$TMP/max")
if [ -z "$B" ] || [ "$B" -lt 1 ] || [ "$B" -ge 16 ]; then
  bad "--B max: no micro-batch below the cap of 16 picked (B='$B'): $(cat "$TMP/max")"
else
  ok
  grep -qE "^toy +32 +$B " "$TMP/max" && ok || bad "--B max: no timed row at B=$B: $(cat "$TMP/max")"
  if run --B $((2 * B)) >"$TMP/twice" 2>&1; then
    bad "B=$((2 * B)) ran in 8 MiB, so B=$B is not the largest: $(grep '^toy' "$TMP/twice")"
  elif grep -q "a side failed" "$TMP/twice"; then
    ok
    echo "ok: --B max picked B=$B in 8 MiB; B=$((2 * B)) runs out of memory"
  else
    bad "B=$((2 * B)): not a failed side: $(tail -n 2 "$TMP/twice")"
  fi
fi
unset MF_EMU_MEM_MB

# CLI errors: exit 2 with a message naming the flag
expect2() {
  local name="$1" pat="$2"
  shift 2
  "$GT" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ $rc -eq 2 ] && grep -qF -- "$pat" "$TMP/err" && ok || bad "$name: exit $rc, stderr: $(cat "$TMP/err")"
}
expect2 "--B max on the CPU" "--B max needs --device cuda" --B max --shapes toy --no-torch
expect2 "--B 0" "--B (a number or max)" --B 0 --shapes toy --no-torch
expect2 "--B-cap 0" "--B-cap" --device cuda --B max --B-cap 0 --shapes toy --no-torch

# the PyTorch side's probe, on the CPU: the first of the list that runs a step
PY="${MF_PYTHON:-/usr/bin/python3}"
if "$PY" -c "import torch, h5py" 2>/dev/null; then
  MF_BENCH_KEEP=1 run --B 4 >"$TMP/keep" 2>&1 || bad "gpt_train_emu --B 4 failed: $(tail -n 3 "$TMP/keep")"
  D=$(sed -n 's/^# kept //p' "$TMP/keep")
  if [ -n "$D" ]; then
    out=$("$PY" "$ROOT/benchmarks/ref/gpt_train_torch.py" --dir "$D" --device cpu --warmup 1 --steps 1 --probe 2,1 2>&1)
    [ "$out" = '{"fits": 2}' ] && ok || bad "torch --probe 2,1: '$out' (want {\"fits\": 2})"
    rm -rf "$D"
  else
    bad "no kept benchmark directory: $(cat "$TMP/keep")"
  fi
else
  echo "skipped: torch --probe (no torch/h5py in $PY)"
fi

report bench_emu
