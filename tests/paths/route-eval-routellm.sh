#!/bin/sh
# Converts RouteLLM's recorded MMLU outcomes and replays them: the learned
# per-subject planner must reach 95 % of GPT-4's quality with at most 50 %
# GPT-4 calls (random routing needs about 68 %).  With the subjects
# collapsed to one task type only the prompt text tells prompts apart: the
# per-prompt planner (plan_route) must beat the per-type one.  On GSM8K,
# cascades judged by the arithmetic checker and prompt-length types must
# beat the random mix, and the prompt text must add to them; --text-of
# writes a model's response as the prompt text, costs unchanged.
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

aiq() { sed -n "s/^AIQ.*  $1 \([0-9.]*\).*/\1/p" "$dir/out.txt"; }
at95() { sed -n "s/^ *95%:.*  $1 \([0-9.]*\)%.*/\1/p" "$dir/out.txt"; }

python3 "$convert" --data "$data" --benchmark mmlu --no-prompts >"$dir/mmlu.tsv"
[ "$(wc -l <"$dir/mmlu.tsv")" -eq 28075 ]
"$tool" --flat-cost "$dir/mmlu.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
p=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*planner \([0-9.]*\)%.*/\1/')
r=$(grep 'calls needed' "$dir/out.txt" | sed 's/.*random \([0-9.]*\)%.*/\1/')
awk -v p="$p" -v r="$r" 'BEGIN { exit !(p <= 50 && r > 60) }'

# One task type, the first 100 prompts of each subject (to keep the test
# quick): the prompt text is the only signal.
python3 "$convert" --data "$data" --benchmark mmlu --one-type mmlu |
	awk -F'\t' 'NR == 1 || substr($1, match($1, /[0-9]+$/)) + 0 < 100' >"$dir/mmlu1.tsv"
"$tool" "$dir/mmlu1.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
grep -q '^per-prompt signal: plan_route over the prompt text of 5695 prompts' "$dir/out.txt"
awk -v ap="$(aiq planner)" -v at="$(aiq by-type)" -v cp="$(at95 planner)" \
    -v ct="$(at95 by-type)" 'BEGIN { exit !(ap > at + 0.005 && cp < ct - 10) }'

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
awk -v p="$p" -v r="$r" -v ap="$(aiq planner)" -v ar="$(aiq random)" \
    -v at="$(aiq by-type)" 'BEGIN { exit !(p < r - 5 && ap > ar && ap > at) }'
# --text-of: a model's recorded response stands in the prompt column, the
# costs stay those of the question.
weak=mistralai/Mixtral-8x7B-Instruct-v0.1
python3 "$convert" --data "$data" --benchmark gsm8k --text-of "$weak" >"$dir/text.tsv"
python3 "$convert" --data "$data" --benchmark gsm8k >"$dir/question.tsv"
awk -F'\t' 'NR == 2 { exit !($9 ~ /^ James runs 3 sprints in each session/) }' "$dir/text.tsv"
awk -F'\t' 'NR == 2 { exit !($9 ~ /^James decides to run 3 sprints/) }' "$dir/question.tsv"
[ "$(cut -f1-5 "$dir/text.tsv" | md5sum)" = "$(cut -f1-5 "$dir/question.tsv" | md5sum)" ]
if python3 "$convert" --data "$data" --benchmark gsm8k --text-of nobody >/dev/null 2>&1; then exit 1; fi
echo ok
