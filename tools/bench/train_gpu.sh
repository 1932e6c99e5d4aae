#!/bin/sh
# GPU check and benchmark, one script for a lent GPU machine: the CUDA tests, then GPT-2
# 124M training throughput and MFU with fp32 and with bf16 activations (bf16 tensor-core
# matmuls, fp32 master weights), then the time of each kernel at those shapes.
# MFU = achieved model FLOP/s / peak dense bf16 FLOP/s (PEAK_TFLOPS, default 989 for an H100
# SXM; the fp32 run is reported against the same peak so that the two compare).
# usage: tools/bench/train_gpu.sh [BUILD_DIR]
# BUILD_DIR may be a bundle made by gpu-bundle.sh (for a machine without Debian's libraries):
# its lib/ is put on the loader's path, and so is the folder of this machine's cuBLAS when the
# binaries' rpath (this machine's CUDA prefix) does not hold it.
set -u
cd "$(dirname "$0")/../.."
build=${1:-build}
peak=${PEAK_TFLOPS:-989}
paths=""
[ -d "$build/lib" ] && paths="$(cd "$build/lib" && pwd)"
if ! ldd "$build/tests/gpu/test_cuda_parity" | grep -q 'libcublas.so.* => /'; then
    cublas=$(find /usr /opt -name 'libcublas.so.1[0-9]*' 2>/dev/null | head -n 1)
    [ -n "$cublas" ] && paths="$paths:${cublas%/*}"
fi
export LD_LIBRARY_PATH="$paths${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$build/tests/gpu/test_cuda_parity"
echo "parity rc=$?"
"$build/tests/gpu/test_cuda_engine"
echo "engine rc=$?"
for flag in "" --bf16; do
    line=$("$build/tools/train/llmfs-train-bench" --backend cuda $flag --layers 12 --heads 12 \
        --embd 768 --vocab 50257 --batch 8 --seq 1024 --steps 10)
    echo "$line"
    echo "$line" | tr ' ' '\n' | awk -F= -v peak="$peak" -v f="${flag:-fp32}" \
        '$1 == "model_gflops" { printf "MFU(%s) = %.1f%% of %s TFLOP/s\n", f, $2 / 10 / peak, peak }'
done
# Where the step's time goes, kernel by kernel, at the same shapes.
for flag in --bf16 ""; do
    "$build/tools/train/llmfs-train-kernels" --backend cuda $flag --layers 12 --heads 12 \
        --embd 768 --vocab 50257 --batch 8 --seq 1024
done
# The device's own checkers on the parity test, where the machine's runtime allows them:
# shared-memory races (racecheck) and out-of-bounds or misaligned accesses (memcheck), each
# bounded in time; "ERROR SUMMARY: 0 errors" is the pass.
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$san" ]; then
    for tool in racecheck memcheck; do
        timeout 120 "$san" --tool "$tool" --error-exitcode 99 \
            "$build/tests/gpu/test_cuda_parity" >"${TMPDIR:-/tmp}/sanitizer.log" 2>&1
        echo "compute-sanitizer $tool rc=$?"
        grep -E '^========= (ERROR SUMMARY|Error|Invalid|Race)' "${TMPDIR:-/tmp}/sanitizer.log" |
            head -n 20
    done
fi
