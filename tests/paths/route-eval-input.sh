#!/bin/sh
# llmfs-route-eval as a new user meets it: odd tables, odd options and
# odd numbers must give a clear message or a right figure, never a silent
# exit, "-100%", "-nan%" or 300 digits (issue 18, "Defects found").
# Each case runs even when an earlier one failed; the test fails if any did.
set -u
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# A two-model table: rows for prompts 0..n-1, model a right on even ones.
table() { # table N [COST_A COST_B]
	awk -v n="$1" -v ca="${2:-0.001}" -v cb="${3:-0.01}" 'BEGIN {
	  print "prompt_id\ttask_type\tmodel\tquality\tcost_usd";
	  for (i = 0; i < n; i++) {
	    printf "p%d\tt\ta\t%d\t%s\n", i, i % 2 == 0, ca;
	    printf "p%d\tt\tb\t%d\t%s\n", i, i % 5 != 0, cb;
	  } }'
}

# 1. An empty model or task_type is refused with the line and the field.
table 40 >"$dir/e.tsv"
printf 'p99\tt\t\t1\t0.001\n' >>"$dir/e.tsv"
if "$tool" "$dir/e.tsv" >/dev/null 2>"$dir/err"; then fail "empty model accepted"; fi
grep -q 'e.tsv:82: model: empty' "$dir/err" || fail "empty model: $(cat "$dir/err")"
table 40 >"$dir/e2.tsv"
printf 'p99\t\ta\t1\t0.001\n' >>"$dir/e2.tsv"
"$tool" "$dir/e2.tsv" >/dev/null 2>"$dir/err"
grep -q 'e2.tsv:82: task_type: empty' "$dir/err" || fail "empty task_type: $(cat "$dir/err")"

# 2. Unreachable targets say so; zero and huge costs print sensibly.
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tsplit";
  for (i = 0; i < 200; i++) { s = i < 100 ? "train" : "test";
    printf "p%d\tt\ta\t%d\t0.001\t%s\n", i, s == "train", s;
    printf "p%d\tt\tb\t%d\t0.01\t%s\n", i, s == "test", s; } }' >"$dir/u.tsv"
"$tool" --target 1 "$dir/u.tsv" >"$dir/out" 2>&1 || fail "unreachable: exit $?"
grep -q -- '-[0-9.]*%' "$dir/out" && fail "a negative percentage: $(grep -- '-[0-9.]*%' "$dir/out")"
grep -q '^ *100%:  planner not reached' "$dir/out" || fail "unreachable: no 'not reached'"
table 40 0 0 >"$dir/z.tsv"
"$tool" "$dir/z.tsv" >"$dir/out" 2>&1 || fail "zero costs: exit $?"
grep -qi 'nan' "$dir/out" && fail "zero costs print nan: $(grep -i nan "$dir/out" | head -2)"
table 40 1e300 1e300 >"$dir/h.tsv"
"$tool" "$dir/h.tsv" >"$dir/out" 2>&1 || fail "huge costs: exit $?"
awk 'length($0) > 400 { exit 1 }' "$dir/out" || fail "huge costs: a line over 400 characters"

# 3. With three models the expensive calls count whichever dear model is
#    called; "highest quality" is the best point of the planner's curve.
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcost_usd";
  for (i = 0; i < 400; i++) {
    printf "p%d\tt\tcheap\t%d\t0.0001\n", i, i % 2 == 0;
    printf "p%d\tt\tdear\t%d\t0.01\n", i, i % 10 != 0;
    printf "p%d\tt\tbest\t%d\t0.02\n", i, i % 20 != 0; } }' >"$dir/three.tsv"
"$tool" --curve "$dir/curve.tsv" "$dir/three.tsv" >"$dir/out" 2>&1 || fail "three models: exit $?"
calls=$(sed -n 's/^calls needed.* planner \([0-9.]*\)%.*/\1/p' "$dir/out")
awk -v c="${calls:-0}" 'BEGIN { exit !(c > 50) }' ||
	fail "three models: calls to dear models for the target read '$calls'"
