#!/usr/bin/env bash
# The mforge commands' working paths through the binary, each checked against a value it
# must reproduce: tokenize (GPT-2's own ids, and back), data prepare fortunes (the split
# and its token count), eval (the trainer's own final val_loss on the same batches),
# generate (greedy ids reproducible and equal to the text mode's output; sampling
# reproducible per seed).
source "$(dirname "$0")/lib.sh"
RUN="$DATA/tiny_run"
CK="$RUN/last.h5"

# ---- tokenize: GPT-2's ids for a known string, and the decode back ----
got=$(printf 'Hello world' | "$MF" tokenize --vocab gpt2 | tr '\n' ' ')
[ "$got" = "15496 995 " ] && ok || bad "tokenize 'Hello world': got '$got', want '15496 995 '"
txt=$'The people of the United States,\n  said: "it\'s 1790!" \xf0\x9f\x98\x80'
back=$(printf '%s' "$txt" | "$MF" tokenize | "$MF" tokenize --decode)
[ "$back" = "$txt" ] && ok || bad "tokenize | tokenize --decode changed the text: '$back'"
got=$(printf '464 661' | "$MF" tokenize --decode --vocab gpt2)
[ "$got" = "The people" ] && ok || bad "tokenize --decode '464 661': got '$got', want 'The people'"

# ---- data prepare fortunes: both splits, every token in range, ~5% held out ----
if [ -d /usr/share/games/fortunes ]; then
  "$MF" data prepare fortunes --out "$TMP/d" >"$TMP/prep.log" 2>&1 || bad "data prepare fortunes: $(tail -2 "$TMP/prep.log")"
  for s in train val; do
    [ -s "$TMP/d/fortunes/$s.h5" ] && ok || bad "data prepare fortunes: no $TMP/d/fortunes/$s.h5"
  done
  ntr=$(h5ls "$TMP/d/fortunes/train.h5/tokens" 2>/dev/null | sed -n 's/.*{\([0-9]*\)[},].*/\1/p')
  nva=$(h5ls "$TMP/d/fortunes/val.h5/tokens" 2>/dev/null | sed -n 's/.*{\([0-9]*\)[},].*/\1/p')
  if [ -n "$ntr" ] && [ -n "$nva" ] && [ "$ntr" -gt 300000 ] &&
     awk -v a="$ntr" -v b="$nva" 'BEGIN { f = b / (a + b); exit !(f > 0.02 && f < 0.10) }'; then
    ok; echo "ok: fortunes: $ntr train + $nva val tokens"
  else bad "fortunes split: train '$ntr' val '$nva' tokens (want > 300k and ~5% val)"; fi
  # a model trained on moby-dick evaluates on the new split (its tokens are valid ids)
  "$MF" eval "$CK" --data "$TMP/d/fortunes/val.h5" --batches 2 --json >"$TMP/ev_f.json" 2>&1 &&
    grep -q '"val_loss":' "$TMP/ev_f.json" && ok || bad "eval on the fortunes split: $(cat "$TMP/ev_f.json")"
else
  echo "skipped: data prepare fortunes (Debian 'fortunes' is not installed)"
fi

# ---- eval: the same batches as the trainer's final validation give its val_loss ----
want=$(tail -1 "$RUN/metrics.jsonl" | sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p')
"$MF" eval "$CK" --batches 4 --json >"$TMP/ev.json" 2>"$TMP/ev.err" || bad "eval --json: $(cat "$TMP/ev.err")"
got=$(sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$TMP/ev.json")
ppl=$(sed -n 's/.*"perplexity":\([0-9.]*\).*/\1/p' "$TMP/ev.json")
if [ -n "$want" ] && [ -n "$got" ] &&
   awk -v a="$got" -v b="$want" -v p="$ppl" 'BEGIN { d = a - b; if (d < 0) d = -d;
     q = p - exp(a); if (q < 0) q = -q; exit !(d < 1e-5 && q < 1e-3 * p) }'; then
  ok; echo "ok: eval --json val_loss $got = the trainer's $want, perplexity $ppl"
else bad "eval --json: val_loss '$got' perplexity '$ppl' vs the trainer's '$want' ($(cat "$TMP/ev.json"))"; fi
"$MF" eval "$CK" --batches 4 >"$TMP/ev.txt" 2>&1 && grep -q "val_loss $(printf '%.4f' "$got")" "$TMP/ev.txt" &&
  ok || bad "eval (text) disagrees with --json: $(cat "$TMP/ev.txt")"

# ---- generate: greedy is reproducible, independent of the seed, and the text mode prints
# the prompt followed by the decoded ids ----
g1=$("$MF" generate "$CK" --prompt "The whale" --max-tokens 12 --temperature 0 --ids --seed 1 | tr '\n' ' ')
g2=$("$MF" generate "$CK" --prompt "The whale" --max-tokens 12 --temperature 0 --ids --seed 7 | tr '\n' ' ')
n=$(echo "$g1" | wc -w)
[ "$n" = 12 ] && [ "$g1" = "$g2" ] && ok || bad "greedy --ids: '$g1' vs '$g2' (want 12 equal ids)"
pid=$(printf 'The whale' | "$MF" tokenize | tr '\n' ',' | sed 's/,$//')
g3=$("$MF" generate "$CK" --prompt-ids "$pid" --max-tokens 12 --temperature 0 --ids | tr '\n' ' ')
[ "$g3" = "$g1" ] && ok || bad "--prompt-ids '$pid' gave '$g3', --prompt gave '$g1'"
if ! echo "$g1" | grep -qw 50256; then
  want=$(echo "$(printf 'The whale' | "$MF" tokenize) $g1" | "$MF" tokenize --decode)
  got=$("$MF" generate "$CK" --prompt "The whale" --max-tokens 12 --temperature 0)
  [ "$got" = "$want" ] && ok || bad "generate text '$got' != decode(prompt + greedy ids) '$want'"
fi
s1=$("$MF" generate "$CK" --prompt "The whale" --max-tokens 16 --temperature 1 --top-k 40 --top-p 0.95 --seed 3 --ids | tr '\n' ' ')
s2=$("$MF" generate "$CK" --prompt "The whale" --max-tokens 16 --temperature 1 --top-k 40 --top-p 0.95 --seed 3 --ids | tr '\n' ' ')
s3=$("$MF" generate "$CK" --prompt "The whale" --max-tokens 16 --temperature 1 --top-k 40 --top-p 0.95 --seed 4 --ids | tr '\n' ' ')
[ "$s1" = "$s2" ] && ok || bad "sampling with --seed 3 twice: '$s1' vs '$s2'"
[ "$s1" != "$s3" ] && ok || bad "seeds 3 and 4 sampled the same 16 tokens: '$s1'"
for t in $s1; do [ "$t" -ge 0 ] && [ "$t" -lt 50257 ] || { bad "sampled id $t out of range"; break; }; done

report e2e_cli
