#!/bin/sh
# mining-wire.sh - bytes on the wire and utilisation of co-training replicas
# behind rate-limited links (docs/benchmarks.md, "Mining").
#
# REPLICAS network namespaces, each joined to the host by a veth pair that
# tc tbf limits to RATE both ways (tools/bench/lib-netns.sh), each the node
# of a real Slurm cluster (tests/slurm/slurm.sh: slurmd under nsenter --net,
# so its jobs are in its namespace).  The coordinator is a daemon on the host
# listening on the hub address; its slurm provider submits the replicas,
# one per node.  So every byte between the coordinator and a replica crosses
# one veth, and the bytes are the host ends' counters
# (/sys/class/net/*/statistics), read by round (mining-sample.py).
#
# For each compression in COMPRESSIONS at RATE, and once with fp32 at
# FAST_RATE (the same job where the link is no limit), it reports:
#   wire      bytes both ways over the whole job (setup, the data shards,
#             Slurm's own traffic included)
#   steady    bytes both ways between a quiet point of round 2 and one of the
#             last round R (the replicas in their inner steps, the links
#             quiet): R - 2 whole exchanges, after the data shards
#   dp        what synchronous data-parallel training moves in those steps,
#             COMPUTED, not measured: each replica sends its fp32 gradient
#             and receives fp32 weights (or the reduced gradient) every
#             step, 2 x params x 4 bytes per step per replica (a ring
#             all-reduce moves 2 (n-1)/n of that)
#   tally     the coordinator's own count (rounds.tsv) of the same exchanges:
#             payloads without TCP, IP and HTTP framing
#   ratio     dp / steady, against H (fp32) and 3.5 H (int8); ratio_eq is
#             dp / tally, the ratio at equal framing (DP's wire would carry
#             the same framing on top of its payload)
#   util      each replica's time in its inner steps (its log: "round r: H
#             inner steps in X s") over the rounds' wall time
#             (rounds.tsv), mean and lowest; util_r2 the same from round 2
#             on (round 1's wall holds the replicas' start: Slurm's scheduling,
#             the spec, the shard, the model), what a job of many rounds tends to
#   wait_s    per round, the mean time a replica waited for the round's
#             weights after posting (the slowest replica of the round before,
#             the outer step, the transfer; its log: "after Y s waiting");
#             with overlap=1, the gap between its windows (the fetch of the
#             round's weights after its window, its post, and any wait for the
#             round to open)
#   link_s    per round, the time the links carried more than 64 KiB per sample
#             (an upper bound at the sampler's 50 ms resolution); round_s
#             the rounds' mean wall time
#   val_loss  the coordinator's validation of the last completed round
# A job that fails mid-way is reported with its status; the rounds whose
# transfers took place are counted.
#
# usage: tools/bench/mining-wire.sh        (root: namespaces, veths, Slurm)
# env:   REPLICAS (4), H (50), STEPS (400), RATE (100mbit), FAST_RATE (10gbit;
#        "-": no such run), COMPRESSIONS ("none int8"), OVERLAPS ("0": the
#        job key overlap= of each run at RATE, e.g. "0 1" runs both, one after
#        the other, per compression; docs/mining.md, "Overlapping rounds"),
#        NODE_CPU ("-": none, the setup of every figure in docs/benchmarks.md
#        unless it says NODE_CPU; e.g. 0.45: each node's CPU share, below),
#        BUILD, OUT, CORPUS, MODEL, TRAINKEYS
#
# NODE_CPU: the nodes are separate machines in the model, each with its own
# CPU, but here they share the host's cores with each other and with the
# coordinator.  Each node's slurmd (so its jobs: slurmstepd and the replica)
# is put in a cgroup of its own whose CPU bandwidth is NODE_CPU CPUs (cgroup
# v2 cpu.max, v1 cpu.cfs_quota_us), as separate machines would have: 4 nodes
# at 0.45 leave 0.2 of 2 cores to the coordinator, so a replica's window no
# longer depends on which core the coordinator's work lands on.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib-mining.sh"
. "$here/lib-netns.sh"
. "$MB_ROOT/tests/slurm/slurm.sh"
REPLICAS=${REPLICAS:-4}
H=${H:-50}
STEPS=${STEPS:-400}
RATE=${RATE:-100mbit}
FAST_RATE=${FAST_RATE:-10gbit}
COMPRESSIONS=${COMPRESSIONS:-"none int8"}
OVERLAPS=${OVERLAPS:-0}
NODE_CPU=${NODE_CPU:--}
CG_NAME=llmfs-bench-$$

