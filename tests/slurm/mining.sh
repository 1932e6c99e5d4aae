#!/bin/sh
# mining.sh - a co-training job whose replicas are Slurm batch jobs: a real
# single-node Slurm (slurm.sh) and a real daemon with its mount
# (tests/mount/lib.sh).  The job runs to its end on a slurm provider, each
# replica one Slurm job metered in whole device-seconds by Slurm, none left
# queued or remembered after it; a malformed slurm provider and one pointed
# at a controller that is not there each say why in their status, and a job
# on the latter fails with Slurm's reason.
. "$MOUNT_HELPERS/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/slurm.sh"

require_fuse
require_cmd python3
require_corpus
trap 'rc_=$?; slurm_stop "$TEST_DIR/slurm"; (exit $rc_); cleanup' EXIT
J=$MNT/mining/jobs
P=$MNT/mining/providers
OPTS='data=models/corpora/tiny.txt layers=2 heads=2 embd=32 seq=32 batch=4 val-batches=2
sample-len=0 seed=3'

# provider NAME JSON-OF-THE-SLURM-OBJECT
provider() {
	mkdir "$P/$1" &&
	printf '{"kind": "slurm", "slurm": %s}\n' "$2" >"$P/$1/provider.json"
}

test_expect_success 'set up: Slurm, the daemon, the corpus' '
	slurm_start "$TEST_DIR/slurm" &&
	daemon_start &&
	mkdir -p "$MNT/models/corpora" &&
	head -c 120000 "$TRAIN_CORPUS" >"$MNT/models/corpora/tiny.txt"
'

test_expect_success 'a slurm provider is alive and offers the partition s CPUs' '
	provider cluster "{\"conf\": \"$SLURM_CONF\", \"partition\": \"test\",
		\"jobcomp-log\": \"$SLURM_JOBCOMP\", \"timeout-seconds\": 20}" &&
	head -n 1 "$P/cluster/status" | grep -qx alive &&
	grep -q "cpus.* $(nproc)" "$P/cluster/status"
'

test_expect_success 'a job with 2 replicas runs to its end as Slurm jobs' '
	mkdir "$J/s1" &&
	printf "%s\nreplicas=2 providers=cluster inner-steps=10 steps=30\n" "$OPTS" >"$J/s1/job" &&
	timeout 300 cat "$J/s1/result" >"$TEST_DIR/s1.result" &&
	[ "$(head -n 1 "$J/s1/status")" = done ] &&
	[ "$(tail -n +2 "$J/s1/rounds.tsv" | wc -l)" = 3 ] &&
	grep -q "replica 0: started on cluster as [0-9]" "$J/s1/log" &&
	grep -q "replica 1: started on cluster as [0-9]" "$J/s1/log"
'

test_expect_success 'its contributions: the provider, Slurm job ids, whole device-seconds' '
	sed "s/^/# /" "$J/s1/contributions.tsv" &&
	[ "$(tail -n +2 "$J/s1/contributions.tsv" | wc -l)" = 6 ] &&
	[ "$(tail -n +2 "$J/s1/contributions.tsv" | cut -f3 | sort -u)" = cluster ] &&
	[ -z "$(tail -n +2 "$J/s1/contributions.tsv" | cut -f4 | grep -v "^[0-9][0-9]*$")" ] &&
	[ "$(tail -n +2 "$J/s1/contributions.tsv" | cut -f8 | sort -u)" = 1 ] &&
	# Slurm counts whole seconds of the allocation (a replica that ends within
	# a second of its start is metered 0: a fast machine meters nothing here)
	s=$(awk -F"\t" "NR > 1 { s += \$7; if (\$7 != int(\$7)) bad = 1 } END { if (!bad) print s }" \
		"$J/s1/contributions.tsv") && [ -n "$s" ] &&
	python3 -c "import json, sys; r = json.load(open(sys.argv[1]));
