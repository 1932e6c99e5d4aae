#!/bin/sh
# mining_overlap.sh - overlap=1 jobs (docs/mining.md, "Overlapping rounds"): a replica starts
# its next window from W(r-1) minus its own pseudo-gradient without waiting for W(r).
#  - a job completes, and every window, replayed by the ledger from the start it rebuilds
#    (weights/<r-2>.pg minus deltas/<r-1>-<slot>.pg), passes; fp32 and int8; also a round
#    whose hook was lost, booked at the next from the job folder;
#  - kill -9 of the daemon mid-job: it resumes at its last completed round, its new replicas
#    get their own starts from the coordinator, and it ends bit for bit as an uninterrupted
#    overlap job; the rounds are all paid, every window verified;
#  - a replica of its own making (overlap_cheat.py) posting noise while saying own=1 is
#    accepted by the coordinator and flagged by the ledger every round, the honest slot
#    beside it verified every round.
. "$MOUNT_HELPERS/lib.sh"
. "$(dirname "$0")/lib-jobs.sh"
CHEAT="python3 $(dirname "$0")/overlap_cheat.py"
OPTS='data=models/corpora/tiny.txt layers=2 heads=2 embd=32 seq=32 batch=4 val-batches=2
sample-len=32 seed=3 account=alice overlap=1'

test_expect_success 'set up: accounts, a priced provider, the corpus' '
	daemon_start &&
	mkdir -p "$MNT/models/corpora" &&
	head -c 120000 "$TRAIN_CORPUS" >"$MNT/models/corpora/tiny.txt" &&
	mkdir "$A/alice" "$A/prov" "$P/p1" &&
	printf "%s\n" "{\"kind\": \"local\", \"account\": \"prov\", \"price\": 0.5, \"device\": \"cpu\"}" \
		>"$P/p1/provider.json"
'

test_expect_success 'an overlap job completes; every window replays from its rebuilt start' '
	job o1 providers=p1 replicas=2 inner-steps=10 steps=60 &&
	result o1 && [ "$(head -n 1 "$J/o1/status")" = done ] &&
	[ "$(rows "$J/o1/rounds.tsv")" = 6 ] &&
	[ "$(tail -n +2 "$J/o1/contributions.tsv" | cut -f8 | sort -u)" = 1 ] &&
	"$L" show "$STORE" --job o1 >"$TEST_DIR/o1.jsonl" &&
	$CHECK "$TEST_DIR/o1.jsonl" "$J/o1" o1 prov 0.5 --all-verified
'

test_expect_success 'its windows did start from their own pseudo-gradients (not W(r-1))' '
	# each replica says in the job log which windows started from its own pseudo-gradient:
	# those of rounds 2 to 6 of both slots, computed by the replicas themselves
	n=$(grep -c "inner steps in .* waiting for its weights, from its own" "$J/o1/log") &&
	say "# $n own starts" && [ "$n" = 10 ] &&
	! grep -q "its own start from the coordinator" "$J/o1/log" &&
	# and the model differs from the same job without overlap (the start matters)
	job n1 providers=p1 replicas=2 inner-steps=10 steps=60 overlap=0 &&
	result n1 && [ "$(head -n 1 "$J/n1/status")" = done ] &&
	[ "$(sed -n 2p "$J/o1/rounds.tsv" | cut -f2)" = "$(sed -n 2p "$J/n1/rounds.tsv" | cut -f2)" ] &&
	[ "$(sed -n 3p "$J/o1/rounds.tsv" | cut -f2)" != "$(sed -n 3p "$J/n1/rounds.tsv" | cut -f2)" ]
'

test_expect_success 'int8 overlap windows replay too' '
	job i1 providers=p1 replicas=2 inner-steps=10 steps=40 compression=int8 block=64 &&
	result i1 && [ "$(head -n 1 "$J/i1/status")" = done ] &&
	"$L" show "$STORE" --job i1 >"$TEST_DIR/i1.jsonl" &&
	$CHECK "$TEST_DIR/i1.jsonl" "$J/i1" i1 prov 0.5 --all-verified
'

