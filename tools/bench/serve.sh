#!/bin/sh
# Generation speed of llmfs-serve's engine (gpu/infer.h): decode tokens/s with the KV cache,
# without it (the whole sequence recomputed per token), and PyTorch 1.13 running the same
# model with its own KV cache (tests/serve/gpt2_ref.py bench), on the same CPU and threads.
# Greedy decoding; the model is GPT-2-shaped with random weights (PyTorch writes it in
# Hugging Face's layout, llmfs-serve loads that file).
# THREADS (default "1 NPROC") lists the thread counts to run; on a machine shared with other
# work one thread can be faster than all (OpenMP's barriers wait for descheduled threads).
# usage: [THREADS="1 2"] [LAYERS=.. HEADS=.. EMBD=.. VOCAB=.. CTX=..] [PROMPT=128 NEW=64]
#        tools/bench/serve.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
bench=$build/tools/serve/llmfs-serve-bench
py=/usr/bin/python3
threads=${THREADS:-1 $(nproc)}
L=${LAYERS:-4} H=${HEADS:-4} C=${EMBD:-256} V=${VOCAB:-50257} T=${CTX:-512}
P=${PROMPT:-128} N=${NEW:-64}
dir=$(mktemp -d "${TMPDIR:-/tmp}/llmfs-serve-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $L layers, $H heads, width $C, vocabulary $V, context $T; prompt $P, $N new tokens, threads: $threads"
$py tests/serve/gpt2_ref.py make "$dir/m" --layers "$L" --heads "$H" --embd "$C" --vocab "$V" --ctx "$T"
for t in $threads; do
	for run in 1 2 3; do
		echo "== $t threads, run $run"
		printf 'llmfs (cache, no cache): '
		OMP_NUM_THREADS=$t nice "$bench" "$dir/m" "$P" "$N"
		printf 'pytorch (cache):         '
		OMP_NUM_THREADS=$t nice $py tests/serve/gpt2_ref.py bench "$dir/m" "$P" "$N" "$t"
	done
done
# Cost per new token against the prompt already processed: flat with the cache, growing without.
echo "== prompt length sweep, 1 thread"
for p in 16 128 400; do
	OMP_NUM_THREADS=1 nice "$bench" "$dir/m" "$p" "$N"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
