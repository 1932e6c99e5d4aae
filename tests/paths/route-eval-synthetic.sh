#!/bin/sh
# llmfs-route-eval on a generated outcome table with three models and
# four task types where the best model depends on the type: a learned
# planner must beat a random mix, never beat the oracle, and bad tables
# must be refused with the line at fault.
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# Deterministic table: model a is right on types t0/t1, wrong on t2/t3
# (every 7th prompt aside); c is right on 90 %; b on t2 only.
awk 'BEGIN {
  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tlatency_s\tanswer";
  for (i = 0; i < 4000; i++) {
    t = i % 4; odd = (i % 7 == 0);
    qa = (t < 2) ? !odd : odd;
    qb = (t == 2) ? 1 : 0;
    qc = (i % 10 != 3);
    printf "p%d\tt%d\ta\t%d\t0.0001\t0.5\t-\n", i, t, qa;
    printf "p%d\tt%d\tb\t%d\t0.0010\t1.0\t-\n", i, t, qb;
    printf "p%d\tt%d\tc\t%d\t0.0100\t2.0\tsome answer\n", i, t, qc;
  }
  print "lonely\tt0\ta\t1\t0.0001\t-\t-";
}' >"$dir/table.tsv"

"$tool" --seed 3 "$dir/table.tsv" >"$dir/out.txt"
cat "$dir/out.txt"
grep -q '^table .*: 4000 prompts (1 incomplete dropped), 3 models, 4 task types' "$dir/out.txt"
grep -q '^single c (best) ' "$dir/out.txt"
grep -q '^single a (cheapest) ' "$dir/out.txt"

field() { # field LINE-PATTERN WORD-AFTER
  grep "$1" "$dir/out.txt" | sed -n "s/.*$2 \([0-9.]*\)%*.*/\1/p" | head -1
}
p=$(field '^ *95%:' planner)
r=$(field '^ *95%:' random)
o=$(field '^ *95%:' oracle)
aiq_p=$(field '^AIQ' planner)
aiq_r=$(field '^AIQ' random)
aiq_o=$(field '^AIQ' oracle)
echo "cost for 95 %: planner $p random $r oracle $o; AIQ: planner $aiq_p random $aiq_r oracle $aiq_o"
awk -v p="$p" -v r="$r" -v o="$o" -v ap="$aiq_p" -v ar="$aiq_r" -v ao="$aiq_o" \
  'BEGIN { exit !(o <= p && p < r / 2 && ar < ap && ap <= ao) }'

# The same table with columns in another order and the optional ones gone.
cut -f1-4 "$dir/table.tsv" | awk -F'\t' -v OFS='\t' '{ print $4, $3, $2, $1 }' \
  >"$dir/reordered.tsv"
"$tool" --seed 3 "$dir/reordered.tsv" | grep -q '3 models, 4 task types'

# A check column judging model a's answers: cascades a -> b and a -> c are
# replayed (a's answer stands when accepted, else the next model's), and
# with a checker that tracks a's correctness they need fewer calls to c.
awk 'BEGIN {
  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tcheck";
  for (i = 0; i < 3000; i++) {
    qa = (i * 7919 % 10 < 6); qc = (i % 20 != 7);
    printf "p%d\tt\ta\t%d\t0.0001\t%d\n", i, qa, (i % 50 == 3) ? !qa : qa;
    printf "p%d\tt\tb\t0\t0.0010\t-\n", i;
    printf "p%d\tt\tc\t%d\t0.0100\t-\n", i, qc;
  }
}' >"$dir/checked.tsv"
"$tool" --seed 2 "$dir/checked.tsv" >"$dir/casc.txt"
"$tool" --seed 2 --no-cascades "$dir/checked.tsv" >"$dir/single.txt"
cat "$dir/casc.txt"
grep -q '^planner options: 3 single models, 2 cascades' "$dir/casc.txt"
grep -q '^planner options: 3 single models, 0 cascades' "$dir/single.txt"
pc=$(grep 'calls needed' "$dir/casc.txt" | sed 's/.*planner \([0-9.]*\)%.*/\1/')
ps=$(grep 'calls needed' "$dir/single.txt" | sed 's/.*planner \([0-9.]*\)%.*/\1/')
echo "c calls for the target: with cascades $pc, single models only $ps"
awk -v c="$pc" -v s="$ps" 'BEGIN { exit !(c < s / 2) }'

