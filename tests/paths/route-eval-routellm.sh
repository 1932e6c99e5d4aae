#!/bin/sh
# Converts RouteLLM's recorded MMLU outcomes and replays them: the learned
# planner must reach 95 % of GPT-4's quality with at most 50 % GPT-4 calls
# (random routing needs about 68 %).  Skips without the shared data.
set -eu
tool=$1
convert=$2
data=$3
[ -d "$data/mmlu/responses" ] || { echo "skipped: no $data"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: no python3"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python3 "$convert" --data "$data" --benchmark mmlu >"$dir/mmlu.tsv"
[ "$(wc -l <"$dir/mmlu.tsv")" -eq 28075 ]
"$tool" --flat-cost "$dir/mmlu.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
p=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*planner \([0-9.]*\)%.*/\1/')
r=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*random \([0-9.]*\)%.*/\1/')
awk -v p="$p" -v r="$r" 'BEGIN { exit !(p <= 50 && r > 60) }'
echo ok
