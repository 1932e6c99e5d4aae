#!/bin/sh
# mining_remote.sh - remote providers across network namespaces: the coordinating daemon runs
# on the host and serves its replicas on the hub address of tools/bench/lib-netns.sh
# (--mining-listen); two provider daemons, each with its own store and mount, run inside a
# namespace of their own behind a veth pair shaped by tc tbf, opt in with a remote
# provider.json pointing at the coordinator's hub URL, and run the replicas of a job dealt to
# both.  The namespaces cannot reach the host's loopback, every byte the coordinator tallied
# crossed the veths (their counters, not the program's word), each link carried at least its
# own provider's pseudo-gradients, and the model lands in models/<job>/.  Then one provider's
# daemon is killed with -9 mid-job: its replica dies with it, the job goes on with the other
# provider, the dead provider's slot stays its own (no reassignment) and counts zero in every
# round after (no pseudo-gradient within round-timeout, or "lost by its provider" once its
# daemon has been silent for 30 s), and the coordinator reports the provider down after 30 s
# of silence; restarted on its store, the daemon
# takes the slot back, its new replica catches up and delivers, and the job completes.
# Exits 77 (skip) when not root, without FUSE or without iproute2.
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/mount/lib.sh"
. "$root/tests/mount/lib-mining.sh"
. "$root/tools/bench/lib-netns.sh"

netns_check || skip_all "network namespaces need root and iproute2"
require_cmd curl
require_corpus
# A network of 10.N.0.0/16 that no address of the host uses yet (a benchmark may hold one).
while ip -4 -o addr show | grep -q " 10\.$NETNS_NET\."; do
	NETNS_NET=$((100 + (NETNS_NET - 99) % 150))
done

# The provider daemons and their replicas are the only processes in the namespaces: they go
# first (their mounts unmounted, else killed), then the namespaces, then lib.sh's cleanup.
ns_cleanup() {
	for i in 1 2; do
		[ -d "$TEST_DIR/mnt$i" ] && is_mounted "$TEST_DIR/mnt$i" &&
			fusermount3 -u "$TEST_DIR/mnt$i" 2>/dev/null
	done
	sleep 1
	for i in 1 2; do
		for p in $(ip netns pids "$(netns_name $i)" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
	done
	netns_down
}
trap 'rc_=$?; ns_cleanup; (exit $rc_); cleanup' EXIT

netns_up 2 100mbit || { say "Bail out! netns_up failed"; exit 1; }
PORT=$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0));
print(s.getsockname()[1])' "$NETNS_HUB")
URL=http://$NETNS_HUB:$PORT
M=$MNT/models
OPTS='data=models/corpora/tiny.txt layers=2 heads=2 embd=32 seq=32 batch=4 val-batches=2
sample-len=32 seed=3'

# prov_start I: provider daemon I (store I, mount I) in namespace I.
prov_start() {
	mkdir -p "$TEST_DIR/mnt$1" &&
	spawn "prov$1" sh -c 'exec "$@" 2>"$0"' "$TEST_DIR/prov$1.log" \
		nsenter --net="/run/netns/$(netns_name "$1")" -- \
		"$LLMFS" --store "$TEST_DIR/store$1" -f "$TEST_DIR/mnt$1" &&
	wait_mounted "$TEST_DIR/mnt$1" "$SPAWN_PID" "$TEST_DIR/prov$1.log"
}

# pg_bytes JOB PROVIDER: the sizes of the (plain) pseudo-gradients the coordinator accepted
# from PROVIDER's slots, as it keeps them.
pg_bytes() {
	tail -n +2 "$J/$1/contributions.tsv" | awk -F"\t" -v p="$2" '$3 == p && $8 == 1 {
		print $1 "-" $2 }' | {
		t=0
		while read -r rs; do
			f=$STORE/mining/jobs/$1/deltas/$rs.pg
			[ -f "$f" ] || { say "# no $f" >&2; echo 0; return; }
			t=$((t + $(stat -c %s "$f")))
		done
		echo "$t"
	}
}

