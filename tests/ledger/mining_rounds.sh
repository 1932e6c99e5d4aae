#!/bin/sh
# mining_rounds.sh - a co-training job pays its rounds into the ledger.
# A provider with an account and a price runs a job of a designer's account; every window
# is replayed (LLMFS_MINING_CHECK_Q=1) and passes; each round's compute pay is the provider's
# metering times its price, breakthroughs pay above eps, and the ledger, its mining/ views
# and llmfs-ledger agree.  Then the daemon is killed with SIGKILL at random moments and
# replicas are killed mid-round, and the job still ends with every round paid exactly once
# (MINING_KILLS=N kills instead of 6).
. "$MOUNT_HELPERS/lib.sh"
. "$(dirname "$0")/lib-jobs.sh"
OPTS='data=models/corpora/tiny.txt layers=2 heads=2 embd=32 seq=32 batch=4 val-batches=2
sample-len=32 seed=3 providers=p1 account=alice replicas=2'
# kills that land in the last block, about half of the daemon, half of a replica
# (MINING_KILLS=100 for the long run of docs/mining.md)
KILLS=${MINING_KILLS:-6}
# job_running JOB: not ended (a daemon just restarted may show it queued)
job_running() { ! head -n 1 "$J/$1/status" | grep -Eq "^(done|failed|stopped)"; }
# kept_at_kill JOB N: after the daemon's kill N, the rounds JOB had completed (state.json's
# round) and their rows of rounds.tsv, as the dead daemon left them, in $TEST_DIR/JOB.killN
kept_at_kill() {
	kk_dir=$STORE/mining/jobs/$1
	kk_k=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[\"round\"])" \
		"$kk_dir/state.json") &&
	echo "$kk_k" >"$TEST_DIR/$1.kill$2.round" &&
	head -n $((kk_k + 1)) "$kk_dir/rounds.tsv" >"$TEST_DIR/$1.kill$2" 2>/dev/null || :
}
# running_replica JOB: the pid of a replica of JOB that is running now (a live process,
# not a zombie), waited for up to 10 s; empty when none came
running_replica() {
	rr_end=$(($(date +%s) + 10))
	while [ "$(date +%s)" -lt $rr_end ]; do
		for rr_pid in $(sed -n "s/^replica [0-9]*: p1 \([0-9]*\):.*, running.*/\1/p" \
				"$J/$1/status" 2>/dev/null); do
			if grep -q "^[^)]*) [RSD]" "/proc/$rr_pid/stat" 2>/dev/null &&
			   tr "\0" " " <"/proc/$rr_pid/cmdline" | grep -q -- "--mining-replica"; then
				echo "$rr_pid"
				return 0
			fi
		done
		sleep 0.1
	done
}

test_expect_success 'set up: accounts, a priced provider, the corpus' '
	daemon_start &&
	mkdir -p "$MNT/models/corpora" &&
	head -c 120000 "$TRAIN_CORPUS" >"$MNT/models/corpora/tiny.txt" &&
	mkdir "$A/alice" "$A/prov" "$P/p1" &&
	printf "%s\n" "{\"kind\": \"local\", \"account\": \"prov\", \"price\": 0.5, \"device\": \"cpu\"}" \
		>"$P/p1/provider.json" &&
	ls "$MNT/mining" | grep -qx ledger.jsonl &&
	ls "$A/prov" | grep -qx balance
'

test_expect_success 'a job runs; every round is paid, every window replays' '
	job b1 inner-steps=10 steps=60 &&
	result b1 && [ "$(head -n 1 "$J/b1/status")" = done ] &&
	cat "$MNT/mining/ledger.jsonl" >"$TEST_DIR/ledger.jsonl" &&
	$CHECK "$TEST_DIR/ledger.jsonl" "$J/b1" b1 prov 0.5 --all-verified
'

