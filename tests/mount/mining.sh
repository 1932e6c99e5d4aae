#!/bin/sh
# mining/: co-training jobs.  A job on the embedded local provider trains one model with
# DiLoCo across replica processes that reach the daemon over HTTP; its reports follow it and
# the model lands in models/<job>/.  int8 pseudo-gradients move fewer bytes.  A daemon killed
# (-9) mid-job resumes at its last completed round and ends bit for bit where an uninterrupted
# job does; a replica killed mid-round drops out of that round (accepted 0) and catches up.
# Malformed job and provider files, unknown providers and accounts, and garbage, truncated or
# wrong-shaped pseudo-gradients each get a clear error; other users cannot read, start or stop a private job
# or push without its token.  A second daemon (own store and mount) serves a remote provider.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-mining.sh"

require_cmd python3 curl useradd userdel setpriv
require_corpus
PY=/usr/bin/python3
M=$MNT/models
U=llmfs-mine-$$
V=llmfs-mine2-$$
useradd -M -N -r -s /bin/false "$U" >/dev/null 2>&1 || skip_all "useradd failed"
useradd -M -N -r -s /bin/false "$V" >/dev/null 2>&1 || { userdel "$U"; skip_all "useradd failed"; }
chmod 755 "$TEST_DIR"
trap 'rc_=$?; userdel "$U" 2>/dev/null; userdel "$V" 2>/dev/null; (exit $rc_); cleanup' EXIT

# A tiny GPT: a round is a fraction of a second on one core.
OPTS='data=models/corpora/tiny.txt layers=2 heads=2 embd=32 seq=32 batch=4 val-batches=2
sample-len=32 seed=3'

test_expect_success 'set up: the corpus; mining/ and the embedded local provider' '
	daemon_start &&
	mkdir -p "$M/corpora" &&
	head -c 120000 "$TRAIN_CORPUS" >"$M/corpora/tiny.txt" &&
	head -c 2000 "$TRAIN_CORPUS" >"$M/corpora/small.txt" &&
	ls "$MNT/mining" | tr "\n" " " | grep -qx "accounts jobs ledger.jsonl providers status " &&
	[ "$(stat -c %a "$J")" = 1777 ] &&
	grep -q "^listen http://127.0.0.1:[0-9]" "$MNT/mining/status" &&
	[ "$(ls "$P")" = local ] &&
	grep -q "\"kind\": \"local\"" "$P/local/provider.json" &&
	head -n 1 "$P/local/status" | grep -qx alive
'

test_expect_success 'a job with 2 replicas runs to its end on the local provider' '
	job d1 replicas=2 inner-steps=20 steps=80 val-batches=16 &&
	result d1 && [ "$(head -n 1 "$J/d1/status")" = done ] &&
	$PY -c "import json, sys; r = json.load(open(sys.argv[1]));
