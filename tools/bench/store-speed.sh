#!/bin/sh
# The store's speed rows (ingest, small files, reads, listings, memory)
# against baselines measured in the same run, round by round.
#
#   sh tools/bench/store-speed.sh [BUILD_DIR] [SIZE_MIB] [ROUNDS] [NFILES] [BIG_MIB...]
#
# Defaults: build, 1024 MiB, 3 rounds, 10000 small files, no big files;
# SIZE_MIB 0 leaves out the rows of SIZE_MIB files (ingest, reads,
# formats), NFILES 0 the small files and listings: `build 0 3 10000` runs
# the small-file and listing rows alone, `build 0 1 0 256 ...` the big
# streams alone.
# Every round measures llmfs and its baselines back to back, the order
# rotated from round to round (a warm listing: the median of 9 runs a side); each row prints the median of the per-round
# ratios and their range [min-max], then each side's median time.  `sync`
# is counted on every side that writes; every file read back through the
# mount has its sha256 checked against the source.  BIG_MIB (e.g. 256 1024
# 4096 16384) adds rows for q8 streams of those sizes, ROUNDS each with the
# side that goes first alternating: throughput, against the same stream
# into a file on ext4, and the daemon's peak resident memory.  LLMFS_OPTS adds options to the daemon
# (e.g. LLMFS_OPTS=--lazy-close: a close() durable within --flush-ms, not
# at once; docs/architecture.md, Crash safety).
#
# The small files are also copied onto ext4 by copy-sync.c, which syncs
# each file before its close: the floor of the durable close on ext4.
#
# Needs root (FUSE, drop_caches), zstd, gcc, bc; libfuse3-dev's
# passthrough_ll.c for the FUSE baseline (skipped when absent).
set -eu
build=$(cd "${1:-build}" && pwd)
size=${2:-1024}
rounds=${3:-3}
nfiles=${4:-10000}
shift $(($# < 4 ? $# : 4))
bigs=$*
src=$(cd "$(dirname "$0")" && pwd)
. "$src/lib-mount.sh"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/llmfs-speed.XXXXXX")
mnt=$work/mnt
ptmnt=$work/ptmnt
pid=
pt_pid=

cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || true
	fusermount3 -u "$ptmnt" 2>/dev/null || true
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	[ -n "$pt_pid" ] && kill "$pt_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# backed MIB: just before a timed first read, write and free MIB of tmpfs
# pages, so that the pages the read takes are ones the machine has backed.
# On a VM whose balloon reports free pages to the host (virtio-balloon's
# free page reporting), a page left free for a few seconds goes back to
# the host and its next first touch costs several times a backed one's:
# a raw `cat` right after a drop reuses the pages the drop just freed,
# while a read through the mount also fills the FUSE file's cache beside
# the packs' and takes long-free pages, and is measured against the VM's
# memory instead of the store.  Both sides of every first-read row get it;
# BACKED=0 leaves it out (the protocol of runs before O).
backed() {
	[ "${BACKED:-1}" = 1 ] || return 0
	dd if=/dev/zero of=/dev/shm/llmfs-bench-backed bs=1M count="$1" status=none
	rm -f /dev/shm/llmfs-bench-backed
}
# t CMD...: runs CMD, prints its seconds.
t() { t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc; }
# sh_sync CMD [DIR]: CMD, then sync(1), then an fsync of DIR when given:
# sync(1) never reaches a FUSE daemon (the kernel sends syncfs only to
# virtiofs), and a close() in llmfs is durable within --flush-ms, so the
# llmfs side fsyncs a folder of the mount, which syncs the whole store.
sh_sync() { sh -c "$1" && sync && if [ -n "${2:-}" ]; then sync "$2"; fi; }

# rec ROW VALUE: one round's figure of a row (a ratio or a time).
rec() { echo "$2" >> "$work/rows/$1"; }
# med ROW: "median [min-max]" of a row's figures.
med() {
	sort -g "$work/rows/$1" | awk '{ v[NR] = $1 } END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.3f [%.3f-%.3f]", m, v[1], v[NR] }'
}
ratio() { echo "scale=4; $1 / $2" | bc; }

mount_llmfs() {
	# shellcheck disable=SC2086
	bench_mount "$build/fs/llmfs" "$work/store" "$mnt" "$work/daemon.log" ${LLMFS_OPTS:-}
}
umount_llmfs() { fusermount3 -u "$mnt"; wait "$pid" || true; pid=; }
fresh_llmfs() { [ -z "$pid" ] || umount_llmfs; rm -rf "$work/store"; mount_llmfs; mkdir "$mnt/models/m"; }
stat_of() { awk -v k="$1:" '$1 == k { print $2 }' "$mnt/.llmfs/status"; }
cpu_of() { awk '{ print ($14 + $15) / 100 }' "/proc/$pid/stat"; }
hwm_of() { awk '/VmHWM/ { print $2 }' "/proc/$pid/status"; }
check_sha() {
	[ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$(sha256sum < "$2" | cut -d' ' -f1)" ] ||
		{ echo "sha256 mismatch: $1 $2"; exit 1; }
}

st_header() {
	python3 - "$1" "$2" <<'PY'
import json, sys
n, dtype = int(sys.argv[1]), sys.argv[2]
h = {"__metadata__": {"format": "pt"}}
off = 0
for i in range(n):
    h["t%d" % i] = {"dtype": dtype, "shape": [1024, 2048], "data_offsets": [off, off + (4 << 20)]}
    off += 4 << 20
b = json.dumps(h).encode()
b += b" " * (-len(b) % 8)
sys.stdout.buffer.write(len(b).to_bytes(8, "little") + b)
PY
}

mkdir -p "$mnt" "$ptmnt" "$work/data" "$work/rows" "$work/ext4"
gcc -O2 -I"$src" -o "$work/gen" "$src/gen-weights.c" -lm
gcc -O2 -o "$work/copy-sync" "$src/copy-sync.c"
# libfuse's passthrough_ll: the kernel's FUSE path over ext4 with no store
# behind it, the baseline of the first reads and the small files' floor.
ptsrc=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
have_pt=0
if [ -f "$ptsrc" ] && gcc -O2 -o "$work/passthrough_ll" "$ptsrc" $(pkg-config --cflags --libs fuse3) 2>/dev/null; then
	have_pt=1
fi
d=$work/data
# Big streams: throughput and the daemon's peak memory.  Random bytes
# (q8), since gen-weights makes them at several GB/s where its bf16 runs
# at tens of MB/s a core and would be what is measured.  Each round writes
# the stream through llmfs and into a file on ext4, the side that goes
# first alternating: past the page cache's share of memory both go at the
# disk's sustained write speed, and the second side of a round writes on
# pages the first has just freed.
stream_llmfs() {
	fresh_llmfs
	h0=$(hwm_of)
	drop
	bt=$(t sh_sync "'$work/gen' q8 $1 9 > '$mnt/models/m/big.q8'" "$mnt/models/m")
	hw=$(hwm_of)
	umount_llmfs
	rm -rf "$work/store"
	rec "bs$1" "$(echo "scale=1; $1 / $bt" | bc)"
	rec "bt$1" "$bt"
	rec "hw$1" "$((hw / 1024))"
	rec "h0$1" "$((h0 / 1024))"
}
stream_ext4() {
	drop
	et=$(t sh_sync "'$work/gen' q8 $1 9 > '$work/ext4/big.q8'")
	rm -f "$work/ext4/big.q8"
	rec "es$1" "$(echo "scale=1; $1 / $et" | bc)"
	rec "et$1" "$et"
}
big_streams() {
	for b in $bigs; do
		for r in $(seq "$rounds"); do
			if [ $((r % 2)) = 1 ]; then
				stream_llmfs "$b"; stream_ext4 "$b"
			else
				stream_ext4 "$b"; stream_llmfs "$b"
			fi
			rec "sr$b" "$(ratio "$et" "$bt")"
		done
		echo "stream of $b MiB q8 ($rounds rounds, first side alternating): throughput / ext4 $(med "sr$b");" \
		     "llmfs $(med "bs$b") MiB/s, ext4 $(med "es$b") MiB/s;" \
		     "daemon peak resident $(med "hw$b") MiB (after mount $(med "h0$b") MiB)"
	done
	[ -z "$pid" ] || umount_llmfs
}
if [ "$size" = 0 ] && [ "$nfiles" = 0 ]; then
	big_streams
	exit 0
fi
echo "# llmfs store speed: $size MiB files, $rounds rounds, $nfiles small files, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "# daemon options: ${LLMFS_OPTS:-(none: the default --sync-close, a completed close() is on the disk)}"
echo "# first reads on backed pages: ${BACKED:-1} (BACKED=0: as runs before O)"

if [ "$size" != 0 ]; then
{ st_header $((size / 4)) BF16; "$work/gen" bf16 "$size" 1; } > "$d/bf16.safetensors"
"$work/gen" bf16 "$size" 1 > "$d/bare.bf16"
"$work/gen" q8 "$size" 2 > "$d/q8.bin"
"$work/gen" small1 0 0 > "$d/v1.safetensors"
"$work/gen" small2 0 0 > "$d/v2.safetensors"

# ---- ingest: cp into the mount + sync, against zstd -T2 -3 + sync and cp + sync
for kind in bf16.safetensors q8.bin; do
	f=$d/$kind
	for r in $(seq "$rounds"); do
		order="llmfs zstd cp"
		[ $((r % 3)) = 2 ] && order="zstd cp llmfs"
		[ $((r % 3)) = 0 ] && order="cp llmfs zstd"
		for side in $order; do
			drop
			case $side in
			llmfs)
				fresh_llmfs
				c0=$(cpu_of)
				lt=$(t sh_sync "cp '$f' '$mnt/models/m/'" "$mnt/models/m")
				lc=$(echo "$(cpu_of) - $c0" | bc)
				stored=$(stat_of stored_bytes)
				check_sha "$f" "$mnt/models/m/$kind" ;;
			zstd) zt=$(t sh_sync "zstd -T2 -3 -q -f '$f' -o '$work/ext4/out.zst'")
				zsize=$(stat -c %s "$work/ext4/out.zst"); rm -f "$work/ext4/out.zst" ;;
			cp) ct=$(t sh_sync "cp '$f' '$work/ext4/copy'"); rm -f "$work/ext4/copy" ;;
			esac
		done
		rec "ingest-$kind-zstd" "$(ratio "$lt" "$zt")"
		rec "ingest-$kind-cp" "$(ratio "$lt" "$ct")"
		rec "ingest-$kind-cpu" "$(ratio "$lc" "$(echo "$size / 1024" | bc -l)")"
		rec "ingest-$kind-t" "$lt"; rec "ingest-$kind-zt" "$zt"; rec "ingest-$kind-ct" "$ct"
	done
	echo "ingest $kind: time / (zstd -T2 -3 + sync) $(med "ingest-$kind-zstd"), / (cp + sync) $(med "ingest-$kind-cp");" \
	     "llmfs $(med "ingest-$kind-t") s, zstd $(med "ingest-$kind-zt") s, cp $(med "ingest-$kind-ct") s;" \
	     "daemon CPU-s per GiB $(med "ingest-$kind-cpu"); stored $stored B, zstd $zsize B"

	# ---- reads of what the last round stored
	for r in $(seq "$rounds"); do
		umount_llmfs; drop; mount_llmfs
		backed $((2 * size + 256))
		lcold=$(t cat "$mnt/models/m/$kind")
		drop
		backed $((2 * size + 256))
		rcold=$(t cat "$f")
		# packs in the page cache (the drop above took them: read them
		# again), a fresh mount: the kernel's cache of the FUSE file is gone
		umount_llmfs; cat "$work/store/packs/"* > /dev/null; mount_llmfs
		cat "$f" > /dev/null
		backed $((size + 256))
		lhot=$(t cat "$mnt/models/m/$kind")
		rhot=$(t cat "$f")
		lwarm=$(t cat "$mnt/models/m/$kind")
		rec "read-$kind-cold" "$(ratio "$rcold" "$lcold")"
		rec "read-$kind-hot" "$(ratio "$rhot" "$lhot")"
		rec "read-$kind-hotraw" "$(ratio "$rcold" "$lhot")"
		rec "read-$kind-warm" "$(ratio "$rhot" "$lwarm")"
		rec "read-$kind-lcold" "$lcold"; rec "read-$kind-lhot" "$lhot"; rec "read-$kind-lwarm" "$lwarm"
		rec "read-$kind-rcold" "$rcold"; rec "read-$kind-rhot" "$rhot"
	done
	check_sha "$f" "$mnt/models/m/$kind"
	echo "first read $kind, caches dropped: throughput / raw cat $(med "read-$kind-cold") (llmfs $(med "read-$kind-lcold") s, cat $(med "read-$kind-rcold") s)"
	echo "first read $kind, packs cached: throughput / page-cache cat $(med "read-$kind-hot") (llmfs $(med "read-$kind-lhot") s, cat $(med "read-$kind-rhot") s)"
	echo "first read $kind, packs cached: throughput / raw cat with caches dropped (the issue's raw cat on the same disk) $(med "read-$kind-hotraw")"
	echo "second read $kind (kernel page cache): throughput / page-cache cat $(med "read-$kind-warm") (llmfs $(med "read-$kind-lwarm") s)"
