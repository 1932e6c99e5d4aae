#!/bin/sh
# The kernel's caches of models/: names, attributes and listings are kept
# for a long time (FS_MODELS_TIMEOUT), so a warm find or du asks the daemon
# nothing at all (counted in its FUSE debug log: not even an opendir, the
# kernel opening folders alone), while the folders of other rows are
# listed afresh each time, and every change
# shows at once through a warm cache: one the daemon makes on its own
# (train/ making models/<job>/), a rename, unlink or rewrite by another
# process or another user, a chmod seen by a second user, a collection.
# At the end the warm view is compared with a fresh mount's.
. "$(dirname "$0")/lib.sh"

require_cmd useradd userdel setpriv
M=$MNT/models
T=$MNT/train
U1=llmfs-cache1-$$
U2=llmfs-cache2-$$
useradd -M -N -r -s /bin/false "$U1" >/dev/null 2>&1 || skip_all "useradd failed"
useradd -M -N -r -s /bin/false "$U2" >/dev/null 2>&1 || { userdel "$U1"; skip_all "useradd failed"; }
chmod 755 "$TEST_DIR"
trap 'rc_=$?; userdel "$U1" 2>/dev/null; userdel "$U2" 2>/dev/null; (exit $rc_); cleanup' EXIT

# asked OPCODE...: requests of those kinds in the daemon's debug log so far,
# the root's (inode 1, asked once after the mount) left out.
asked() {
	n=0
	for op in "$@"; do
		n=$((n + $(grep "opcode: $op " "$DAEMON_LOG" | grep -vc "nodeid: 1,")))
	done
	echo "$n"
}

# asked_of INO OPCODE...: requests of those kinds for inode INO so far.
asked_of() {
	ino=$1
	shift
	n=0
	for op in "$@"; do
		n=$((n + $(grep -c "opcode: $op .*nodeid: $ino," "$DAEMON_LOG")))
	done
	echo "$n"
}

# view DIR: every entry's path, kind, size, mode, owner, links and mtime, and every
# file's sha256.
view() {
	(cd "$1" && find . -printf '%p %y %s %m %u %n %T@\n' | sort && sums .)
}

test_expect_success 'set up: 200 files in 4 folders, a fresh mount with a debug log' '
	daemon_start &&
	mkdir -p "$M/m" &&
	for d in a b c d; do
		mkdir "$M/m/$d" &&
		for i in $(seq 1 50); do
			printf "%s %s\n" "$d" "$i" >"$M/m/$d/f$i" || return 1
		done || return 1
	done &&
	head -c 3000000 /dev/urandom >"$M/m/big" &&
	daemon_stop &&
	daemon_start -d
'

# A listing makes the kernel forget a folder's atime, so each command
# may still ask one GETATTR per folder (6 here): never one per file.  A
# drop of the kernel's caches by another process (a benchmark's
# drop_caches) makes it ask again: each check is tried up to 3 times.
test_expect_success 'a warm find, du and ls -lR, seconds later, ask nothing per file' '
	find "$M/m" >/dev/null && du -s "$M/m" >/dev/null && ls -lR "$M/m" >/dev/null &&
	sleep 1.5 &&
	for try in 1 2 3; do
		a0=$(asked LOOKUP READDIR READDIRPLUS) && g0=$(asked GETATTR) &&
		l0=$(wc -l <"$DAEMON_LOG") &&
		find "$M/m" >"$TEST_DIR/find" && du -s "$M/m" >/dev/null &&
		ls -lR "$M/m" >/dev/null &&
		a1=$(asked LOOKUP READDIR READDIRPLUS) && g1=$(asked GETATTR) &&
		say "# lookups and listings: $((a1 - a0)), getattrs: $((g1 - g0))" &&
		[ "$a1" -eq "$a0" ] && break
		tail -n +"$((l0 + 1))" "$DAEMON_LOG" | grep "opcode: " | sed "s/^/# /" | head -20
	done &&
	[ "$a1" -eq "$a0" ] && [ $((g1 - g0)) -le 18 ] &&
	[ "$(grep -c /f "$TEST_DIR/find")" -eq 200 ]
'

test_expect_success 'a warm find and du open no folder through the daemon' '
	find "$M/m" >/dev/null && du -s "$M/m" >/dev/null &&
	for try in 1 2 3; do
		o0=$(asked OPENDIR RELEASEDIR LOOKUP READDIR READDIRPLUS) &&
		find "$M/m" >/dev/null && du -s "$M/m" >/dev/null &&
		find "$M/m" -type f | wc -l >/dev/null &&
		o1=$(asked OPENDIR RELEASEDIR LOOKUP READDIR READDIRPLUS) &&
		say "# opendirs, releases, lookups and listings: $((o1 - o0))" &&
		[ "$o1" -eq "$o0" ] && break
	done &&
	[ "$o1" -eq "$o0" ]
'