# The cgroup folder of node I (v2 where the cpu controller is there, else v1's cpu hierarchy).
node_cg() {
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		echo "/sys/fs/cgroup/$CG_NAME-n$1"
	else
		echo "/sys/fs/cgroup/cpu/$CG_NAME-n$1"
	fi
}

# node_cpu_limit I PID: node I's processes (PID and its children to come) limited to NODE_CPU.
node_cpu_limit() {
	_cg=$(node_cg "$1")
	_q=$(awk -v c="$NODE_CPU" 'BEGIN { printf "%d", c * 100000 }')
	mkdir -p "$_cg" || return 1
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control ||
			echo +cpu > /sys/fs/cgroup/cgroup.subtree_control || return 1
		echo "$_q 100000" > "$_cg/cpu.max" || return 1
	else
		echo 100000 > "$_cg/cpu.cfs_period_us" && echo "$_q" > "$_cg/cpu.cfs_quota_us" ||
			return 1
	fi
	echo "$2" > "$_cg/cgroup.procs"
}

node_cpu_free() {
	_i=1
	while [ $_i -le "$REPLICAS" ]; do
		_cg=$(node_cg $_i)
		if [ -d "$_cg" ]; then
			# what is left in it goes back to the root, then the folder goes
			for _p in $(cat "$_cg/cgroup.procs" 2>/dev/null); do
				echo "$_p" > "${_cg%/*}/cgroup.procs" 2>/dev/null
			done
			rmdir "$_cg" 2>/dev/null || echo "mining-wire.sh: $_cg left behind" >&2
		fi
		_i=$((_i + 1))
	done
}

netns_check || exit 77
cleanup() {
	mb_daemon_stop coord
	slurm_stop "$OUT/slurm"
	[ "$NODE_CPU" = - ] || node_cpu_free
	netns_down
}
trap cleanup EXIT
trap 'exit 1' INT TERM

echo "command: $0 (REPLICAS=$REPLICAS H=$H STEPS=$STEPS RATE=$RATE FAST_RATE=$FAST_RATE COMPRESSIONS=\"$COMPRESSIONS\" OVERLAPS=\"$OVERLAPS\" NODE_CPU=$NODE_CPU MODEL=\"$MODEL\" TRAINKEYS=\"$TRAINKEYS\")"
mb_machine
netns_up "$REPLICAS" "$RATE" || exit 1
nodes= ifaces=
i=1
while [ $i -le "$REPLICAS" ]; do
	nodes="$nodes n$i:$(netns_addr $i):$(netns_name $i)"
	ifaces="$ifaces $(netns_host_if $i)"
	i=$((i + 1))
done
SLURM_NODES=$nodes SLURM_CTLD_ADDR=$NETNS_HUB SLURM_NODE_CPUS=1
slurm_start "$OUT/slurm" || exit 1
if [ "$NODE_CPU" != - ]; then
	i=1
	while [ $i -le "$REPLICAS" ]; do
		node_cpu_limit $i "$(cat "$OUT/slurm/run/slurmd-n$i.keep")" ||
			{ echo "mining-wire.sh: cannot limit node $i's CPU (NODE_CPU=- runs without)" >&2; exit 1; }
		i=$((i + 1))
	done
	echo "each node's slurmd and its jobs: $NODE_CPU CPU (cgroup $(node_cg 1 | sed 's/-n1$/-nI/'))"