assert r[\"state\"] == \"done\" and r[\"model\"] == \"models/d1\" and r[\"rounds\"] == 4, r
assert r[\"tokens\"] == 4 * 2 * 20 * 4 * 32, r
assert r[\"device_seconds\"] > 0 and r[\"bytes_received\"] > 0, r" "$TEST_DIR/d1.result"
'

test_expect_success 'its reports: rounds, contributions, metrics, trainer_state, events, svg' '
	[ "$(rows "$J/d1/rounds.tsv")" = 4 ] &&
	[ "$(cut -f1 "$J/d1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = "1 2 3 4 " ] &&
	[ "$(rows "$J/d1/contributions.tsv")" = 8 ] &&
	[ "$(tail -n +2 "$J/d1/contributions.tsv" | cut -f8 | sort -u)" = 1 ] &&
	[ "$(tail -n +2 "$J/d1/contributions.tsv" | cut -f3 | sort -u)" = local ] &&
	[ "$(tail -n +2 "$J/d1/contributions.tsv" | cut -f5 | sort -u)" = 20 ] &&
	# device-seconds are metered (the kernel s CPU time of each replica)
	awk -F"\t" "NR > 1 { s += \$7 } END { exit !(s > 0) }" "$J/d1/contributions.tsv" &&
	[ "$(rows "$J/d1/metrics.tsv")" = 4 ] &&
	[ "$(tail -n 1 "$J/d1/metrics.tsv" | cut -f1)" = 80 ] &&
	# the validation loss falls from the first round to the last
	first=$(sed -n 2p "$J/d1/rounds.tsv" | cut -f2) &&
	last=$(tail -n 1 "$J/d1/rounds.tsv" | cut -f2) &&
	$PY -c "import sys; a, b = map(float, sys.argv[1:]); assert b < a, (a, b)" "$first" "$last" &&
	$PY -c "import json, sys; s = json.load(open(sys.argv[1])); assert s[\"global_step\"] == 80, s" \
		"$J/d1/trainer_state.json" &&
	grep -q "<svg" "$J/d1/loss.svg" &&
	ev=$(cd "$J/d1" && ls -d events.out.tfevents.*.llmfs) && [ -s "$J/d1/$ev" ] &&
	grep -q "^=== round 4" "$J/d1/samples.txt"
'

test_expect_success 'the model lands in models/<job>/ and loads in the PyTorch reference' '
	[ -s "$M/d1/config.json" ] && [ -s "$M/d1/model.safetensors" ] &&
	$PY -c "import json, sys; c = json.load(open(sys.argv[1])); assert c[\"n_layer\"] == 2, c" \
		"$M/d1/config.json" &&
	[ "$(stat -c %U "$M/d1/model.safetensors")" = root ] &&
	head -c 120000 "$TRAIN_CORPUS" >"$TEST_DIR/tiny.txt" &&
	vl=$(tail -n 1 "$J/d1/rounds.tsv" | cut -f2) &&
	$PY "$MOUNT_HELPERS/../gpu/test_torch_ref.py" --model "$M/d1" "$TEST_DIR/tiny.txt" "$vl"
'

test_expect_success 'int8 both ways: the same job receives and sends about 4x fewer bytes' '
	job q1 replicas=2 inner-steps=20 steps=80 compression=int8 &&
	result q1 && [ "$(head -n 1 "$J/q1/status")" = done ] &&
	fp=$(sed -n 3p "$J/d1/rounds.tsv" | cut -f5) && q=$(sed -n 3p "$J/q1/rounds.tsv" | cut -f5) &&
	say "# bytes received in round 2: fp32 $fp, int8 $q" &&
	[ $((q * 3)) -lt "$fp" ] &&
	fp=$(sed -n 3p "$J/d1/rounds.tsv" | cut -f4) && q=$(sed -n 3p "$J/q1/rounds.tsv" | cut -f4) &&
	say "# bytes sent in round 2 (the outer update): fp32 $fp, int8 $q" &&
	[ "$q" -gt 0 ] && [ $((q * 3)) -lt "$fp" ] &&
	last=$(tail -n 1 "$J/q1/rounds.tsv" | cut -f2) &&
	$PY -c "import math, sys; v = float(sys.argv[1]); assert math.isfinite(v) and v < 5, v" "$last"
'

test_expect_success 'kill -9 of the daemon mid-job: it resumes at the last completed round' '
	job k1 replicas=2 inner-steps=20 steps=400 &&
	wait_for 120 "[ \$(rows \"$J/k1/rounds.tsv\") -ge 3 ]" &&
	daemon_kill9 &&
	done_before=$(python3 -c "import json; print(json.load(open(\"$STORE/mining/jobs/k1/state.json\"))[\"round\"])") &&
	say "# killed after round $done_before" &&
	daemon_start &&
	result k1 && [ "$(head -n 1 "$J/k1/status")" = done ] &&
	[ "$(cut -f1 "$J/k1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = \
	  "$(seq 1 20 | tr "\n" " ")" ] &&
	[ "$(rows "$J/k1/contributions.tsv")" = 40 ] &&
	grep -q "running from round $((done_before + 1)) of 20" "$J/k1/log"
'

test_expect_success 'the resumed job ends bit for bit as an uninterrupted one' '
	job k2 replicas=2 inner-steps=20 steps=400 &&
	result k2 &&
	cut -f1-3 "$J/k1/rounds.tsv" >"$TEST_DIR/k1.cols" &&
	cut -f1-3 "$J/k2/rounds.tsv" >"$TEST_DIR/k2.cols" &&
	{ cmp "$TEST_DIR/k1.cols" "$TEST_DIR/k2.cols" ||
	  { diff "$TEST_DIR/k1.cols" "$TEST_DIR/k2.cols" | sed "s/^/# /"
	    for k in k1 k2; do sed "s/^/# $k: /" "$J/$k/contributions.tsv"; done; false; }; } &&
	cmp "$M/k1/model.safetensors" "$M/k2/model.safetensors"
'

test_expect_success 'a replica killed mid-round drops out of it (accepted 0) and catches up' '
	job r1 replicas=2 inner-steps=150 steps=1200 batch=8 &&
	n=0 && dropped= &&
	while [ $n -lt 5 ] && [ -z "$dropped" ]; do
		n=$((n + 1)) &&
		wait_status r1 120 "^replica 0: local [0-9]+:[0-9]+, running" &&
		pid=$(sed -n "s/^replica 0: local \([0-9]*\):.*, running.*/\1/p" "$J/r1/status") &&
		before=$(rows "$J/r1/rounds.tsv") &&
		[ -n "$pid" ] && kill -9 "$pid" &&
		wait_for 60 "grep -q \"killed by signal 9\" \"$J/r1/log\"" &&
		wait_for 120 "[ \$(rows \"$J/r1/rounds.tsv\") -gt $before ]" || return 1
		awk -F"\t" "\$2 == 0 && \$8 == 0 && \$9 ~ /killed by signal 9/ { f = 1 } END { exit !f }" \
			"$J/r1/contributions.tsv" && dropped=1
	done &&
	[ -n "$dropped" ] &&
	result r1 && [ "$(head -n 1 "$J/r1/status")" = done ] &&
	[ "$(rows "$J/r1/rounds.tsv")" = 8 ] &&
	# it caught up: the last round has both replicas accepted
	[ "$(tail -n 1 "$J/r1/rounds.tsv" | cut -f7)" = 2 ]
'

test_expect_success 'control: stop, then resume from the last completed round' '
	job s1 replicas=2 inner-steps=20 steps=400 &&
	wait_for 120 "[ \$(rows \"$J/s1/rounds.tsv\") -ge 2 ]" &&
	echo stop >"$J/s1/control" &&
	wait_status s1 60 "^stopped" &&
	timeout 10 cat "$J/s1/result" | grep -q "\"state\": \"stopped\"" &&
	k=$(rows "$J/s1/rounds.tsv") && say "# stopped after $k rounds" && [ "$k" -lt 20 ] &&
	echo resume >"$J/s1/control" &&
	result s1 && [ "$(head -n 1 "$J/s1/status")" = done ] &&
	[ "$(cut -f1 "$J/s1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = "$(seq 1 20 | tr "\n" " ")" ] &&
	cmp "$M/s1/model.safetensors" "$M/k2/model.safetensors"
'

test_expect_success 'a budget in device-hours stops the job once spent' '
	job bu1 replicas=2 inner-steps=20 steps=400 budget=0.000001 &&
	result bu1 && grep -q "^stopped: budget of 1e-06 device-hours spent" "$J/bu1/status" &&
	[ "$(rows "$J/bu1/rounds.tsv")" -lt 20 ] && [ ! -e "$M/bu1/model.safetensors" ]
'

test_expect_success 'bad job files fail with their reason; the daemon stays up' '
	bad() { jn=$1 pat=$2; shift 2; job "$jn" "$@" &&
		wait_status "$jn" 60 "^failed: " &&
		grep -Eq "$pat" "$J/$jn/status" || { cat "$J/$jn/status"; return 1; }
		timeout 10 cat "$J/$jn/result" | grep -q "\"state\": \"failed\""; } &&
	bad b1 "unknown key.*colour" colour=blue &&
	bad b2 "replicas: 0" replicas=0 &&
	bad b3 "compression: zip" compression=zip &&
	bad b4 "steps: 90 is not a multiple of inner-steps=20" steps=90 inner-steps=20 &&
	bad b5 "providers: no provider named nope" providers=nope steps=20 inner-steps=10 &&
	bad b6 "account: ghost is not an account" account=ghost steps=20 inner-steps=10 &&
	bad b7 "data /etc/passwd: not a path in the tree" data=/etc/passwd &&
	bad b8 "data models/corpora/nope.txt: No such file" data=models/corpora/nope.txt &&
	bad b9 "too short for 64 replicas" replicas=64 steps=20 inner-steps=10 \
		data=models/corpora/small.txt &&
	# many short lines: each gains a blank when handed to the engine (this overflowed once)
	mkdir "$J/b11" && { echo "$OPTS"; i=0; while [ $i -lt 3000 ]; do echo "seed=3"; i=$((i + 1)); done;
		echo "colour=red"; } >"$J/b11/job" &&
	wait_status b11 60 "^failed: line 3003: unknown key" &&
	daemon_alive_check
'

test_expect_success 'bad provider files: the status says why; a job cannot use them' '
	mkdir "$P/p1" && { printf "{not json" >"$P/p1/provider.json" || :; } &&
	grep -q "last error provider.json: not a JSON object" "$P/p1/status" &&
	{ printf "{\"kind\": \"quantum\"}" >"$P/p1/provider.json" || :; } &&
	grep -q "kind: quantum is not a provider" "$P/p1/status" &&
	{ printf "{\"kind\": \"local\", \"cpu-list\": \"x\"}" >"$P/p1/provider.json" || :; } &&
	grep -q "cpu-list" "$P/p1/status" &&
	{ printf "{\"kind\": \"local\", \"account\": \"ghost\"}" >"$P/p1/provider.json" || :; } &&
	grep -q "account: ghost is not an account" "$P/p1/status" &&
	{ printf "{\"kind\": \"local\", \"price\": -1}" >"$P/p1/provider.json" || :; } &&
	grep -q "price: not a non-negative number" "$P/p1/status" &&
	{ printf "{\"kind\": \"remote\", \"key\": \"short\"}" >"$P/p1/provider.json" || :; } &&
	grep -q "key: missing or not a secret of 16" "$P/p1/status" &&
	{ printf "{\"kind\": \"local\", \"account\": \"ghost\"}" >"$P/p1/provider.json" || :; } &&
	grep -q "account: ghost is not an account" "$P/p1/status" &&
	job b10 providers=p1 steps=20 inner-steps=10 && wait_status b10 60 "^failed: providers: p1 is not usable" &&
	daemon_alive_check
'

test_expect_success 'a local provider pins its replicas to its cpu-list' '
	mkdir "$A/alice" &&
	printf "{\"kind\": \"local\", \"cpu-list\": \"0\", \"account\": \"alice\", \"price\": 0.25}" \
		>"$P/p1/provider.json" &&
	head -n 1 "$P/p1/status" | grep -qx alive &&
	grep -q "^price 0.25 USD per device-hour" "$P/p1/status" && grep -q "^account alice" "$P/p1/status" &&
	[ "$(ls "$P" | tr "\n" " ")" = "local p1 " ] &&
	job c1 providers=p1 replicas=1 inner-steps=100 steps=400 batch=8 account=alice &&
	wait_status c1 120 "^replica 0: p1 [0-9]+:[0-9]+, running" &&
	pid=$(sed -n "s/^replica 0: p1 \([0-9]*\):.*/\1/p" "$J/c1/status") &&
	grep "^Cpus_allowed_list" "/proc/$pid/status" | grep -q "	0$" &&
	result c1 && [ "$(head -n 1 "$J/c1/status")" = done ] &&
	grep -q "^jobs 0" "$P/p1/status" &&
	! grep -q "^device-seconds 0.000" "$P/p1/status"
'

test_expect_success 'garbage, truncated and wrong-shaped pseudo-gradients are refused' '
	job g1 replicas=2 inner-steps=100 steps=800 batch=8 &&
	wait_status g1 120 "^running: round" &&
	wait_for 60 "[ -s \"$STORE/mining/jobs/g1/token\" ]" && wait_for 60 "grep -q parameters \"$J/g1/log\"" &&
	tk=$(token g1) && u=$(url)/v1/jobs/g1 &&
	post() { curl -s -o "$TEST_DIR/post.out" -w "%{http_code}" -H "Authorization: Bearer $1" \
		--data-binary @"$2" "$u/delta/0?round=1&steps=100&loss=1"; } &&
	head -c 5000 /dev/urandom >"$TEST_DIR/garbage" &&
	[ "$(post "$tk" "$TEST_DIR/garbage")" = 400 ] && grep -q "no LLMFSPG1 magic" "$TEST_DIR/post.out" &&
	curl -s -H "Authorization: Bearer $tk" "$u/weights?after=0" -o "$TEST_DIR/w" &&
	head -c 1000 "$TEST_DIR/w" >"$TEST_DIR/trunc" &&
	[ "$(post "$tk" "$TEST_DIR/trunc")" = 400 ] && grep -q "truncated" "$TEST_DIR/post.out" &&
	$PY -c "import struct, sys
h = open(sys.argv[1], \"rb\").read(24); n = struct.unpack(\"<Q\", h[16:24])[0] + 1
open(sys.argv[2], \"wb\").write(h[:16] + struct.pack(\"<Q\", n) + bytes(4 * n))" "$TEST_DIR/w" "$TEST_DIR/shape" &&
	[ "$(post "$tk" "$TEST_DIR/shape")" = 400 ] && grep -q "wrong shape" "$TEST_DIR/post.out" &&
	$PY -c "import struct, sys
b = bytearray(open(sys.argv[1], \"rb\").read()); b[24:28] = struct.pack(\"<f\", float(\"nan\"))
open(sys.argv[2], \"wb\").write(b)" "$TEST_DIR/w" "$TEST_DIR/nan" &&
	[ "$(post "$tk" "$TEST_DIR/nan")" = 400 ] && grep -q "not finite" "$TEST_DIR/post.out" &&
	[ "$(post wrong-token "$TEST_DIR/w")" = 403 ] &&
	[ "$(curl -s -o /dev/null -w "%{http_code}" "$u/weights?after=0")" = 403 ] &&
	[ "$(curl -s -o /dev/null -w "%{http_code}" "$u/shard/0")" = 403 ] &&
	grep -q "pseudo-gradient refused: not a tensor frame" "$J/g1/log" &&
	result g1 && [ "$(head -n 1 "$J/g1/status")" = done ] &&
	# nothing of the garbage counted: every accepted row is a replica s own
	[ "$(tail -n +2 "$J/g1/contributions.tsv" | cut -f8 | sort -u)" = 1 ]
'

test_expect_success 'owners: a private job, another user s account, rmdir of others' '
	run_as "$U" mkdir -m 700 "$J/priv" &&
	printf "%s steps=20 inner-steps=10\n" "$(echo $OPTS)" | run_as "$U" sh -c "cat >\"\$0\"" "$J/priv/job" &&
	! run_as "$V" cat "$J/priv/status" 2>/dev/null &&
	! run_as "$V" ls "$J/priv" >/dev/null 2>&1 &&
	! run_as "$V" rmdir "$J/priv" 2>/dev/null && [ -d "$J/priv" ] &&
	run_as "$U" timeout 300 cat "$J/priv/result" >/dev/null &&
	[ "$(run_as "$U" head -n 1 "$J/priv/status")" = done ] &&
	[ "$(stat -c %U "$M/priv/model.safetensors")" = "$U" ] &&
	run_as "$U" mkdir "$A/ua" &&
	run_as "$V" mkdir "$J/steal" &&
	printf "%s steps=20 inner-steps=10 account=ua\n" "$(echo $OPTS)" |
		run_as "$V" sh -c "cat >\"\$0\"" "$J/steal/job" &&
	wait_status steal 60 "^failed: account: ua belongs to another user" &&
	! run_as "$V" rmdir "$A/ua" 2>/dev/null &&
	! printf x | run_as "$V" sh -c "cat >\"\$0\"" "$J/priv/control" 2>/dev/null &&
	! printf "%s steps=20\n" "$(echo $OPTS)" | run_as "$V" sh -c "cat >\"\$0\"" "$J/priv/job" 2>/dev/null &&
	run_as "$U" rmdir "$J/priv" && [ ! -e "$J/priv" ]
'

test_expect_success 'a private job reads its data as its owner' '
	head -c 60000 "$TRAIN_CORPUS" >"$M/corpora/secret.txt" && chmod 600 "$M/corpora/secret.txt" &&
	run_as "$V" mkdir "$J/sneak" &&
	printf "%s steps=20 inner-steps=10 data=models/corpora/secret.txt\n" "$(echo $OPTS)" |
		run_as "$V" sh -c "cat >\"\$0\"" "$J/sneak/job" &&
	wait_status sneak 60 "^failed: data models/corpora/secret.txt: Permission denied"
'

test_expect_success 'remote: a second daemon serves a provider of this one' '
	key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d " \n") &&
	mkdir "$P/bob" &&
	printf "{\"kind\": \"remote\", \"key\": \"%s\", \"cpus\": 1}" "$key" >"$P/bob/provider.json" &&
	head -n 1 "$P/bob/status" | grep -qx down &&
	mkdir -p "$TEST_DIR/mnt2" &&
	spawn_llmfs daemon.b "$TEST_DIR/daemon.b.log" --store "$TEST_DIR/store2" -f "$TEST_DIR/mnt2" &&
	wait_mounted "$TEST_DIR/mnt2" "$SPAWN_PID" "$TEST_DIR/daemon.b.log" &&
	mkdir "$TEST_DIR/mnt2/mining/providers/toA" &&
	printf "{\"kind\": \"remote\", \"coordinator\": \"%s\", \"provider\": \"bob\", \"key\": \"%s\", \"cpus\": 1}" \
		"$(url)" "$key" >"$TEST_DIR/mnt2/mining/providers/toA/provider.json" &&
	head -n 1 "$TEST_DIR/mnt2/mining/providers/toA/status" | grep -qx serving &&
	wait_for 30 "head -n 1 \"$P/bob/status\" | grep -qx alive" &&
	job rm1 providers=bob replicas=2 inner-steps=20 steps=60 &&
	wait_for 120 "grep -q \"replicas running [12]\" \"$TEST_DIR/mnt2/mining/providers/toA/status\"" &&
	result rm1 && [ "$(head -n 1 "$J/rm1/status")" = done ] &&
	[ "$(tail -n +2 "$J/rm1/contributions.tsv" | cut -f3 | sort -u)" = bob ] &&
	[ "$(tail -n +2 "$J/rm1/contributions.tsv" | cut -f8 | sort -u)" = 1 ] &&
	[ -s "$M/rm1/model.safetensors" ] &&
	! grep -q "bad key" "$TEST_DIR/daemon.b.log" &&
	fusermount3 -u "$TEST_DIR/mnt2" && spawn_wait daemon.b && check_log "$TEST_DIR/daemon.b.log"
'

test_expect_success 'a provider that never answers: its replicas time out, the job fails saying so' '
	mkdir "$P/ghost" &&
	printf "{\"kind\": \"remote\", \"key\": \"nobody-serves-this-key\"}" >"$P/ghost/provider.json" &&
	head -n 1 "$P/ghost/status" | grep -qx down &&
	job gh1 providers=ghost replicas=1 inner-steps=10 steps=20 round-timeout=1 &&
	result gh1 &&
	grep -q "^failed: round 1: no replica delivered a pseudo-gradient in 3 attempts (replica 0: no pseudo-gradient within round-timeout=1 s)" "$J/gh1/status"
'

test_expect_success 'a wrong key is refused' '
	[ "$(curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer wrong-key-wrong-key" \
		"$(url)/v1/providers/bob/work")" = 403 ]
'

test_expect_success 'a disk that fills mid-job: it fails saying so; resumed, no completed round is lost' '
	! grep -l "ERROR: AddressSanitizer\|runtime error:\|SUMMARY: .*Sanitizer" "$J"/*/log &&
	daemon_stop &&
	ALLOWED_ERRORS="No space left on device" &&
	small_store 40m &&
	daemon_start &&
	mkdir -p "$M/corpora" && head -c 120000 "$TRAIN_CORPUS" >"$M/corpora/tiny.txt" &&
	job f1 replicas=2 inner-steps=10 steps=200 embd=128 &&
	wait_status f1 300 "^failed: " &&
	grep -q "No space left on device" "$J/f1/status" &&
	k=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))[\"round\"])" \
		"$STORE/mining/jobs/f1/state.json") &&
	say "# $(head -n 1 "$J/f1/status"); state.json: round $k" && [ "$k" -ge 1 ] && [ "$k" -lt 20 ] &&
	mount -o remount,size=400m "$SMALL" &&
	echo resume >"$J/f1/control" &&
	result f1 && [ "$(head -n 1 "$J/f1/status")" = done ] &&
	[ "$(cut -f1 "$J/f1/rounds.tsv" | tail -n +2 | tr "\n" " ")" = "$(seq 1 20 | tr "\n" " ")" ] &&
	[ -s "$M/f1/model.safetensors" ]
'

test_expect_success 'no sanitizer report from any replica' '
	! grep -l "ERROR: AddressSanitizer\|runtime error:\|SUMMARY: .*Sanitizer" "$J"/*/log
'

test_done
