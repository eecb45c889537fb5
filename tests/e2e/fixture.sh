#!/usr/bin/env bash
# ctest fixture: prepares the moby-dick data set and trains the tiny test model once;
# later e2e tests read them from DATA and DATA/tiny_run.
MF="$1"; DATA="$2"
set -e
rm -rf "$DATA"
mkdir -p "$DATA"
"$MF" data prepare moby-dick --out "$DATA"
"$MF" train "$(dirname "$0")/../configs/tiny_test.yaml" --set run.dir="$DATA/tiny_run" --set data.dir="$DATA" >/dev/null
test -f "$DATA/tiny_run/last.h5"
