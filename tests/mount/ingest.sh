#!/bin/sh
# Ingest through a real mount, by what it stores and what it holds: float
# weights without a header that names them still get byte grouping
# (smaller than zstd -3 of the same file), random bytes are stored raw
# (their size plus a 32-byte record header a chunk) and read back exactly,
# a model of 1,400 small tensors deduplicates against its next version, and
# the daemon's resident memory grows by a bounded amount while a large file
# streams in.  Sizes, not times: timing is never asserted.
. "$(dirname "$0")/lib.sh"

require_cmd zstd
require_cmd fincore
[ -x "${GEN_WEIGHTS:-}" ] || skip_all "gen-weights not built"

SRC=$TEST_DIR/src
M=$MNT/models

stored() { status_get stored_bytes; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$DAEMON_PID/status"; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status"; }

test_expect_success 'set up' '
	mkdir -p "$SRC" &&
	"$GEN_WEIGHTS" bf16 32 11 >"$SRC/bare.bf16" &&
	"$GEN_WEIGHTS" fp32 16 12 >"$SRC/bare.fp32" &&
	"$GEN_WEIGHTS" q8 24 13 >"$SRC/random" &&
	"$GEN_WEIGHTS" small1 0 0 >"$SRC/v1.safetensors" &&
	"$GEN_WEIGHTS" small2 0 0 >"$SRC/v2.safetensors" &&
	daemon_start &&
	rss_kb >"$TEST_DIR/rss0" &&
	mkdir "$M/m" "$M/v1" "$M/v2"
'

# Each bare file must store below 0.92 of zstd -3 of it (it was zstd's size
# when grouping came only from a parsed header).
for f in bare.bf16 bare.fp32; do
	test_expect_success "a headerless $f file stores smaller than zstd -3" '
		s0=$(stored) &&
		cp "$SRC/'$f'" "$M/m/" &&
		s1=$(stored) &&
		z=$(zstd -3 -q -c "$SRC/'$f'" | wc -c) &&
		say "# '$f': stored $((s1 - s0)) B, zstd -3 $z B" &&
		[ $(( (s1 - s0) * 100 )) -le $((z * 92)) ] &&
		cmp "$SRC/'$f'" "$M/m/'$f'"
	'
done

test_expect_success 'random bytes are stored raw and read back exactly' '
	s0=$(stored) &&
	c0=$(status_get chunks) &&
	cp "$SRC/random" "$M/m/" &&
	s1=$(stored) &&
	c1=$(status_get chunks) &&
	size=$(stat -c %s "$SRC/random") &&
	say "# random: $size B stored as $((s1 - s0)) B in $((c1 - c0)) chunks" &&
	[ $((s1 - s0)) -eq $((size + 32 * (c1 - c0))) ] &&
	cmp "$SRC/random" "$M/m/random"
'

test_expect_success 'a model of 1,400 small tensors: v2 adds at most 15% of its size' '
	cp "$SRC/v1.safetensors" "$M/v1/model.safetensors" &&
	s1=$(stored) &&
	cp "$SRC/v2.safetensors" "$M/v2/model.safetensors" &&
	s2=$(stored) &&
	size=$(stat -c %s "$SRC/v2.safetensors") &&
	say "# v2 adds $((s2 - s1)) B of $size B" &&
	[ $(( (s2 - s1) * 100 )) -le $((size * 15)) ] &&
	cmp "$SRC/v2.safetensors" "$M/v2/model.safetensors"
'

# Bounded queues: ingest holds a few chunks, never the file.  The daemon's
# resident memory right after the mount (libraries, sqlite, the first
# buffers) is the baseline.  A 256 MiB stream must not raise the peak that
# a 32 MiB one reached by more than 16 MiB (memory does not grow with the
# file), and all of this test's ingests and reads (the 32 MiB chunk cache
# filled) may add at most 96 MiB to the baseline.
test_expect_success 'a 256 MiB file streams in with bounded daemon memory' '
	"$GEN_WEIGHTS" bf16 32 15 >"$M/m/small.bf16" &&
	h1=$(hwm_kb) &&
	a=$("$GEN_WEIGHTS" bf16 256 14 | tee "$M/m/big.bf16" | sha256sum) &&
	r0=$(cat "$TEST_DIR/rss0") &&
	h2=$(hwm_kb) &&
	say "# resident after the mount $r0 kB; peak after 32 MiB $h1 kB, after 256 MiB $h2 kB" &&
	# AddressSanitizer keeps freed memory in quarantine (256 MiB): its
	# figures say nothing about the daemon.
	if grep -q libasan "/proc/$DAEMON_PID/maps"; then
		say "# sanitizer build: memory bounds not checked"
	else
		[ $((h2 - h1)) -le 16384 ] && [ $((h2 - r0)) -le 98304 ]
	fi &&
	b=$(sha256sum <"$M/m/big.bf16") &&
	[ "$a" = "$b" ]
