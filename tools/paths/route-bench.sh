#!/bin/sh
# The routing figures of docs/benchmarks.md and docs/paths.md: converts
# RouteLLM's recorded outcomes (MMLU with one task type, GSM8K, MT-Bench)
# and replays each with llmfs-route-eval over several seeds, then the
# held-out tables (MMLU subjects and MT-Bench categories never trained on).
# Usage: tools/paths/route-bench.sh [DATA_DIR [ROUTE_EVAL [SEEDS]]]
#   DATA_DIR   ../shared/data/routing/routellm (default)
#   ROUTE_EVAL build/tools/paths/llmfs-route-eval (default)
#   SEEDS      "1 2 3 4 5" (default)
# Prints one line per run: table, seed, then the tool's key figures.
set -eu
data=${1:-../shared/data/routing/routellm}
tool=${2:-build/tools/paths/llmfs-route-eval}
seeds=${3:-1 2 3 4 5}
conv=$(dirname "$0")/routellm-to-outcomes.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python3 "$conv" --data "$data" --benchmark mmlu --one-type mmlu >"$dir/mmlu.tsv"
python3 "$conv" --data "$data" --benchmark gsm8k --answers \
	--check gsm8k-arith >"$dir/gsm8k.tsv"
python3 "$conv" --data "$data" --benchmark mt-bench --one-type mt-bench \
	--answers >"$dir/mt-bench.tsv"
python3 "$conv" --data "$data" --benchmark mmlu --one-type mmlu \
	--held-out-subjects 4 >"$dir/mmlu-heldout.tsv"
python3 "$conv" --data "$data" --benchmark mt-bench --one-type mt-bench \
	--answers --held-out-subjects 4 >"$dir/mt-bench-heldout.tsv"

# table seed | single best q, cost | 95/99/100 % cost shares | AIQ line
summary() {
	awk -v name="$1" -v seed="$2" '
	/^split:/ { split_ = $0 }
	/\(best\)  quality/ { best = $0 }
	/^ *95%:/ { c95 = $0 } /^ *99%:/ { c99 = $0 } /^ *100%:/ { c100 = $0 }
	/^AIQ/ { aiq = $0 }
	/^calls needed/ { calls = $0 }
	/^per-prompt signal/ { sig = $0 }
	END { printf "== %s seed %s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n", name, seed,
	      split_, sig, best, calls, c95, c99, c100, aiq }'
}

for t in mmlu gsm8k mt-bench; do
	for s in $seeds; do
		"$tool" --seed "$s" "$dir/$t.tsv" | summary "$t" "$s"
	done
done
for t in mmlu-heldout mt-bench-heldout; do
	"$tool" "$dir/$t.tsv" | summary "$t" split-column
done
