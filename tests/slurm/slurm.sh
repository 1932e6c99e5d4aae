#!/bin/sh
# slurm.sh - a real single-node Slurm (Debian's slurm-wlm, with munge) on
# 127.0.0.1 for the slurm tests: munged, slurmctld and slurmd, each with its
# own key, socket, config, spool and log in DIR, nothing of /etc or /run.
#
# Sourced:  . slurm.sh; slurm_start DIR; ...; slurm_stop DIR
#   sets and exports SLURM_CONF (DIR/slurm.conf), SLURM_JOBCOMP (the
#   jobcomp/filetxt log), SLURM_PARTITION.  The caller stops it in its EXIT
#   trap.
# Run:      slurm.sh start DIR | stop DIR
#           slurm.sh ctld-stop DIR | ctld-start DIR [clean] | ctld-pause DIR |
#           ctld-resume DIR      (what a test does to the controller)
# Exits 77 (skip) when slurm-wlm or munge is not installed, or when not root
# (slurmd must start jobs as their users).
#
# The node is "llmfsnode" at 127.0.0.1 with the machine's CPUs, partition
# "test"; ProctrackType=proctrack/linuxproc and TaskPlugin=task/none, so no
# cgroup is needed; JobAcctGatherType=jobacct_gather/linux (sstat) and
# JobCompType=jobcomp/filetxt (a line per ended job), without slurmdbd.
#
# Several nodes, each in a network namespace of its own (the benchmarks,
# with tools/bench/lib-netns.sh): set before slurm_start
#   SLURM_NODES="n1:10.1.1.2:NETNS1 n2:10.1.2.2:NETNS2"  name:address:namespace
#                                  (namespace "-": the host's network)
#   SLURM_CTLD_ADDR=10.1.1.1       where the nodes reach slurmctld
#   SLURM_NODE_CPUS=1              CPUs of each node (default: the machine's)
# Each node's slurmd runs under nsenter --net, so its jobs are in its
# namespace; the mounts stay the host's.

SLURM_SBIN=${SLURM_SBIN:-/usr/sbin}

slurm_free_port() {
	python3 -c '
import random, socket
for _ in range(200):
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
'
}

SLURM_NODES=${SLURM_NODES:-llmfsnode:127.0.0.1:-}
SLURM_CTLD_ADDR=${SLURM_CTLD_ADDR:-127.0.0.1}

# slurm_wait_up: polls until sinfo shows every node idle, 60 s at most.
slurm_wait_up() {
	want=$(echo $SLURM_NODES | wc -w)
	deadline=$(($(date +%s) + 60))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		up=$(sinfo -h -N -o '%N %t' 2>/dev/null | grep -cE ' (idle|mix|alloc)')
		[ "$up" -eq "$want" ] && return 0
		sleep 0.2
	done
	echo "slurm.sh: $up of $want nodes up after 60 s:" >&2
	sinfo -N >&2
	return 1
}

