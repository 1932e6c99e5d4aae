#!/bin/sh
# llmfs-route-eval: agreement of three cheap models before escalating.
# Three cheap models, each right on 65 % of prompts independently (a wrong
# answer is one of three letters, so wrong answers sometimes agree), and a
# dear one right on 85 %.  Two of three agreeing is right far more often
# than one cheap model, so the planner reaches the dear model's quality at
# a fraction of its cost; the pair alone (the naive cascade) cannot.  When
# the cheap models copy each other (their agreement says nothing), the
# planner, learning each option's quality from the training split, must
# not claim that saving.
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# table FILE COPY: Park-Miller draws (exact in awk's doubles), so every
# awk builds the same table; COPY 1 gives c2 and c3 c1's answer.
table() {
	awk -v copy="$2" 'BEGIN {
	  x = 12345;
	  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tlatency_s\tanswer";
	  split("A B C D", L, " ");
	  for (i = 0; i < 4000; i++)
	    for (m = 1; m <= 4; m++) {
	      x = (x * 16807) % 2147483647; u = x / 2147483647;
	      x = (x * 16807) % 2147483647; v = x / 2147483647;
	      if (m == 1 || m == 4 || !copy) {
	        ok = u < (m < 4 ? 0.65 : 0.85);
	        ans = ok ? "A" : L[2 + int(v * 3)];
	      }
	      printf "p%d\tt\t%s\t%d\t%.4f\t1\t%s\n", i,
	        (m < 4 ? "c" m : "dear"), ok, (m < 4 ? 0.0001 * m : 0.01), ans;
	    }
	}' >"$1"
}
table "$dir/indep.tsv" 0
table "$dir/copies.tsv" 1

share() { # share FILE LEVEL METHOD: the cost share printed, or 999
	sed -n "s/^ *$2%:.* $3 \([0-9.]*\)%.*/\1/p" "$1" | grep . || echo 999
}
aiq() { sed -n "s/^AIQ.* $2 \([0-9.]*\).*/\1/p" "$1"; }

"$tool" --seed 1 "$dir/indep.tsv" >"$dir/indep.txt"
cat "$dir/indep.txt"
# Pairs among the three cheap -> dear or a dearer cheap one, and the
# triple with need 2 and 3 -> dear.
grep -q '^planner options: 4 single models, 0 cascades judged by the check column, 6 agreement cascades, 4 votes' "$dir/indep.txt"
p100=$(share "$dir/indep.txt" 100 planner)
n100=$(share "$dir/indep.txt" 100 naive-agree)
echo "cost for 100 % of dear's quality: planner $p100 %, naive agreement $n100 %"
# Expected: P(two of three right) = 0.718, quality 0.718 + 0.282 * 0.85 =
# 0.958 for 28 % of dear's cost; the pair alone needs about 45 %.
awk -v p="$p100" -v n="$n100" 'BEGIN { exit !(p <= 30 && n >= 40) }'
awk -v p="$(aiq "$dir/indep.txt" planner)" \
    -v n="$(aiq "$dir/indep.txt" naive-agree)" \
    -v s="$(aiq "$dir/indep.txt" singles)" \
    -v o="$(aiq "$dir/indep.txt" oracle)" \
    'BEGIN { exit !(s < n && n < p && p < o) }'

# Copies: agreement is certain and worthless; the planner's quality at
# 100 % must cost about what dear does (nothing cheap reaches it).
"$tool" --seed 1 "$dir/copies.tsv" >"$dir/copies.txt"
cat "$dir/copies.txt"
c100=$(share "$dir/copies.txt" 100 planner)
echo "copies: planner cost for 100 %: $c100 %"
awk -v c="$c100" 'BEGIN { exit !(c >= 80) }'
# The same with a prompt column of random words, which say nothing about
# the outcomes: cross-validation on the training split must turn the
# per-prompt signal off (strength 0) rather than route on noise.
awk -F'\t' -v OFS='\t' 'BEGIN { x = 99; split("river stone cloud maple quartz ember", W, " ") }
  NR == 1 { print $0, "prompt"; next }
  { if ($1 != last) { pr = ""; for (k = 0; k < 8; k++) {
      x = (x * 16807) % 2147483647; pr = pr " " W[1 + int(x / 2147483647 * 6)] }
      last = $1 }
    print $0, pr }' "$dir/indep.tsv" >"$dir/noise.tsv"
"$tool" --seed 1 "$dir/noise.tsv" >"$dir/noise.txt"
grep '^per-prompt signal' "$dir/noise.txt"
grep -q '^per-prompt signal: .* strength 0.00;' "$dir/noise.txt"
p100=$(share "$dir/noise.txt" 100 planner)
echo "random prompts: planner cost for 100 %: $p100 %"
awk -v p="$p100" 'BEGIN { exit !(p <= 30) }'
echo ok