done

# ---- libfuse's passthrough_ll over the same file, when its source is here
if [ "$have_pt" = 1 ]; then
	"$work/passthrough_ll" -f -o source="$d",cache=always "$ptmnt" &
	pt_pid=$!
	sleep 1
	for r in $(seq "$rounds"); do
		umount_llmfs; drop; mount_llmfs
		# each side's second read right after its first: a drop between
		# the two would make llmfs's second read a cold one
		backed $((2 * size + 256))
		lcold=$(t cat "$mnt/models/m/q8.bin")
		lwarm=$(t cat "$mnt/models/m/q8.bin")
		drop
		backed $((2 * size + 256))
		pcold=$(t cat "$ptmnt/q8.bin")
		pwarm=$(t cat "$ptmnt/q8.bin")
		rec pt-cold "$(ratio "$pcold" "$lcold")"
		rec pt-warm "$(ratio "$pwarm" "$lwarm")"
	done
	fusermount3 -u "$ptmnt"; wait "$pt_pid" || true; pt_pid=
	echo "q8 vs passthrough_ll -o cache=always: first read throughput ratio $(med pt-cold), second read $(med pt-warm)"
else
	echo "passthrough_ll: not available, skipped"
fi

# ---- float data without a header, and small tensors
fresh_llmfs
cp "$d/bare.bf16" "$mnt/models/m/"
sb=$(stat_of stored_bytes)
cp "$d/bf16.safetensors" "$mnt/models/m/"
ss=$(stat_of stored_bytes)
zb=$(zstd -3 -q -c "$d/bare.bf16" | wc -c)
echo "bare bf16 (no header): stored $(ratio "$sb" "$(stat -c %s "$d/bare.bf16")") of its size, zstd -3 $(ratio "$zb" "$(stat -c %s "$d/bare.bf16")");" \
     "the same tensors in safetensors added $((ss - sb)) B (dedup against the bare file)"
