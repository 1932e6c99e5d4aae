#!/bin/sh
# A durable close (the default --sync-close) of a small file pays one sync:
# its one chunk is committed inside its catalog transaction (inline), so no
# pack is synced for it, and the flusher moves it into a pack once closes
# pause (docs/architecture.md, Crash safety).  Checked: the pack-sync count
# does not grow with small closes; inline chunks reach the packs;
# concurrent closes keep every acknowledged file through a kill -9; and
# kill -9
# during a copy loop of small and large files, with the pack cut back to
# the durable mark after it (a power loss's lost pack writes), keeps every
# file whose close returned, leaves no file with wrong bytes, and leaves
# the store clean for llmfs-fsck.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models

mark_pack() { awk '{ print $1 + 0 }' "$STORE/synced"; }
mark_off() { awk '{ print $2 + 0 }' "$STORE/synced"; }
pack_file() { printf '%s/packs/%08d.pack' "$STORE" "$1"; }

# copy_loop DIR FIRST LAST: copies sources FIRST..LAST into DIR, one close
# each, and lists in $TEST_DIR/acked the ones whose close returned 0.
copy_loop() {
	i=$2
	while [ "$i" -le "$3" ]; do
		cp "$SRC/f$i" "$1/f$i" 2>/dev/null && echo "$i" >>"$TEST_DIR/acked"
		i=$((i + 1))
	done
}

# acked_reach N: waits (up to 30 s) until N closes of the loop returned.
acked_reach() {
	k=0
	while [ "$(wc -l <"$TEST_DIR/acked")" -lt "$1" ]; do
		k=$((k + 1))
		[ $k -lt 3000 ] || return 1
		sleep 0.01
	done
}

