#!/bin/sh
# Warm listings A/B: two builds of llmfs and ext4, round by round.
#
#   sh tools/bench/list-ab.sh OLD_BUILD NEW_BUILD [NFILES] [ROUNDS] [REPS]
#
# NFILES (default 10000) small files of 100-4000 B in 100 folders (small_tree) are
# copied once into a store (with NEW_BUILD) and into a folder beside it on
# the store's own filesystem.  Each round mounts the store with each build
# in turn (the order rotated), lists it once (which fills the kernel's
# caches), then times REPS (default 9) warm `find` and REPS warm `du -s` of
# the mount and of the plain copy, and prints each side's median: a warm
# find of 10,000 files takes about 10 ms, within the noise of a single run,
# so one run a side says little.  Each line also gives the daemon's CPU
# seconds over its reps (utime + stime from /proc) and the load average.
# The throughput ratio of a row is the plain copy's time over llmfs's.
#
# Needs root (FUSE), python3.
set -eu
. "$(cd "$(dirname "$0")" && pwd)/lib-mount.sh"
old=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
nfiles=${3:-10000}
rounds=${4:-3}
reps=${5:-9}
bench_work list-ab
mnt=$work/mnt

cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$pid/stat"; }
up() {
	mkdir -p "$mnt"
	bench_mount "$1/fs/llmfs" "$work/store" "$mnt" "$work/daemon.log"
}
down() { fusermount3 -u "$mnt"; wait "$pid" || true; pid=; }

small_tree "$work/src" "$nfiles"
cp -r "$work/src" "$work/plain"
up "$new"
mkdir "$mnt/models/m"
cp -r "$work/src" "$mnt/models/m/small"
down

side() {
	up "$2"
	d=$mnt/models/m/small
	find "$d" >/dev/null; du -s "$d" >/dev/null
	find "$work/plain" >/dev/null; du -s "$work/plain" >/dev/null
	c0=$(cpu)
	fl=$(tmed "$reps" find "$d"); fe=$(tmed "$reps" find "$work/plain")
	dl=$(tmed "$reps" du -s "$d"); de=$(tmed "$reps" du -s "$work/plain")
	c1=$(cpu)
	down
	echo "round $r $1: find $fl s (plain $fe s, ratio $(echo "scale=2; $fe / $fl" | bc))," \
	     "du $dl s (plain $de s, ratio $(echo "scale=2; $de / $dl" | bc))," \
	     "daemon CPU $(echo "$c1 - $c0" | bc) s, load $(load)"
}

for r in $(seq "$rounds"); do
	if [ $((r % 2)) = 1 ]; then
		side old "$old"; side new "$new"
	else
		side new "$new"; side old "$old"
	fi
done
