#!/bin/sh
# First and second reads through the kernel's FUSE path: llmfs against
# libfuse's passthrough_ll (-o cache=always, with and without splice
# replies), and the size of the kernel's read requests at each read-ahead.
#
#   sh tools/bench/read-kernel.sh [BUILD_DIR] [SIZE_MIB] [ROUNDS]
#
# Defaults: build, 1024 MiB of random bytes (q8: incompressible), 3 rounds.
# Each round, the sides alternated (order rotated), every first read with
# the packs (or passthrough's source) in the page cache and a fresh mount;
# each line gives a read's wall time, the daemon's CPU (utime + stime from
# /proc/PID/stat), its minor faults and context switches, and the load
# average.  The "raw cat" lines read the source file itself, cold (caches
# dropped) and from the page cache.  Then one mount with --debug per
# read-ahead (128, 1024, 4096 KiB written to the mount's bdi) counts the
# sizes of the READ replies of a 64 MiB `dd bs=128k`.
#
# Needs root (FUSE, drop_caches), gcc, bc and libfuse3-dev's examples.
set -eu
build=$(cd "${1:-build}" && pwd)
size=${2:-1024}
rounds=${3:-3}
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/llmfs-readk.XXXXXX")
mnt=$work/mnt
pid=

cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || true
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
cpu_of() { awk '{ print $14 + $15, $10 }' "/proc/$1/stat"; }
cs_of() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s }'; }
wait_mount() {
	i=0
	until mountpoint -q "$mnt" && [ -e "$mnt/$1" ]; do
		i=$((i + 1)); [ $i -lt 300 ] || { echo "mount failed"; exit 1; }
		sleep 0.05
	done
}
# timed LABEL FILE: one read of FILE by cat, with the daemon's costs.
timed() {
	set -- "$1" "$2" $(cpu_of "$pid") "$(cs_of "$pid")"
	t0=$(now); cat "$2" > /dev/null; t1=$(now)
	set -- "$@" $(cpu_of "$pid") "$(cs_of "$pid")"
	echo "$1: $(echo "$t1 - $t0" | bc) s, daemon CPU $(echo "($6 - $3) / 100" | bc -l | cut -c1-5) s," \
	     "minflt $(($7 - $4)), ctxsw $(($8 - $5)), load $(cut -d' ' -f1 /proc/loadavg)"
}
llmfs_up() {
	"$build/fs/llmfs" --store "$work/store" "$@" "$mnt" 2>>"$work/daemon.log" &
	pid=$!
	wait_mount .llmfs/status
}
pt_up() {
	PT_SPLICE=$1 "$work/pt" -f -o source="$work/data",cache=always "$mnt" 2>/dev/null &
	pid=$!
	wait_mount q8.bin
}
down() { fusermount3 -u "$mnt"; wait "$pid" || true; pid=; }

mkdir -p "$mnt" "$work/data"
gcc -O2 -o "$work/gen" "$src/gen-weights.c" -lm
ex=/usr/share/doc/libfuse3-dev/examples
# passthrough_ll, with splice replies (FUSE_CAP_SPLICE_WRITE|MOVE) when
# PT_SPLICE is set: its reads are fuse_reply_data() of the source's fd
sed '/^static void lo_init/,/^{/ s/^{/{\n\tif (getenv("PT_SPLICE") \&\& *getenv("PT_SPLICE")) conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;/' \
	"$ex/passthrough_ll.c" > "$work/pt.c"
gcc -O2 -I"$ex" -o "$work/pt" "$work/pt.c" $(pkg-config --cflags --libs fuse3)
f=$work/data/q8.bin
"$work/gen" q8 "$size" 2 > "$f"
llmfs_up -f; mkdir "$mnt/models/m"; cp "$f" "$mnt/models/m/"; sync "$mnt/models/m"; down
echo "# read-kernel: $size MiB q8, $rounds rounds, $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"

for r in $(seq "$rounds"); do
	order="llmfs pt ptsplice raw"
	[ $((r % 3)) = 2 ] && order="pt ptsplice raw llmfs"
	[ $((r % 3)) = 0 ] && order="ptsplice raw llmfs pt"
	for side in $order; do
		case $side in
		llmfs) cat "$work/store/packs/"* > /dev/null; llmfs_up -f
			timed "round $r llmfs first (packs cached)" "$mnt/models/m/q8.bin"
			timed "round $r llmfs second" "$mnt/models/m/q8.bin"
			cmp "$f" "$mnt/models/m/q8.bin"; down ;;
		pt|ptsplice) cat "$f" > /dev/null
			[ $side = pt ] && pt_up "" || pt_up 1
			timed "round $r passthrough_ll${side#pt} first (source cached)" "$mnt/q8.bin"
			timed "round $r passthrough_ll${side#pt} second" "$mnt/q8.bin"; down ;;
		raw) drop; t0=$(now); cat "$f" > /dev/null; t1=$(now); cat "$f" > /dev/null
			t2=$(now); cat "$f" > /dev/null; t3=$(now)
			echo "round $r raw cat: cold $(echo "$t1 - $t0" | bc) s, page cache $(echo "$t3 - $t2" | bc) s" ;;
		esac
	done
done

for ra in 128 1024 4096; do
	"$build/fs/llmfs" --store "$work/store" -d "$mnt" 2>"$work/debug.log" &
	pid=$!
	wait_mount .llmfs/status
	echo "$ra" > "/sys/class/bdi/$(mountpoint -d "$mnt")/read_ahead_kb"
	dd if="$mnt/models/m/q8.bin" of=/dev/null bs=128k count=512 2>/dev/null
	got=$(cat "/sys/class/bdi/$(mountpoint -d "$mnt")/read_ahead_kb")
	down
	echo "read_ahead_kb $ra (kept $got): READ replies by size (bytes + 16 of header):" \
	     "$(grep -A3 'opcode: READ' "$work/debug.log" | grep -o 'success, outsize: [0-9]*' |
		awk '{ n[$3]++ } END { for (s in n) printf "%s x%d; ", s, n[s] }')"
done
grep -m3 'max_readahead\|max_write' "$work/debug.log" | tr -s ' ' | tr '\n' ' '
echo "; /proc/sys/fs/fuse/max_pages_limit $(cat /proc/sys/fs/fuse/max_pages_limit 2>/dev/null || echo absent)"
