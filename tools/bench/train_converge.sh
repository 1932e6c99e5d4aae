#!/bin/sh
# Convergence benchmark: train a small byte-level GPT on tinyshakespeare for a fixed wall-clock
# budget on the CPU and report the validation loss and a sample.
# usage: tools/bench/train_converge.sh [BUILD_DIR [OUT_DIR]]
# env:   SECONDS_BUDGET (600), STEPS (500: the cosine schedule ends there; size it to what the
#        machine does in the budget), THREADS (all cores; fewer can be faster on a shared
#        machine), CORPUS (../shared/data/tinyshakespeare.txt beside the repository)
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/llmfs-converge-XXXXXX")}
budget=${SECONDS_BUDGET:-600}
corpus=${CORPUS:-../shared/data/tinyshakespeare.txt}
# 4 layers, 4 heads, width 192, context 128: about 1.9M parameters, small enough that a
# two-core machine sees the corpus more than once within ten minutes.
set -- --data "$corpus" --out "$out" --layers 4 --heads 4 --embd 192 --seq 128 --batch 16 \
    --steps "${STEPS:-500}" --lr 2e-3 --min-lr 2e-4 --warmup 50 --wd 0.1 --clip 1.0 \
    --val-every 100 --val-batches 16 --sample-len 400 --temperature 0.8 --top-k 40 \
    --seed 1 --max-seconds "$budget"
echo "command: $build/tools/train/llmfs-train $*"
threads=${THREADS:-$(nproc)}
echo "machine: $(nproc) cores, $threads threads, load $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
OMP_NUM_THREADS=$threads nice "$build/tools/train/llmfs-train" "$@"
echo "wall: $(( $(date +%s) - start )) s"
echo "final: $(tail -n 1 "$out/loss.tsv")"
echo "sample:"
tail -n +2 "$out/samples.txt"
