#!/bin/sh
# llmfs-paths drives the engine with files alone: a two-step task over two
# local command models (real programs), a checker, feedback, and the
# statistics surviving into a second run; a confidence checker's cascade;
# an answer key.
# Then a task no path fits.
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# fails MODELS ARGS...: a run that must fail; its output in out and err.
fails() {
  m=$1
  shift
  if "$tool" --models "$m" "$@" >"$dir/out" 2>"$dir/err"; then
    echo "FAIL: succeeded: $*"
    exit 1
  fi
}
mkdir -p "$dir/models/caps" "$dir/models/swap"
echo '{"command": ["tr", "a-z", "A-Z"], "skills": ["caps"]}' \
  >"$dir/models/caps/card.json"
echo '{"command": ["sed", "s/HELLO/BONJOUR/"], "skills": ["swap"], "price_in": 5, "price_out": 5}' \
  >"$dir/models/swap/card.json"
cat >"$dir/task.json" <<'TASK'
{"steps": [
  {"id": "a", "prompt": "hello world", "task_type": "caps"},
  {"id": "b", "prompt": "{{a}}", "task_type": "swap", "deps": ["a"]}],
 "check": {"regex": "^BONJOUR WORLD$"}}
TASK

"$tool" --models "$dir/models" --db "$dir/stats.db" run "$dir/task.json" \
  --plan "$dir/plan.json" --trace "$dir/trace.jsonl" --feedback 0.9 \
  >"$dir/out" 2>"$dir/err"
[ "$(cat "$dir/out")" = "BONJOUR WORLD" ]
grep -qx done "$dir/err"
grep -q '"output": "b"' "$dir/plan.json"
[ "$(wc -l <"$dir/trace.jsonl")" -eq 2 ]
grep -q '"model":"swap","kind":"command","attempt":1,"outcome":"ok"' "$dir/trace.jsonl"

# Learned: swap judged once (pass) plus feedback; caps feedback only.
"$tool" --models "$dir/models" --db "$dir/stats.db" stats >"$dir/stats"
grep -q '^swap	swap	2	' "$dir/stats"
grep -q '^caps	caps	1	' "$dir/stats"

# A confidence checker: the cheap model's answer stands when it passes,
# else the dear model's stands, though it would not pass.
mkdir -p "$dir/conf/echo" "$dir/conf/upper"
echo '{"command": ["cat"], "skills": ["up"], "price_in": 0.1, "price_out": 0.1}' \
  >"$dir/conf/echo/card.json"
echo '{"command": ["tr", "a-z", "A-Z"], "skills": ["up"], "price_in": 5, "price_out": 5}' \
  >"$dir/conf/upper/card.json"
for p in abc 123; do
  printf '{"prompt": "%s", "task_type": "up", "strategies": ["cascade"], "confidence": {"regex": "^[0-9]+$"}}' \
    "$p" >"$dir/conf.json"
  "$tool" --models "$dir/conf" run "$dir/conf.json" --trace "$dir/ctrace.jsonl" \
    >"$dir/out" 2>"$dir/err"
  case $p in
  abc) [ "$(cat "$dir/out")" = ABC ]
       grep -q '"model":"upper"' "$dir/ctrace.jsonl" ;;
  123) [ "$(cat "$dir/out")" = 123 ]
       if grep -q '"model":"upper"' "$dir/ctrace.jsonl"; then exit 1; fi ;;
  esac
done

# A key: two cheap models name the same choice in different sentences;
# whole they disagree and the dear model is called, by the key they agree
# and the first one's sentence stands.
mkdir -p "$dir/key/c1" "$dir/key/c2" "$dir/key/dear"
echo '{"command": ["printf", "The answer is (B)."], "skills": ["mc"], "price_in": 0.1, "price_out": 0.1}' \
  >"$dir/key/c1/card.json"
echo '{"command": ["printf", "I pick b, surely"], "skills": ["mc"], "price_in": 0.2, "price_out": 0.2}' \
  >"$dir/key/c2/card.json"
echo '{"command": ["printf", "C"], "skills": ["mc"], "price_in": 9, "price_out": 9}' \
  >"$dir/key/dear/card.json"
for k in none key; do
  if [ $k = key ]; then
    printf '%s\n' '{"prompt": "A to D?", "task_type": "mc", "strategies": ["agree"], "key": "\\(?([A-Da-d])\\)?[.,]"}' >"$dir/key.json"
  else
    printf '%s\n' '{"prompt": "A to D?", "task_type": "mc", "strategies": ["agree"]}' >"$dir/key.json"
  fi
  "$tool" --models "$dir/key" run "$dir/key.json" --trace "$dir/ktrace.jsonl" \
    >"$dir/out" 2>"$dir/err"
  case $k in
  none) [ "$(cat "$dir/out")" = C ]
        grep -q '"model":"dear"' "$dir/ktrace.jsonl" ;;
  key) [ "$(cat "$dir/out")" = "The answer is (B)." ]
       if grep -q '"model":"dear"' "$dir/ktrace.jsonl"; then exit 1; fi ;;
  esac
