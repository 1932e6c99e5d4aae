#!/bin/sh
# train/: training jobs as folders.  A job file starts a job; status, metrics.tsv,
# samples.txt, trainer_state.json, the event file and loss.svg follow it; result blocks until
# it ends; the model lands in models/<job>/ with its checkpoints.  A stopped and resumed job,
# and a job whose daemon was killed (-9) and started again, end bit for bit where an
# uninterrupted one does (CPU), and its loss column is llmfs-train's.  Bad job files fail with
# their reason; a user's job runs as that user; a full disk keeps the earlier checkpoints.
. "$(dirname "$0")/lib.sh"

require_cmd python3 useradd userdel setpriv
require_corpus
: "${LLMFS_TRAIN:?LLMFS_TRAIN must name llmfs-train}"
PY=/usr/bin/python3
T=$MNT/train
M=$MNT/models
U=llmfs-train-$$
useradd -M -N -r -s /bin/false "$U" >/dev/null 2>&1 || skip_all "useradd failed"
chmod 755 "$TEST_DIR"
trap 'rc_=$?; userdel "$U" 2>/dev/null; (exit $rc_); cleanup' EXIT

# The job's process reports a full disk in its log, and the daemon its refused appends.
ALLOWED_ERRORS='No space left on device'

OPTS='layers=2 heads=2 embd=64 seq=64 batch=8 steps=200 val-every=50 val-batches=2
ckpt-every=50 sample-every=100 sample-len=32 seed=3'

# job NAME [KEY=VALUE...]: makes train/NAME and writes its job file (the corpus, OPTS, then
# the words given, which win).
job() {
	jn=$1; shift
	mkdir "$T/$jn" &&
	printf 'data=models/corpora/tiny.txt  # the corpus\n%s\n%s\n' "$OPTS" "$*" >"$T/$jn/job"
}

# wait_status NAME DEADLINE PATTERN: until the status matches the grep -E pattern.
wait_status() {
	wait_for "$2" "grep -Eq '$3' '$T/$1/status'" ||
		{ say "# status of $1: $(cat "$T/$1/status")"; cat "$T/$1/log"; return 1; }
}

# resumed NAME: the job is done and went on from a checkpoint; else says what it shows.
resumed() {
	[ "$(cat "$T/$1/status")" = done ] && grep -q "resumed from models/$1/checkpoint-" "$T/$1/log" ||
		{ say "# $1: status $(cat "$T/$1/status"), not done or not resumed; log:"; cat "$T/$1/log"; return 1; }
}

# gone NAME: no process of the job is left; else says which.
gone() {
	! pgrep -af -- "--train-job .* $1\$" >"$TEST_DIR/left" ||
		{ say "# processes of $1 outlived the daemon:"; cat "$TEST_DIR/left"; return 1; }
}

# steps NAME: the last step in metrics.tsv.
steps() { tail -n 1 "$T/$1/metrics.tsv" | cut -f1; }

# same_run A B: the loss columns and the final model of two jobs are the same, bit for bit.
same_run() {
	cut -f1-4 "$T/$1/metrics.tsv" >"$TEST_DIR/$1.cols" &&
	cut -f1-4 "$T/$2/metrics.tsv" >"$TEST_DIR/$2.cols" &&
	cmp "$TEST_DIR/$1.cols" "$TEST_DIR/$2.cols" &&
	cmp "$M/$1/model.safetensors" "$M/$2/model.safetensors" &&
	cmp "$M/$1/checkpoint-200/optimizer.safetensors" "$M/$2/checkpoint-200/optimizer.safetensors"
}

test_expect_success 'set up: the corpus in models/' '
	daemon_start &&
	ls -ld "$T" && [ "$(stat -c %a "$T")" = 1777 ] &&
	mkdir -p "$M/corpora" &&
	head -c 300000 "$TRAIN_CORPUS" >"$TEST_DIR/tiny.txt" &&
	cp "$TEST_DIR/tiny.txt" "$M/corpora/tiny.txt" &&
	: >"$M/corpora/empty.txt"