# check_copies DIR: every acknowledged file is whole; every
# other file there is empty (created, never closed) or whole.
check_copies() {
	for i in $(cat "$TEST_DIR/acked"); do
		cmp "$SRC/f$i" "$1/f$i" || { say "# acknowledged f$i is not intact"; return 1; }
	done
	for p in "$1"/*; do
		[ -e "$p" ] || continue
		b=$(basename "$p")
		[ -s "$p" ] || continue
		cmp -s "$SRC/$b" "$p" || { say "# $b has bytes of no version"; return 1; }
	done
}

test_expect_success 'set up: small files (100 B to 4 KB) and a few large ones' '
	mkdir -p "$SRC" &&
	python3 - "$SRC" <<-\EOF
	import os, random, sys
	r = random.Random(19)
	for i in range(1, 601):
	    n = 300000 if i % 25 == 0 else r.randint(100, 4000)
	    with open(os.path.join(sys.argv[1], "f%d" % i), "wb") as f:
	        f.write(os.urandom(n) if i % 2 else bytes(r.choice(b"ab \n") for _ in range(n)))
	EOF
'

test_expect_success 'a durable close of a small file syncs no pack' '
	daemon_start --flush-ms 60000 &&
	mkdir "$M/s" &&
	before=$(status_get pack_syncs) &&
	for i in $(seq 1 24); do cp "$SRC/f$i" "$M/s/f$i" || return 1; done &&
	after=$(status_get pack_syncs) &&
	say "# pack syncs for 24 small closes: $((after - before))" &&
	[ $((after - before)) -le 2 ] &&
	[ "$(status_get inline_chunks)" -ge 20 ] &&
	for i in $(seq 1 24); do cmp "$SRC/f$i" "$M/s/f$i" || return 1; done
'

test_expect_success 'a large file still syncs its pack before its close returns' '
	before=$(status_get pack_syncs) &&
	cp "$SRC/f25" "$M/s/f25" &&
	[ "$(status_get pack_syncs)" -gt "$before" ] &&
	cmp "$SRC/f25" "$M/s/f25"
'

test_expect_success 'inline chunks survive kill -9, then move into the packs' '
	daemon_kill9 &&
	daemon_start --flush-ms 100 &&
	for i in $(seq 1 25); do cmp "$SRC/f$i" "$M/s/f$i" || return 1; done &&
	wait_for 30 "[ \"\$(status_get inline_chunks)\" = 0 ]" &&
	for i in $(seq 1 25); do cmp "$SRC/f$i" "$M/s/f$i" || return 1; done
'

test_expect_success 'an unmount moves what is inline; the copies read back after it' '
	daemon_stop &&
	daemon_start --flush-ms 60000 &&
	for i in $(seq 26 40); do cp "$SRC/f$i" "$M/s/f$i" || return 1; done &&
	[ "$(status_get inline_chunks)" -gt 0 ] &&
	daemon_stop &&
	daemon_start --flush-ms 60000 &&
	[ "$(status_get inline_chunks)" = 0 ] &&
	for i in $(seq 1 40); do cmp "$SRC/f$i" "$M/s/f$i" || return 1; done
'

# Four copy loops at once (their closes commit in groups): a kill -9 in
# the middle keeps every file whose close returned.
test_expect_success 'concurrent durable closes: kill -9, acknowledged files intact' '
	: >"$TEST_DIR/acked" &&
	pids= &&
	for q in 0 1 2 3; do
		mkdir -p "$M/c$q" &&
		{ copy_loop "$M/c$q" $((41 + q * 45)) $((85 + q * 45)) & } &&
		pids="$pids $!" || return 1
	done &&
	acked_reach 60 &&
	say "# $(wc -l <"$TEST_DIR/acked") concurrent closes returned before the kill" &&
	daemon_kill9 &&
	wait $pids &&
	daemon_start --flush-ms 100 &&
	cp "$TEST_DIR/acked" "$TEST_DIR/acked.all" &&
	for q in 0 1 2 3; do
		awk -v q=$q "int((\$1 - 41) / 45) == q" "$TEST_DIR/acked.all" >"$TEST_DIR/acked" &&
		check_copies "$M/c$q" || return 1
	done &&
	daemon_stop &&
	daemon_start --flush-ms 60000
'

# Three kills at different points of a copy loop; after each the pack is
# cut back to the durable mark, as a power loss may lose what was not synced.
for round in 1 2 3; do
	test_expect_success "kill -9 in a copy loop, pack cut to the mark ($round): acknowledged files intact" '
		: >"$TEST_DIR/acked" &&
		mkdir -p "$M/k$round" &&
		first=$((41 + (round - 1) * 180)) &&
		{ copy_loop "$M/k$round" "$first" $((first + 179)) & } &&
		loop=$! &&
		acked_reach $((round * round * 12)) &&
		daemon_kill9 &&
		wait "$loop" &&
		say "# $(wc -l <"$TEST_DIR/acked") closes returned before the kill" &&
		[ "$(wc -l <"$TEST_DIR/acked")" -lt 180 ] &&
		truncate -s "$(mark_off)" "$(pack_file "$(mark_pack)")" &&
		daemon_start --flush-ms 100 &&
		[ "$(status_get lost_at_open)" = 0 ] &&
		check_copies "$M/k$round" &&
		wait_for 30 "[ \"\$(status_get inline_chunks)\" = 0 ]" &&
		check_copies "$M/k$round" &&
		for i in $(seq 1 40); do cmp "$SRC/f$i" "$M/s/f$i" || return 1; done
	'
done

# Each path walk checks the root's permissions (default_permissions): with
# the root's attributes given for timeout 0 that was one GETATTR per file
# copied.  The root's rows are fixed while mounted, so the kernel keeps
# them, and its listing stays right.
test_expect_success 'copies of small files ask the root attributes once, not per file' '
	daemon_stop && daemon_start -d &&
	ls "$MNT" >/dev/null && mkdir "$M/r" &&
	g0=$(grep -c "opcode: GETATTR (3), nodeid: 1," "$DAEMON_LOG") &&
	for i in $(seq 1 20); do cp "$SRC/f$i" "$M/r/f$i" || return 1; done &&
	stat "$MNT/models" "$MNT/.llmfs" >/dev/null &&
	g1=$(grep -c "opcode: GETATTR (3), nodeid: 1," "$DAEMON_LOG") &&
	say "# GETATTRs of the root for 20 copies: $((g1 - g0))" &&
	[ $((g1 - g0)) -le 2 ] &&
	ls "$MNT" | grep -qx models && ls -a "$MNT" | grep -qx .llmfs &&
	for i in $(seq 1 20); do cmp "$SRC/f$i" "$M/r/f$i" || return 1; done
'

# A close's commit sets the file's mtime, which the kernel does not see:
# the invalidation queued at the commit must drop what a stat during the
# write cached (it is sent by another thread: waited for up to 10 s).
test_expect_success 'a stat during a write leaves no old mtime after the close' '
	python3 - "$M/r/mt" >"$TEST_DIR/mt" <<-\EOF &&
	import os, sys, time
	fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
	os.write(fd, b"x" * 3000)
	mid = os.stat(sys.argv[1]).st_mtime_ns
	time.sleep(1.2)
	os.close(fd)
	for i in range(100):
	    st = os.stat(sys.argv[1])
	    if st.st_mtime_ns != mid:
	        break
	    time.sleep(0.1)
	print(st.st_mtime_ns, st.st_size)
	EOF
	daemon_stop && daemon_start &&
	fresh=$(stat -c "%.9Y %s" "$M/r/mt" | tr -d .) &&
	say "# after the close: $(cat "$TEST_DIR/mt"), a fresh mount: $fresh" &&
	[ "$(cat "$TEST_DIR/mt")" = "$fresh" ]
'

if have_fsck; then
	test_expect_success 'llmfs-fsck finds the store clean' '
		daemon_stop && fsck_store && [ "$FSCK_STATUS" = 0 ]
	'
else
	test_skip 'llmfs-fsck finds the store clean' 'llmfs-fsck not built'
fi

test_done