best=$(awk -F'\t' '$1 == "planner" && $4 > q { q = $4 } END { printf "%.4f", q }' "$dir/curve.tsv")
grep -q "^planner, highest quality on its curve  quality $best " "$dir/out" ||
	fail "highest quality point is not the curve's ($best)"

# 3b. Online, at a price where the second dearest model is worth most,
#     nearly every prompt goes to it: the online lines must count those
#     calls, not read the best single model's share (about 0 %).
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcost_usd";
  for (i = 0; i < 400; i++) {
    printf "p%d\tt\tcheap\t%d\t0.0001\n", i, i % 2 == 0;
    printf "p%d\tt\tdear\t%d\t0.01\n", i, i % 10 != 0;
    printf "p%d\tt\tbest\t%d\t0.02\n", i, i % 20 != 0; } }' >"$dir/on.tsv"
"$tool" --lambda 10 "$dir/on.tsv" >"$dir/out" 2>&1 || fail "online: exit $?"
warm=$(sed -n 's/^  warm start:.* other than the cheapest \([0-9.]*\)%.*/\1/p' "$dir/out")
awk -v c="${warm:-0}" 'BEGIN { exit !(c > 50) }' ||
	fail "online: calls to dear models read '$warm': $(grep 'warm start' "$dir/out")"

# 3c. Many models: the second cheapest is worse than the cheapest, so
#     the pool is c1 and the others that beat every cheaper one; the
#     pair c1, c2 is offered all the same, so that the naive cascade (the
#     two cheapest agree, else the best) is the baseline row and one of
#     the planner's options, and the escalation goes to the best model.
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tanswer";
  split("0.6 0.3 0.65 0.7 0.75 0.8", Q, " ");
  for (i = 0; i < 400; i++) {
    for (m = 1; m <= 6; m++) { ok = (i * (m + 3) % 97) / 97 < Q[m];
      printf "p%d\tt\tc%d\t%d\t%.4f\t%s\n", i, m, ok, 0.0001 * m, ok ? "A" : "B" }
    printf "p%d\tt\tdear\t%d\t0.01\tA\n", i, i % 10 != 0; } }' >"$dir/many.tsv"
"$tool" "$dir/many.tsv" >"$dir/out" 2>&1 || fail "many models: exit $?"
grep -q '^naive agreement cascade agree(c1,c2)>dear ' "$dir/out" ||
	fail "many models: no naive cascade row: $(grep -i naive "$dir/out")"
# The votes: every triple of the pool (10), and the daemon's own vote of
# the three best models (dear, c6, c5), which the pool lacks.
grep -q '^planner options: 7 single models, 0 cascades judged by the check column, [0-9]* agreement cascades, 11 votes' "$dir/out" ||
	fail "many models: votes: $(grep '^planner options' "$dir/out")"

# 4. Only LF ends a row: CRLF files and a raw CR inside a field read alike.
printf 'prompt_id\tanswer\ttask_type\tmodel\tquality\r\n' >"$dir/cr.tsv"
for i in $(seq 0 39); do
	printf 'p%d\tline one\rline two\\r\\n\tt\ta\t%d\r\n' "$i" $((i % 2)) >>"$dir/cr.tsv"
	printf 'p%d\tx\tt\tb\t1\r\n' "$i" >>"$dir/cr.tsv"
done
"$tool" "$dir/cr.tsv" >"$dir/out" 2>"$dir/err" || fail "CR: $(cat "$dir/err")"
grep -q '40 prompts (0 incomplete dropped), 2 models' "$dir/out" || fail "CR: rows misread"