'

# The first job is also the queue's: a second job, written while it runs, waits as queued
# (a job of its own for this check was one more run of 200 steps, the same as u).
test_expect_success 'one job at a time (--train-jobs 1): the next waits as queued' '
	job u && job q2 steps=20 &&
	wait_status u 120 "^running [1-9]" &&
	[ "$(cat "$T/q2/status")" = queued ] &&
	{ tail -n 0 -f "$T/u/metrics.tsv" >"$TEST_DIR/tail.out" 2>&1 & tail_pid=$!; } &&
	wait_for 60 "[ -s \"$TEST_DIR/tail.out\" ] || grep -q done \"$T/u/status\"" ;
	kill $tail_pid 2>/dev/null; wait $tail_pid 2>/dev/null
	say "tail -f saw $(wc -l <"$TEST_DIR/tail.out") new rows" &&
	[ -s "$TEST_DIR/tail.out" ] &&
	timeout 300 cat "$T/q2/result" >/dev/null &&
	[ "$(cat "$T/u/status")" = done ] && [ "$(cat "$T/q2/status")" = done ] &&
	[ "$(grep -c "started" "$T/q2/log")" -ge 1 ]
'

test_expect_success 'a job runs to its end; result names the model' '
	timeout 300 cat "$T/u/result" >"$TEST_DIR/u.result" &&
	cat "$TEST_DIR/u.result" && [ "$(cat "$T/u/status")" = done ] &&
	$PY -c "import json, sys; r = json.load(open(sys.argv[1]));