assert r[\"state\"] == \"done\" and abs(r[\"device_seconds\"] - float(sys.argv[2])) < 1e-6, (r, sys.argv[2])" \
		"$TEST_DIR/s1.result" "$s"
'

test_expect_success 'after the job: no replica left in the queue, none remembered' '
	ids=$(tail -n +2 "$J/s1/contributions.tsv" | cut -f4 | sort -u | tr "\n" ",") &&
	wait_for 30 "[ -z \"\$(squeue -h -t pending,running,completing -j ${ids%,} -o %i 2>/dev/null)\" ]" &&
	[ -z "$(ls "$STORE/mining/providers/cluster" | grep "^slurm-")" ]
'

# A daemon killed with -9 does not take its Slurm replicas with it (they are not its
# children): restarted, it cancels those of the state it resumes before starting new ones,
# rather than leave them holding the cluster's CPUs (and posting as the job's replicas).
test_expect_success 'kill -9 of the daemon mid-job: the replicas it left in Slurm are cancelled' '
	port=$(slurm_free_port) &&
	daemon_stop && daemon_start --mining-listen "127.0.0.1:$port" &&
	mkdir "$J/k1" &&
	printf "%s\nreplicas=2 providers=cluster inner-steps=10 steps=3000\n" "$OPTS" >"$J/k1/job" &&
	wait_for 120 "grep -q \"^running: round [3-9]\" \"$J/k1/status\"" &&
	old=$(sed -n "s/^replica [01]: started on cluster as //p" "$J/k1/log" | tr "\n" " ") &&
	[ -n "$old" ] &&
	daemon_kill9 && daemon_start --mining-listen "127.0.0.1:$port" &&
	wait_for 60 "grep -q \"^running from round\" \"$J/k1/log\" &&
		[ \$(grep -c \"^running from round\" \"$J/k1/log\") = 2 ]" &&
	wait_for 60 "[ -z \"\$(squeue -h -t pending,running -j \$(echo $old | tr \" \" ,) -o %i 2>/dev/null)\" ]" &&
	echo stop >"$J/k1/control" &&
	timeout 120 cat "$J/k1/result" >/dev/null &&
	wait_for 60 "[ -z \"\$(squeue -h -t pending,running -o %i)\" ]"
'

test_expect_success 'a replica relaunched mid-round is kept in state.json; kill -9 then cancels it' '
	port=$(slurm_free_port) &&
	daemon_stop && daemon_start --mining-listen "127.0.0.1:$port" &&
	mkdir "$J/k2" &&
	printf "%s\nreplicas=2 providers=cluster inner-steps=10 steps=3000\n" "$OPTS" >"$J/k2/job" &&
	wait_for 120 "grep -q \"^running: round [2-9]\" \"$J/k2/status\"" &&
	first=$(sed -n "s/^replica 0: started on cluster as //p" "$J/k2/log" | tail -n 1) &&
	[ -n "$first" ] && scancel "$first" &&
	wait_for 60 "[ \$(grep -c \"^replica 0: started on cluster as\" \"$J/k2/log\") -ge 2 ]" &&
	new=$(sed -n "s/^replica 0: started on cluster as //p" "$J/k2/log" | tail -n 1) &&
	say "# replica 0: $first cancelled, relaunched as $new" &&
	python3 -c "import json, sys; s = json.load(open(sys.argv[1]));
assert sys.argv[2] in s[\"replicas\"], s" "$STORE/mining/jobs/k2/state.json" "$new" &&
	daemon_kill9 && daemon_start --mining-listen "127.0.0.1:$port" &&
	wait_for 60 "[ \$(grep -c \"^running from round\" \"$J/k2/log\") = 2 ]" &&
	wait_for 60 "[ -z \"\$(squeue -h -t pending,running -j $new -o %i 2>/dev/null)\" ]" &&
	echo stop >"$J/k2/control" &&
	timeout 120 cat "$J/k2/result" >/dev/null &&
	wait_for 60 "[ -z \"\$(squeue -h -t pending,running -o %i)\" ]"
'

# A controller that accepts connections and never answers: asking it whether it is alive
# takes the provider's whole timeout, which must not hold the coordinator's lock (every other
# read of mining/ would wait behind it).
test_expect_success 'a provider status read waiting on a silent controller blocks nothing else' '
	sport=$(slurm_free_port) &&
	{ python3 -c "import socket, sys, time
s = socket.socket(); s.bind((\"127.0.0.1\", int(sys.argv[1]))); s.listen(64); time.sleep(300)" \
		"$sport" & } &&
	silent=$! &&
	wait_for 20 "ss -Hltn \"sport = :$sport\" | grep -q ." &&
	sed -e "s/^SlurmctldPort=.*/SlurmctldPort=$sport/" -e "s/^MessageTimeout=.*/MessageTimeout=60/" \
		"$SLURM_CONF" >"$TEST_DIR/silent.conf" &&
	provider silent "{\"conf\": \"$TEST_DIR/silent.conf\", \"timeout-seconds\": 4}" &&
	{ cat "$P/silent/status" >"$TEST_DIR/silent.status" & } &&
	reader=$! &&
	sleep 1 &&
	cat "$MNT/mining/status" >/dev/null && cat "$P/cluster/provider.json" >/dev/null &&
	# the read of the silent one is still waiting on it, and did not hold the others up
	kill -0 "$reader" &&
	wait "$reader" && kill "$silent" &&
	! head -n 1 "$TEST_DIR/silent.status" | grep -qx alive &&
	rmdir "$P/silent"
'

test_expect_success 'a malformed slurm provider: its status names the key' '
	provider typo "{\"partiton\": \"test\"}" &&
	grep -q "slurm.partiton is not a key" "$P/typo/status"
'

test_expect_success 'a controller that is not there: down with the reason; a job on it fails' '
	sed "s/^SlurmctldPort=.*/SlurmctldPort=$(slurm_free_port)/" "$SLURM_CONF" \
		>"$TEST_DIR/dead.conf" &&
	provider dead "{\"conf\": \"$TEST_DIR/dead.conf\", \"timeout-seconds\": 2}" &&
	wait_for 30 "! head -n 1 \"$P/dead/status\" | grep -qx alive" &&
	grep -Eq "no answer|does not answer|Unable to contact" "$P/dead/status" &&
	mkdir "$J/d1" &&
	printf "%s\nreplicas=1 providers=dead inner-steps=10 steps=10\n" "$OPTS" >"$J/d1/job" &&
	timeout 300 cat "$J/d1/result" >/dev/null &&
	head -n 1 "$J/d1/status" | grep -q "^failed" &&
	grep -Eq "sbatch: (no answer|.*Unable to contact)" "$J/d1/status" "$J/d1/log"
'

test_done
