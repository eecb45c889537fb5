#!/usr/bin/env bash
# The CUDA backend's training path on the CUDA emulator (mforge_emu: the kernels of
# kernels/cuda run on the CPU, cuBLASLt replaced by matmul_simt.cu): `device: cuda` trains
# the tiny model to the same losses and gradient norms as the CPU backend (fp32: to 1e-5;
# precision: bf16: to bf16 accuracy), and checkpoints move between the two (a run saved on
# "GPU" resumes on CPU and vice versa).
# Usage: cuda_emu.sh MFORGE DATA MFORGE_EMU
source "$(dirname "$0")/lib.sh"
EMU="$3"

# one sequence of 16 tokens per step keeps the emulated steps to seconds
small=(--set train.batch_size=1 --set train.micro_batch_size=1 --set train.seq_len=16
  --set train.eval_every=0 --set train.eval_batches=1 --set train.ckpt_every=0 --set train.steps=3)
cpu() { "$MF" train "$CFG" --set run.dir="$1" --set data.dir="$DATA" "${small[@]}" "${@:2}"; }
# MF_EMU_HOST_GUARD: host code that touches device memory faults, as on a GPU
gpu() { MF_EMU_HOST_GUARD=1 "$EMU" train "$CFG" --set run.dir="$1" --set data.dir="$DATA" --set device=cuda "${small[@]}" "${@:2}"; }

# field KEY STEP FILE: the value of KEY in the training row of STEP
field() { grep "\"step\":$2,\"loss\"" "$3" | grep -oE "\"$1\":[-0-9.eE+]+" | cut -d: -f2; }
# close A B [TOL]: relative difference <= TOL (1e-5: fp32 round-off)
close() { awk -v a="$1" -v b="$2" -v t="${3:-1e-5}" 'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a;
  exit !(a != "" && b != "" && d <= t * (m > 1e-6 ? m : 1e-6)) }'; }
TOL_LOSS=1e-5 TOL_NORM=1e-5
same_run() { # NAME DIR_A DIR_B STEPS...
  local name="$1" a="$2" b="$3"
  shift 3
  for s in "$@"; do
    for k in loss grad_norm; do
      local x y t=$TOL_LOSS
      [ $k = grad_norm ] && t=$TOL_NORM
      x=$(field $k $s "$a/metrics.jsonl")
      y=$(field $k $s "$b/metrics.jsonl")
      if close "$x" "$y" $t; then ok; else bad "$name: step $s $k: $x vs $y (tolerance $t)"; fi
    done
  done
}

cpu "$TMP/cpu" >/dev/null 2>&1 || bad "CPU run failed"
gpu "$TMP/gpu" >"$TMP/gpu.out" 2>&1 || bad "emulated CUDA run failed: $(tail -n 3 "$TMP/gpu.out")"
grep -q "device cuda" "$TMP/gpu.out" && ok || bad "the emulated run did not report device cuda"
same_run "cuda vs cpu" "$TMP/cpu" "$TMP/gpu" 1 2 3
vc=$(grep -oE '"val_loss":[-0-9.eE+]+' "$TMP/cpu/metrics.jsonl" | tail -1 | cut -d: -f2)
vg=$(grep -oE '"val_loss":[-0-9.eE+]+' "$TMP/gpu/metrics.jsonl" | tail -1 | cut -d: -f2)
close "$vc" "$vg" && ok || bad "final val_loss: cpu $vc vs cuda $vg"
# the saved parameters and optimizer state agree to fp32 round-off
if h5diff -q -d 1e-5 "$TMP/cpu/last.h5" "$TMP/gpu/last.h5" /params /params; then ok; else bad "final params differ"; fi
if h5diff -q -d 1e-5 "$TMP/cpu/last.h5" "$TMP/gpu/last.h5" /optim /optim; then ok; else bad "optimizer state differs"; fi

# saved on the device after step 2, resumed on the CPU for step 3 (and the reverse)
gpu "$TMP/g2c" --set train.stop_after=2 >/dev/null 2>&1 || bad "emulated CUDA first half failed"
cpu "$TMP/g2c" --resume >"$TMP/out" 2>&1 || bad "CPU resume of a CUDA checkpoint failed: $(tail -n 2 "$TMP/out")"
same_run "cuda -> cpu resume" "$TMP/cpu" "$TMP/g2c" 3
cpu "$TMP/c2g" --set train.stop_after=2 >/dev/null 2>&1 || bad "CPU first half failed"
gpu "$TMP/c2g" --resume >"$TMP/out" 2>&1 || bad "CUDA resume of a CPU checkpoint failed: $(tail -n 2 "$TMP/out")"
same_run "cpu -> cuda resume" "$TMP/cpu" "$TMP/c2g" 3

