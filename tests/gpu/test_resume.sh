#!/bin/sh
# Resuming from a checkpoint reproduces the uninterrupted run exactly (CPU backend): the same
# train and validation losses and learning rates, logged to the last bit, and the same final
# weights and optimizer state, byte for byte.
# usage: test_resume.sh LLMFS_TRAIN CORPUS (the shared data folder's tinyshakespeare.txt: fails,
# naming it, when it is missing)
set -eu
train=$1
corpus=$2
if [ ! -r "$corpus" ]; then
    echo "FAIL: the shared data folder is missing: cannot read $corpus" \
         "(CI has it at ../shared beside the repository; or meson setup -Dshared_dir=PATH)"
    exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/llmfs-resume-XXXXXX")
trap 'rm -rf "$dir"' EXIT

args="--steps 12 --layers 2 --heads 2 --embd 32 --seq 32 --batch 4 --warmup 3
      --val-every 4 --val-batches 2 --sample-len 16 --seed 5"
# shellcheck disable=SC2086
"$train" --data "$corpus" --out "$dir/a" --ckpt-every 6 $args >/dev/null
# shellcheck disable=SC2086
"$train" --data "$dir/a/tokens.bin" --out "$dir/b" --resume "$dir/a/ckpt-00000006" $args \
    >/dev/null

# step, train loss, validation loss, learning rate; tokens/s and ms/step are timings
awk -F'\t' 'NR > 1 && $1 > 6 { print $1, $2, $3, $4 }' "$dir/a/loss.tsv" >"$dir/a.cols"
awk -F'\t' 'NR > 1 { print $1, $2, $3, $4 }' "$dir/b/loss.tsv" >"$dir/b.cols"
if [ "$(wc -l <"$dir/a.cols")" -ne 6 ]; then
    echo "FAIL: expected 6 logged steps after the checkpoint"; cat "$dir/a/loss.tsv"; exit 1
fi
if ! cmp -s "$dir/a.cols" "$dir/b.cols"; then
    echo "FAIL: resumed losses differ"; paste "$dir/a.cols" "$dir/b.cols"; exit 1
fi
for f in model.safetensors optimizer.safetensors; do
    cmp "$dir/a/ckpt-00000012/$f" "$dir/b/ckpt-00000012/$f" ||
        { echo "FAIL: final $f differs"; exit 1; }
done
# and training did something
awk -F'\t' 'NR == 2 { first = $2 } END { if (!($2 < first)) exit 1 }' "$dir/a/loss.tsv" ||
    { echo "FAIL: loss did not fall"; cat "$dir/a/loss.tsv"; exit 1; }
echo "ok: steps 7-12 identical after resume"