slurm_conf_write() {
	dir=$1
	cpus=${SLURM_NODE_CPUS:-$(nproc)}
	cat > "$dir/slurm.conf" <<EOF
ClusterName=llmfstest
SlurmctldHost=localhost($SLURM_CTLD_ADDR)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$2
SlurmdPort=$3
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmdParameters=config_overrides
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=2
MessageTimeout=5
EOF
	for node in $SLURM_NODES; do
		name=${node%%:*}
		rest=${node#*:}
		echo "NodeName=$name NodeAddr=${rest%%:*} NodeHostname=localhost CPUs=$cpus State=UNKNOWN" \
			>> "$dir/slurm.conf"
		mkdir -p "$dir/spool/$name"
	done
	echo "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >> "$dir/slurm.conf"
}

# slurm_ctld_start DIR [clean]: clean wipes its saved state (jobs included).
slurm_ctld_start() {
	flag=
	[ "${2:-}" = clean ] && flag=-c
	# shellcheck disable=SC2086
	"$SLURM_SBIN/slurmctld" -D -i $flag -f "$1/slurm.conf" >> "$1/log/slurmctld.out" 2>&1 &
	echo $! > "$1/run/slurmctld.keep"
	deadline=$(($(date +%s) + 30))
	until SLURM_CONF=$1/slurm.conf scontrol ping 2>/dev/null | grep -q 'is UP'; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "slurm.sh: slurmctld did not answer within 30 s" >&2
			tail -20 "$1/log/slurmctld.out" >&2
			return 1
		fi
		sleep 0.2
	done
}

slurm_pid_stop() {
	[ -f "$1" ] || return 0
	pid=$(cat "$1")
	kill -CONT "$pid" 2>/dev/null
	kill "$pid" 2>/dev/null
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$pid" 2>/dev/null
	rm -f "$1"
}

slurm_start() {
	dir=$1
	for b in munged slurmctld slurmd; do
		if [ ! -x "$SLURM_SBIN/$b" ]; then
			echo "slurm.sh: $SLURM_SBIN/$b not installed (apt install slurm-wlm munge)" >&2
			exit 77
		fi
	done
	if [ "$(id -u)" -ne 0 ]; then
		echo "slurm.sh: slurmd must run as root to start jobs as their users" >&2
		exit 77
	fi
	# The socket's folder is open to all (jobs' users reach munged); the
	# key's is not.
	mkdir -p "$dir/munge" "$dir/run" "$dir/ctld" "$dir/spool" "$dir/log" || return 1
	chmod 755 "$dir" "$dir/run"
	chmod 700 "$dir/munge"
	head -c 1024 /dev/urandom > "$dir/munge/munge.key" && chmod 400 "$dir/munge/munge.key" ||
		return 1
	"$SLURM_SBIN/munged" -F -f --socket="$dir/run/munge.socket" \
		--key-file="$dir/munge/munge.key" --log-file="$dir/log/munged.log" \
		--pid-file="$dir/run/munged.pid" --seed-file="$dir/munge/seed" \
		> "$dir/log/munged.out" 2>&1 &
	echo $! > "$dir/run/munged.keep"
	deadline=$(($(date +%s) + 20))
	until munge -S "$dir/run/munge.socket" -n 2>/dev/null | unmunge -S "$dir/run/munge.socket" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "slurm.sh: munged did not answer within 20 s" >&2
			cat "$dir/log/munged.out" >&2
			slurm_stop "$dir"
			return 1
		fi
		sleep 0.1
	done
	ctld_port=$(slurm_free_port) || return 1
	d_port=$(slurm_free_port) || return 1
	slurm_conf_write "$dir" "$ctld_port" "$d_port"
	SLURM_CONF=$dir/slurm.conf
	SLURM_JOBCOMP=$dir/log/jobcomp.txt
	SLURM_PARTITION=test
	export SLURM_CONF SLURM_JOBCOMP SLURM_PARTITION
	if ! slurm_ctld_start "$dir" clean; then
		slurm_stop "$dir"
		return 1
	fi
	for node in $SLURM_NODES; do
		name=${node%%:*}
		netns=${node##*:}
		enter=
		[ "$netns" != - ] && enter="nsenter --net=/run/netns/$netns --"
		$enter "$SLURM_SBIN/slurmd" -D -N "$name" -f "$dir/slurm.conf" \
			> "$dir/log/slurmd-$name.out" 2>&1 &
		echo $! > "$dir/run/slurmd-$name.keep"
	done
	if ! slurm_wait_up; then
		tail -20 "$dir"/log/slurmd-*.out "$dir/log/slurmctld.out" >&2
		slurm_stop "$dir"
		return 1
	fi
}

# Stops the daemons, after the jobs still queued: slurmd leaves the
# processes of running jobs behind when it ends, so they are cancelled and
# their end awaited (10 s at most) first.
slurm_stop() {
	dir=$1
	if [ -f "$dir/run/slurmctld.keep" ] && [ -f "$dir/slurm.conf" ]; then
		SLURM_CONF=$dir/slurm.conf scancel --quiet --full -p test 2>/dev/null
		i=0
		while [ $i -lt 50 ] && [ -n "$(SLURM_CONF=$dir/slurm.conf \
			timeout 5 squeue -h -t running,completing -o %i 2>/dev/null)" ]; do
			sleep 0.2
			i=$((i + 1))
		done
	fi
	for keep in "$dir"/run/slurmd-*.keep; do
		slurm_pid_stop "$keep"
	done
	slurm_pid_stop "$dir/run/slurmctld.keep"
	slurm_pid_stop "$dir/run/munged.keep"
}

case "${0##*/}" in
slurm.sh)
	set -u
	[ $# -ge 2 ] || { echo "usage: slurm.sh start|stop|ctld-stop|ctld-start|ctld-pause|ctld-resume DIR" >&2; exit 2; }
	SLURM_CONF=$2/slurm.conf
	export SLURM_CONF
	case "$1" in
	start) slurm_start "$2" && echo "$SLURM_CONF" ;;
	stop) slurm_stop "$2" ;;
	ctld-stop) slurm_pid_stop "$2/run/slurmctld.keep" ;;
	ctld-start) slurm_ctld_start "$2" "${3:-}" ;;
	ctld-pause) kill -STOP "$(cat "$2/run/slurmctld.keep")" ;;
	ctld-resume) kill -CONT "$(cat "$2/run/slurmctld.keep")" ;;
	*) echo "slurm.sh: unknown command $1" >&2; exit 2 ;;
	esac
	;;
esac
