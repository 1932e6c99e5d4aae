#!/bin/sh
# The same training run through train/ and through llmfs-train: tokens per second of each, in
# alternating rounds, and the ratio tree / command per round (median and range), with the loss
# columns compared bit for bit.  The baseline (llmfs-train) runs in the same rounds, on the same
# machine, because these machines are noisy.
#
#   sh tools/bench/train-tree.sh BUILD_DIR CORPUS [ROUNDS] [STEPS]
#
# Needs root (FUSE).  Options: the model of docs/benchmarks.md ("Training through the tree").
set -eu
. "$(cd "$(dirname "$0")" && pwd)/lib-mount.sh"
build=$(cd "${1:?usage: train-tree.sh BUILD_DIR CORPUS [ROUNDS] [STEPS]}" && pwd)
corpus=${2:?usage: train-tree.sh BUILD_DIR CORPUS [ROUNDS] [STEPS]}
rounds=${3:-3}
steps=${4:-300}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/llmfs-trainbench.XXXXXX")
mnt=$work/mnt
pid=
cleanup() {
	[ -n "$pid" ] && { fusermount3 -u "$mnt" 2>/dev/null; wait "$pid" 2>/dev/null; }
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$mnt"
opts="layers=4 heads=4 embd=128 seq=128 batch=8 steps=$steps val-every=100 val-batches=4 ckpt-every=0 sample-every=0 seed=1"
cli_opts=$(printf '%s\n' $opts | sed 's/^/--/; s/=/ /')

bench_mount "$build/fs/llmfs" "$work/store" "$mnt" "$work/daemon.log"
mkdir -p "$mnt/models/corpora"
cp "$corpus" "$mnt/models/corpora/corpus.txt"

# mean tokens/s of a metrics table after its first 10 steps (warm-up)
tps() { awk -F'\t' 'NR > 11 { s += $5; n++ } END { printf "%.1f\n", s / n }' "$1"; }

ratios=
r=1
while [ $r -le "$rounds" ]; do
	# shellcheck disable=SC2086
	"$build/tools/train/llmfs-train" --data "$corpus" --out "$work/cli$r" $cli_opts >/dev/null 2>&1
	cli=$(tps "$work/cli$r/loss.tsv")
	mkdir "$mnt/train/b$r"
	printf 'data=models/corpora/corpus.txt %s\n' "$opts" >"$mnt/train/b$r/job"
	cat "$mnt/train/b$r/result" >/dev/null
	tree=$(tps "$mnt/train/b$r/metrics.tsv")
	cut -f1-4 "$work/cli$r/loss.tsv" >"$work/a"
	cut -f1-4 "$mnt/train/b$r/metrics.tsv" >"$work/b"
	same=$(cmp -s "$work/a" "$work/b" && echo identical || echo DIFFERENT)
	ratio=$(echo "$tree / $cli" | bc -l)
	printf 'round %d: llmfs-train %s tok/s, train/ %s tok/s, ratio %.3f, loss columns %s\n' \
		"$r" "$cli" "$tree" "$ratio" "$same"
	ratios="$ratios $ratio"
	r=$((r + 1))
done
printf '%s\n' $ratios | sort -n | awk '{ v[NR] = $1 } END {
	printf "train/ / llmfs-train tokens per second: median %.3f, range %.3f-%.3f (%d rounds)\n",
		v[int((NR + 1) / 2)], v[1], v[NR], NR }'