fi
port=$(slurm_free_port)
mb_daemon_start coord --mining-listen "$NETNS_HUB:$port" || exit 1
mb_corpus "$MB_MNT" || exit 1
mkdir "$MB_MNT/mining/providers/cluster" || exit 1
printf '{"kind": "slurm", "cpus": %d, "slurm": {"conf": "%s", "partition": "test", "jobcomp-log": "%s", "timeout-seconds": 20}}\n' \
	"$REPLICAS" "$SLURM_CONF" "$SLURM_JOBCOMP" > "$MB_MNT/mining/providers/cluster/provider.json" ||
	exit 1
head -n 1 "$MB_MNT/mining/providers/cluster/status" | grep -q alive ||
	{ echo "the slurm provider is not alive:" >&2; cat "$MB_MNT/mining/providers/cluster/status" >&2; exit 1; }

# Slurm's own traffic when no job runs, for the record (it is in the figures).
set -- $(netns_bytes); b0=$(($1 + $2))
sleep 10
set -- $(netns_bytes); echo "Slurm's idle traffic on the links: $(( ($1 + $2 - b0) / 10 )) B/s"

report=$OUT/wire.tsv
printf 'link\tcompression\toverlap\tH\trounds\twire_B\tsteady_B\ttally_B\tdp_B (computed)\tratio\tratio_eq\ttarget\tutil_mean\tutil_min\tutil_r2\twait_s/round\tlink_s/round\tround_s\tval_loss\tstatus\n' > "$report"