'

# A new file's first content leaves no garbage, so closing it asks for no
# collection, and no file snapshot (four syncs) follows each small file;
# replacing a file's content does ask, and the collection runs and
# snapshots.
test_expect_success 'new small files: no collection after each; an overwrite: one' '
	snap=$STORE/files.snap &&
	wait_for "$MOUNT_DEADLINE" "[ -f \"\$snap\" ]" &&
	sleep 2 &&
	before=$(stat -c %Y.%i "$snap") &&
	mkdir "$M/small" &&
	for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
		head -c $((i * 300)) "$SRC/random" >"$M/small/f$i" || return 1
	done &&
	sleep 2.5 &&
	[ "$(stat -c %Y.%i "$snap")" = "$before" ] &&
	head -c 5000 "$SRC/bare.bf16" >"$M/small/f1" &&
	wait_for "$MOUNT_DEADLINE" "[ \"\$(stat -c %Y.%i \"\$snap\")\" != \"\$before\" ]"
'

# An ingest is a chain (cp waits for each write's answer): the store's
# compression workers and its SHA thread run 5 nice steps below the rest of
# the daemon, so that on a busy machine they do not preempt the thread
# answering a write (docs/architecture.md, A write).  One worker a core (at
# most 16) and the SHA thread; the main thread and the feeders keep the
# daemon's own nice.
test_expect_success 'the store background threads run below the FUSE threads' '
	base=$(awk "{ print \$19 }" "/proc/$DAEMON_PID/stat") &&
	low=0 &&
	for t in /proc/$DAEMON_PID/task/*; do
		n=$(awk "{ print \$19 }" "$t/stat") || return 1
		[ "$n" -eq "$base" ] || [ "$n" -eq $((base + 5)) ] || return 1
		[ "$n" -ne $((base + 5)) ] || low=$((low + 1))
	done &&
	cores=$(nproc) &&
	{ [ "$cores" -le 16 ] || cores=16; } &&
	say "# $low threads at nice $((base + 5)), the daemon at $base" &&
	[ "$low" -eq $((cores + 1)) ]
'

# A stream keeps its newest packs in the page cache (--pack-cache) and lets
# the older ones go as new ones start: left cached, a stream larger than
# memory pushes out everything else and waits on reclaim.  128 MiB through
# packs of 8 MiB (the first ones after the store's last pack), 16 MiB of
# them kept: at most half stays resident (all of it did before; pages
# still being written at a drop stay).
test_expect_success 'packs written before the newest --pack-cache bytes leave the page cache' '
	daemon_stop &&
	daemon_start --pack-max 8388608 --pack-cache 16777216 &&
	ls "$STORE/packs" >"$TEST_DIR/packs0" &&
	"$GEN_WEIGHTS" q8 128 16 >"$M/m/stream.q8" &&
	ls "$STORE/packs" | comm -13 "$TEST_DIR/packs0" - >"$TEST_DIR/packs1" &&
	(cd "$STORE/packs" && fincore --bytes --noheadings --output RES,SIZE \
		$(cat "$TEST_DIR/packs1")) >"$TEST_DIR/fincore" &&
	set -- $(awk "{ r += \$1; s += \$2 } END { print r, s }" "$TEST_DIR/fincore") &&
	say "# the stream'"'"'s $(wc -l <"$TEST_DIR/packs1") packs: $1 of $2 bytes resident" &&
	[ "$2" -ge $((96 << 20)) ] && [ $(($1 * 2)) -le "$2" ] &&
	"$GEN_WEIGHTS" q8 128 16 | cmp - "$M/m/stream.q8"
'

test_expect_success 'clean unmount' '
	daemon_stop
'

test_done