test_expect_success 'set up: the coordinator on the hub address, two remote providers' '
	daemon_start --mining-listen "$NETNS_HUB:$PORT" &&
	grep -qx "listen $URL" "$MNT/mining/status" &&
	mkdir -p "$M/corpora" &&
	head -c 120000 "$TRAIN_CORPUS" >"$M/corpora/tiny.txt" &&
	for i in 1 2; do
		key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d " \n") &&
		echo "$key" >"$TEST_DIR/key$i" &&
		mkdir "$P/p$i" &&
		printf "{\"kind\": \"remote\", \"key\": \"%s\", \"cpus\": 1}" "$key" \
			>"$P/p$i/provider.json" &&
		head -n 1 "$P/p$i/status" | grep -qx down || return 1
	done
'

test_expect_success 'each provider daemon in its own namespace reaches the hub, not the host loopback' '
	for i in 1 2; do
		[ "$(netns_exec $i curl -s -o /dev/null -w "%{http_code}" --max-time 10 "$URL/v1/providers/p$i/work")" = 403 ] &&
		[ "$(netns_exec $i curl -s -o /dev/null -w "%{http_code}" --max-time 10 "http://127.0.0.1:$PORT/")" = 000 ] &&
		[ "$(curl -s -o /dev/null -w "%{http_code}" --max-time 10 "http://127.0.0.1:$PORT/")" = 000 ] &&
		prov_start $i &&
		mkdir "$TEST_DIR/mnt$i/mining/providers/hub" &&
		printf "{\"kind\": \"remote\", \"coordinator\": \"%s\", \"provider\": \"p%s\", \"key\": \"%s\", \"cpus\": 1}" \
			"$URL" "$i" "$(cat "$TEST_DIR/key$i")" \
			>"$TEST_DIR/mnt$i/mining/providers/hub/provider.json" &&
		head -n 1 "$TEST_DIR/mnt$i/mining/providers/hub/status" | grep -qx serving || return 1
	done &&
	wait_for 30 "head -n 1 \"$P/p1/status\" | grep -qx alive && head -n 1 \"$P/p2/status\" | grep -qx alive"
'

test_expect_success 'a job dealt to both runs to its end over the veths' '
	set -- $(netns_bytes 1) && rx1=$1 tx1=$2 &&
	set -- $(netns_bytes 2) && rx2=$1 tx2=$2 &&
	job rn1 providers=p1,p2 replicas=2 inner-steps=20 steps=60 &&
	result rn1 && [ "$(head -n 1 "$J/rn1/status")" = done ] &&
	set -- $(netns_bytes 1) && drx1=$(($1 - rx1)) dtx1=$(($2 - tx1)) &&
	set -- $(netns_bytes 2) && drx2=$(($1 - rx2)) dtx2=$(($2 - tx2)) &&
	[ "$(tail -n +2 "$J/rn1/contributions.tsv" | cut -f3 | sort -u | tr "\n" " ")" = "p1 p2 " ] &&
	[ "$(tail -n +2 "$J/rn1/contributions.tsv" | cut -f8 | sort -u)" = 1 ] &&
	[ "$(rows "$J/rn1/rounds.tsv")" = 3 ] &&
	[ -s "$M/rn1/model.safetensors" ] &&
	recv=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[\"bytes_received\"])" "$TEST_DIR/rn1.result") &&
	sent=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[\"bytes_sent\"])" "$TEST_DIR/rn1.result") &&
	pg1=$(pg_bytes rn1 p1) && pg2=$(pg_bytes rn1 p2) &&
	say "# link 1: host received $drx1 B, sent $dtx1 B; link 2: received $drx2 B, sent $dtx2 B" &&
	say "# the coordinator tallied $recv B received, $sent B sent; plain pseudo-gradients p1 $pg1 B, p2 $pg2 B" &&
	[ "$recv" -gt 0 ] && [ "$sent" -gt 0 ] && [ "$pg1" -gt 0 ] && [ "$pg2" -gt 0 ] &&
	# every byte the coordinator counted crossed a veth (no other way in or out)
	[ $((drx1 + drx2)) -ge "$recv" ] && [ $((dtx1 + dtx2)) -ge "$sent" ] &&
	# each link carried its provider s pseudo-gradients up (packed: 70 to 100% of plain) and
	# weights down (the first in fp32, a plain frame s size, packed to about 87%; then one
	# update a round): at least 3/4 of a frame a round
	[ "$drx1" -ge $((pg1 / 2)) ] && [ "$drx2" -ge $((pg2 / 2)) ] &&
	[ "$dtx1" -ge $((pg1 * 3 / 4)) ] && [ "$dtx2" -ge $((pg2 * 3 / 4)) ] &&
	for i in 1 2; do
		! grep -q "bad key" "$TEST_DIR/prov$i.log" || return 1
	done
'

test_expect_success 'one provider s daemon killed -9 mid-job: its slot counts zero, the job goes on' '
	job rn2 providers=p1,p2 replicas=2 inner-steps=20 steps=240 round-timeout=10 &&
	wait_for 120 "[ \"\$(rows \"$J/rn2/rounds.tsv\" 2>/dev/null)\" -ge 1 ]" &&
	kill -KILL "$(cat "$TEST_DIR/prov2.pid")" && spawn_wait prov2 &&
	# the rounds closed by now: p2 may still have posted for the next one, not later
	killed=$(rows "$J/rn2/rounds.tsv") &&
	fusermount3 -u -z "$TEST_DIR/mnt2" &&
	say "# killed provider 2 s daemon after round $killed" &&
	# its replica dies with it (PR_SET_PDEATHSIG): nothing of it is left in its namespace
	wait_for 10 "[ -z \"\$(ip netns pids \"$(netns_name 2)\")\" ]" &&
	check_log "$TEST_DIR/prov2.log" &&
	# silent for 30 s: the coordinator says the provider is down, its lease lost
	wait_for 60 "head -n 1 \"$P/p2/status\" | grep -qx down" &&
	grep -q "has not asked for work for 30 s" "$P/p2/status" &&
	head -n 1 "$P/p1/status" | grep -qx alive &&
	gone=$(rows "$J/rn2/rounds.tsv") &&
	say "# p2 down at round $gone" && [ "$gone" -lt 12 ] &&
	[ "$(tail -n +2 "$J/rn2/contributions.tsv" | awk -F"\t" -v k="$killed" "\$3 == \"p2\" && \$1 > k + 1" | cut -f8 | sort -u)" = 0 ] &&
	[ "$(tail -n +2 "$J/rn2/contributions.tsv" | awk -F"\t" -v k="$killed" "\$3 == \"p2\" && \$1 > k + 1" | wc -l)" -ge 1 ]
'

test_expect_success 'restarted, the provider daemon takes its slot back and catches up; the job completes' '
	prov_start 2 &&
	head -n 1 "$TEST_DIR/mnt2/mining/providers/hub/status" | grep -qx serving &&
	wait_for 30 "head -n 1 \"$P/p2/status\" | grep -qx alive" &&
	result rn2 && [ "$(head -n 1 "$J/rn2/status")" = done ] &&
	[ "$(rows "$J/rn2/rounds.tsv")" = 12 ] &&
	[ -s "$M/rn2/model.safetensors" ] &&
	# no reassignment: slot 1 stays p2 s in every round (its lease waits for its daemon)
	[ "$(tail -n +2 "$J/rn2/contributions.tsv" | cut -f2,3 | sort -u | tr "\t\n" ": ")" = "0:p1 1:p2 " ] &&
	[ "$(rows "$J/rn2/contributions.tsv")" = 24 ] &&
	# p1 delivered every round; p2 delivered again in the last round, after its gap
	[ "$(tail -n +2 "$J/rn2/contributions.tsv" | awk -F"\t" "\$3 == \"p1\"" | cut -f8 | sort -u)" = 1 ] &&
	[ "$(tail -n 1 "$J/rn2/contributions.tsv" | cut -f3,8 | tr "\t" :)" = p2:1 ] &&
	tail -n +2 "$J/rn2/contributions.tsv" | awk -F"\t" "\$3 == \"p2\"" | cut -f1,8,9 | tr "\t\n" ": " | sed "s/^/# p2 round:accepted:why /" &&
	echo &&
	grep "replica 1" "$J/rn2/log" | sed "s/^/# /"
'

test_expect_success 'both provider daemons stop cleanly; nothing left in the namespaces' '
	for i in 1 2; do
		fusermount3 -u "$TEST_DIR/mnt$i" && spawn_wait prov$i && [ "$EXIT_STATUS" = 0 ] &&
		check_log "$TEST_DIR/prov$i.log" || return 1
	done &&
	wait_for 10 "[ -z \"\$(ip netns pids \"$(netns_name 1)\")\" ] && [ -z \"\$(ip netns pids \"$(netns_name 2)\")\" ]"
'

test_done