# 4a. Answers compare as the executor compares them: blanks at either
#     end, runs of blanks inside (an escaped line end among them) and case
#     aside.  The two cheap models give the same right answer, spelt
#     differently, on 9 prompts in 10 and different wrong ones on the
#     10th, so the naive cascade calls the dear model on about 10 % of
#     the test prompts, not on all of them.
three() { # FILE C1_RIGHT C1_WRONG C2_RIGHT C2_WRONG DEAR: c1, c2 right
  # on 9 prompts in 10 with the given answers (table-escaped), dear always
  A=$2 B=$3 C=$4 D=$5 E=$6 awk 'BEGIN { v = "A B C D E"; split(v, k, " ")
    for (j = 1; j <= 5; j++) x[k[j]] = ENVIRON[k[j]]
    print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tanswer"
    for (i = 0; i < 40; i++) { ok = i % 10 != 0
      printf "p%d\tt\tc1\t%d\t0.001\t%s\n", i, ok, ok ? x["A"] : x["B"]
      printf "p%d\tt\tc2\t%d\t0.002\t%s\n", i, ok, ok ? x["C"] : x["D"]
      printf "p%d\tt\tdear\t1\t0.01\t%s\n", i, x["E"] } }' >"$1"
}
three "$dir/norm.tsv" '  The  answer\nis B ' C 'the answer IS\tb' D 'the answer is B'
"$tool" "$dir/norm.tsv" >"$dir/out" 2>&1 || fail "answer form: exit $?"
grep -q '^naive agreement cascade agree(c1,c2)>dear .*calls: c1 100.0% c2 100.0% dear [1-9][0-9]\{0,1\}\.[0-9]%$' "$dir/out" ||
	fail "answer form: $(grep '^naive' "$dir/out")"

# 4b. A raw tab inside a field (more fields than the header names) is
#     refused, not read as a shorter answer; a folder is not "empty".
table 40 | awk -F'\t' -v OFS='\t' 'NR == 1 { print $0, "answer"; next }
  { print $0, NR == 9 ? "A\tB" : "A" }' >"$dir/tab.tsv"
if "$tool" "$dir/tab.tsv" >/dev/null 2>"$dir/err"; then fail "raw tab accepted"; fi
grep -q 'tab.tsv:9: 7 columns, the header names 6' "$dir/err" || fail "raw tab: $(cat "$dir/err")"
if "$tool" "$dir" >/dev/null 2>"$dir/err"; then fail "a folder accepted"; fi
grep -q 'Is a directory' "$dir/err" || fail "a folder: $(cat "$dir/err")"

# 4c. --key compares answers by their key, as a task's "key": the two
#     cheap models name the same letter in different sentences on 9
#     prompts in 10, so whole they never agree (the naive cascade calls
#     the dear model on every prompt) and by the key they agree but on
#     the 10th; an answer without a key agrees with none, and the output
#     counts the answers with a key per model.  Whole, the output says
#     that right answers differ and names --key (not where they agree).
#     A bad regex is refused.
three "$dir/key.tsv" 'The answer is (B).' 'Maybe C.' 'I pick b,\nsurely' 'no idea' 'B.'
"$tool" "$dir/key.tsv" >"$dir/out" 2>&1 || fail "key: exit $?"
grep -q '^naive agreement cascade agree(c1,c2)>dear .*calls: c1 100.0% c2 100.0% dear 100.0%$' "$dir/out" ||
	fail "whole answers: $(grep '^naive' "$dir/out")"
grep -q '^note: answers compared whole: two right answers are the same on 0.0% of the pairs only; if the answers are sentences, --key REGEX' "$dir/out" ||
	fail "no hint of --key: $(grep '^note' "$dir/out")"
"$tool" --key '\(?([A-Da-d])\)?[.,]' "$dir/key.tsv" >"$dir/out" 2>&1 || fail "key: exit $?"
grep -q '^naive agreement cascade agree(c1,c2)>dear .*calls: c1 100.0% c2 100.0% dear [1-9][0-9]\{0,1\}\.[0-9]%$' "$dir/out" ||
	fail "key: $(grep '^naive' "$dir/out")"
grep -q '^answers compared by the key .*: with a key c1 40 of 40, c2 36 of 40, dear 40 of 40$' "$dir/out" ||
	fail "key note: $(grep '^answers compared' "$dir/out")"
