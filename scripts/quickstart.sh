#!/usr/bin/env bash
# The main job on a fresh machine: install, build, prepare the State of the Union corpus,
# train the tiny GPT (live progress line), evaluate it and print a sample.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
build/mforge data prepare sotu
build/mforge train configs/gpt2_tiny.yaml "$@"
build/mforge eval runs/gpt2_tiny/last.h5
echo "--- sample ---"
build/mforge generate runs/gpt2_tiny/last.h5 --prompt "The people of the United States" --max-tokens 80 --seed 1