# One task type, and what each prompt says decides which model is right:
# "alpha" prompts suit model lo, "beta" prompts model mid; hi is right on
# 90 %.  The per-type planner can only pick one model per lambda; the
# per-prompt one (plan_route over the prompt column) must do better.
awk 'BEGIN {
  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tprompt";
  split("river stone cloud maple quartz", w, " ");
  for (i = 0; i < 1600; i++) {
    k = i % 2; x = w[1 + int(i / 2) % 5];
    p = (k ? "beta question about the " : "alpha question about the ") x " number " i;
    printf "p%d\tt\tlo\t%d\t0.0001\t%s\n", i, k == 0 && i % 13, p;
    printf "p%d\tt\tmid\t%d\t0.0010\t%s\n", i, k == 1 && i % 11, p;
    printf "p%d\tt\thi\t%d\t0.0100\t%s\n", i, i % 10 != 3, p;
  }
}' >"$dir/text.tsv"
"$tool" --seed 5 "$dir/text.tsv" >"$dir/text.txt"
cat "$dir/text.txt"
grep -q '^per-prompt signal: plan_route over the prompt text of 1600 prompts' "$dir/text.txt"
pp=$(sed -n 's/^AIQ.*  planner \([0-9.]*\).*/\1/p' "$dir/text.txt")
pt=$(sed -n 's/^AIQ.* by-type \([0-9.]*\).*/\1/p' "$dir/text.txt")
c95=$(sed -n 's/^ *95%:  planner \([0-9.]*\)%.*/\1/p' "$dir/text.txt")
echo "per-prompt AIQ $pp, per-type $pt, cost for 95 %: $c95 %"
awk -v p="$pp" -v t="$pt" -v c="${c95:-100}" 'BEGIN { exit !(p > t + 0.05 && c < 30) }'
"$tool" --seed 5 --no-route "$dir/text.txt" >/dev/null 2>&1 && exit 1
"$tool" --seed 5 --no-route "$dir/text.tsv" | grep -q '^per-prompt signal: off (--no-route)'

# Answers: two cheap models and a dear one.  Where the cheap ones agree
# they are right (mostly); the naive agreement cascade and the planner's
# agreement cascades and votes are replayed from the answer column.
awk 'BEGIN {
  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tanswer";
  for (i = 0; i < 2000; i++) {
    r1 = (i % 3 != 0); r2 = (i % 4 != 0);
    a1 = r1 ? "A" : "x" i; a2 = r2 ? " a\\n" : "y" i;
    printf "p%d\tt\tc1\t%d\t0.0001\t%s\n", i, r1, a1;
    printf "p%d\tt\tc2\t%d\t0.0002\t%s\n", i, r2, a2;
    printf "p%d\tt\tdear\t%d\t0.0100\t-\n", i, i % 25 != 0;
  }
}' >"$dir/agree.tsv"
"$tool" --seed 1 "$dir/agree.tsv" >"$dir/agree.txt"
cat "$dir/agree.txt"
grep -q '^planner options: 3 single models, 0 cascades judged by the check column, 1 agreement cascades, 0 votes' "$dir/agree.txt"
# Agreement on half the prompts (both right), else dear: quality
# 0.5 + 0.5 * 0.96, cost 0.0003 + 0.5 * 0.01.
line=$(grep '^naive agreement cascade agree(c1,c2)>dear ' "$dir/agree.txt")
echo "$line" | awk '{ q = $6; c = substr($8, 2); exit !(q > 0.97 && q < 0.99 && c > 0.0050 && c < 0.0056) }'
pa=$(sed -n 's/^AIQ.*  planner \([0-9.]*\).*/\1/p' "$dir/agree.txt")
na=$(sed -n 's/^AIQ.* naive-agree \([0-9.]*\).*/\1/p' "$dir/agree.txt")
sa=$(sed -n 's/^AIQ.* singles \([0-9.]*\).*/\1/p' "$dir/agree.txt")
echo "AIQ planner $pa naive $na singles $sa"
awk -v p="$pa" -v n="$na" -v s="$sa" 'BEGIN { exit !(p >= n - 0.002 && n > s) }'

# Bad tables: the line is named and the exit status is non-zero.
printf 'prompt_id\ttask_type\tmodel\n' >"$dir/bad1.tsv"
if "$tool" "$dir/bad1.tsv" 2>"$dir/err"; then exit 1; fi
grep -q 'lacks column quality' "$dir/err"
printf 'prompt_id\ttask_type\tmodel\tquality\np\tt\tm\t1.5\n' >"$dir/bad2.tsv"
if "$tool" "$dir/bad2.tsv" 2>"$dir/err"; then exit 1; fi
grep -q 'bad2.tsv:2: quality: must be a number in \[0, 1\] (got "1.5")' "$dir/err"
printf 'prompt_id\ttask_type\tmodel\tquality\tcheck\np\tt\tm\t1\t2\n' >"$dir/bad4.tsv"
if "$tool" "$dir/bad4.tsv" 2>"$dir/err"; then exit 1; fi
grep -q 'bad4.tsv:2: check: must be 0, 1 or -' "$dir/err"
printf 'prompt_id\ttask_type\tmodel\tquality\np\tt\tm\t1\np\tt\tm\t0\n' >"$dir/bad3.tsv"
if "$tool" "$dir/bad3.tsv" 2>"$dir/err"; then exit 1; fi
grep -q 'bad3.tsv:3: duplicate row' "$dir/err"
echo ok
