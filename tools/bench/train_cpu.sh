#!/bin/sh
# CPU training throughput: tokens/s and achieved model FLOP/s of a full training step
# (forward, backward, AdamW) against the single-precision GEMM rate of the same OpenBLAS,
# measured in the same run (before and after), for a ~10M-parameter model and GPT-2 124M.
# usage: [THREADS=N] tools/bench/train_cpu.sh [BUILD_DIR]
# THREADS (default: all cores) sets both the engine's OpenMP threads and the GEMM reference's;
# on a machine shared with other work, fewer threads than cores can be faster.
set -eu
cd "$(dirname "$0")/../.."
bench=${1:-build}/tools/train/llmfs-train-bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== ~10M parameters: 6 layers, 6 heads, width 384, context 256, batch 8, bytes"
OMP_NUM_THREADS=${THREADS:-$(nproc)} nice "$bench" --layers 6 --heads 6 --embd 384 --vocab 256 --batch 8 --seq 256 --steps 5
echo "== GPT-2 124M: 12 layers, 12 heads, width 768, vocabulary 50257, context 1024, batch 1"
OMP_NUM_THREADS=${THREADS:-$(nproc)} nice "$bench" --layers 12 --heads 12 --embd 768 --vocab 50257 --batch 1 --seq 1024 --steps 2
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== per-kernel times at the ~10M shapes"
OMP_NUM_THREADS=${THREADS:-$(nproc)} nice "${1:-build}/tools/train/llmfs-train-kernels"