if grep -q '^note: answers compared whole' "$dir/out"; then fail "hint of --key given with --key"; fi
"$tool" "$dir/norm.tsv" >"$dir/out" 2>&1
if grep -q '^note: answers compared whole' "$dir/out"; then fail "hint of --key where answers agree"; fi
# An answer without a key is still an answer: the naive cascade exists
# under a key that no answer holds (and calls dear on every prompt), and
# in a vote it counts alone, as plan_exec counts it, so with no majority
# the first member's stands.  a (best on training, so first in the vote)
# never has a key and is right on 3 prompts in 4; b and c agree, and are
# right, on the other half: the vote of the three is right everywhere.
"$tool" --key Z "$dir/key.tsv" >"$dir/out" 2>&1 || fail "key Z: exit $?"
grep -q '^naive agreement cascade agree(c1,c2)>dear .*calls: c1 100.0% c2 100.0% dear 100.0%$' "$dir/out" ||
	fail "key Z: $(grep '^naive' "$dir/out")"
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tanswer"
  for (i = 0; i < 40; i++) { k = i % 4
    printf "p%d\tt\ta\t%d\t0.001\tno idea\n", i, k != 1
    printf "p%d\tt\tb\t%d\t0.002\tAnswer: B.\n", i, k < 2
    printf "p%d\tt\tc\t%d\t0.003\tAnswer: %s.\n", i, k < 2, k < 2 ? "B" : "D" } }' >"$dir/vk.tsv"
"$tool" --key '([A-D])' "$dir/vk.tsv" >"$dir/out" 2>&1 || fail "vote key: exit $?"
grep -q '^planner, highest quality on its curve  quality 1.0000 .*calls: a 100.0% b 100.0% c 100.0%$' "$dir/out" ||
	fail "vote key: $(grep 'highest quality' "$dir/out")"
for bad in '(' '' 'a{2'; do
	if "$tool" --key "$bad" "$dir/key.tsv" >/dev/null 2>"$dir/err"; then fail "--key '$bad' accepted"; fi
	grep -q '^llmfs-route-eval: --key: ' "$dir/err" || fail "--key '$bad': $(cat "$dir/err")"
done

# 5. Headers: more than 64 columns, a byte order mark, a duplicate name.
{
	printf '\357\273\277'
	for k in $(seq 1 70); do printf 'extra%d\t' "$k"; done
	printf 'prompt_id\ttask_type\tmodel\tquality\tcost_usd\n'
	table 40 | tail -n +2 | while IFS= read -r l; do
		for k in $(seq 1 70); do printf 'x\t'; done
		printf '%s\n' "$l"
	done
} >"$dir/wide.tsv"
"$tool" "$dir/wide.tsv" >"$dir/out" 2>"$dir/err" || fail "wide/BOM header: $(cat "$dir/err")"
printf 'prompt_id\ttask_type\tmodel\tquality\tquality\n' >"$dir/dup.tsv"
if "$tool" "$dir/dup.tsv" >/dev/null 2>"$dir/err"; then fail "duplicate header accepted"; fi
grep -q 'column quality appears twice' "$dir/err" || fail "duplicate header: $(cat "$dir/err")"

# 6. One stray row of an unknown model: the message says which model; a
#    bad field is named.
table 40 >"$dir/s.tsv"
printf 'p3\tt\tstray\t1\t0.001\n' >>"$dir/s.tsv"
"$tool" "$dir/s.tsv" >/dev/null 2>"$dir/err"
grep -q 'model stray answered 1 of 40 prompts' "$dir/err" || fail "stray model: $(cat "$dir/err")"
table 4 >"$dir/neg.tsv"
printf 'p9\tt\ta\t1\t-3\n' >>"$dir/neg.tsv"
"$tool" "$dir/neg.tsv" >/dev/null 2>"$dir/err"
grep -q 'neg.tsv:10: cost_usd: must be a finite number >= 0 (got "-3")' "$dir/err" ||
	fail "bad cost: $(cat "$dir/err")"

# 7. Options: garbage and negative numbers are refused, not read as 0 or
#    as the default; --flat-cost says when it changes nothing.
table 40 >"$dir/o.tsv"
for bad in "--seed abc" "--seed -1" "--lambda abc" "--lambda -1" "--prior -1" \
	   "--prior abc" "--train 2" "--target 0" "--lambda 0x10" "--prior 0x1p3" "--seed 0x10"; do
	# shellcheck disable=SC2086
	if "$tool" $bad "$dir/o.tsv" >/dev/null 2>"$dir/err"; then fail "$bad accepted"; fi
	grep -q "^llmfs-route-eval: ${bad%% *}: " "$dir/err" || fail "$bad: $(cat "$dir/err")"
