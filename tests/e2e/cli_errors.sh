#!/usr/bin/env bash
# Bad input of every kind gets one clear line, exit code 2, and no damage on disk.
source "$(dirname "$0")/lib.sh"
CK="$DATA/tiny_run/last.h5"
before=$(md5sum "$CK" | cut -d' ' -f1)

printf 'train:\n  steps: 3\n  lrr: 0.1\n' >"$TMP/unknown.yaml"
expect_user_error "unknown YAML key" "unknown.yaml:3: unknown key 'train.lrr' (did you mean train.lr?)" \
  "$MF" train "$TMP/unknown.yaml"
printf 'model:\n  n_layer: two\n' >"$TMP/type.yaml"
expect_user_error "wrong type" "type.yaml:2: model.n_layer: expected an integer, got 'two'" "$MF" train "$TMP/type.yaml"
printf 'model:\n  n_layer: 2\n   bad indent: 1\n' >"$TMP/syntax.yaml"
expect_user_error "YAML syntax" "invalid YAML" "$MF" train "$TMP/syntax.yaml"
expect_user_error "missing config" "cannot open config '$TMP/nope.yaml'" "$MF" train "$TMP/nope.yaml"
expect_user_error "bad --set value" "train.lr: expected a number, got 'abc'" "$MF" train "$CFG" --set train.lr=abc
expect_user_error "bad --set key" "unknown key 'train.stepz'" "$MF" train "$CFG" --set train.stepz=3
expect_user_error "batch not divisible" "train.batch_size (6) must be a multiple" \
  train_tiny "$TMP/r1" --set train.batch_size=6
expect_user_error "missing resume checkpoint" "resume: checkpoint '$TMP/none.h5' not found" \
  train_tiny "$TMP/r2" --resume "$TMP/none.h5"
expect_user_error "unknown data set" "data set 'nosuch' not found" train_tiny "$TMP/r3" --set data.name=nosuch
expect_user_error "cuda without GPU" "device: cuda" train_tiny "$TMP/r4" --set device=cuda

expect_user_error "missing checkpoint" "cannot open '$TMP/none.h5'" "$MF" eval "$TMP/none.h5"
head -c 4000 "$CK" >"$TMP/trunc.h5"
expect_user_error "truncated HDF5" "trunc.h5" "$MF" eval "$TMP/trunc.h5"
head -c 100000 /dev/urandom >"$TMP/noise.h5"
expect_user_error "corrupt HDF5" "is not an HDF5 file" "$MF" eval "$TMP/noise.h5"
expect_user_error "not a checkpoint" "is not an mforge checkpoint" "$MF" eval "$DATA/moby-dick/val.h5"
expect_user_error "checkpoint of another shape" "has shape [50257, 32], expected [50257, 64]" \
  train_tiny "$TMP/r5" --set init_from="$CK" --set model.n_embd=64
expect_user_error "resume another shape" "expected [50257, 64]" \
  train_tiny "$TMP/r6" --resume "$CK" --set model.n_embd=64
expect_user_error "freeze pattern matches nothing" "freeze: pattern 'nope.*' matches no parameter" \
  train_tiny "$TMP/r7" --set "freeze=[nope.*]"

expect_user_error "empty prompt" "--prompt is empty" "$MF" generate "$CK" --prompt ""
expect_user_error "prompt id out of range" "'50257' is not a token id" "$MF" generate "$CK" --prompt-ids 1,50257
expect_user_error "bad temperature" "bad value '-1' for --temperature" "$MF" generate "$CK" --prompt hi --temperature -1
expect_user_error "decode id out of range" "50257" sh -c "echo 50257 | '$MF' tokenize --vocab gpt2 --decode"
expect_user_error "decode not a number" "'abc' is not a token id" sh -c "echo abc | '$MF' tokenize --vocab gpt2 --decode"
expect_user_error "unknown vocab" "unknown vocabulary 'bert'" "$MF" tokenize --vocab bert
expect_user_error "unknown data set to prepare" "unknown data set 'imagenet'" "$MF" data prepare imagenet --out "$TMP"
expect_user_error "unknown command" "unknown command 'trian'" "$MF" trian

# nothing on disk was touched by any of that
after=$(md5sum "$CK" | cut -d' ' -f1)
if [ "$before" = "$after" ]; then ok; else bad "the fixture checkpoint changed"; fi
if ls "$TMP"/r*/last.h5 >/dev/null 2>&1; then bad "a failed run left a checkpoint"; else ok; fi
report cli_errors
