#!/bin/sh
# The daemon's life: clean unmount by fusermount3 -u and by SIGTERM (data
# kept, store lock released), a second daemon on the same store refused
# with a clear message, a store of a newer format refused.
. "$(dirname "$0")/lib.sh"
require_cmd sqlite3

SRC=$TEST_DIR/src
M=$MNT/models

# The catalog's format number, read or set with the sqlite3 CLI (the
# daemon must not be running).
get_format() {
	sqlite3 "$STORE/catalog.db" "SELECT value FROM meta WHERE key = 'format'"
}
set_format() {
	sqlite3 "$STORE/catalog.db" "UPDATE meta SET value = '$1' WHERE key = 'format'"
}

test_expect_success 'set up: a store with one model' '
	make_tree "$SRC/A" lifecycle &&
	daemon_start &&
	cp -r "$SRC/A" "$M/" && diff -r "$SRC/A" "$M/A"
'

test_expect_success 'fusermount3 -u: the daemon exits 0, the mount is gone' '
	pid=$DAEMON_PID &&
	daemon_stop umount &&
	! pid_alive "$pid" &&
	! mountpoint -q "$MNT" &&
	[ ! -e "$MNT/models" ]
'

test_expect_success 'remount: the data is there' '
	daemon_start &&
	diff -r "$SRC/A" "$M/A"
'

test_expect_success 'a write just before the unmount is kept' '
	head -c 400000 /dev/urandom >"$TEST_DIR/late" &&
	mkdir "$M/B" &&
	cp "$TEST_DIR/late" "$M/B/late" &&
	daemon_stop umount &&
	daemon_start &&
	cmp "$TEST_DIR/late" "$M/B/late"
'

test_expect_success 'SIGTERM: the daemon unmounts and exits 0' '
	pid=$DAEMON_PID &&
	daemon_stop TERM
	r=$?
	! pid_alive "$pid" && ! mountpoint -q "$MNT" && [ $r = 0 ]
'

# The kernel sends no release for what is still open at a stop: the daemon
# frees it itself (a leak fails the sanitised build's exit status).
test_expect_success 'SIGTERM with a folder and a file held open: exits 0' '
	daemon_start || return 1
	python3 -c "
