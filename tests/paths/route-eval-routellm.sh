#!/bin/sh
# Converts RouteLLM's recorded MMLU outcomes and replays them: the learned
# planner must reach 95 % of GPT-4's quality with at most 50 % GPT-4 calls
# (random routing needs about 68 %).  On GSM8K, cascades judged by the
# arithmetic checker and prompt-length types must beat the random mix.
# Fails, naming the folder, without the shared data (CI has it at ../shared
# beside the repository; meson setup -Dshared_dir=PATH names another).
set -eu
tool=$1
convert=$2
data=$3
if [ ! -d "$data/mmlu/responses" ]; then
	echo "FAIL: the shared data folder is missing: no $data/mmlu/responses" \
	     "(CI has it at ../shared beside the repository; or meson setup -Dshared_dir=PATH)"
	exit 1
fi
command -v python3 >/dev/null || { echo "FAIL: no python3 (tools/install-deps.sh --test)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python3 "$convert" --data "$data" --benchmark mmlu >"$dir/mmlu.tsv"
[ "$(wc -l <"$dir/mmlu.tsv")" -eq 28075 ]
"$tool" --flat-cost "$dir/mmlu.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
p=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*planner \([0-9.]*\)%.*/\1/')
r=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*random \([0-9.]*\)%.*/\1/')
awk -v p="$p" -v r="$r" 'BEGIN { exit !(p <= 50 && r > 60) }'

checker=$(dirname "$convert")/check-gsm8k-arith.py
printf 'so <<3*4=12>> and\n#### 12\n' | python3 "$checker"
if printf 'so <<3*4=13>> and\n#### 13\n' | python3 "$checker"; then exit 1; fi
if printf 'no final line 12\n' | python3 "$checker"; then exit 1; fi
python3 "$convert" --data "$data" --benchmark gsm8k --check gsm8k-arith \
  --length-buckets 4 >"$dir/gsm8k.tsv"
"$tool" --flat-cost "$dir/gsm8k.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
grep -q '^planner options: 2 single models, 1 cascades' "$dir/out.txt"
p=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*planner \([0-9.]*\)%.*/\1/')
r=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*random \([0-9.]*\)%.*/\1/')
ap=$(grep '^AIQ' "$dir/out.txt" | sed 's/.*planner \([0-9.]*\) .*/\1/')
ar=$(grep '^AIQ' "$dir/out.txt" | sed 's/.*random \([0-9.]*\) .*/\1/')
awk -v p="$p" -v r="$r" -v ap="$ap" -v ar="$ar" \
  'BEGIN { exit !(p < r - 5 && ap > ar) }'
echo ok
