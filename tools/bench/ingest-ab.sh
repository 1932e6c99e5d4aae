#!/bin/sh
# Ingest A/B: two builds of llmfs and `zstd -T2 -3`, round by round.
#
#   sh tools/bench/ingest-ab.sh OLD_BUILD NEW_BUILD FILE [ROUNDS]
#
# Each round copies FILE into a fresh store with each build (`cp`, then
# `sync` and an fsync of the mount's folder: everything the daemon wrote is
# durable) and compresses it with `zstd -T2 -3` + `sync`, the order rotated
# from round to round (old new zstd / new zstd old / zstd old new), the
# source in the page cache on every side (caches dropped, then FILE read);
# COLD=1 leaves the source out of the page cache instead (caches dropped
# only), as store-speed.sh's ingest rows do.
# One line a side: wall seconds, the daemon's CPU seconds (utime + stime
# from /proc), the store's stored bytes and chunks, the load average.  The
# machine is shared: compare the two builds within a round, and give the
# ranges (docs/benchmarks.md, issue 19, run F).  One untimed copy with
# OLD_BUILD comes first.
#
# Needs root (FUSE, drop_caches), zstd, bc.
set -eu
. "$(cd "$(dirname "$0")" && pwd)/lib-mount.sh"
old=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
f=$3
rounds=${4:-3}
bench_work ingest-ab

warm() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
	[ "${COLD:-0}" = 1 ] || cat "$f" > /dev/null
}

llmfs_side() {
	rm -rf "${work:?}/store" "${work:?}/mnt"
	mkdir -p "$work/mnt"
	bench_mount "$1/fs/llmfs" "$work/store" "$work/mnt" "$work/daemon.log"
	mkdir "$work/mnt/models/m"
	warm
	c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	t0=$(now)
	cp "$f" "$work/mnt/models/m/" && sync && sync "$work/mnt/models/m"
	t1=$(now)
	c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	st=$(awk '$1 == "stored_bytes:" || $1 == "chunks:" { printf "%s ", $2 }' "$work/mnt/.llmfs/status")
	peak=$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$pid/status")
	cmp "$f" "$work/mnt/models/m/$(basename "$f")"
	echo "$2 wall $(echo "$t1 - $t0" | bc) cpu $(echo "scale=2; ($c1 - $c0) / 100" | bc) stored/chunks $st peak ${peak} MiB load $(load)"
	fusermount3 -u "$work/mnt"
	wait "$pid" || true
	pid=
}

zstd_side() {
	warm
	t0=$(now)
	zstd -T2 -3 -q -f "$f" -o "$work/out.zst"
	sync
	t1=$(now)
	echo "zstd wall $(echo "$t1 - $t0" | bc) size $(stat -c %s "$work/out.zst") load $(load)"
	rm -f "$work/out.zst"
}

echo "# ingest A/B of $(basename "$f") (source $([ "${COLD:-0}" = 1 ] && echo cold || echo cached)), $rounds rounds, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
# An untimed copy first: the first side of a session ran far slower than
# the rest on this machine (a VM handing long-free pages back to its host),
# whichever build it was (docs/benchmarks.md, run R).
llmfs_side "$old" warm-up >/dev/null
for r in $(seq "$rounds"); do
	case $((r % 3)) in
	1) order="old new zstd" ;;
	2) order="new zstd old" ;;
	0) order="zstd old new" ;;
	esac
	for side in $order; do
		case $side in
		old) llmfs_side "$old" old ;;
		new) llmfs_side "$new" new ;;
		zstd) zstd_side ;;
		esac
	done
done
