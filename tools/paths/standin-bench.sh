#!/bin/sh
# llmfs-route-eval on STAND-IN 11-model tables (tools/paths/standin-table.py:
# made-up outcomes, not measurements of real models), as a new user runs it:
# for each kind of benchmark, error correlation and seed, one table, one run
# with the defaults, and one line of the figures the goal is about.
# Usage: tools/paths/standin-bench.sh [ROUTE_EVAL [SEEDS [KINDS [CORRS [PROFILE]]]]]
#   ROUTE_EVAL build/tools/paths/llmfs-route-eval (default)
#   SEEDS      "1 2 3" (default)      KINDS "mc pronoun code" (default)
#   CORRS      "0.3 0.7" (default: --corr of the generator)
#   PROFILE    price (default): skill rises with log price (the generator's
#              line); rb: each model's accuracy set per kind to APPROXIMATE
#              RouterBench-like figures (mc ~ ARC-Challenge, pronoun ~
#              Winogrande, code ~ MBPP; arXiv 2403.12031, Table 1, as
#              recalled: check them against the paper before citing them)
# Each line: kind corr seed | planner, naive agreement cascade and oracle
# cost shares at 95 / 99 / 100 % of the best single model's quality | AIQ
# of the planner, the best single model (singles), the naive cascade and
# the oracle | the planner's highest quality less the best model's, per
# test prompt, ± its paired standard error | what cross-validation chose.
set -eu
tool=${1:-build/tools/paths/llmfs-route-eval}
seeds=${2:-1 2 3}
kinds=${3:-mc pronoun code}
corrs=${4:-0.3 0.7}
profile=${5:-price}
# Models in standin-table.py's order: mistral-7b, wizardlm-13b, mixtral,
# code-llama-34b, yi-34b, claude-instant, llama-2-70b, gpt-3.5, claude-v1,
# claude-v2, gpt-4.
acc() {
	[ "$profile" = rb ] || return 0
	case $1 in
	mc) echo "--accuracies 0.60,0.60,0.85,0.45,0.88,0.80,0.60,0.85,0.85,0.88,0.95" ;;
	pronoun) echo "--accuracies 0.55,0.50,0.65,0.60,0.75,0.55,0.55,0.62,0.60,0.60,0.87" ;;
	code) echo "--accuracies 0.25,0.35,0.55,0.45,0.35,0.60,0.30,0.65,0.55,0.65,0.68" ;;
	esac
}
case $profile in price|rb) ;; *) echo "PROFILE: price or rb" >&2; exit 2 ;; esac
gen=$(dirname "$0")/standin-table.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

for k in $kinds; do
	for c in $corrs; do
		for s in $seeds; do
			# shellcheck disable=SC2046
			python3 "$gen" --kind "$k" --corr "$c" --seed "$s" \
				$(acc "$k") >"$dir/t.tsv"
			"$tool" "$dir/t.tsv" >"$dir/out.txt"
			awk -v k="$k" -v c="$c" -v s="$s" '
			function pct(line, who,   r) {
				r = line; sub(".*" who " ", "", r)
				if (r ~ /^not reached/) return "n.r."
				sub(/%.*/, "", r); return r
			}
			function num(line, who,   r) {
				r = line; sub(".*" who " ", "", r); sub(/ .*/, "", r)
				return r
			}
			/^ *95%:/ { l95 = $0 } /^ *99%:/ { l99 = $0 }
			/^ *100%:/ { l100 = $0 } /^AIQ/ { aiq = $0 }
			/^  less the best single model/ { d = $9; sub(/,/, "", d)
				gap = d " ± " $12 }
			/^per-prompt signal/ { sig = $0; sub(/.*TF-IDF; /, "", sig)
				sub(/; k, weights.*/, "", sig) }
			END {
				printf "%s corr %s seed %s | planner %s/%s/%s naive %s/%s/%s oracle %s/%s/%s | AIQ planner %s singles %s naive %s oracle %s | top - best %s | %s\n",
				  k, c, s,
				  pct(l95, "planner"), pct(l99, "planner"), pct(l100, "planner"),
				  pct(l95, "naive-agree"), pct(l99, "naive-agree"), pct(l100, "naive-agree"),
				  pct(l95, "oracle"), pct(l99, "oracle"), pct(l100, "oracle"),
				  num(aiq, "planner"), num(aiq, "singles"),
				  num(aiq, "naive-agree"), num(aiq, "oracle"), gap, sig
			}' "$dir/out.txt"
		done
	done
done
