#!/bin/sh
# Listings right after a mount: readdirplus hands models/ entries over with
# their attributes, so `du`, `ls -l` and `find -size` need no lookup per
# name (counted in the daemon's FUSE debug log), and what they show is the
# catalog's: sizes, kinds, inode numbers, a file open for writing included.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models

# lookups: LOOKUP requests in the daemon's debug log so far.
lookups() { grep -c 'opcode: LOOKUP' "$DAEMON_LOG"; }

test_expect_success 'set up: 60 files in two folders, then a fresh mount' '
	mkdir -p "$SRC/t/a" "$SRC/t/b" &&
	for i in $(seq 1 30); do
		head -c $((i * 97)) /dev/urandom >"$SRC/t/a/f$i" &&
		head -c $((i * 13)) /dev/urandom >"$SRC/t/b/g$i" || return 1
	done &&
	daemon_start &&
	mkdir "$M/m" &&
	cp -r "$SRC/t" "$M/m/" &&
	daemon_stop &&
	daemon_start -d
'

test_expect_success 'du and ls -l after the mount: one lookup per folder, not per file' '
	l0=$(lookups) &&
	du -s --apparent-size -B1 "$M/m/t" >"$TEST_DIR/du" &&
	ls -ln "$M/m/t/a" "$M/m/t/b" >"$TEST_DIR/ls" &&
	l1=$(lookups) &&
	say "# lookups: $((l1 - l0))" &&
	[ $((l1 - l0)) -le 10 ]
'

test_expect_success 'the attributes are the catalog s' '
	(cd "$SRC/t" && find . -type f -printf "%p %s\n" | sort) >"$TEST_DIR/want" &&
	(cd "$M/m/t" && find . -type f -printf "%p %s\n" | sort) >"$TEST_DIR/got" &&
	cmp "$TEST_DIR/want" "$TEST_DIR/got" &&
	[ "$(cut -f1 "$TEST_DIR/du")" -ge "$(cat "$SRC"/t/*/* | wc -c)" ] &&
	for f in "$M"/m/t/a/*; do
		[ "$(stat -c %i "$f")" = "$(ls -i "$f" | cut -d" " -f1)" ] || return 1
	done
'

test_expect_success 'a file open for writing lists with the size written so far' '
	python3 - "$M/m/t/a/new" "$M/m/t/a" <<-PY
	import os, sys
	f = open(sys.argv[1], "wb")
	f.write(b"x" * 5000)
	f.flush()
	sizes = {e.name: e.stat().st_size for e in os.scandir(sys.argv[2])}
	assert sizes["new"] == 5000, sizes["new"]
	f.close()
	PY
'

test_expect_success 'a name removed after a listing is gone' '
	ls -l "$M/m/t/b" >/dev/null &&
	rm "$M/m/t/b/g1" &&
	! ls "$M/m/t/b" | grep -qx g1 &&
	! stat "$M/m/t/b/g1" 2>/dev/null &&
	daemon_stop
'

test_done
