#!/bin/sh
# Deleting frees space on a nearly full disk: the store on a 40 MiB tmpfs,
# three incompressible files fill most of it (all in one pack), one is
# deleted, and once the collection has run the same file is copied back:
# it must fit.  Then the user's way to ask for a collection, .llmfs/gc:
# a write of "gc" collects at once and the file says what was freed; a
# wrong command is refused.  Everything reads back after a remount, and
# llmfs-fsck finds the store sound, with no damage in the punched records.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models

small_store 40m || skip_all "cannot mount a tmpfs"

# gc_get KEY: the value of KEY in .llmfs/gc.
gc_get() {
	sed -n "s/^$1 //p" "$MNT/.llmfs/gc"
}

free_bytes() {
	df -B1 --output=avail "$SMALL" | tail -n 1 | tr -d ' '
}

test_expect_success 'set up: three 11 MB files fill most of a 40 MiB store' '
	mkdir -p "$SRC" &&
	for f in a b c; do
		head -c 11000000 /dev/urandom >"$SRC/$f.bin" || return 1
	done &&
	daemon_start &&
	mkdir "$M/m" &&
	cp "$SRC/a.bin" "$SRC/b.bin" "$SRC/c.bin" "$M/m/" &&
	for f in a b c; do cmp "$SRC/$f.bin" "$M/m/$f.bin" || return 1; done &&
	df -h "$SMALL" &&
	[ "$(free_bytes)" -lt 11000000 ]
'

test_expect_success 'delete a third: once collected, the space is free' '
	before=$(free_bytes) &&
	rm "$M/m/b.bin" &&
	wait_for "$GC_DEADLINE" "[ \"\$(status_get dead_chunks)\" = 0 ]" &&
	after=$(free_bytes) &&
	echo "free before $before, after $after" && df -h "$SMALL" &&
	[ "$after" -gt $((before + 10000000)) ]
'

test_expect_success 'the same file copied back fits' '
	cp "$SRC/b.bin" "$M/m/b.bin" &&
	cmp "$SRC/b.bin" "$M/m/b.bin" &&
	cmp "$SRC/a.bin" "$M/m/a.bin" && cmp "$SRC/c.bin" "$M/m/c.bin"
'

test_expect_success 'and again, with another file of that size' '
	rm "$M/m/c.bin" &&
	wait_for "$GC_DEADLINE" "[ \"\$(status_get dead_chunks)\" = 0 ]" &&
	head -c 11000000 /dev/urandom >"$SRC/d.bin" &&
	cp "$SRC/d.bin" "$M/m/d.bin" &&
	cmp "$SRC/d.bin" "$M/m/d.bin"
'

test_expect_success '.llmfs/gc is listed and says what collections freed' '
	ls -l "$MNT/.llmfs" &&
	ls "$MNT/.llmfs" | grep -qx gc &&
	cat "$MNT/.llmfs/gc" &&
	[ "$(gc_get collections)" -gt 0 ] &&
	[ "$(gc_get freed_bytes)" -gt 20000000 ] &&
	[ "$(gc_get request_freed_bytes)" = 0 ] &&
	[ "$(gc_get request_error)" = none ]
'

# The collection the delete starts may run first (and the request then
# finds nothing): the bytes freed are counted over both.
test_expect_success 'writing gc to .llmfs/gc collects now and reads back the bytes freed' '
	n0=$(gc_get collections) && f0=$(gc_get freed_bytes) &&
	before=$(free_bytes) &&
	rm "$M/m/d.bin" &&
	echo gc >"$MNT/.llmfs/gc" &&
	after=$(free_bytes) &&
	cat "$MNT/.llmfs/gc" && echo "free before $before, after $after" &&
	[ "$(status_get dead_chunks)" = 0 ] &&
	[ "$after" -gt $((before + 10000000)) ] &&
	[ "$(gc_get collections)" -gt "$n0" ] &&
	[ "$(gc_get request_error)" = none ] &&
	[ "$(gc_get request_freed_bytes)" -ge 0 ] &&
	[ $(( $(gc_get freed_bytes) - f0 )) -gt 10000000 ]
'

test_expect_success 'compact is the same request; other words are refused' '
	echo compact >"$MNT/.llmfs/gc" &&
	[ "$(gc_get request_error)" = none ] &&
	python3 -c "
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.write(fd, b\"frobnicate\\n\")
    sys.exit(\"a wrong command was taken\")
except OSError as e:
    sys.exit(0 if e.errno == errno.EINVAL else str(e))
" "$MNT/.llmfs/gc" &&
	expect_errno EACCES open-write "$MNT/.llmfs/status"
'

test_expect_success 'remount: the files read back, deleted ones stay deleted' '
	daemon_restart &&
	cmp "$SRC/a.bin" "$M/m/a.bin" && cmp "$SRC/b.bin" "$M/m/b.bin" &&
	[ ! -e "$M/m/c.bin" ] && [ ! -e "$M/m/d.bin" ]
'

# A delete whose collection a crash prevented: the next start collects it,
# without waiting for another delete.
test_expect_success 'after kill -9 right after a delete, the next start collects it' '
	cp "$SRC/a.bin" "$M/m/e.bin" && head -c 3000000 /dev/urandom >"$M/m/f.bin" &&
	sync && rm "$M/m/f.bin" && daemon_kill9 &&
	daemon_start &&
	say "dead chunks at start: $(status_get dead_chunks)" &&
	wait_for "$GC_DEADLINE" "[ \"\$(status_get dead_chunks)\" = 0 ]" &&
	rm "$M/m/e.bin" &&
	cmp "$SRC/a.bin" "$M/m/a.bin"
'

if have_fsck; then
	# Collected records are punched (tmpfs punches holes): their bytes no
	# longer match their ids, yet no chunk row points at them, so fsck
	# reports no damage.
	test_expect_success 'llmfs-fsck finds the store sound' '
		daemon_stop && fsck_store && [ "$FSCK_STATUS" = 0 ] &&
		! grep -E -q "damaged|uncommitted" "$TEST_DIR/fsck.out" &&
		daemon_start &&
		cmp "$SRC/a.bin" "$M/m/a.bin" && cmp "$SRC/b.bin" "$M/m/b.bin"
	'
else
	test_skip 'llmfs-fsck finds the store sound' 'llmfs-fsck not built'
fi

test_done
