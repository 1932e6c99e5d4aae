#!/bin/sh
# llmfs-route-eval: the three-stage cascade (a cheap pair, a mid model, a
# dear one).  Five cheap models, right on 40, 45, 50, 55 and 60 % of
# prompts independently, fill the agreement pool (each beats every
# cheaper one); mid, at 1 % of dear's price, is right on 80 %, dear on
# 95 %; a wrong answer is one of 40 numbers, so wrong answers seldom
# agree.  The two best cheap models agreeing, else mid when it agrees with
# either, else dear, stands on P = 0.33 + (0.22 + 0.27) * 0.8 = 0.72 and
# calls dear on 28 % of prompts; no option of the pool alone does as well
# (the three best cheap ones: dear on 42.5 %).  Mixed with the pair ->
# mid cascade (0.87 for 1 % of dear's cost), dear's quality costs about
# 20 % of dear with the three-stage cascade and about 32 % without it.
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# table QUALITIES: 4,000 prompts of seven models c1..c5, mid and dear at
# fixed prices, each right with its probability of QUALITIES (a list of
# seven); Park-Miller draws, exact in awk's doubles, so every awk builds
# the same table.
table() {
	awk -v qs="$1" 'BEGIN {
	  x = 4242;
	  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tlatency_s\tanswer";
	  split("c1 c2 c3 c4 c5 mid dear", N, " ");
	  split(qs, Q, " ");
	  split("0.0001 0.0002 0.0003 0.0004 0.0005 0.01 1", C, " ");
	  for (i = 0; i < 4000; i++)
	    for (m = 1; m <= 7; m++) {
	      x = (x * 16807) % 2147483647; u = x / 2147483647;
	      x = (x * 16807) % 2147483647; v = x / 2147483647;
	      ok = u < Q[m] + 0;
	      printf "p%d\tt\t%s\t%d\t%s\t1\t%s\n", i, N[m], ok, C[m],
	        ok ? 7 : 100 + int(v * 40);
	    }
	}'
}

table "0.4 0.45 0.5 0.55 0.6 0.8 0.95" >"$dir/deep.tsv"

share() { # share FILE LEVEL METHOD: the cost share printed, or 999
	sed -n "s/^ *$2%:.* $3 \([0-9.]*\)%.*/\1/p" "$1" | grep . || echo 999
}

# deep NAME CASCADES MAX: replays $dir/NAME.tsv (seed 1); the planner must
# be offered CASCADES three-stage cascades and reach dear's full quality at
# MAX % of its cost or less.
deep() {
	"$tool" --seed 1 "$dir/$1.tsv" >"$dir/$1.txt"
	cat "$dir/$1.txt"
	grep -q "^planner options: .* $2 of the agreement cascades three-stage with a mid model from outside the pool" \
		"$dir/$1.txt"
	p100=$(share "$dir/$1.txt" 100 planner)
	echo "$1: cost for 100 % of dear's quality: planner $p100 %"
	awk -v p="$p100" -v m="$3" 'BEGIN { exit !(p <= m) }'
	# The paired difference at the planner's highest quality is its
	# quality less dear's, with a standard error above 0 (it and dear
	# differ on some prompts).
	awk '/^planner, highest quality on its curve/ { top = $8 }
	     /^single dear \(best\)/ { best = $5 }
	     /^  less the best single model.s, per test prompt:/ {
	       d = $9; sub(/,/, "", d); se = $12 }
	     END { printf "top %s best %s difference %s se %s\n", top, best, d, se
	       exit !(top != "" && best != "" && d != "" &&
	         (d - (top - best))^2 < 0.0002^2 && se > 0) }' "$dir/$1.txt"
}

# Ten pairs of the pool, each -> mid -> dear: about 20 % with the
# three-stage cascade, 30 % or more without.
deep deep 10 25

# The mid model may be one that only the pair beats: here c5 (85 %, at
# 1/20 of mid's price) outdoes mid (80 %), yet mid is the best model that
# can break c5's tie with c4 (neither member can break its own).  c4 and
# c5 agreeing, else mid when it agrees with either, else dear stands on
# P = 0.84 and calls dear on 16 % of prompts; without mid the best the
# pool does is the triple c3, c4, c5 (P = 0.66, dear on 34 %).  For dear's
# full quality: 3.3 % of its cost with it, 7.0 % without (seed 1).
table "0.4 0.45 0.5 0.55 0.85 0.8 0.95" >"$dir/beaten.tsv"
# The four pairs with c5, each -> mid -> dear.
deep beaten 4 5
echo ok