# run NAME RATE COMPRESSION OVERLAP
run() {
	netns_rate "$2" || return 1
	# shellcheck disable=SC2086
	python3 "$here/mining-sample.py" "$MB_MNT/mining/jobs/$1/status" "$OUT/$1.samples" \
		$ifaces &
	sampler=$!
	st=$(mb_job "$MB_MNT" "$1" replicas="$REPLICAS" providers=cluster inner-steps="$H" \
		steps="$STEPS" compression="$3" overlap="$4" cpus-per-replica=1) ||
		{ kill $sampler; return 1; }
	wait $sampler
	cp "$MB_MNT/mining/jobs/$1/log" "$OUT/$1.log"
	cp "$MB_MNT/mining/jobs/$1/rounds.tsv" "$OUT/$1.rounds.tsv"
	# A job that failed mid-way still moved its rounds' bytes: they count, up to
	# the last round whose transfers took place.
	[ "$st" = done ] || echo "job $1: $st (its rounds up to then are counted)" >&2
	python3 - "$OUT/$1" "$2" "$3" "$H" "$REPLICAS" "$st" "$4" >> "$report" <<'EOF'
import re, sys
base, rate, comp, H, n, st, ov = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
s, ticks = {}, []
for line in open(base + ".samples"):
    ev, t, rx, tx = line.split()
    if ev == "tick":
        ticks.append((float(t), int(rx), int(tx)))
    else:
        s[ev] = (float(t), int(rx), int(tx))


def at(t):
    """The counters (rx + tx) at the last sample before t."""
    best = ticks[0]
    for k in ticks:
        if k[0] > t:
            break
        best = k
    return best[1] + best[2]
log = open(base + ".log").read()
P = int(re.search(r"(\d+) parameters", log).group(1))
rows = [l.rstrip("\n").split("\t") for l in open(base + ".rounds.tsv")][1:]
done = {int(r[0]) for r in rows}
wall = sum(float(r[5]) for r in rows)
# R: the rounds whose pseudo-gradients crossed the links (the last may have failed after).
R = max(int(k[5:]) for k in s if k.startswith("round"))
comp_s = {}
for slot, rd, secs in re.findall(r"replica (\d+): round (\d+): \d+ inner steps in ([0-9.]+) s", log):
    if int(rd) in done:
        comp_s[slot] = comp_s.get(slot, 0.0) + float(secs)
util = [c / wall for c in comp_s.values()] if wall > 0 and comp_s else [0]
# From round 2 on: the replicas' start (round 1) left out.
wall2 = sum(float(r[5]) for r in rows if int(r[0]) > 1)
comp2 = {}
for slot, rd, secs in re.findall(r"replica (\d+): round (\d+): \d+ inner steps in ([0-9.]+) s", log):
    if int(rd) in done and int(rd) > 1:
        comp2[slot] = comp2.get(slot, 0.0) + float(secs)
util2 = sum(comp2.values()) / len(comp2) / wall2 if wall2 > 0 and comp2 else 0
# Rounds 2 on: round 1's wait is the replica's start (spec, shard, model).
waits = [float(w) for rd, w in re.findall(r"replica \d+: round (\d+): \d+ inner steps in [0-9.]+ s, "
                                          r"after ([0-9.]+) s waiting", log) if int(rd) in done and int(rd) > 1]
wait = sum(waits) / len(waits) if waits else float("nan")
wire = sum(s["end"][1:]) - sum(s["start"][1:])
# Between a quiet point of round 2 and one of round R, in the replicas' inner steps (after
# the round's weights came down, before the first pseudo-gradient goes up), lie R - 2 whole
# exchanges, whatever the lag of the round marks (the sampler sees a round open up to a tick
# late, when the weights may be down already).  Round 1 is left out: its replicas start at
# different times, so a shard may come down after another replica's first upload.
BURST = 20000


def quiet(r):
    t0 = s["round%d" % r][0]
    t1 = (s["round%d" % (r + 1)] if r < R else s["end"])[0]
    win = [k for k in ticks if t0 <= k[0] < t1]
    start, up = t0, t1
    for a, b in zip(win, win[1:]):
        if b[1] - a[1] > BURST:
            up = a[0]
            break
        if b[2] - a[2] > BURST:
            start = b[0]
    return at((start + up) / 2)


steady = quiet(R) - quiet(2) if R >= 3 else 0
dp = 2 * P * 4 * n * H * (R - 2)
ratio = dp / steady if steady else 0
# The coordinator's own count of the same exchanges (payloads, no framing): DP would carry
# the same framing on its wire, so dp / tally is the ratio at equal framing.
by = {int(r[0]): (int(r[3]), int(r[4])) for r in rows}
tally = sum(by[r][1] for r in range(2, R) if r in by) + sum(by[r][0] for r in range(3, R + 1) if r in by)
ratio_eq = dp / tally if tally else 0
target = ("%dx (H)" % H) if comp == "none" else ("%gx (3.5 H)" % (3.5 * H))
# Time the links carried traffic (any tick interval that moved more than 64 KiB: the polls and
# Slurm's chatter move less), per round: an upper bound at the sampler's resolution.
busy = sum(b[0] - a[0] for a, b in zip(ticks, ticks[1:]) if b[1] + b[2] - a[1] - a[2] > 65536)
val = rows[-1][1] if rows else "-"
print(f"{rate}\t{comp}\t{ov}\t{H}\t{R}\t{wire}\t{steady}\t{tally}\t{dp}\t{ratio:.1f}x\t{ratio_eq:.1f}x\t{target}\t"
      f"{100 * sum(util) / len(util):.1f}%\t{100 * min(util):.1f}%\t{100 * util2:.1f}%\t{wait:.3f}\t{busy / R:.3f}\t{wall / len(rows) if rows else 0:.3f}\t{val}\t{st}")
EOF
}

for c in $COMPRESSIONS; do
	for o in $OVERLAPS; do
		run "w-$c-o$o" "$RATE" "$c" "$o" || exit 1
	done
done
if [ "$FAST_RATE" != - ]; then
	for o in $OVERLAPS; do
		run "w-fast-o$o" "$FAST_RATE" none "$o" || exit 1
	done
fi
column -t -s "$(printf '\t')" "$report"
echo "runs in $OUT"
