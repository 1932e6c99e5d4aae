#!/bin/sh
# Small-file A/B: `cp -r` of NFILES small files (100-4000 B, 100 folders,
# the files of store-speed.sh) into two builds of llmfs and into ext4,
# round by round.
#
#   sh tools/bench/small-ab.sh OLD_BUILD NEW_BUILD [NFILES] [ROUNDS] [PAR]
#
# Each side is a fresh store (or a fresh ext4 folder on the same disk),
# the page cache dropped, then `cp -r` + `sync` (+ an fsync of the mount's
# folder on the llmfs sides: everything the daemon wrote is durable)
# timed; PAR 4 runs four `cp -r` at once over the 100 folders instead of
# one.  The order is rotated from round to round (old new ext4 / new ext4
# old / ext4 old new).  One line a side: wall seconds, the daemon's CPU
# seconds (utime + stime from /proc), the load average.  LLMFS_OPTS adds
# options to both daemons (e.g. --lazy-close).  The machine is shared:
# compare the builds within a round and give the ranges.
#
# Needs root (FUSE, drop_caches), python3, bc.
set -eu
. "$(cd "$(dirname "$0")" && pwd)/lib-mount.sh"
old=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
nfiles=${3:-2000}
rounds=${4:-3}
par=${5:-1}
bench_work small-ab

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

small_tree "$work/small" "$nfiles"

# copy DST: the timed copy into DST (which does not exist yet).
copy() {
	if [ "$par" = 1 ]; then
		cp -r "$work/small" "$1"
	else
		mkdir "$1"
		cps=
		for q in $(seq 0 $((par - 1))); do
			(for k in $(seq "$q" "$par" 99); do
				cp -r "$work/small/d$(printf %03d "$k")" "$1/"
			done) &
			cps="$cps $!"
		done
		# Not a bare wait: the daemon is a child of this shell too.
		# shellcheck disable=SC2086
		wait $cps
	fi
}

llmfs_side() {
	rm -rf "${work:?}/store" "${work:?}/mnt"
	mkdir -p "$work/mnt"
	# shellcheck disable=SC2086
	bench_mount "$1/fs/llmfs" "$work/store" "$work/mnt" "$work/daemon.log" ${LLMFS_OPTS:-}
	mkdir "$work/mnt/models/m"
	drop
	c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	t0=$(now)
	copy "$work/mnt/models/m/small" && sync && sync "$work/mnt/models/m"
	t1=$(now)
	c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	diff -r "$work/small" "$work/mnt/models/m/small" >/dev/null
	echo "$2 wall $(echo "$t1 - $t0" | bc) cpu $(echo "scale=2; ($c1 - $c0) / 100" | bc) load $(load)"
	fusermount3 -u "$work/mnt"
	wait "$pid" || true
	pid=
}

ext4_side() {
	rm -rf "${work:?}/ext4"
	drop
	t0=$(now)
	copy "$work/ext4" && sync
	t1=$(now)
	echo "ext4 wall $(echo "$t1 - $t0" | bc) load $(load)"
}

echo "# small-file A/B, $nfiles files, $rounds rounds, $par cp at once, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), daemon options: ${LLMFS_OPTS:-(default)}"
for r in $(seq "$rounds"); do
	case $((r % 3)) in
	1) order="old new ext4" ;;
	2) order="new ext4 old" ;;
	0) order="ext4 old new" ;;
	esac
	for side in $order; do
		case $side in
		old) llmfs_side "$old" old ;;
		new) llmfs_side "$new" new ;;
		ext4) ext4_side ;;
		esac
	done
done