done
"$tool" --flat-cost "$dir/o.tsv" >"$dir/out" 2>&1
grep -q 'flat-cost changes nothing here: one task type' "$dir/out" || fail "--flat-cost: no note"

# 8. Long model names print whole; 65 models are refused with a message
#    of its own.
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcost_usd";
  for (i = 0; i < 40; i++) {
    printf "p%d\tt\tvendor/a-very-long-model-name-number-one\t%d\t0.001\n", i, i % 2;
    printf "p%d\tt\tvendor/a-very-long-model-name-number-two\t1\t0.01\n", i; } }' >"$dir/long.tsv"
"$tool" "$dir/long.tsv" >"$dir/out" 2>&1
grep -q '^single vendor/a-very-long-model-name-number-one ' "$dir/out" &&
	grep -q '^single vendor/a-very-long-model-name-number-two (best) ' "$dir/out" ||
	fail "long names cut: $(grep '^single' "$dir/out")"
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality";
  for (m = 0; m < 65; m++) printf "p\tt\tm%d\t1\n", m }' >"$dir/many.tsv"
"$tool" "$dir/many.tsv" >/dev/null 2>"$dir/err"
grep -q 'many.tsv:66: model: more than 64 models' "$dir/err" || fail "65 models: $(cat "$dir/err")"
grep -q 'Argument list' "$dir/err" && fail "65 models: $(cat "$dir/err")"

# 9. More odd tables, as a new user's own.
#    a. One missing answer: the model keeps its agreement cascades (the
#       missing answer agrees with none) and the output says so; the naive
#       cascade stays the two cheapest's.
awk 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcost_usd\tanswer";
  for (i = 0; i < 60; i++) { r = i % 4 != 0;
    printf "p%d\tt\tc1\t%d\t0.001\t%s\n", i, r, i == 7 ? "-" : r ? "A" : "B";
    printf "p%d\tt\tc2\t%d\t0.002\t%s\n", i, r, r ? "A" : "C";
    printf "p%d\tt\tdear\t1\t0.01\tA\n", i } }' >"$dir/miss.tsv"
"$tool" "$dir/miss.tsv" >"$dir/out" 2>&1 || fail "missing answer: exit $?"
grep -q '^answers missing (a missing answer agrees with no other, as a failed call): c1 1 of 60 prompts$' "$dir/out" ||
	fail "missing answer: no note: $(grep -i missing "$dir/out")"
grep -q '^naive agreement cascade agree(c1,c2)>dear ' "$dir/out" ||
	fail "missing answer: naive: $(grep '^naive' "$dir/out")"
grep -q '^planner options: 3 single models, 0 cascades judged by the check column, 1 agreement cascades' "$dir/out" ||
	fail "missing answer: options: $(grep '^planner options' "$dir/out")"
#    b. --no-cascades limits the planner, not the baselines.
"$tool" --no-cascades "$dir/miss.tsv" >"$dir/out" 2>&1 || fail "--no-cascades: exit $?"
grep -q '^naive agreement cascade agree(c1,c2)>dear ' "$dir/out" ||
	fail "--no-cascades: naive: $(grep '^naive' "$dir/out")"
#    c. check is 0, 1 or -, nothing else; numbers are decimal as written.
for v in "-1" "1.0" "+1" " 1" "0x1"; do
	awk -v v="$v" 'BEGIN { print "prompt_id\ttask_type\tmodel\tquality\tcheck";
	  for (i = 0; i < 20; i++) { printf "p%d\tt\ta\t1\t%s\n", i, v; printf "p%d\tt\tb\t0\t1\n", i } }' >"$dir/chk.tsv"
	if "$tool" "$dir/chk.tsv" >/dev/null 2>"$dir/err"; then fail "check \"$v\" accepted"; fi
	grep -q "chk.tsv:2: check: must be 0, 1 or - (got \"$v\")" "$dir/err" || fail "check \"$v\": $(cat "$dir/err")"