test_expect_success 'a round whose hook was lost is booked at the next, from its rebuilt starts' '
	daemon_stop &&
	LLMFS_MINING_BOOK_DROP=3 && export LLMFS_MINING_BOOK_DROP &&
	daemon_start && unset LLMFS_MINING_BOOK_DROP &&
	job d1 providers=p1 replicas=2 inner-steps=10 steps=50 &&
	result d1 && [ "$(head -n 1 "$J/d1/status")" = done ] &&
	"$L" show "$STORE" --job d1 >"$TEST_DIR/d1.jsonl" &&
	$CHECK "$TEST_DIR/d1.jsonl" "$J/d1" d1 prov 0.5 --all-verified &&
	daemon_stop && daemon_start
'

test_expect_success 'kill -9 mid-job: resumed at its last completed round, bit for bit' '
	job k1 providers=p1 replicas=2 inner-steps=20 steps=240 &&
	wait_for 120 "[ \$(rows \"$J/k1/rounds.tsv\") -ge 3 ]" &&
	daemon_kill9 &&
	done_before=$(python3 -c "import json; print(json.load(open(\"$STORE/mining/jobs/k1/state.json\"))[\"round\"])") &&
	say "# killed after round $done_before" &&
	[ "$done_before" -lt 12 ] &&
	daemon_start &&
	result k1 && [ "$(head -n 1 "$J/k1/status")" = done ] &&
	grep -q "running from round $((done_before + 1)) of 12" "$J/k1/log" &&
	[ "$(cut -f1 "$J/k1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = "$(seq 1 12 | tr "\n" " ")" ] &&
	# the new replicas took their own starts from the coordinator
	grep -q "round $((done_before + 1)): its own start from the coordinator" "$J/k1/log" &&
	job k2 providers=p1 replicas=2 inner-steps=20 steps=240 &&
	result k2 &&
	cut -f1-3 "$J/k1/rounds.tsv" >"$TEST_DIR/k1.cols" &&
	cut -f1-3 "$J/k2/rounds.tsv" >"$TEST_DIR/k2.cols" &&
	{ cmp "$TEST_DIR/k1.cols" "$TEST_DIR/k2.cols" ||
	  { diff "$TEST_DIR/k1.cols" "$TEST_DIR/k2.cols" | sed "s/^/# /"; false; }; } &&
	cmp "$MNT/models/k1/model.safetensors" "$MNT/models/k2/model.safetensors" &&
	"$L" show "$STORE" --job k1 >"$TEST_DIR/k1.jsonl" &&
	$CHECK "$TEST_DIR/k1.jsonl" "$J/k1" k1 prov 0.5 --all-verified
'

test_expect_success 'a cheating replica saying own=1 is flagged every round; the honest one passes' '
	mkdir "$P/ghost" &&
	printf "{\"kind\": \"remote\", \"key\": \"nobody-serves-this-key\"}" >"$P/ghost/provider.json" &&
	# slot 0 on p1 (honest), slot 1 on ghost: its lease is never claimed, this test posts for it
	job c1 providers=p1,ghost replicas=2 inner-steps=10 steps=50 &&
	wait_for 60 "[ -s \"$STORE/mining/jobs/c1/token\" ]" &&
	$CHEAT "$(url)" c1 1 "$(cat "$STORE/mining/jobs/c1/token")" 10 >"$TEST_DIR/cheat.log" 2>&1 &&
	sed "s/^/# cheat: /" "$TEST_DIR/cheat.log" &&
	result c1 && [ "$(head -n 1 "$J/c1/status")" = done ] &&
	grep -q "own=1 HTTP 200" "$TEST_DIR/cheat.log" &&
	"$L" show "$STORE" --job c1 >"$TEST_DIR/c1.jsonl" &&
	python3 -c "import json, sys
es = [json.loads(l) for l in open(sys.argv[1])]
R = 5
for r in range(1, R + 1):
    flags = [e for e in es if e[\"round\"] == r and e[\"kind\"] == \"flag\"]
    fl = [f for e in flags for f in e[\"evidence\"][\"flags\"]]
    assert [f[\"slot\"] for f in fl] == [1], (r, flags)
    assert fl[0][\"check\"][\"verdict\"] == \"noise\", fl
    comp = [e for e in es if e[\"round\"] == r and e[\"kind\"] == \"compute\"]
    reps = [x for e in comp for x in e[\"evidence\"][\"replicas\"]]
    assert [x[\"slot\"] for x in reps] == [0] and reps[0][\"verified\"] is True, (r, comp)
print(\"ok:\", R, \"rounds, slot 1 flagged each, slot 0 verified each\")" "$TEST_DIR/c1.jsonl"
'

test_done
