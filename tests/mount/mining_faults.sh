#!/bin/sh
# mining/: faults and keys that tests/mount/mining.sh leaves out.
# - The transport fails mid-round with the coordinator alive: its HTTP port resets every
#   connection (iptables in a network namespace of the test's own) until a replica says it
#   retries; the replicas retry, every round completes with every share accepted, and no
#   completed round is lost or changed.
# - val-data=: validation on another text (the training data whole), train losses unchanged.
# - providers=any deals slots only to providers that are alive; provider.json's unknown keys
#   are refused by name; cpus-per-replica= pins and threads a replica; outer-momentum= reaches
#   the replicas and is range-checked.
if [ -z "${LLMFS_MINING_NETNS:-}" ]; then
	# the loopback of a namespace of its own: the firewall rule touches no other test
	command -v unshare >/dev/null && command -v iptables >/dev/null &&
		unshare -n true 2>/dev/null &&
		exec unshare -n env LLMFS_MINING_NETNS=1 sh "$0" "$@"
	echo "1..0 # SKIP $(basename "$0" .sh): no unshare -n or iptables"
	exit 77
fi
ip link set lo up || exit 1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-mining.sh"

require_cmd python3 curl
require_corpus
PY=/usr/bin/python3
M=$MNT/models
OPTS='data=models/corpora/tiny.txt layers=2 heads=2 embd=32 seq=32 batch=4 val-batches=2
sample-len=0 seed=3'

# done_ NAME: the job ended done
done_() { result "$1" && [ "$(head -n 1 "$J/$1/status")" = done ]; }

test_expect_success 'set up: the corpus, in a network namespace of its own' '
	daemon_start &&
	mkdir -p "$M/corpora" &&
	head -c 120000 "$TRAIN_CORPUS" >"$M/corpora/tiny.txt" &&
	head -c 30000 "$TRAIN_CORPUS" | tail -c 12000 >"$M/corpora/val.txt" &&
	cp "$M/corpora/val.txt" "$M/corpora/val-copy.txt" &&
	tail -c 12000 "$TRAIN_CORPUS" >"$M/corpora/other.txt" &&
	head -c 12 "$TRAIN_CORPUS" >"$M/corpora/short.txt" &&
	port=$(url | sed "s/.*://") && [ -n "$port" ] &&
	say "# the replicas reach http://127.0.0.1:$port"
'

test_expect_success 'the transport fails mid-round: the replicas retry, no round is lost' '
	job t1 replicas=2 inner-steps=10 steps=200 &&
	wait_for 120 "[ \$(rows \"$J/t1/rounds.tsv\") -ge 2 ]" &&
	iptables -I INPUT -p tcp --dport "$port" -j REJECT --reject-with tcp-reset &&
	cp "$J/t1/rounds.tsv" "$TEST_DIR/t1.before" &&
	say "# port $port resets every connection after round $(rows "$TEST_DIR/t1.before")" &&
	ok=0 && wait_for 120 "grep -q \"the coordinator does not answer (.*): retrying\" \"$J/t1/log\"" &&
	ok=1; sleep 2; iptables -D INPUT -p tcp --dport "$port" -j REJECT --reject-with tcp-reset &&
	[ $ok = 1 ] &&
	grep "does not answer\|answers again" "$J/t1/log" | sed "s/^/# /" &&
	done_ t1 &&
	grep -q "the coordinator answers again after" "$J/t1/log" &&
	[ "$(cut -f1 "$J/t1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = "$(seq 1 20 | tr "\n" " ")" ] &&
	head -n "$(wc -l <"$TEST_DIR/t1.before")" "$J/t1/rounds.tsv" | cmp - "$TEST_DIR/t1.before" &&
	# every share of every round accepted: no replica gave up, was dropped or started again
	[ "$(tail -n +2 "$J/t1/contributions.tsv" | cut -f8 | sort -u)" = 1 ] &&
	[ "$(tail -n +2 "$J/t1/contributions.tsv" | wc -l)" = 40 ] &&
	[ "$(grep -c "^replica [01]: started on" "$J/t1/log")" = 2 ]
'

test_expect_success 'val-data=: validation on that text, training on the whole data' '
	job va replicas=1 inner-steps=5 steps=15 val-data=models/corpora/val.txt &&
	job vb replicas=1 inner-steps=5 steps=15 val-data=models/corpora/val-copy.txt &&
	job vc replicas=1 inner-steps=5 steps=15 val-data=models/corpora/other.txt &&
	done_ va && done_ vb && done_ vc &&
	[ "$(rows "$J/va/rounds.tsv")" = 3 ] &&
	cut -f1-3 "$J/va/rounds.tsv" >"$TEST_DIR/va" && cut -f1-3 "$J/vb/rounds.tsv" >"$TEST_DIR/vb" &&
	cmp "$TEST_DIR/va" "$TEST_DIR/vb" &&
	[ "$(cut -f3 "$J/va/rounds.tsv")" = "$(cut -f3 "$J/vc/rounds.tsv")" ] &&
	[ "$(cut -f2 "$J/va/rounds.tsv")" != "$(cut -f2 "$J/vc/rounds.tsv")" ] &&
	job vd replicas=1 inner-steps=5 steps=15 val-data=models/corpora/missing.txt &&
	wait_status vd 60 "^failed: .*val-data" &&
	job ve replicas=1 inner-steps=5 steps=15 val-data=models/corpora/short.txt &&
	wait_status ve 60 "^failed: val-data models/corpora/short.txt: too short" &&
	say "# $(head -n 1 "$J/vd/status")" && say "# $(head -n 1 "$J/ve/status")"
