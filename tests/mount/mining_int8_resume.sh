#!/bin/sh
# mining/: an int8 job (pseudo-gradients up and the outer update down, both int8) survives
# kill -9 of its daemon.  Its replicas hold the global weights by adding each round's int8
# update to what they held; the update is kept in memory only, so the replicas of a resumed
# job must start from the whole weights again.  The resumed job ends bit for bit as an
# uninterrupted one: the same rows and the same model file.
. "$(dirname "$0")/lib.sh"

require_corpus
J=$MNT/mining/jobs
M=$MNT/models
OPTS='data=models/corpora/tiny.txt layers=2 heads=2 embd=32 seq=32 batch=4 val-batches=2
sample-len=32 seed=3 replicas=2 inner-steps=20 steps=240 compression=int8 block=64'

job() {
	mkdir "$J/$1" && printf '%s\n' "$OPTS" >"$J/$1/job"
}

result() {
	timeout 300 cat "$J/$1/result" >"$TEST_DIR/$1.result" ||
		{ say "# no result for $1: $(cat "$J/$1/status")"; cat "$J/$1/log"; return 1; }
	say "# $1: $(head -n 1 "$J/$1/status")"
	[ "$(head -n 1 "$J/$1/status")" = done ]
}

rows() { tail -n +2 "$1" | wc -l; }

test_expect_success 'set up: the corpus' '
	daemon_start &&
	mkdir -p "$M/corpora" &&
	head -c 120000 "$TRAIN_CORPUS" >"$M/corpora/tiny.txt"
'

test_expect_success 'kill -9 of the daemon mid-way through an int8 job; it resumes' '
	job i1 &&
	wait_for 120 "[ \$(rows \"$J/i1/rounds.tsv\") -ge 3 ]" &&
	daemon_kill9 &&
	done_before=$(python3 -c "import json; print(json.load(open(\"$STORE/mining/jobs/i1/state.json\"))[\"round\"])") &&
	say "# killed after round $done_before" &&
	[ "$done_before" -lt 12 ] &&
	daemon_start &&
	result i1 &&
	grep -q "running from round $((done_before + 1)) of 12" "$J/i1/log" &&
	[ "$(cut -f1 "$J/i1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = "$(seq 1 12 | tr "\n" " ")" ]
'

test_expect_success 'the replicas of the resumed job took the whole weights, then int8 updates' '
	sent=$(awk -F "\t" -v r=$((done_before + 1)) "\$1 == r { print \$4 }" "$J/i1/rounds.tsv") &&
	later=$(tail -n 1 "$J/i1/rounds.tsv" | cut -f4) &&
	say "# bytes sent in round $((done_before + 1)): $sent, in the last: $later" &&
	[ "$later" -gt 0 ] && [ "$sent" -gt $((later * 3)) ]
'

test_expect_success 'the resumed int8 job ends bit for bit as an uninterrupted one' '
	job i2 &&
	result i2 &&
	cut -f1-3 "$J/i1/rounds.tsv" >"$TEST_DIR/i1.cols" &&
	cut -f1-3 "$J/i2/rounds.tsv" >"$TEST_DIR/i2.cols" &&
	{ cmp "$TEST_DIR/i1.cols" "$TEST_DIR/i2.cols" ||
	  { diff "$TEST_DIR/i1.cols" "$TEST_DIR/i2.cols" | sed "s/^/# /"; false; }; } &&
	cmp "$M/i1/model.safetensors" "$M/i2/model.safetensors"
'

test_done