assert r[\"state\"] == \"done\" and r[\"model\"] == \"models/u\" and r[\"steps\"] == 200, r
assert r[\"checkpoints\"] == [\"models/u/checkpoint-%d\" % s for s in (50, 100, 150, 200)], r" \
		"$TEST_DIR/u.result"
'

test_expect_success 'its folder: metrics, samples, trainer_state, events, loss.svg, log' '
	ls -l "$T/u" &&
	[ "$(wc -l <"$T/u/metrics.tsv")" = 201 ] &&
	head -n 1 "$T/u/metrics.tsv" | grep -q "^step	train_loss	val_loss	lr" &&
	grep -c "^=== step" "$T/u/samples.txt" | grep -qx 2 &&
	grep -q "^=== step 100" "$T/u/samples.txt" &&
	grep -q "checkpoint models/u/checkpoint-200" "$T/u/log" &&
	ev=$(cd "$T/u" && ls -d events.out.tfevents.*.llmfs) &&
	$PY "$MOUNT_HELPERS/../train/test_tfevents.py" --folder "$T/u" "$ev"
'

test_expect_success 'the model lands in models/<job>/ with its checkpoints' '
	ls -l "$M/u" &&
	for f in config.json model.safetensors trainer_state.json; do
		[ -s "$M/u/$f" ] || return 1
	done &&
	for s in 50 100 150 200; do
		for f in config.json model.safetensors optimizer.safetensors trainer_state.json; do
			[ -s "$M/u/checkpoint-$s/$f" ] || { say "no $f in checkpoint-$s"; return 1; }
		done
	done &&
	cmp "$M/u/model.safetensors" "$M/u/checkpoint-200/model.safetensors" &&
	vl=$(tail -n 1 "$T/u/metrics.tsv" | cut -f3) &&
	$PY "$MOUNT_HELPERS/../gpu/test_torch_ref.py" --model "$M/u" "$TEST_DIR/tiny.txt" "$vl" &&
	$PY -c "import json, sys; s = json.load(open(sys.argv[1]));
assert s[\"global_step\"] == 200 and s[\"max_steps\"] == 200, s[\"global_step\"]" \
		"$M/u/trainer_state.json" &&
	! ls "$M/u" | grep -q "\.tmp$" &&
	# The final model is a copy of its last checkpoint'"'"'s: the store keeps one.
	logical=$(status_get logical_bytes) && unique=$(status_get unique_bytes) &&
	say "logical $logical, unique $unique" &&
	[ $((logical - unique)) -ge "$(stat -c %s "$M/u/model.safetensors")" ]
'

test_expect_success 'the loss column is llmfs-train'"'"'s, bit for bit' '
	"$LLMFS_TRAIN" --data "$TEST_DIR/tiny.txt" --out "$TEST_DIR/cli" --layers 2 --heads 2 \
		--embd 64 --seq 64 --batch 8 --steps 200 --val-every 50 --val-batches 2 \
		--ckpt-every 50 --sample-every 100 --sample-len 32 --seed 3 >/dev/null 2>&1 &&
	cut -f1-4 "$TEST_DIR/cli/loss.tsv" >"$TEST_DIR/cli.cols" &&
	cut -f1-4 "$T/u/metrics.tsv" >"$TEST_DIR/u.cols" &&
	cmp "$TEST_DIR/cli.cols" "$TEST_DIR/u.cols" &&
	cmp "$TEST_DIR/cli/ckpt-00000200/model.safetensors" "$M/u/model.safetensors"
'

test_expect_success 'stop checkpoints and stops; resume ends where an uninterrupted run does' '
	job s &&
	wait_status s 120 "^running ([1-9][0-9]*)/200" &&
	cat "$T/s/status" && n1=$(steps s) &&
	wait_for 60 "[ \$(steps s) -gt $n1 ]" &&
	echo stop >"$T/s/control" &&
	wait_status s 120 "^stopped at [0-9]+/200" &&
	cat "$T/s/status" && at=$(steps s) && [ "$at" -lt 200 ] &&
	[ -s "$M/s/checkpoint-$at/optimizer.safetensors" ] &&
	timeout 5 cat "$T/s/result" | grep -q "\"state\": \"stopped\"" &&
	echo resume >"$T/s/control" &&
	timeout 300 cat "$T/s/result" >/dev/null &&
	[ "$(cat "$T/s/status")" = done ] &&
	grep -q "resumed from models/s/checkpoint-$at" "$T/s/log" &&
	same_run u s
'

test_expect_success 'a daemon killed (-9) mid-job goes on from the last checkpoint' '
	job k &&
	wait_status k 120 "^running (6[0-9]|[7-9][0-9]|1[0-9][0-9])/200" &&
	cat "$T/k/status" &&
	daemon_kill9 &&
	daemon_start &&
	cat "$T/k/status" &&
	timeout 300 cat "$T/k/result" >/dev/null &&
	resumed k &&
	same_run u k
'

test_expect_success 'a daemon stopped (SIGTERM) mid-job goes on from the last checkpoint' '
	job t &&
	wait_status t 120 "^running (6[0-9]|[7-9][0-9]|1[0-9][0-9])/200" &&
	daemon_stop TERM &&
	gone t &&
	daemon_start &&
	timeout 300 cat "$T/t/result" >/dev/null &&
	resumed t &&
	same_run u t
'

test_expect_success 'rmdir of a running job stops it and removes its folder; its model stays' '
	job r &&
	wait_status r 120 "^running [1-9]" &&
	rmdir "$T/r" &&
	[ ! -e "$T/r" ] && ! ls "$T" | grep -qx r &&
	[ -d "$M/r" ] &&
	wait_for 20 "! pgrep -f -- \"--train-job .* r\$\" >/dev/null"
'

# bad NAME PATTERN WORDS...: the job fails and its status gives the reason.
bad() {
	bn=$1 bp=$2; shift 2
	job "$bn" "$@" &&
	wait_status "$bn" 120 "^failed: " &&
	say "$bn: $(cat "$T/$bn/status")" &&
	grep -Eq "$bp" "$T/$bn/status" &&
	timeout 5 cat "$T/$bn/result" | grep -q "\"state\": \"failed\""
}

test_expect_success 'bad job files fail with their reason; the daemon stays up' '
	bad b1 "unknown key.*colour" colour=blue &&
	bad b2 "steps.*ten" steps=ten &&
	bad b3 "steps" steps=0 &&
	bad b4 "data models/corpora/nope.txt: No such file" data=models/corpora/nope.txt &&
	bad b5 "empty" data=models/corpora/empty.txt &&
	bad b6 "data /etc/passwd: not a path in the tree" data=/etc/passwd &&
	bad b7 "from: shapes do not match" from=models/u layers=3 &&
	if [ -e /dev/nvidiactl ]; then :; else
		bad b8 "[Cc][Uu][Dd][Aa]|device" backend=cuda
	fi &&
	daemon_alive_check
'

test_expect_success 'a user'"'"'s job runs as that user, with that user'"'"'s rights' '
	head -c 100000 "$TRAIN_CORPUS" >"$M/corpora/secret.txt" && chmod 600 "$M/corpora/secret.txt" &&
	run_as "$U" mkdir "$T/ud" &&
	printf "data=models/corpora/secret.txt %s\n" "$(echo $OPTS)" | run_as "$U" sh -c "cat >\"\$0\"" "$T/ud/job" &&
	wait_status ud 120 "^failed: " && grep -q "Permission denied" "$T/ud/status" &&
	run_as "$U" mkdir "$T/uo" &&
	printf "data=models/corpora/tiny.txt %s steps=20 ckpt-every=10\n" "$(echo $OPTS)" |
		run_as "$U" sh -c "cat >\"\$0\"" "$T/uo/job" &&
	run_as "$U" timeout 300 cat "$T/uo/result" >/dev/null &&
	[ "$(cat "$T/uo/status")" = done ] &&
	[ "$(stat -c %U "$T/uo")" = "$U" ] &&
	[ "$(stat -c %U "$M/uo")" = "$U" ] &&
	[ "$(stat -c %U "$M/uo/checkpoint-10/model.safetensors")" = "$U" ] &&
	! run_as "$U" rmdir "$T/u" 2>/dev/null && [ -d "$T/u" ]
'

test_expect_success 'no sanitizer report from any job process' '
	! grep -l "ERROR: AddressSanitizer\|runtime error:\|SUMMARY: .*Sanitizer" "$T"/*/log
'

test_expect_success 'a disk that fills mid-checkpoint: the job fails, earlier checkpoints stay' '
	daemon_stop &&
	small_store 40m &&
	daemon_start &&
	mkdir -p "$M/corpora" && cp "$TEST_DIR/tiny.txt" "$M/corpora/tiny.txt" &&
	OPTS="layers=2 heads=4 embd=256 seq=32 batch=4 steps=60 val-every=10 val-batches=1 ckpt-every=10 sample-every=0 sample-len=8 seed=5" &&
	job f &&
	wait_status f 300 "^(failed|done)" &&
	cat "$T/f/status" && cat "$T/f/log" && ls -l "$M/f" &&
	grep -Eq "^failed: writing models/f/(checkpoint-[0-9]+|the model).*No space left on device" "$T/f/status" &&
	ok=0 && for c in "$M"/f/checkpoint-*; do
		$PY -c "import json, os, struct, sys
for n in (\"model.safetensors\", \"optimizer.safetensors\"):
    p = os.path.join(sys.argv[1], n)
    raw = open(p, \"rb\").read()
    h = struct.unpack(\"<Q\", raw[:8])[0]
    meta = json.loads(raw[8:8 + h])
    end = max(v[\"data_offsets\"][1] for k, v in meta.items() if k != \"__metadata__\")
    assert len(raw) == 8 + h + end, (p, len(raw))" "$c" || return 1
		ok=$((ok + 1))
	done && say "$ok whole checkpoints" && [ "$ok" -ge 1 ] &&
	! ls "$M/f" | grep -q "\.tmp$" &&
	daemon_alive_check
'

test_done