# The kernel opens folders alone, so it keeps every listing: those of the
# other rows (here .llmfs/, inode 8) must still be asked at each listing.
test_expect_success 'a folder of another row is listed by the daemon each time' '
	ls "$MNT/.llmfs" >/dev/null &&
	r0=$(asked_of 8 OPENDIR READDIR READDIRPLUS) &&
	ls "$MNT/.llmfs" | grep -qx status && ls "$MNT/.llmfs" | grep -qx gc &&
	r1=$(asked_of 8 OPENDIR READDIR READDIRPLUS) &&
	say "# requests for .llmfs/ over two listings: $((r1 - r0))" &&
	[ $((r1 - r0)) -ge 2 ]
'

test_expect_success 'a folder train/ makes in models/ lists at once' '
	ls "$M" >/dev/null && stat "$M" >/dev/null &&
	mkdir "$T/job1" &&
	printf "data=models/none.txt\nsteps=1\n" >"$T/job1/job" &&
	ls "$M" | grep -qx job1 &&
	[ -d "$M/job1" ] && [ "$(stat -c %U "$M/job1")" = root ]
'

test_expect_success 'a rename and an unlink by another process show at once' '
	ls -l "$M/m/a" >/dev/null && cat "$M/m/a/f1" >/dev/null &&
	sh -c "mv \"$M/m/a/f1\" \"$M/m/a/g1\" && rm \"$M/m/a/f2\"" &&
	! ls "$M/m/a" | grep -qx f1 && ls "$M/m/a" | grep -qx g1 &&
	! ls "$M/m/a" | grep -qx f2 && ! stat "$M/m/a/f2" 2>/dev/null &&
	[ "$(cat "$M/m/a/g1")" = "a 1" ] &&
	mv "$M/m/b/f3" "$M/m/c/moved" &&
	ls "$M/m/c" | grep -qx moved && ! ls "$M/m/b" | grep -qx f3
'

test_expect_success 'a file rewritten by another process: stat and cat give the new content' '
	stat -c %s "$M/m/d/f1" >/dev/null && cat "$M/m/d/f1" >/dev/null &&
	sh -c "head -c 12345 /dev/urandom >\"$M/m/d/f1\"" &&
	[ "$(stat -c %s "$M/m/d/f1")" = 12345 ] &&
	[ "$(wc -c <"$M/m/d/f1")" = 12345 ] &&
	python3 - "$M/m/d/f1" <<-PY
	import os, sys
	p = sys.argv[1]
	# a stat while another handle writes: no stale size is kept afterwards
	f = open(p, "wb")
	f.write(b"y" * 777)
	f.flush()
	assert os.stat(p).st_size == 777
	f.write(b"z" * 223)
	f.flush()
	os.stat(p)  # attributes taken before the commit, which sets the mtime
	f.close()
	assert os.stat(p).st_size == 1000, os.stat(p).st_size
	assert open(p, "rb").read() == b"y" * 777 + b"z" * 223
	PY
'

test_expect_success 'two users: a chmod and a new file by one are what the other sees' '
	mkdir "$M/u" && chown "$U1" "$M/u" && chmod 700 "$M/u" &&
	run_as "$U1" sh -c "printf one >\"$M/u/x\"" &&
	! run_as "$U2" ls "$M/u" 2>/dev/null &&
	run_as "$U1" chmod 755 "$M/u" &&
	run_as "$U2" ls "$M/u" | grep -qx x &&
	[ "$(run_as "$U2" cat "$M/u/x")" = one ] &&
	run_as "$U1" sh -c "printf two2 >\"$M/u/x\" && printf new >\"$M/u/y\"" &&
	[ "$(run_as "$U2" cat "$M/u/x")" = two2 ] &&
	[ "$(run_as "$U2" stat -c %s "$M/u/x")" = 4 ] &&
	run_as "$U2" ls "$M/u" | grep -qx y &&
	run_as "$U1" chmod 700 "$M/u" &&
	! run_as "$U2" ls "$M/u" 2>/dev/null &&
	! run_as "$U2" cat "$M/u/x" 2>/dev/null &&
	[ "$(run_as "$U1" cat "$M/u/x")" = two2 ]
'

test_expect_success 'a collection leaves the warm view right' '
	cp "$M/m/big" "$M/m/big2" && sha=$(sha256sum <"$M/m/big") &&
	rm "$M/m/big" &&
	echo gc >"$MNT/.llmfs/gc" &&
	[ "$(sha256sum <"$M/m/big2")" = "$sha" ] &&
	! ls "$M/m" | grep -qx big && [ "$(stat -c %s "$M/m/big2")" = 3000000 ]
'

test_expect_success 'the warm view is a fresh mount s' '
	view "$M" >"$TEST_DIR/warm" &&
	daemon_stop && daemon_start &&
	view "$M" >"$TEST_DIR/fresh" &&
	cmp "$TEST_DIR/warm" "$TEST_DIR/fresh" &&
	daemon_stop
'

test_done
