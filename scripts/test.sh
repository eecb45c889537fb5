#!/usr/bin/env bash
# Sets up a fresh machine for the tests (PyTorch reference included), builds, and runs
# the whole suite with ctest. Extra arguments go to ctest (e.g. -R test_ops).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh --tests
export MF_REQUIRE_TORCH="${MF_REQUIRE_TORCH:-1}" MF_REQUIRE_NODE="${MF_REQUIRE_NODE:-1}"
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
