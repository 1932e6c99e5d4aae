#!/bin/sh
# kill -9 of the daemon in the middle of writes, removes and copies, then a
# remount: every file has its previous or its new content (never a mix, never
# a partial write that was not committed), new writes work, and llmfs-fsck
# finds the store clean.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models

# one_of FILE CANDIDATE...: FILE's bytes equal one of the candidates ("-"
# stands for "FILE does not exist", "empty" for an empty file).
one_of() {
	f=$1; shift
	for c in "$@"; do
		case $c in
		-) [ ! -e "$f" ] && { echo "$f: absent"; return 0; } ;;
		empty) [ -f "$f" ] && [ ! -s "$f" ] && { echo "$f: empty"; return 0; } ;;
		*) [ -f "$f" ] && cmp -s "$c" "$f" && { echo "$f: = $c"; return 0; } ;;
		esac
	done
	echo "$f: none of $* (size $(stat -c %s "$f" 2>&1))"
	return 1
}

# wait_marks MARK...: every writer reached its kill point.
wait_marks() {
	for mk in "$@"; do
		wait_for "$MOUNT_DEADLINE" "[ -e \"$mk\" ]" || return 1
	done
}

# expect_fsck_clean "what": a block running llmfs-fsck on the stopped
# store, which must exit 0; skipped when the tool is not built.
expect_fsck_clean() {
	if have_fsck; then
		test_expect_success "$1" 'fsck_store && [ "$FSCK_STATUS" = 0 ]'
	else
		test_skip "$1" "llmfs-fsck not built"
	fi
}

test_expect_success 'set up: committed old contents' '
	mkdir -p "$SRC" &&
	head -c 3000000 /dev/urandom >"$SRC/a.old" &&
	{ head -c 2000000 /dev/urandom; yes new-a | head -c 4000000; } >"$SRC/a.new" &&
	head -c 1000000 /dev/urandom >"$SRC/b" &&
	yes old-c | head -c 2000000 >"$SRC/c.old" &&
	{ head -c 1500000 /dev/urandom; yes new-c | head -c 1500000; } >"$SRC/c.new" &&
	head -c 1048576 "$SRC/c.new" >"$SRC/c.synced" &&
	head -c 4000000 /dev/urandom >"$SRC/n.new" &&
	make_tree "$SRC/tree" crash &&
	daemon_start &&
	mkdir "$M/m" &&
	cp "$SRC/a.old" "$M/m/a" && cp "$SRC/b" "$M/m/b" && cp "$SRC/c.old" "$M/m/c" &&
	cp -r "$SRC/tree" "$M/tree"
'

test_expect_success 'kill -9 while three files are being written' '
	rm -f "$TEST_DIR"/mark.* &&
	spawn wa python3 "$MOUNT_HELPERS/slowwrite.py" "$SRC/a.new" "$M/m/a" "$TEST_DIR/mark.a" 3000000 &&
	spawn wn python3 "$MOUNT_HELPERS/slowwrite.py" "$SRC/n.new" "$M/m/n" "$TEST_DIR/mark.n" 2000000 &&
	spawn wc python3 "$MOUNT_HELPERS/slowwrite.py" "$SRC/c.new" "$M/m/c" "$TEST_DIR/mark.c" 2000000 1048576 &&
	wait_marks "$TEST_DIR/mark.a" "$TEST_DIR/mark.n" "$TEST_DIR/mark.c" &&
	daemon_kill9 &&
	spawn_kill wa wn wc &&
	! mountpoint -q "$MNT"
'

test_expect_success 'remount: each file has its old or its new content' '
	daemon_start &&
	one_of "$M/m/a" "$SRC/a.old" "$SRC/a.new" &&
	one_of "$M/m/n" - empty "$SRC/n.new" &&
	# c was fsynced after its first MiB: that is a committed new content
	one_of "$M/m/c" "$SRC/c.old" "$SRC/c.synced" "$SRC/c.new" &&
	cmp "$SRC/b" "$M/m/b" &&
	diff -r "$SRC/tree" "$M/tree"
'

test_expect_success 'what an fsync committed survived the crash' '
	cmp "$SRC/c.synced" "$M/m/c"
'

test_expect_success 'the manifest matches what the files now hold' '
	cp -r "$M/m" "$TEST_DIR/m-now" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/m/.smip/manifest.json" "$TEST_DIR/m-now" m &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/tree/.smip/manifest.json" "$SRC/tree" tree
'

