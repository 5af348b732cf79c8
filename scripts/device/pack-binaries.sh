#!/usr/bin/env bash
# Fills the folder that the device tool carries to an H200 machine (`carry`, at most 64 MiB) from a GPU build made
# here: the binaries the device scripts run, stripped, and the project's own shared libraries that those machines lack
# (they have CUDA, cuBLAS, cuDNN, NCCL and Open MPI, not fmt or yaml-cpp; lib.sh puts the folder on the library path).
# Usage: scripts/device/pack-binaries.sh BUILD_DIR [DEST]   (DEST defaults to .gpucarry; it is emptied first)
set -euo pipefail
build=${1:?usage: pack-binaries.sh BUILD_DIR [DEST]}
dest=${2:-.gpucarry}
binaries=(cli/paratwin tests/gpu_tests bench/bench_kernels bench/bench_cuda_backend bench/bench_attention
          bench/bench_memory_launch)
# Shared libraries to carry: a dependency whose file name starts with one of these.
carried_libraries='^lib(fmt|yaml-cpp)\.so'
for b in "${binaries[@]}"; do
  if [[ ! -x $build/$b ]]; then
    echo "pack-binaries: $build/$b is missing: build the GPU targets first (cmake --build $build)" >&2
    exit 1
  fi
done
rm -rf "$dest"
mkdir -p "$dest"
for b in "${binaries[@]}"; do
  strip --strip-unneeded -o "$dest/$(basename "$b")" "$build/$b"
  ldd "$build/$b" | awk '$2 == "=>" {print $1, $3}' | while read -r name path; do
    if [[ $name =~ $carried_libraries && ! -e $dest/$name ]]; then cp -L "$path" "$dest/$name"; fi
  done
done
size_mib=$(du -sm "$dest" | cut -f1)
if ((size_mib > 64)); then
  echo "pack-binaries: $dest is $size_mib MiB, over the device tool's 64 MiB carry limit" >&2
  exit 1
fi
echo "pack-binaries: $dest ($size_mib MiB): $(ls "$dest" | tr '\n' ' ')"
