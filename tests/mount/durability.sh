#!/bin/sh
# What a close() promises (docs/architecture.md, Crash safety): the file is
# committed at once (a kill -9 right after keeps it) and on the disk within
# --flush-ms with --lazy-close, or at once after fsync(), an fsync of a
# folder (`sync DIR`), and by default (--sync-close) when close() returns.  The store's durable mark (STORE/synced, "PACK
# OFFSET") says how far the packs are known to be on the disk; a power loss
# inside the delay is played by cutting the pack back to that mark after a
# kill -9 (the catalog kept its commit, the pack bytes were lost): the files
# whose bytes are gone must read EIO, never wrong bytes, the others stay
# whole, and writing the same bytes again repairs them.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models
# The read of the file whose bytes were lost is logged as damage.
ALLOWED_ERRORS="models/m/c: damaged data"

# mark_pack / mark_off: the durable mark's fields.
mark_pack() { awk '{ print $1 + 0 }' "$STORE/synced"; }
mark_off() { awk '{ print $2 + 0 }' "$STORE/synced"; }
pack_file() { printf '%s/packs/%08d.pack' "$STORE" "$1"; }
# mark_at_end: the mark covers every byte of the last pack.
mark_at_end() {
	[ "$(mark_off)" = "$(stat -c %s "$(pack_file "$(mark_pack)")")" ] &&
	[ "$(ls "$STORE/packs" | sort | tail -n1)" = "$(basename "$(pack_file "$(mark_pack)")")" ]
}
# mark_behind: bytes of the last pack lie past the mark (not known synced).
mark_behind() {
	[ "$(mark_off)" -lt "$(stat -c %s "$(pack_file "$(mark_pack)")")" ]
}

test_expect_success 'set up: a file made durable by an fsync of its folder' '
	mkdir -p "$SRC" &&
	for f in a b c d e g; do head -c 300000 /dev/urandom >"$SRC/$f" || return 1; done &&
	daemon_start --lazy-close --flush-ms 60000 &&
	mkdir "$M/m" &&
	cp "$SRC/a" "$M/m/a" &&
	sync "$M/m" &&
	mark_at_end
'

test_expect_success 'a close commits without waiting for the disk; kill -9 keeps it' '
	cp "$SRC/b" "$M/m/b" &&
	cmp "$SRC/b" "$M/m/b" &&
	mark_behind &&
	daemon_kill9 &&
	daemon_start --lazy-close --flush-ms 60000 &&
	cmp "$SRC/a" "$M/m/a" && cmp "$SRC/b" "$M/m/b" &&
	[ "$(status_get lost_at_open)" = 0 ] &&
	mark_at_end
'

test_expect_success 'a power loss inside the delay: lost bytes read EIO, never wrong ones' '
	cp "$SRC/c" "$M/m/c" &&
	cmp "$SRC/c" "$M/m/c" &&
	mark_behind &&
	daemon_kill9 &&
	truncate -s "$(mark_off)" "$(pack_file "$(mark_pack)")" &&
	daemon_start --lazy-close --flush-ms 60000 &&
	[ "$(status_get lost_at_open)" -gt 0 ] &&
	grep -q "did not reach the disk" "$DAEMON_LOG" &&
	cmp "$SRC/a" "$M/m/a" && cmp "$SRC/b" "$M/m/b" &&
	! cat "$M/m/c" >"$TEST_DIR/c.read" 2>"$TEST_DIR/c.err" &&
	grep -q "Input/output error" "$TEST_DIR/c.err" &&
	! cmp -s "$SRC/c" "$TEST_DIR/c.read"
'

test_expect_success 'writing the same bytes again repairs the lost chunks' '
	cp "$SRC/c" "$M/m/c2" &&
	cmp "$SRC/c" "$M/m/c2" &&
	cmp "$SRC/c" "$M/m/c"
'

test_expect_success 'fsync() of a file closed before makes it durable at once' '
	cp "$SRC/d" "$M/m/d" &&
	mark_behind &&
	python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$M/m/d" &&
	mark_at_end
'

test_expect_success '--flush-ms bounds the wait: the flusher syncs on its own' '
	daemon_stop &&
	mark_at_end &&
	daemon_start --lazy-close --flush-ms 100 &&
	cp "$SRC/e" "$M/m/e" &&
	wait_for 30 mark_at_end &&
	[ "$(status_get flushes)" -ge 1 ] &&
	[ "$(status_get flush_failures)" = 0 ]
'

test_expect_success 'by default (--sync-close) a close returns once the file is on the disk' '
	daemon_stop &&
	daemon_start --flush-ms 60000 &&
	cp "$SRC/g" "$M/m/g" &&
	mark_at_end &&
	daemon_stop &&
	daemon_start --lazy-close --sync-close --flush-ms 60000 &&
	cp "$SRC/g" "$M/m/g2" &&
	mark_at_end &&
	daemon_stop
'

if have_fsck; then
	test_expect_success 'llmfs-fsck finds the store clean' 'fsck_store && [ "$FSCK_STATUS" = 0 ]'
else
	test_skip 'llmfs-fsck finds the store clean' 'llmfs-fsck not built'
fi

test_done
