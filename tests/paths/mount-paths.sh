#!/bin/sh
# /llm/paths through a real mount: model cards written into models/, a task
# written as a file, status / plan / candidates / trace / result read back,
# feedback and statistics, a result read that blocks and a poll() that
# wakes, and bad input (a malformed task, a bad name, an unknown file).
#   mount-paths.sh LLMFS
set -u
llmfs=$1
[ -c /dev/fuse ] && [ "$(id -u)" = 0 ] || { echo "skip: needs root and /dev/fuse"; exit 77; }
dir=$(mktemp -d)
mnt=$dir/mnt
pid=
cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$dir/log" ] && cat "$dir/log"; exit 1; }

mkdir "$mnt"
# The planner model is a stand-in for an LLM: a local program that answers
# every interpretation request with the same structured task.
"$llmfs" --store "$dir/store" --planner planner -f "$mnt" 2>"$dir/log" &
pid=$!
i=0
until [ -f "$mnt/.llmfs/status" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "mount did not appear"
	kill -0 "$pid" 2>/dev/null || fail "daemon died"
	sleep 0.1
done

ls "$mnt" | grep -qx paths || fail "no paths/ at the root"
mkdir -p "$mnt/models/caps" "$mnt/models/swap"
echo '{"command": ["tr", "a-z", "A-Z"], "skills": ["caps"]}' >"$mnt/models/caps/card.json"
echo '{"command": ["sed", "s/HELLO/BONJOUR/"], "skills": ["swap"], "price_in": 5, "price_out": 5}' \
	>"$mnt/models/swap/card.json"

mkdir "$mnt/paths/t1" || fail "mkdir of a task"
[ "$(cat "$mnt/paths/t1/status")" = empty ] || fail "new task not empty"
cat >"$mnt/paths/t1/task" <<'TASK' || fail "writing the task"
{"steps": [
  {"id": "a", "prompt": "hello world", "task_type": "caps"},
  {"id": "b", "prompt": "{{a}}", "task_type": "swap", "deps": ["a"]}],
 "check": {"regex": "^BONJOUR WORLD$"}}
TASK
[ "$(timeout 30 cat "$mnt/paths/t1/result")" = "BONJOUR WORLD" ] || fail "result"
[ "$(cat "$mnt/paths/t1/status")" = done ] || fail "status after the result"
grep -q '"steps"' "$mnt/paths/t1/task" || fail "task text not read back"
python3 -c 'import json,sys; json.load(open(sys.argv[1])); json.load(open(sys.argv[2]))' \
	"$mnt/paths/t1/plan.json" "$mnt/paths/t1/candidates.json" || fail "plan/candidates not JSON"
[ "$(wc -l <"$mnt/paths/t1/trace.jsonl")" -eq 2 ] || fail "trace lines"
grep -q '"model":"caps"' "$mnt/paths/t1/trace.jsonl" || fail "trace names the model"
echo 0.9 >"$mnt/paths/t1/feedback" || fail "feedback"
grep -q '^swap	swap	' "$mnt/paths/.stats" || fail "stats"
grep -q '"name": "caps"' "$mnt/paths/.models" || fail ".models"

# A card added while mounted is seen by the next task.
mkdir "$mnt/models/rev"
echo '{"command": ["rev"], "skills": ["rev"]}' >"$mnt/models/rev/card.json"
mkdir "$mnt/paths/t2"
echo '{"prompt": "abc", "model": "rev"}' >"$mnt/paths/t2/task" ||
	fail "second task"
[ "$(timeout 30 cat "$mnt/paths/t2/result")" = cba ] || fail "new card not used"

# poll() on a result wakes when a slow task ends.
mkdir "$mnt/models/slow"
echo '{"command": ["sh", "-c", "sleep 1; cat"], "skills": ["slow"]}' >"$mnt/models/slow/card.json"
mkdir "$mnt/paths/t3"
echo '{"prompt": "zzz", "model": "slow"}' >"$mnt/paths/t3/task"
python3 - "$mnt/paths/t3/result" <<'PY' || fail "poll on result"
import select, sys
fd = open(sys.argv[1], "rb")
p = select.poll()
p.register(fd, select.POLLIN)
ev = p.poll(30000)
assert ev and ev[0][1] & select.POLLIN, ev
assert fd.read().strip() == b"zzz"
PY

# Free text goes through the planner model (whose card came after the
# mount) and runs as the steps it returned.
mkdir "$mnt/models/planner"
cat >"$mnt/models/planner/card.json" <<'CARD'
{"command": ["sh", "-c", "cat >/dev/null; printf '%s' '{\"steps\": [{\"id\": \"a\", \"prompt\": \"hello world\", \"task_type\": \"caps\"}, {\"id\": \"b\", \"prompt\": \"{{a}}\", \"task_type\": \"swap\", \"deps\": [\"a\"]}]}'"],
 "skills": ["plan"]}
CARD
mkdir "$mnt/paths/free"
echo "Shout hello world, then greet in French" >"$mnt/paths/free/task" || fail "free text"
[ "$(timeout 30 cat "$mnt/paths/free/result")" = "BONJOUR WORLD" ] ||
	fail "planner: $(cat "$mnt/paths/free/status") $(cat "$mnt/paths/free/trace.jsonl")"
grep -q '"model":"planner"' "$mnt/paths/free/trace.jsonl" || fail "planner call not traced"

# Bad input: a clear status, never a dead daemon.
mkdir "$mnt/paths/bad"
printf '{"steps": [' >"$mnt/paths/bad/task"
i=0
until grep -q '^failed: ' "$mnt/paths/bad/status"; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "malformed task: $(cat "$mnt/paths/bad/status")"
	sleep 0.1
done
if timeout 10 cat "$mnt/paths/bad/result" 2>/dev/null; then fail "result of a failed task"; fi
if mkdir "$mnt/paths/.hidden" 2>/dev/null; then fail "mkdir of a bad name"; fi
if touch "$mnt/paths/t1/other" 2>/dev/null; then fail "a new file in a task"; fi
rmdir "$mnt/paths/t2" || fail "rmdir of a task"
[ ! -e "$mnt/paths/t2" ] || fail "task still there"
kill -0 "$pid" || fail "daemon died"
# A clean unmount ends the daemon with status 0 and nothing to report.
fusermount3 -u "$mnt" || fail "unmount"
wait "$pid" || fail "daemon exit status $?"
pid=
if grep -Eq 'llmfs: error|Sanitizer|runtime error' "$dir/log"; then fail "daemon errors"; fi
grep -q 'planner model planner has no card yet' "$dir/log" || fail "no warning for the missing planner"
echo ok
