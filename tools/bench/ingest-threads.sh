#!/bin/sh
# Ingest, thread by thread: which of the daemon's threads spends the CPU.
#
#   sh tools/bench/ingest-threads.sh BUILD FILE
#
# Copies FILE into a fresh store (`cp`, then `sync` and an fsync of the
# mount's folder, the source in the page cache as in ingest-ab.sh) and
# prints, for every thread of the daemon that ran meanwhile, its CPU seconds
# (utime + stime from /proc/PID/task/TID/stat), its nice value and its
# voluntary and involuntary context switches; then the wall time and the
# whole process's CPU.  Threads are told apart by what they do: the first
# ones made are the store's compression workers (one a core) and the SHA
# thread (docs/architecture.md, A write); the FUSE threads come last and
# answer the writes.  The machine is shared: run it beside the tree before
# a change, as ingest-ab.sh does (docs/benchmarks.md, issue 19, run J).
#
# Needs root (FUSE, drop_caches), bc.
set -eu
. "$(cd "$(dirname "$0")" && pwd)/lib-mount.sh"
build=$(cd "$1" && pwd)
f=$2
bench_work ingest-threads

# tid, CPU ticks, nice, voluntary and involuntary switches
snap() {
	for t in /proc/"$pid"/task/*; do
		echo "${t##*/} $(awk '{ print $14 + $15, $19 }' "$t/stat")" \
		     "$(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v, n }' "$t/status")"
	done
}

mkdir -p "$work/mnt"
bench_mount "$build/fs/llmfs" "$work/store" "$work/mnt" "$work/daemon.log"
mkdir "$work/mnt/models/m"
sync
echo 3 > /proc/sys/vm/drop_caches
cat "$f" > /dev/null
snap > "$work/before"
c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
t0=$(date +%s.%N)
cp "$f" "$work/mnt/models/m/" && sync && sync "$work/mnt/models/m"
t1=$(date +%s.%N)
c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
snap > "$work/after"
echo "# $(basename "$f"): wall $(echo "$t1 - $t0" | bc) s, daemon CPU $(echo "scale=2; ($c1 - $c0) / 100" | bc) s, load $(cut -d' ' -f1 /proc/loadavg)"
awk 'NR == FNR { c[$1] = $2; v[$1] = $4; i[$1] = $5; next }
     $2 > c[$1] { printf "tid %s nice %s cpu %.2f s voluntary %d involuntary %d\n", $1, $3, ($2 - c[$1]) / 100, $4 - v[$1], $5 - i[$1] }' \
	"$work/before" "$work/after"
fusermount3 -u "$work/mnt"
wait "$pid" || true
pid=