test_expect_success 'int8 pseudo-gradients replay too (the replay passed through int8)' '
	job i1 inner-steps=10 steps=40 compression=int8 &&
	result i1 && [ "$(head -n 1 "$J/i1/status")" = done ] &&
	"$L" show "$STORE" --job i1 >"$TEST_DIR/i1.jsonl" &&
	$CHECK "$TEST_DIR/i1.jsonl" "$J/i1" i1 prov 0.5 --all-verified &&
	cat "$MNT/mining/ledger.jsonl" >"$TEST_DIR/ledger.jsonl"
'

test_expect_success 'the views agree with llmfs-ledger, and the chain verifies' '
	"$L" verify "$STORE" &&
	"$L" show "$STORE" | cmp - "$TEST_DIR/ledger.jsonl" &&
	"$L" verify-file "$TEST_DIR/ledger.jsonl" "$("$L" head "$STORE" | cut -d" " -f2)" &&
	cat "$A/prov/balance" >"$TEST_DIR/prov.balance" &&
	"$L" balance "$STORE" prov | cmp - "$TEST_DIR/prov.balance" &&
	python3 -c "import json, sys
b = json.load(open(sys.argv[1]))
s = sum(json.loads(l)[\"amount\"] for l in open(sys.argv[2])
        if json.loads(l)[\"account\"] == \"prov\" and json.loads(l)[\"kind\"] != \"units\")
assert b[\"balance\"] == s and s > 0, (b, s)" "$TEST_DIR/prov.balance" "$TEST_DIR/ledger.jsonl"
'

test_expect_success 'a round whose hook was lost (a crash after the round) is paid at the next' '
	daemon_stop &&
	LLMFS_MINING_BOOK_DROP=2 && export LLMFS_MINING_BOOK_DROP &&
	daemon_start && unset LLMFS_MINING_BOOK_DROP &&
	job c1 inner-steps=10 steps=50 &&
	result c1 &&
	"$L" show "$STORE" --job c1 >"$TEST_DIR/c1.jsonl" &&
	$CHECK "$TEST_DIR/c1.jsonl" "$J/c1" c1 prov 0.5 --all-verified
'

test_expect_success 'the last round of a job, its payment lost (a crash after the round), is paid at its end' '
	daemon_stop &&
	LLMFS_MINING_BOOK_DROP=4 && export LLMFS_MINING_BOOK_DROP &&
	daemon_start && unset LLMFS_MINING_BOOK_DROP &&
	job c2 inner-steps=10 steps=40 &&
	result c2 &&
	"$L" show "$STORE" --job c2 >"$TEST_DIR/c2.jsonl" &&
	$CHECK "$TEST_DIR/c2.jsonl" "$J/c2" c2 prov 0.5 --all-verified
'

test_expect_success 'the rounds never wait for the ledger; done (and result) wait until it paid them' '
	daemon_stop &&
	LLMFS_MINING_BOOK_HOLD=$TEST_DIR/hold && export LLMFS_MINING_BOOK_HOLD &&
	: >"$TEST_DIR/hold" && daemon_start && unset LLMFS_MINING_BOOK_HOLD &&
	job h1 inner-steps=10 steps=60 &&
	# every round runs while the ledger is held on round 1
	wait_for 120 "grep -q \"^rounds done 6 of 6\" \"$J/h1/status\"" &&
	grep -q "^ledger: rounds paid 0 of 6 done" "$J/h1/status" &&
	[ "$(head -n 1 "$J/h1/status")" = "running: round 6/6" ] &&
	! timeout 2 cat "$J/h1/result" >/dev/null 2>&1 &&
	[ -z "$("$L" show "$STORE" --job h1)" ] &&
	# the model is there before the ledger is done
	[ -f "$MNT/models/h1/model.safetensors" ] &&
	rm "$TEST_DIR/hold" &&
	result h1 && [ "$(head -n 1 "$J/h1/status")" = done ] &&
	! grep -q "^ledger:" "$J/h1/status" &&
	"$L" show "$STORE" --job h1 >"$TEST_DIR/h1.jsonl" &&
	$CHECK "$TEST_DIR/h1.jsonl" "$J/h1" h1 prov 0.5 --all-verified &&
	daemon_stop && daemon_start
'

test_expect_success 'kill -9 of the daemon and of replicas at random moments: paid once, none lost' '
	# long enough that every kill lands while it runs: its rounds no longer wait for the
	# ledger (it pays them behind), so a 40-round job ended after 3 kills; 160 rounds of 40 steps
	job k1 inner-steps=40 steps=$((KILLS * 1280 > 6400 ? KILLS * 1280 : 6400)) &&
	# kills start once the job has its data (a resume before that is the coordinator s case)
	wait_for 120 "[ \$(rows \"$J/k1/rounds.tsv\") -ge 1 ]" &&
	kills=0 && rkills=0 && tries=0 &&
	while [ $((kills + rkills)) -lt "$KILLS" ]; do
		tries=$((tries + 1)) &&
		if [ $tries -gt $((KILLS * 4 + 20)) ] || ! job_running k1; then
			say "# $((kills + rkills)) kills landed in $tries tries; k1: $(head -n 1 "$J/k1/status")"
			return 1
		fi &&
		sleep "$(python3 -c "import random; print(random.uniform(0.2, 1.5))")" &&
		if [ $((tries % 2)) = 0 ]; then
			# only a kill that lands counts: a replica alive and running, SIGKILL delivered
			pid=$(running_replica k1) &&
			if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then rkills=$((rkills + 1)); fi
		else
			pid_alive "$DAEMON_PID" && daemon_kill9 && kills=$((kills + 1)) &&
				kept_at_kill k1 $kills && daemon_start
		fi || return 1
	done &&
	say "# $kills daemon kills and $rkills replica kills landed in $tries tries" &&
	# the last restart resumed before the stop (the check below reads its line)
	{ [ ! -f "$TEST_DIR/k1.kill$kills.round" ] ||
	  { last=$(($(cat "$TEST_DIR/k1.kill$kills.round") + 1)) &&
	    wait_for 120 "grep -q \"^running from round $last of\" \"$J/k1/log\""; }; } &&
	# The kills are what this block tests: the job is stopped now rather than run to its
	# end.  A stopped job, like a done one, ends only once every round it completed is paid.
	# (A resumed job trains on the tokens its first rounds kept: it never waits for the tree.)
	echo stop >"$J/k1/control" && result k1 &&
	head -n 1 "$J/k1/status" | grep -q "^stopped\|^done$" &&
	say "# k1 completed $(rows "$J/k1/rounds.tsv") rounds" &&
	[ "$(rows "$J/k1/rounds.tsv")" -ge 2 ] &&
	cat "$MNT/mining/ledger.jsonl" >"$TEST_DIR/ledger2.jsonl" &&
	$CHECK "$TEST_DIR/ledger2.jsonl" "$J/k1" k1 prov 0.5 &&
	"$L" verify "$STORE"
'

test_expect_success 'every round completed before a kill is kept; each restart resumed after it' '
	n=0 && for f in "$TEST_DIR"/k1.kill*.round; do
		[ -f "$f" ] || continue
		k=$(cat "$f") && rows_f=${f%.round} && n=$((n + 1)) &&
		# its rows, as they were, at the head of the final rounds.tsv
		[ "$(rows "$rows_f")" = "$k" ] &&
		head -n $((k + 1)) "$J/k1/rounds.tsv" | cmp - "$rows_f" &&
		grep -q "^running from round $((k + 1)) of" "$J/k1/log" &&
		say "# kill $(basename "$rows_f" | sed "s/k1.kill//"): rounds 1..$k kept, resumed at $((k + 1))" ||
		return 1
	done &&
	say "# $n daemon kills checked" && { [ "$n" -ge 1 ] || [ "$KILLS" = 0 ]; } &&
	[ "$(cut -f1 "$J/k1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = \
	  "$(seq 1 "$(rows "$J/k1/rounds.tsv")" | tr "\n" " ")" ]
'

test_done
