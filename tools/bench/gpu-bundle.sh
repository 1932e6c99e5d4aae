#!/bin/sh
# Packs the CUDA checks and benchmarks for a GPU machine that has CUDA (driver, runtime and
# cuBLAS) but none of Debian's libraries: the binaries that train_gpu.sh runs, taken from
# BUILD_DIR, and the shared libraries they load that are neither glibc's, the compiler's nor
# CUDA's, into DIR in the layout of a build folder.  On the GPU machine:
#   sh tools/bench/train_gpu.sh DIR
# usage: tools/bench/gpu-bundle.sh [BUILD_DIR [DIR]]   (default: build .gpu-bundle)
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
dir=${2:-.gpu-bundle}
[ -x "$build/tests/gpu/test_cuda_parity" ] || { echo "no $build/tests/gpu/test_cuda_parity" >&2; exit 1; }
ldd "$build/tests/gpu/test_cuda_parity" | grep -q libcudart ||
    { echo "$build was built without CUDA (nvcc not found, or sanitised)" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir/tests/gpu" "$dir/tools/train" "$dir/lib"
cp "$build/tests/gpu/test_cuda_parity" "$build/tests/gpu/test_cuda_engine" "$dir/tests/gpu/"
cp "$build/tools/train/llmfs-train" "$build/tools/train/llmfs-train-bench" \
    "$build/tools/train/llmfs-train-kernels" "$dir/tools/train/"
for bin in "$dir"/tests/gpu/* "$dir"/tools/train/*; do
    ldd "$bin" | awk '$3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
    case ${lib##*/} in
    ld-linux* | libc.so* | libm.so* | libmvec.so* | libdl.so* | libpthread.so* | librt.so*) ;;
    libstdc++.so* | libgcc_s.so*) ;;
    libcuda.so* | libcudart.so* | libcublas*.so*) ;;
    *) cp -L "$lib" "$dir/lib/" ;;
    esac
done
ls "$dir/lib"
du -sh "$dir"