done
for v in "0x0.8p0" " 0.5"; do
	table 4 | awk -F'\t' -v OFS='\t' -v v="$v" 'NR == 2 { $4 = v } 1' >"$dir/hex.tsv"
	if "$tool" "$dir/hex.tsv" >/dev/null 2>"$dir/err"; then fail "quality \"$v\" accepted"; fi
	grep -q "hex.tsv:2: quality: must be a number in \[0, 1\] (got \"$v\")" "$dir/err" ||
		fail "quality \"$v\": $(cat "$dir/err")"
done
if "$tool" --seed " -1" "$dir/o.tsv" >/dev/null 2>"$dir/err"; then fail "--seed ' -1' accepted"; fi
#    d. --curve to a path that cannot be written is refused before the
#       run, and a failed run creates, empties or removes nothing.
if "$tool" --curve "$dir/no/such/c.tsv" "$dir/o.tsv" >"$dir/out" 2>"$dir/err"; then fail "--curve: bad path accepted"; fi
grep -q 'no/such/c.tsv: No such file or directory' "$dir/err" && [ ! -s "$dir/out" ] ||
	fail "--curve: $(cat "$dir/err")"
if "$tool" --curve "$dir/c.tsv" "$dir/absent.tsv" >/dev/null 2>&1; then fail "absent table accepted"; fi
[ -e "$dir/c.tsv" ] && fail "--curve: a failed run left $dir/c.tsv"
"$tool" --curve "$dir/c.tsv" "$dir/o.tsv" >/dev/null 2>&1 && [ -s "$dir/c.tsv" ] || fail "--curve: not written"
#       A failed run leaves an earlier file as it was; what is not a
#       regular file is refused, never emptied or removed.
echo keep >"$dir/c.tsv"
if "$tool" --curve "$dir/c.tsv" "$dir/absent.tsv" >/dev/null 2>&1; then fail "absent table accepted"; fi
[ "$(cat "$dir/c.tsv")" = keep ] || fail "--curve: a failed run changed the earlier file"
mkfifo "$dir/fifo"
if "$tool" --curve "$dir/fifo" "$dir/o.tsv" >/dev/null 2>"$dir/err"; then fail "--curve: a fifo accepted"; fi
grep -q 'fifo: not a regular file' "$dir/err" && [ -p "$dir/fifo" ] || fail "--curve fifo: $(cat "$dir/err")"
#    e. One test prompt: no standard error; a target never met: the
#       online run says why its lambda is 0.
table 40 | awk -F'\t' -v OFS='\t' 'NR == 1 { print $0, "split"; next }
	{ print $0, $1 == "p0" ? "test" : "train" }' >"$dir/one.tsv"
"$tool" "$dir/one.tsv" >"$dir/out" 2>&1 || fail "one test prompt: exit $?"
grep -q 'standard error n/a (one test prompt)' "$dir/out" || fail "one test prompt: $(grep 'standard error' "$dir/out")"
table 40 | awk -F'\t' -v OFS='\t' 'NR == 1 { print $0, "split"; next }
	{ if ($3 == "b" && $1 != "p0") $4 = 1; if ($3 == "a") $4 = 0;
	  print $0, $1 == "p0" ? "train" : "test" }' >"$dir/never.tsv"
"$tool" --target 1 "$dir/never.tsv" >"$dir/out" 2>&1 || fail "target never met: exit $?"
grep -q '^online (lambda 0, since the planner never meets the target' "$dir/out" ||
	fail "target never met: $(grep '^online' "$dir/out"; grep 'calls needed' "$dir/out")"
#    f. A name longer than any buffer prints whole.
long=$(awk 'BEGIN { while (length(s) < 700) s = s "x"; print s }')
table 40 | sed "s/\tb\t/\t$long-b\t/" >"$dir/huge.tsv"
"$tool" "$dir/huge.tsv" >"$dir/out" 2>&1
grep -q "^single $long-b (best) " "$dir/out" || fail "a 700-byte name is cut"

[ "$failed" -eq 0 ] && echo ok
exit "$failed"
