#!/bin/sh
# llmfs-route-eval: the naive cascade's pair is always among the planner's
# options.  c1, the cheapest, is right on half the prompts; w, the next,
# on 45 %, always on prompts c1 gets right, and wrong answers differ, so
# the two agree only when both are right and agree(c1,w)>dear is right
# on 0.45 + 0.55 * 0.95 of prompts at little more than dear's 55 %.
# g1 .. g4 (55-70 %, at 30-45 % of dear's price) each beat every cheaper
# model, so a pool of the models no cheaper one beats would leave w out,
# and the planner would lose to the naive cascade it cannot run (AIQ
# 0.74 against 0.84); with the pair of the two cheapest offered it beats it
# by more than 0.02 (0.88), with agree(c1,w) before each dearer model.
# (Before, the replay offered the naive cascade to its planner although
# the daemon could not run it: 0.838.)
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# 4,000 prompts; Park-Miller draws, exact in awk's doubles.
awk 'BEGIN {
  x = 4242;
  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tlatency_s\tanswer";
  split("c1 w g1 g2 g3 g4 dear", N, " ");
  split("0 0 0.55 0.6 0.65 0.7 0.95", Q, " ");
  split("0.0001 0.0002 0.3 0.35 0.4 0.45 1", C, " ");
  for (i = 0; i < 4000; i++) {
    x = (x * 16807) % 2147483647; r = x / 2147483647;
    for (m = 1; m <= 7; m++) {
      x = (x * 16807) % 2147483647; u = x / 2147483647;
      x = (x * 16807) % 2147483647; v = x / 2147483647;
      if (m == 1) ok = r < 0.5;
      else if (m == 2) ok = r < 0.45;
      else ok = u < Q[m] + 0;
      printf "p%d\tt\t%s\t%d\t%s\t1\t%s\n", i, N[m], ok, C[m],
        ok ? 7 : 100 + m * 1000 + int(v * 40);
    }
  }
}' >"$dir/naive.tsv"

"$tool" --seed 1 "$dir/naive.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
aiq() { sed -n "s/^AIQ over .* $1 \([0-9.]*\).*/\1/p" "$dir/out.txt"; }
at100() { sed -n "s/^ *100%:.* $1 \([0-9.]*\)%.*/\1/p" "$dir/out.txt"; }
p=$(aiq planner) n=$(aiq naive-agree) p100=$(at100 planner) n100=$(at100 naive-agree)
echo "AIQ planner $p naive $n; cost for dear's quality planner $p100 % naive $n100 %"
awk -v p="$p" -v n="$n" -v a="$p100" -v b="$n100" \
	'BEGIN { exit !(p != "" && n != "" && a != "" && b != "" && p > n + 0.02 && a <= b) }'
echo ok