'

test_expect_success 'provider.json: an unknown key is refused by name' '
	mkdir "$P/l1" && mkdir "$A/acc" &&
	{ printf "{\"kind\": \"local\", \"cpu_list\": \"0\"}" >"$P/l1/provider.json" || :; } &&
	grep -q "last error provider.json: cpu_list is not a key of a local provider" "$P/l1/status" &&
	{ printf "{\"kind\": \"local\", \"slurm\": {}}" >"$P/l1/provider.json" || :; } &&
	grep -q "slurm is not a key of a local provider" "$P/l1/status" &&
	{ printf "{\"kind\": \"slurm\", \"cpu-list\": \"0\"}" >"$P/l1/provider.json" || :; } &&
	grep -q "cpu-list is not a key of a slurm provider" "$P/l1/status" &&
	printf "{\"kind\": \"local\", \"cpu-list\": \"0\", \"cpus\": 1, \"gpus\": 0, \"memory\": \"1G\", \"price\": 0, \"device\": \"cpu\", \"account\": \"acc\"}" \
		>"$P/l1/provider.json" &&
	head -n 1 "$P/l1/status" | grep -qx alive
'

test_expect_success 'providers=any: slots only on providers that are alive' '
	mkdir "$P/r1" &&
	printf "{\"kind\": \"remote\", \"key\": \"0123456789abcdef0123\", \"cpus\": 1}" \
		>"$P/r1/provider.json" &&
	head -n 1 "$P/r1/status" | grep -qx down &&
	job any1 providers=any replicas=2 inner-steps=5 steps=10 round-timeout=60 &&
	wait_status any1 60 "^replica 1: " &&
	grep "^replica" "$J/any1/status" | sed "s/^/# /" &&
	grep -q "^replica 0: l1 " "$J/any1/status" && grep -q "^replica 1: l1 " "$J/any1/status" &&
	done_ any1 &&
	! grep -q "	r1	" "$J/any1/contributions.tsv"
'

test_expect_success 'cpus-per-replica=: a replica pinned to that many CPUs, with as many threads' '
	if [ "$(nproc)" -lt 2 ]; then say "# one CPU: skipped"; exit 0; fi &&
	# a provider in use refuses a new file (EBUSY): any1 releases it just after its result
	wait_for 60 "grep -q \"^jobs 0\" \"$P/l1/status\"" &&
	printf "{\"kind\": \"local\", \"cpu-list\": \"0-1\"}" >"$P/l1/provider.json" &&
	grep -q "\"0-1\"" "$P/l1/provider.json" &&
	job cp2 providers=l1 replicas=1 cpus-per-replica=2 inner-steps=100 steps=400 batch=8 &&
	wait_status cp2 120 "^replica 0: l1 [0-9]+:[0-9]+, running" &&
	pid=$(sed -n "s/^replica 0: l1 \([0-9]*\):.*/\1/p" "$J/cp2/status") &&
	grep "^Cpus_allowed_list" "/proc/$pid/status" | sed "s/^/# /" &&
	grep "^Cpus_allowed_list" "/proc/$pid/status" | grep -q "	0-1$" &&
	[ "$(tr "\0" "\n" <"/proc/$pid/cmdline" | tail -n 1)" = 2 ] &&
	echo stop >"$J/cp2/control" && wait_status cp2 60 "^stopped" &&
	job cp0 cpus-per-replica=0 && wait_status cp0 30 "^failed: .*cpus-per-replica" &&
	job cp9 cpus-per-replica=257 && wait_status cp9 30 "^failed: .*cpus-per-replica"
'

test_expect_success 'outer-momentum=: what the replicas are told, range-checked' '
	# long enough to be running when its spec is asked for, then stopped
	job om replicas=1 inner-steps=5 steps=100000 outer-momentum=0.5 outer-lr=0.3 &&
	wait_status om 60 "^running" &&
	curl -sf -H "Authorization: Bearer $(token om)" "$(url)/v1/jobs/om/spec" >"$TEST_DIR/om.spec" &&
	$PY -c "import json, sys; s = json.load(open(sys.argv[1]));
assert s[\"outer_momentum\"] == 0.5 and abs(s[\"outer_lr\"] - 0.3) < 1e-7, s" "$TEST_DIR/om.spec" &&
	echo stop >"$J/om/control" && wait_status om 60 "^stopped" &&
	job om1 outer-momentum=1 && wait_status om1 30 "^failed: .*outer-momentum" &&
	job om2 outer-momentum=-0.5 && wait_status om2 30 "^failed: .*outer-momentum"
'

test_expect_success 'no sanitizer report from any replica' '
	! grep -l "ERROR: AddressSanitizer\|runtime error:\|SUMMARY: .*Sanitizer" "$J"/*/log
'

test_done
