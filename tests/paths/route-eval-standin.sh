#!/bin/sh
# llmfs-route-eval on a STAND-IN 11-model table (tools/paths/standin-table.py:
# made-up outcomes, prices from 7B open models to GPT-4), as a new user runs
# it: every figure must make sense with many models of spread prices.
set -eu
tool=$1
gen=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

python3 "$gen" --seed 4 --prompts 500 --kind mc >"$dir/t.tsv"
"$tool" "$dir/t.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
grep -q '^table .*: 500 prompts (0 incomplete dropped), 11 models, 1 task types' "$dir/out.txt" ||
	fail "table not read whole"
grep -q '^single mistral-7b-chat (cheapest) ' "$dir/out.txt" || fail "cheapest"
# The best on the test split (one of the three dear ones here), and the
# naive cascade: the two cheapest models, else the best one.
best=$(sed -n 's/^single \([^ ]*\) (best) .*/\1/p' "$dir/out.txt")
case $best in claude-v1|claude-v2|gpt-4) ;; *) fail "best: '$best'" ;; esac
grep -q "^naive agreement cascade agree(mistral-7b-chat,wizardlm-13b)>$best " "$dir/out.txt" ||
	fail "no naive agreement cascade row to $best"
# No negative percentage, nan or unbounded figure anywhere.
if grep -E -- '-[0-9.]+%|nan|inf' "$dir/out.txt"; then fail "a bad figure"; fi
# The oracle reaches every level, no dearer than the planner (which may
# need more than the best model's cost: a vote of the three dear ones).
for l in 95 99 100; do
	line=$(grep "^ *$l%:" "$dir/out.txt")
	o=$(echo "$line" | sed -n 's/.* oracle \([0-9.]*\)%.*/\1/p')
	p=$(echo "$line" | sed -n 's/.* planner \([0-9.]*\)%.*/\1/p')
	[ -n "$o" ] || fail "$l %: the oracle reaches nothing: $line"
	[ -z "$p" ] || awk -v o="$o" -v p="$p" 'BEGIN { exit !(o <= p) }' ||
		fail "$l %: $line"
done
# AIQ: the planner above every single model and the naive cascade,
# below the oracle (the issue's goal, which this stand-in meets).
aiq() { sed -n "s/^AIQ.* $1 \([0-9.]*\).*/\1/p" "$dir/out.txt"; }
awk -v p="$(aiq planner)" -v s="$(aiq singles)" -v n="$(aiq naive-agree)" \
    -v o="$(aiq oracle)" 'BEGIN { exit !(s < p && n < p && p < o) }' ||
	fail "AIQ order: $(grep '^AIQ' "$dir/out.txt")"
# The calls to dear models are counted whichever dear model takes them,
# offline and online.
c=$(sed -n 's/^calls needed.* planner \([0-9.]*\)%.*/\1/p' "$dir/out.txt")
awk -v c="${c:-0}" 'BEGIN { exit !(c > 0) }' || fail "dear calls '$c'"
w=$(sed -n 's/^  warm start:.* other than the cheapest \([0-9.]*\)%.*/\1/p' "$dir/out.txt")
[ -n "$w" ] || fail "online: no count of dear calls"

# --accuracies sets each model's accuracy (price then sets only the
# cost): a cheap model made strong and GPT-4 made weak come out so, within
# sampling error of 2,000 prompts; a wrong count or a value out of (0, 1)
# is refused.
python3 "$gen" --seed 2 --prompts 2000 --kind code \
	--accuracies 0.9,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.5 >"$dir/a.tsv"
awk -F'\t' 'NR > 1 { n[$3]++; q[$3] += $4 }
  END { a = q["mistral-7b-chat"] / n["mistral-7b-chat"];
        g = q["gpt-4"] / n["gpt-4"]; w = q["wizardlm-13b"] / n["wizardlm-13b"];
        print "accuracies: mistral", a, "wizardlm", w, "gpt-4", g;
        exit !(a > 0.86 && a < 0.94 && g > 0.45 && g < 0.55 &&
               w > 0.25 && w < 0.35) }' "$dir/a.tsv" || fail "--accuracies not met"
for bad in 0.5 "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,1" x; do
	if python3 "$gen" --prompts 10 --accuracies "$bad" >/dev/null 2>"$dir/err"; then
		fail "--accuracies $bad accepted"
	fi
	grep -q 'accuracies' "$dir/err" || fail "--accuracies $bad: $(cat "$dir/err")"
done
echo ok
