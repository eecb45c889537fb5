#!/usr/bin/env bash
# A hash of the sources that go into the build (not the scripts the checks run from the tree):
# tests/gpu/bundle.sh stores it in the bundle, and tests/gpu/run.sh uses a bundle only when the
# tree it runs in gives the same hash. Needs only coreutils (the GPU machine has no git tree).
set -euo pipefail
cd "$(dirname "$0")/../.."
find CMakeLists.txt cmake core kernels parallel trainers serving datasets benchmarks tests -type f \
  \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.def' \
     -o -name '*.cmake' -o -name CMakeLists.txt \) -not -path '*/build*' |
  LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
