#!/usr/bin/env bash
# cuda_graph: true on the CUDA emulator (mforge_emu): the micro-step captured once and
# replayed trains exactly as the eager step - the same kernels on the same data - so the
# losses, gradient norms, final parameters and AdamW state are bit for bit the same, in
# fp32 with gradient accumulation and recompute 2, and in bf16. The graph runs are made
# with every emulator check on and MF_EMU_HOST_GUARD (replayed launches are checked as
# eager ones; a sync or cudaMalloc inside the capture fails it); the eager references with
# the checks off, to keep the test near a minute and a half on 2 cores. Plus the
# configuration errors.
# Usage: cuda_graph.sh MFORGE DATA MFORGE_EMU CKPT_COMPARE
source "$(dirname "$0")/lib.sh"
EMU="$3"
CKC="$4"

# one sequence of 8 tokens per micro-step: the emulated steps stay at seconds (the
# 50257-token vocabulary makes every step cost a few million emulated threads)
small=(--set train.micro_batch_size=1 --set train.seq_len=8 --set train.eval_every=0 --set train.eval_batches=1
  --set train.ckpt_every=0 --set train.steps=3)
graph() { MF_EMU_HOST_GUARD=1 "$EMU" train "$CFG" --set run.dir="$1" --set data.dir="$DATA" --set device=cuda \
  "${small[@]}" --set cuda_graph=true "${@:2}"; }
eager() { MF_EMU_CHECKS=0 "$EMU" train "$CFG" --set run.dir="$1" --set data.dir="$DATA" --set device=cuda \
  "${small[@]}" "${@:2}"; }

# the training rows without the timing fields
rows() { grep '"loss"' "$1/metrics.jsonl" | sed -E 's/,"(ms_per_step|tokens_per_s)":[^,}]*//g'; }

same() { # NAME DIR_GRAPH DIR_EAGER REPLAYS: identical metrics and checkpoints, the graph replayed
  local name="$1" a="$2" b="$3" want="$4"
  if [ -n "$(rows "$a")" ] && [ "$(rows "$a")" = "$(rows "$b")" ]; then ok; else
    bad "$name: training rows differ:"$'\n'"$(rows "$a")"$'\n'"vs"$'\n'"$(rows "$b")"; fi
  [ "$(grep -c '"loss"' "$a/metrics.jsonl")" = 3 ] && ok || bad "$name: not 3 training rows"
  local va vb
  va=$(grep -o '"val_loss":[^,]*' "$a/metrics.jsonl") vb=$(grep -o '"val_loss":[^,]*' "$b/metrics.jsonl")
  [ -n "$va" ] && [ "$va" = "$vb" ] && ok || bad "$name: final val_loss $va vs $vb"
  if "$CKC" "$a/last.h5" "$b/last.h5" --rtol 0 --atol 0 --optim >"$TMP/ckc" 2>&1; then ok; else
    bad "$name: checkpoints differ: $(tail -n 3 "$TMP/ckc")"; fi
  if h5diff -q "$a/last.h5" "$b/last.h5" /params /params && h5diff -q "$a/last.h5" "$b/last.h5" /optim /optim; then ok
  else bad "$name: /params or /optim not bitwise equal"; fi
  grep -q "cuda graph: the micro-step captured 1 time, replayed $want times" "$a/out" && ok ||
    bad "$name: the graph was not captured once and replayed $want times: $(grep 'cuda graph' "$a/out")"
  grep -q "mf-emu" "$a/out" && bad "$name: emulator reports: $(grep -m 3 'mf-emu' "$a/out")" || ok
}

# fp32, 2 micro-steps per step (the graph replays for each; AdamW, the norm and zeroing stay
# outside), recompute 2 (layernorm and GELU outputs made again inside the graph), and a
# validation pass after step 2 on the same step arena (the graph must survive it):
# step 1 micro 1 is captured, then 5 of the 6 micro-steps launch the graph
acc=(--set train.batch_size=2 --set recompute=2 --set train.eval_every=2)
mkdir -p "$TMP/g32" "$TMP/e32"
graph "$TMP/g32" "${acc[@]}" >"$TMP/g32/out" 2>&1 || bad "fp32 graph run failed: $(tail -n 3 "$TMP/g32/out")"
eager "$TMP/e32" "${acc[@]}" >"$TMP/e32/out" 2>&1 || bad "fp32 eager run failed: $(tail -n 3 "$TMP/e32/out")"
same "fp32, accumulation 2, recompute 2" "$TMP/g32" "$TMP/e32" 5

# bf16, one micro-step per step: step 2 is captured, step 3 replays
b16=(--set train.batch_size=1 --set precision=bf16)
mkdir -p "$TMP/g16" "$TMP/e16"
graph "$TMP/g16" "${b16[@]}" >"$TMP/g16/out" 2>&1 || bad "bf16 graph run failed: $(tail -n 3 "$TMP/g16/out")"
eager "$TMP/e16" "${b16[@]}" >"$TMP/e16/out" 2>&1 || bad "bf16 eager run failed: $(tail -n 3 "$TMP/e16/out")"
same "bf16" "$TMP/g16" "$TMP/e16" 2

# configuration: device cpu is a contradiction (an error); device auto without a GPU
# trains on the CPU without graphs (a note); a value that is no bool; parallel.zero
expect_user_error "cuda_graph with device cpu" "cuda_graph: true needs device: cuda" "$MF" train "$CFG" \
  --set run.dir="$TMP/bad" --set data.dir="$DATA" --set device=cpu --set cuda_graph=true
expect_user_error "cuda_graph: maybe" "cuda_graph: expected true or false, got 'maybe'" "$MF" train "$CFG" \
  --set run.dir="$TMP/bad" --set data.dir="$DATA" --set cuda_graph=maybe
expect_user_error "cuda_graph with parallel.zero" "cuda_graph: true needs one process without parallel.zero" \
  "$EMU" train "$CFG" --set run.dir="$TMP/bad" --set data.dir="$DATA" --set device=cuda --set cuda_graph=1 \
  --set parallel.zero=1
"$MF" train "$CFG" --set run.dir="$TMP/auto" --set data.dir="$DATA" --set device=auto --set cuda_graph=true \
  --set train.steps=2 --set train.eval_every=0 --set train.eval_batches=1 >"$TMP/out" 2>&1 ||
  bad "device auto with cuda_graph failed: $(tail -n 2 "$TMP/out")"
if grep -q "device cpu" "$TMP/out"; then # no GPU here
  grep -q "note: cuda_graph ignored: device auto chose the CPU" "$TMP/out" && ok || bad "no note for device auto"
else
  grep -q "cuda graph: the micro-step captured 1 time" "$TMP/out" && ok || bad "device auto on a GPU: no graph"
fi
report cuda_graph