test_expect_success 'after the crash, writing the new contents works' '
	cp "$SRC/a.new" "$M/m/a" && cp "$SRC/n.new" "$M/m/n" && cp "$SRC/c.new" "$M/m/c" &&
	cmp "$SRC/a.new" "$M/m/a" && cmp "$SRC/n.new" "$M/m/n" && cmp "$SRC/c.new" "$M/m/c"
'

test_expect_success 'clean unmount after the crash' '
	daemon_stop
'

expect_fsck_clean 'llmfs-fsck finds the store clean after kill -9 and remount'

test_expect_success 'kill -9 during a cp -r into the tree' '
	daemon_start &&
	spawn cpr cp -r "$SRC/tree" "$M/tree2" &&
	wait_for "$MOUNT_DEADLINE" "[ -e \"\$M/tree2\" ]" &&
	daemon_kill9 &&
	spawn_kill cpr &&
	daemon_start &&
	(cd "$SRC/tree" && find . -type f) >"$TEST_DIR/tree.files" &&
	while IFS= read -r f; do
		one_of "$M/tree2/$f" - empty "$SRC/tree/$f" || return 1
	done <"$TEST_DIR/tree.files" &&
	diff -r "$SRC/tree" "$M/tree" &&
	cmp "$SRC/a.new" "$M/m/a"
'

test_expect_success 'kill -9 right after rm -r of a model (GC pending)' '
	rm -r "$M/tree2" &&
	cp "$SRC/b" "$M/m/b2" &&
	rm -r "$M/tree" &&
	daemon_kill9 &&
	daemon_start &&
	[ ! -e "$M/tree" ] && [ ! -e "$M/tree2" ] &&
	cmp "$SRC/b" "$M/m/b2" && cmp "$SRC/a.new" "$M/m/a" &&
	cmp "$SRC/c.new" "$M/m/c" && cmp "$SRC/n.new" "$M/m/n"
'

test_expect_success 'kill -9 while overwriting a file with an in-tree copy' '
	spawn wb python3 "$MOUNT_HELPERS/slowwrite.py" "$SRC/a.old" "$M/m/b" "$TEST_DIR/mark.b" 500000 &&
	cp "$M/m/a" "$M/m/a-copy" &&
	wait_marks "$TEST_DIR/mark.b" &&
	daemon_kill9 &&
	spawn_kill wb &&
	daemon_start &&
	one_of "$M/m/b" "$SRC/b" "$SRC/a.old" &&
	cmp "$SRC/a.new" "$M/m/a-copy"
'

test_expect_success 'SIGTERM while files are written keeps their committed contents' '
	rm -f "$TEST_DIR"/mark.* &&
	spawn ta python3 "$MOUNT_HELPERS/slowwrite.py" "$SRC/a.old" "$M/m/a" "$TEST_DIR/mark.a" 1000000 &&
	spawn tn python3 "$MOUNT_HELPERS/slowwrite.py" "$SRC/n.new" "$M/m/t" "$TEST_DIR/mark.n" 1000000 &&
	wait_marks "$TEST_DIR/mark.a" "$TEST_DIR/mark.n" &&
	daemon_stop TERM &&
	spawn_kill ta tn &&
	daemon_start &&
	# a writer that never closed its file commits nothing, however the daemon stops
	cmp "$SRC/a.new" "$M/m/a" &&
	one_of "$M/m/t" - empty
'

# Closes that return together commit as one group (one pack sync, one
# catalog transaction): a close that returned is as committed as a lone
# one, so kill -9 right after the last close loses none of them.
test_expect_success 'kill -9 right after concurrent closes returned: every closed file is there' '
	mkdir -p "$SRC/g" "$M/g" &&
	for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		head -c $((i * 997 + 100)) "$SRC/n.new" >"$SRC/g/$i" || return 1
	done &&
	pids= &&
	for t in 1 2 3 4 5 6; do
		(for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			cp "$SRC/g/$i" "$M/g/$t.$i" || exit 1
		done) &
		pids="$pids $!"
	done &&
	for p in $pids; do wait "$p" || return 1; done &&
	daemon_kill9 &&
	daemon_start &&
	for t in 1 2 3 4 5 6; do
		for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			cmp "$SRC/g/$i" "$M/g/$t.$i" || return 1
		done
	done
'

test_expect_success 'clean unmount after four more crashes' '
	daemon_stop
'

expect_fsck_clean 'llmfs-fsck finds the store clean again'

test_expect_success 'remount: everything reads back' '
	daemon_start &&
	cmp "$SRC/a.new" "$M/m/a" && cmp "$SRC/b" "$M/m/b2" &&
	cmp "$SRC/a.new" "$M/m/a-copy"
'

test_done