# recompute: 2 on the device (GELU and layernorm outputs made again in backward by the
# CUDA kernels): the same losses and gradient norms as storing them. On a real GPU the
# stored GELU output comes from cuBLASLt's epilogue and the recomputed one from
# gelu_forward (equal to rounding), so the bound there is fp32 round-off, not 1e-7
gpu "$TMP/gpu_rc" --set recompute=2 >"$TMP/out" 2>&1 || bad "emulated CUDA run with recompute 2: $(tail -n 3 "$TMP/out")"
TOL_LOSS=1e-7 TOL_NORM=1e-7
case "$EMU" in *emu*) ;; *) TOL_LOSS=1e-6 TOL_NORM=1e-5 ;; esac
same_run "cuda recompute 2 vs 0" "$TMP/gpu" "$TMP/gpu_rc" 1 2 3

# bf16 mixed precision (bf16 activations, gradients and weight copy; fp32 master weights,
# AdamW state, losses): the same trajectory to bf16 accuracy, and its checkpoint (fp32
# master weights) resumes on the CPU
TOL_LOSS=2e-4 TOL_NORM=5e-3 # seen: 2e-5 and 8e-4; a stale bf16 weight copy gives 1e-3 and 2e-2
gpu "$TMP/bf16" --set precision=bf16 >"$TMP/out" 2>&1 || bad "bf16 run failed: $(tail -n 3 "$TMP/out")"
grep -q "bf16" "$TMP/out" && ok || bad "the bf16 run did not report bf16"
same_run "cuda bf16 vs cpu" "$TMP/cpu" "$TMP/bf16" 1 2 3
gpu "$TMP/b2c" --set precision=bf16 --set train.stop_after=2 >/dev/null 2>&1 || bad "bf16 first half failed"
cpu "$TMP/b2c" --resume >"$TMP/out" 2>&1 || bad "CPU resume of a bf16 checkpoint failed: $(tail -n 2 "$TMP/out")"
same_run "cuda bf16 -> cpu resume" "$TMP/cpu" "$TMP/b2c" 3

# tf32: true: the fp32 matmuls take TF32-rounded operands (the SIMT GEMM here, cuBLASLt's TF32
# compute type on a GPU). The run follows the fp32 one to TF32's accuracy but not bit for bit
# (a switch that did nothing would give the fp32 losses exactly)
TOL_LOSS=1e-4 TOL_NORM=1e-3 # seen on the emulator: losses ~1e-6, grad norms 2e-5 .. 7e-5 apart
gpu "$TMP/tf32" --set tf32=true >"$TMP/out" 2>&1 || bad "tf32 run failed: $(tail -n 3 "$TMP/out")"
grep -q "TF32 matmuls" "$TMP/out" && ok || bad "the tf32 run did not report TF32 matmuls"
same_run "cuda tf32 vs cpu" "$TMP/cpu" "$TMP/tf32" 1 2 3
x=$(field grad_norm 1 "$TMP/gpu/metrics.jsonl") y=$(field grad_norm 1 "$TMP/tf32/metrics.jsonl")
[ -n "$x" ] && [ "$x" != "$y" ] && ok || bad "tf32 changed nothing: step 1 grad norm $x (fp32) vs $y (tf32)"
expect_user_error "tf32 on cpu" "tf32: true needs device: cuda" "$MF" train "$CFG" --set run.dir="$TMP/bad" \
  --set data.dir="$DATA" --set device=cpu --set tf32=true
# device: auto takes the config on either: TF32 on a GPU, a note on the CPU
"$MF" train "$CFG" --set run.dir="$TMP/tf32_auto" --set data.dir="$DATA" --set tf32=true "${small[@]}" >"$TMP/out" 2>&1 &&
  { grep -q "TF32 matmuls" "$TMP/out" || grep -q "tf32 ignored" "$TMP/out"; } && ok ||
  bad "tf32 with device auto: $(tail -n 2 "$TMP/out")"

# what the CUDA kernels cannot take is a configuration error, not an abort in a launcher
expect_user_error "cuda head size" "head size" env MF_EMU_HOST_GUARD=1 "$EMU" train "$CFG" --set run.dir="$TMP/bad" \
  --set data.dir="$DATA" --set device=cuda --set model.n_head=4
expect_user_error "bf16 on cpu" "precision: bf16 needs device: cuda" "$MF" train "$CFG" --set run.dir="$TMP/bad" \
  --set data.dir="$DATA" --set device=cpu --set precision=bf16
report cuda_emu
