#!/usr/bin/env bash
# Resume: 20 steps straight == 10 steps, stop, resume, 10 more (bitwise: the logged losses
# are printed with 7 significant digits and must be identical, as must the final params).
# Then SIGKILL during a checkpoint write leaves the previous checkpoint loadable.
source "$(dirname "$0")/lib.sh"

train_tiny "$TMP/full" >/dev/null 2>&1 || bad "full run failed"
train_tiny "$TMP/part" --set train.stop_after=10 >/dev/null 2>&1 || bad "first half failed"
grep -q '"step":10,' "$TMP/part/metrics.jsonl" && ! grep -q '"step":11,' "$TMP/part/metrics.jsonl" && ok ||
  bad "stop_after=10 did not stop at step 10"
train_tiny "$TMP/part" --resume >/dev/null 2>&1 || bad "resume failed"
a=$(grep '"loss"' "$TMP/full/metrics.jsonl" | sed 's/,"ms_per_step".*//')
b=$(grep '"loss"' "$TMP/part/metrics.jsonl" | sed 's/,"ms_per_step".*//')
if [ "$a" = "$b" ] && [ "$(echo "$a" | wc -l)" -eq 20 ]; then ok; else
  bad "losses differ after resume:"; diff <(echo "$a") <(echo "$b") >&2; fi
va=$(grep val_loss "$TMP/full/metrics.jsonl" | tail -1)
vb=$(grep val_loss "$TMP/part/metrics.jsonl" | tail -1)
[ "$va" = "$vb" ] && ok || bad "final val_loss differs: $va vs $vb"
if h5diff -q "$TMP/full/last.h5" "$TMP/part/last.h5" /params /params; then ok; else bad "final params differ"; fi
if h5diff -q "$TMP/full/last.h5" "$TMP/part/last.h5" /optim /optim; then ok; else bad "final optimizer state differs"; fi

# --- SIGTERM / SIGINT: checkpoint at the end of the step, exit 0, resumable ---
for sig in TERM INT; do
  d="$TMP/sig$sig"
  train_tiny_bg "$d" --set train.steps=100000 --set train.eval_every=0 --set train.ckpt_every=0 \
    >"$TMP/sig.out" 2>&1
  pid=$!
  for _ in $(seq 1 3000); do grep -q '"step":3,' "$d/metrics.jsonl" 2>/dev/null && break; sleep 0.01; done
  kill -s $sig $pid
  wait $pid
  rc=$?
  [ $rc -eq 0 ] && ok || bad "SIG$sig: exit code $rc (want 0): $(tail -n 2 "$TMP/sig.out")"
  grep -q "stopped after step" "$TMP/sig.out" && ok || bad "SIG$sig: no stop message"
  step=$(h5dump -a /state/step "$d/last.h5" 2>/dev/null | grep -oE '\(0\): [0-9]+' | grep -oE '[0-9]+$')
  last=$(grep -oE '"step":[0-9]+,"loss"' "$d/metrics.jsonl" | tail -1 | grep -oE '[0-9]+')
  [ -n "$step" ] && [ "$step" = "$last" ] && ok || bad "SIG$sig: checkpoint step '$step' != last logged step '$last'"
  train_tiny "$d" --set train.steps=$((step + 2)) --resume >/dev/null 2>&1 && ok || bad "SIG$sig: resume failed"
done

# --- SIGKILL while a checkpoint is being written ---
# a wider model makes each checkpoint ~150 MB so the write takes a while
killed_mid_write=0
for attempt in 1 2 3 4 5; do
  d="$TMP/kill$attempt"
  train_tiny_bg "$d" --set model.n_embd=256 --set train.steps=200 --set train.ckpt_every=1 \
    --set train.eval_every=0 >/dev/null 2>&1
  pid=$!
  # wait for a first complete checkpoint, then for the next write to start
  for _ in $(seq 1 3000); do [ -f "$d/last.h5" ] && break; sleep 0.01; done
  for _ in $(seq 1 3000); do ls "$d"/last.h5.tmp.* >/dev/null 2>&1 && break; sleep 0.002; done
  sleep 0.0$((RANDOM % 5))
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  if ls "$d"/last.h5.tmp.* >/dev/null 2>&1; then killed_mid_write=1; break; fi
done
if [ $killed_mid_write = 1 ]; then
  ok
  echo "killed during a checkpoint write (attempt $attempt): $(ls "$d")"
  "$MF" eval "$d/last.h5" --batches 1 >/dev/null 2>"$TMP/err" && ok || bad "previous checkpoint unreadable: $(cat "$TMP/err")"
  train_tiny "$d" --set model.n_embd=256 --set train.steps=200 --set train.ckpt_every=1 \
    --set train.eval_every=0 --set train.stop_after=$(( $(h5dump -a /state/step "$d/last.h5" | grep -oE '\(0\): [0-9]+' | grep -oE '[0-9]+$') + 1 )) \
    --resume >/dev/null 2>"$TMP/err" && ok || bad "resume after SIGKILL failed: $(cat "$TMP/err")"
  if ls "$d"/last.h5.tmp.* >/dev/null 2>&1; then bad "stale temporary checkpoint not cleaned up"; else ok; fi
else
  bad "could not kill the trainer during a checkpoint write in 5 attempts"
fi
report resume