fresh_llmfs
cp "$d/bf16.safetensors" "$mnt/models/m/"
ss=$(stat_of stored_bytes)
echo "bf16 safetensors alone: stored $(ratio "$ss" "$(stat -c %s "$d/bf16.safetensors")") of its size"
fresh_llmfs
cp "$d/v1.safetensors" "$mnt/models/m/"
s1=$(stat_of stored_bytes)
cp "$d/v2.safetensors" "$mnt/models/m/"
s2=$(stat_of stored_bytes)
echo "small tensors (1,400 x 15 KB, 13% changed, header +8 KiB): v2 adds $(ratio $((s2 - s1)) "$(stat -c %s "$d/v2.safetensors")") of its size (goal <= 0.15)"
fi

if [ "$nfiles" != 0 ]; then
small_tree "$d/small" "$nfiles"

# ---- small files: cp -r + sync, one copy and four at once, against ext4
# and against passthrough_ll over ext4 (-o cache=always, which keeps
# attributes and names a day as llmfs does in models/): what the kernel's
# FUSE path costs a file with nothing behind it, no store and no durable
# close (its flush closes a dup of the file, its data reaches the disk at
# the final sync).  And against ext4 with every file synced before its
# close (copy-sync.c, the "durable" side): what the promise of llmfs's
# default close costs on ext4 itself.  The sides rotate from round to round.
pt_mount() {
	rm -rf "$work/ext4/pt"; mkdir "$work/ext4/pt"
	"$work/passthrough_ll" -f -o source="$work/ext4/pt",cache=always "$ptmnt" 2>/dev/null &
	pt_pid=$!
	_i=0
	until mountpoint -q "$ptmnt"; do
		_i=$((_i + 1))
		if [ $_i -ge 200 ] || ! kill -0 "$pt_pid" 2>/dev/null; then
			echo "passthrough_ll did not mount" >&2; exit 1
		fi
		sleep 0.05
	done
}
pt_umount() { fusermount3 -u "$ptmnt"; wait "$pt_pid" || true; pt_pid=; rm -rf "$work/ext4/pt"; }
sides="llmfs ext4 dur"
[ "$have_pt" = 1 ] && sides="llmfs ext4 dur fuse"
for r in $(seq "$rounds"); do
	for side in $sides; do
		drop
		cp_r="cp -r"
		case $side in
		llmfs) fresh_llmfs; dst=$mnt/models/m ;;
		ext4) rm -rf "$work/ext4/small" "$work/ext4/par"; dst=$work/ext4 ;;
		dur) rm -rf "$work/ext4/small" "$work/ext4/par"; dst=$work/ext4; cp_r=$work/copy-sync ;;
		fuse) pt_mount; dst=$ptmnt ;;
		esac
		one=$(t sh_sync "$cp_r '$d/small' '$dst/small'" "$dst")
		# passthrough_ll holds a descriptor for every inode the kernel
		# knows: a fresh mount for the second copy keeps it under the
		# usual limit (20,000 here)
		[ $side = fuse ] && { pt_umount; pt_mount; }
		par=$(t sh_sync "mkdir '$dst/par' && for q in 0 1 2 3; do (for k in \$(seq \$q 4 99); do k=\$(printf %03d \$k); $cp_r '$d/small'/d\$k '$dst/par/'d\$k; done) & done; wait" "$dst")
		case $side in
		llmfs) lone=$one; lpar=$par ;;
		ext4) eone=$one; epar=$par ;;
		dur) sone=$one; spar=$par ;;
		fuse) fone=$one; fpar=$par; pt_umount ;;
		esac
	done
	# shellcheck disable=SC2086
	set -- $sides; first=$1; shift; sides="$* $first"
	diff -r "$d/small" "$mnt/models/m/small" >/dev/null
	rec small-one "$(ratio "$lone" "$eone")"; rec small-par "$(ratio "$lpar" "$epar")"
	rec small-lone "$lone"; rec small-eone "$eone"; rec small-lpar "$lpar"; rec small-epar "$epar"
	rec small-sone "$sone"; rec small-spar "$spar"
	rec small-se "$(ratio "$sone" "$eone")"; rec small-ls "$(ratio "$lone" "$sone")"
	rec small-separ "$(ratio "$spar" "$epar")"; rec small-lspar "$(ratio "$lpar" "$spar")"
	if [ "$have_pt" = 1 ]; then
		rec small-fone "$fone"; rec small-fpar "$fpar"
		rec small-fe "$(ratio "$fone" "$eone")"; rec small-lf "$(ratio "$lone" "$fone")"
		rec small-fepar "$(ratio "$fpar" "$epar")"; rec small-lfpar "$(ratio "$lpar" "$fpar")"
	fi
	# listings right after a mount (caches dropped), then warm, then ext4
	# warm: each warm figure the median of 9 runs, the sides interleaved
	umount_llmfs; drop; mount_llmfs
	fc=$(t find "$mnt/models/m/small"); dc=$(t du -s "$mnt/models/m/small")
	find "$work/ext4/small" >/dev/null; du -s "$work/ext4/small" >/dev/null
	fw=$(tmed 9 find "$mnt/models/m/small"); fe=$(tmed 9 find "$work/ext4/small")
	dw=$(tmed 9 du -s "$mnt/models/m/small"); de=$(tmed 9 du -s "$work/ext4/small")
	rec ls-cold "$(ratio "$fc" "$fw")"; rec du-cold "$(ratio "$dc" "$dw")"
	rec ls-warm "$(ratio "$fe" "$fw")"; rec du-warm "$(ratio "$de" "$dw")"
	rec ls-fc "$fc"; rec ls-fw "$fw"; rec ls-fe "$fe"
