#!/usr/bin/env bash
# The trainer under mpirun against one process, through the mforge binary on the real
# data: data parallel (bucketed, overlapped), ZeRO-1, tensor parallel, DP x TP on 4
# oversubscribed ranks, and checkpoints that resume at another layout (the next losses
# match a run that never stopped, and the data position carries over: no window twice,
# none skipped). Only rank 0 prints and writes.
source "$(dirname "$0")/lib.sh"
B=--set
run ref 1
run dp2 2 $B parallel.bucket_mb=0.5
same_losses ref dp2 1 20
same_params ref dp2 --optim
[ "$(val_loss ref)" = "$(val_loss dp2)" ] && ok || bad "val_loss: $(val_loss ref) vs $(val_loss dp2)"
[ "$(grep -c '^done:' "$TMP/dp2.log")" = 1 ] && ok || bad "dp2: expected one 'done:' line (rank 0 prints alone)"
grep -q 'data parallel 2 x tensor parallel 1; overlapped' "$TMP/dp2.log" && ok || bad "dp2: no parallel line"

run zero 2 $B parallel.bucket_mb=0.5 $B parallel.zero=1
same_losses dp2 zero 1 20
same_params dp2 zero --optim
mib() { grep -oE 'optimizer state: [0-9.]+' "$TMP/$1.log" | grep -oE '[0-9.]+$'; }
if awk -v a="$(mib dp2)" -v b="$(mib zero)" 'BEGIN { exit !(b <= a / 2 * 1.02 && b >= a / 2 * 0.98) }'; then
  ok; echo "ok: optimizer state per rank: $(mib dp2) MiB (DP) -> $(mib zero) MiB (ZeRO-1, dp 2)"
else bad "ZeRO-1 optimizer state $(mib zero) MiB is not half of $(mib dp2) MiB"; fi

run tp2 2 $B parallel.tp=2
same_losses ref tp2 1 20
same_params ref tp2 --optim

# reshard: np=2 tp=2 -> np=1 ...
run a 2 $B parallel.tp=2 $B train.stop_after=10
run a 1 --resume
same_losses ref a 1 20
same_params ref a --optim
# ... np=1 -> np=2 dp=2 with ZeRO-1 ...
run b 1 $B train.stop_after=10
run b 2 $B parallel.zero=1 --resume
same_losses ref b 1 20
same_params ref b --optim
for k in step tokens_seen data_epoch data_cursor; do
  [ "$(state_attr ref $k)" = "$(state_attr b $k)" ] && ok || bad "/state/$k: $(state_attr ref $k) vs $(state_attr b $k)"
done
# ... 4 ranks: dp=2 x tp=2 with ZeRO-1 -> np=2 tp=2 (dp=1), and a straight dp=2 x tp=2 run
run c 4 $B parallel.tp=2 $B parallel.zero=1 $B train.stop_after=10 $B parallel.bucket_mb=0.5
grep -q 'data parallel 2 x tensor parallel 2' "$TMP/c.log" && ok || bad "np=4: not a 2 x 2 grid"
run c 2 $B parallel.tp=2 --resume
same_losses ref c 1 20
same_params ref c --optim
run d 4 $B parallel.tp=2
same_losses ref d 1 20
same_params ref d
# ... np=1 -> np=2 tp=2, and np=2 tp=2 -> np=2 tp=1 (dp=2): every direction between the layouts
run e 1 $B train.stop_after=10
run e 2 $B parallel.tp=2 --resume
same_losses ref e 1 20
same_params ref e --optim
run f 2 $B parallel.tp=2 $B train.stop_after=10
run f 2 --resume
same_losses ref f 1 20
same_params ref f --optim
for k in step tokens_seen data_epoch data_cursor; do
  [ "$(state_attr ref $k)" = "$(state_attr f $k)" ] && ok || bad "f: /state/$k: $(state_attr ref $k) vs $(state_attr f $k)"
done
report par_train