done
printf '%s\n' '{"prompt": "x", "key": "a{2"}' >"$dir/key.json"
fails "$dir/key" run "$dir/key.json"
grep -q 'failed: key: ' "$dir/err"

# Bad numbers are refused before anything runs; feedback on a task with
# no answer says so.
for w in -1 0 abc 100000 " 2"; do
  if "$tool" --models "$dir/models" --workers "$w" run "$dir/task.json" >"$dir/out" 2>"$dir/err"; then
    exit 1
  fi
  grep -q -- '--workers: .* is not a whole number from 1 to 256' "$dir/err"
  [ ! -s "$dir/out" ]
done
fails "$dir/models" run "$dir/task.json" --feedback 2
grep -q -- '--feedback: "2" is not a quality from 0 to 1' "$dir/err" && [ ! -s "$dir/out" ]
printf '{"prompt": "hello", "task_type": "caps", "check": {"exact": "no"}}' >"$dir/no.json"
if "$tool" --models "$dir/models" run "$dir/no.json" --feedback 0.3 >"$dir/out" 2>"$dir/err"; then
  exit 1
else
  [ $? -eq 1 ]
fi
grep -q 'feedback: not recorded: the task has no answer to judge' "$dir/err"

# A command whose answer holds a NUL byte fails, not cut short at it.
mkdir -p "$dir/nul/a"
printf '%s\n' '{"command": ["printf", "AB\\000CD"], "skills": ["n"]}' >"$dir/nul/a/card.json"
printf '{"prompt": "x", "task_type": "n", "model": "a", "check": {"exact": "AB"}}' >"$dir/n.json"
fails "$dir/nul" run "$dir/n.json" --trace "$dir/ntrace.jsonl"
grep -q 'failed: step s1: a: a NUL byte in the answer' "$dir/err"
grep -q '"outcome":"failed","detail":"a NUL byte in the answer"' "$dir/ntrace.jsonl"

# A strategy that cannot be used says what it lacks.
printf '{"prompt": "x", "task_type": "caps", "strategies": ["cascade"]}' >"$dir/casc.json"
fails "$dir/models" run "$dir/casc.json"
grep -q 'no usable strategy among those asked (cascade needs a check or a confidence checker)' "$dir/err"

# Runs sharing one statistics file take turns: every feedback is
# recorded, none refused.
pids=
for i in 1 2 3 4; do
  "$tool" --models "$dir/models" --db "$dir/par.db" run "$dir/task.json" \
    --feedback 1 >"$dir/par$i.out" 2>"$dir/par$i.err" &
  pids="$pids $!"
done
for p in $pids; do wait "$p"; done
for i in 1 2 3 4; do
  [ "$(cat "$dir/par$i.out")" = "BONJOUR WORLD" ]
  if grep -v -e '^done$' -e '^llmfs-paths: waiting for another run using ' "$dir/par$i.err"; then
    exit 1
  fi
done
"$tool" --models "$dir/models" --db "$dir/par.db" stats >"$dir/stats"
grep -q '^caps	caps	4	' "$dir/stats"
if "$tool" --models "$dir/models" --db "$dir/no/such.db" stats 2>"$dir/err"; then exit 1; fi
grep -q "^llmfs-paths: --db $dir/no/such.db: No such file or directory" "$dir/err"

# A folder given as the task says so.
fails "$dir/models" run "$dir"
grep -q "^$dir: Is a directory" "$dir/err"

# The latency bound stops a slow command, its children too, and the
# attempt it cut short has its trace line.
mkdir -p "$dir/lat/slow"
echo '{"command": ["sh", "-c", "sleep 7; echo late"], "latency_s": 0.1, "tokens_per_s": 100000}' \
  >"$dir/lat/slow/card.json"
printf '{"prompt": "x", "latency_s": 1}' >"$dir/lat.json"
fails "$dir/lat" run "$dir/lat.json" --trace "$dir/lat.jsonl"
grep -q '^failed: latency bound of 1s exceeded' "$dir/err"
grep -q '"model":"slow","kind":"command","attempt":1,"outcome":"stopped","detail":"latency bound of 1s exceeded"' "$dir/lat.jsonl"

# A budget no path fits: a clear status and exit status 1.
printf '{"prompt": "hi", "task_type": "swap", "budget_usd": 1e-9}' >"$dir/poor.json"
fails "$dir/models" run "$dir/poor.json"
grep -q '^failed: no path fits the budget of \$1e-09' "$dir/err"
echo ok