import os, sys, time
d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.listdir(d)
f = os.open(sys.argv[2], os.O_RDONLY)
os.read(f, 10)
open(sys.argv[3], \"w\").close()
time.sleep(30)
" "$M/A" "$M/B/late" "$TEST_DIR/held" &
	holder=$! &&
	wait_for 10 "[ -e $TEST_DIR/held ]" &&
	daemon_stop TERM
	r=$?
	kill $holder 2>/dev/null; wait $holder 2>/dev/null
	[ $r = 0 ]
'

test_expect_success 'remount after SIGTERM: the data is there' '
	daemon_start &&
	diff -r "$SRC/A" "$M/A" && cmp "$TEST_DIR/late" "$M/B/late"
'

# (Not SIGINT: a non-interactive shell starts background jobs with SIGINT
# ignored, and libfuse leaves ignored signals alone.)
test_expect_success 'SIGHUP unmounts cleanly too' '
	daemon_stop HUP
	r=$?
	daemon_start && diff -r "$SRC/A" "$M/A" && [ $r = 0 ]
'

test_expect_success 'a second daemon on the same store is refused' '
	mkdir -p "$TEST_DIR/mnt2" &&
	spawn_llmfs second "$TEST_DIR/second.log" --store "$STORE" -f "$TEST_DIR/mnt2" &&
	spawn_wait second && cat "$TEST_DIR/second.log" && check_log "$TEST_DIR/second.log" &&
	[ "$EXIT_STATUS" != 0 ] &&
	! mountpoint -q "$TEST_DIR/mnt2" &&
	grep -q "already in use" "$TEST_DIR/second.log" &&
	grep -q "pid $DAEMON_PID" "$TEST_DIR/second.log" &&
	# the first one is unharmed
	diff -r "$SRC/A" "$M/A" && echo more >"$M/B/more" &&
	[ "$(cat "$M/B/more")" = more ]
'

test_expect_success 'a second daemon in the background (no -f) is refused too' '
	"$LLMFS" --store "$STORE" "$TEST_DIR/mnt2" 2>"$TEST_DIR/second-bg.log"
	r=$? && cat "$TEST_DIR/second-bg.log" && check_log "$TEST_DIR/second-bg.log" &&
	[ $r != 0 ] && ! mountpoint -q "$TEST_DIR/mnt2" &&
	grep -q "already in use" "$TEST_DIR/second-bg.log"
'

test_expect_success 'a stale lock (the owner died by kill -9) does not block a new daemon' '
	daemon_kill9 &&
	daemon_start &&
	diff -r "$SRC/A" "$M/A" && [ "$(cat "$M/B/more")" = more ]
'

test_expect_success 'a store of a newer format is refused with a clear message' '
	daemon_stop &&
	old=$(get_format) &&
	echo "format is $old" && [ -n "$old" ] && [ "$old" != 999 ] &&
	set_format 999 &&
	spawn_llmfs newer "$TEST_DIR/newer.log" --store "$STORE" -f "$MNT" &&
	spawn_wait newer && cat "$TEST_DIR/newer.log" && check_log "$TEST_DIR/newer.log" &&
	[ "$EXIT_STATUS" != 0 ] &&
	! mountpoint -q "$MNT" &&
	grep -i "format" "$TEST_DIR/newer.log" | grep -q 999 &&
	grep -qi "newer" "$TEST_DIR/newer.log" &&
	# refused without touching it
	[ "$(get_format)" = 999 ] &&
	set_format "$old"
'

test_expect_success 'with the format restored, it mounts again and nothing was lost' '
	daemon_start &&
	diff -r "$SRC/A" "$M/A" && cmp "$TEST_DIR/late" "$M/B/late"
'

test_expect_success 'a store folder that cannot be used is refused, not mounted' '
	echo notadir >"$TEST_DIR/file" &&
	spawn_llmfs bad "$TEST_DIR/bad.log" --store "$TEST_DIR/file" -f "$TEST_DIR/mnt2" &&
	spawn_wait bad && cat "$TEST_DIR/bad.log" && check_log "$TEST_DIR/bad.log" &&
	[ "$EXIT_STATUS" != 0 ] && ! mountpoint -q "$TEST_DIR/mnt2" &&
	[ -s "$TEST_DIR/bad.log" ]
'

test_expect_success 'a missing mount point is refused with a message' '
	spawn_llmfs nomnt "$TEST_DIR/nomnt.log" --store "$TEST_DIR/store-x" -f "$TEST_DIR/no/such/dir" &&
	spawn_wait nomnt && cat "$TEST_DIR/nomnt.log" && check_log "$TEST_DIR/nomnt.log" &&
	[ "$EXIT_STATUS" != 0 ] && [ -s "$TEST_DIR/nomnt.log" ]
'

test_expect_success 'a new store in a folder that does not exist yet is created' '
	daemon_stop &&
	STORE_SAVED=$STORE && STORE=$TEST_DIR/new/nested/store &&
	daemon_start &&
	[ -f "$STORE/catalog.db" ] && [ "$(ls -A "$M")" = "" ] &&
	mkdir "$M/x" && cp "$SRC/A/model.safetensors" "$M/x/" &&
	daemon_restart &&
	cmp "$SRC/A/model.safetensors" "$M/x/model.safetensors" &&
	daemon_stop && STORE=$STORE_SAVED
'

test_expect_success '--threads 1 --level 19 works and reads back the same' '
	daemon_start --threads 1 --level 19 &&
	diff -r "$SRC/A" "$M/A" &&
	cp -r "$SRC/A" "$M/A19" && diff -r "$SRC/A" "$M/A19" &&
	daemon_restart && diff -r "$SRC/A" "$M/A19"
'

test_done