done
echo "$nfiles small files, cp -r + sync: time / ext4 $(med small-one) (llmfs $(med small-lone) s, ext4 $(med small-eone) s)"
echo "$nfiles small files, 4 cp -r at once + sync: time / ext4 $(med small-par) (llmfs $(med small-lpar) s, ext4 $(med small-epar) s)"
echo "$nfiles small files, copied with each file synced before its close (the promise of llmfs's default close, kept by ext4) + sync: time / ext4 $(med small-se) ($(med small-sone) s); llmfs / that $(med small-ls)"
echo "$nfiles small files, 4 such copies at once + sync: time / ext4 $(med small-separ) ($(med small-spar) s); llmfs / that $(med small-lspar)"
if [ "$have_pt" = 1 ]; then
	echo "$nfiles small files, cp -r + sync into passthrough_ll (the kernel's FUSE path, nothing behind it): time / ext4 $(med small-fe) ($(med small-fone) s); llmfs / passthrough_ll $(med small-lf)"
	echo "$nfiles small files, 4 cp -r at once + sync into passthrough_ll: time / ext4 $(med small-fepar) ($(med small-fpar) s); llmfs / passthrough_ll $(med small-lfpar)"
fi
echo "find right after a mount / warm find: $(med ls-cold) (cold $(med ls-fc) s, warm $(med ls-fw) s); du: $(med du-cold)"
echo "warm find throughput / ext4: $(med ls-warm) (ext4 $(med ls-fe) s); warm du / ext4: $(med du-warm)"
fi

big_streams
