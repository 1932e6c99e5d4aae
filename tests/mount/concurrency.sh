#!/bin/sh
# Several readers and writers at once (the multi-threaded FUSE loop):
# writers of different files, writers of the same file with the same
# content, readers of committed files, in-tree copies, renames and removes,
# all in parallel; then everything is verified, and again after a remount.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models
NW=4   # writers of distinct files
NS=3   # writers of one shared file
NR=3   # readers

# job CMD...: runs CMD in the background, recording its status in a file.
jobs_n=0
jobs_pids=
job() {
	jobs_n=$((jobs_n + 1))
	( "$@" >"$TEST_DIR/job.$jobs_n.out" 2>&1; echo $? >"$TEST_DIR/job.$jobs_n.rc" ) &
	jobs_pids="$jobs_pids $!"
}
# jobs_wait: waits for all jobs (not the daemon); every one must have
# exited 0.  A hung job is ended by the test's own meson timeout.
jobs_wait() {
	# shellcheck disable=SC2086
	wait $jobs_pids
	jobs_pids=
	i=1; ok=0
	while [ $i -le $jobs_n ]; do
		rc=$(cat "$TEST_DIR/job.$i.rc" 2>/dev/null || echo missing)
		if [ "$rc" != 0 ]; then
			echo "job $i exited $rc:"; cat "$TEST_DIR/job.$i.out"; ok=1
		fi
		i=$((i + 1))
	done
	rm -f "$TEST_DIR"/job.*; jobs_n=0
	return $ok
}

writer() { # N: writes w$N (new data) twice over, with a rewrite in between
	cp "$SRC/w$1" "$M/c/w$1" && cmp "$SRC/w$1" "$M/c/w$1" &&
	cp "$SRC/w$(( ($1 % NW) + 1 ))" "$M/c/w$1" &&
	cp "$SRC/w$1" "$M/c/w$1"
}
shared_writer() { # several of these write the same bytes to one file
	dd if="$SRC/shared" of="$M/c/shared" bs=65536 2>/dev/null &&
	cp "$SRC/shared" "$M/c/shared"
}
reader() { # reads the stable files over and over, comparing
	for _ in 1 2 3; do
		for f in s1 s2 s3; do
			cmp "$SRC/$f" "$M/stable/$f" || return 1
		done
	done
}
copier() { # in-tree copies and renames of stable files
	for i in 1 2 3; do
		cp "$M/stable/s$i" "$M/c/copy$i" && mv "$M/c/copy$i" "$M/c/moved$i" || return 1
	done
}
churner() { # create, append, remove small files in a folder of its own
	mkdir -p "$M/churn/$1" &&
	for i in 1 2 3 4 5 6 7 8 9 10; do
		printf "%s %s\n" "$1" "$i" >>"$M/churn/$1/log" &&
		head -c 10000 "$SRC/s1" >"$M/churn/$1/t$i" || return 1
		if [ $((i % 2)) = 0 ]; then
			rm "$M/churn/$1/t$((i - 1))" || return 1
		fi
	done
}

test_expect_success 'set up: source data and committed stable files' '
	mkdir -p "$SRC" &&
	for i in $(seq $NW); do
		head -c $((600000 + i * 100000)) /dev/urandom >"$SRC/w$i" || return 1
	done &&
	{ head -c 500000 /dev/urandom; yes shared | head -c 700000; } >"$SRC/shared" &&
	head -c 1000000 /dev/urandom >"$SRC/s1" &&
	yes stable-two | head -c 1500000 >"$SRC/s2" &&
	head -c 300000 /dev/urandom >"$SRC/s3" &&
	daemon_start &&
	mkdir "$M/stable" "$M/c" &&
	cp "$SRC/s1" "$SRC/s2" "$SRC/s3" "$M/stable/"
'

test_expect_success 'parallel writers, shared writers, readers, copiers, churners' '
	for i in $(seq $NW); do job writer $i; done &&
	for i in $(seq $NS); do job shared_writer; done &&
	for i in $(seq $NR); do job reader; done &&
	job copier &&
	job churner a && job churner b &&
	jobs_wait
'

verify_all() {
	for i in $(seq $NW); do
		cmp "$SRC/w$i" "$M/c/w$i" || return 1
	done &&
	cmp "$SRC/shared" "$M/c/shared" &&
	for i in 1 2 3; do
		cmp "$SRC/s$i" "$M/stable/s$i" && cmp "$SRC/s$i" "$M/c/moved$i" &&
		[ ! -e "$M/c/copy$i" ] || return 1
	done &&
	for c in a b; do
		[ "$(wc -l <"$M/churn/$c/log")" = 10 ] &&
		[ "$(ls "$M/churn/$c" | wc -l)" = 6 ] || { ls -la "$M/churn/$c"; return 1; }
		for i in 2 4 6 8 10; do
			head -c 10000 "$SRC/s1" | cmp - "$M/churn/$c/t$i" || return 1
		done
	done &&
	[ "$(status_get files)" = $((NW + 1 + 3 + 3 + 12)) ]
}

test_expect_success 'every file has exactly its expected content' '
	verify_all
'

test_expect_success 'the manifests list exactly the files' '
	mkdir -p "$TEST_DIR/ref" &&
	cp -r "$M/c" "$TEST_DIR/ref/c" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/c/.smip/manifest.json" "$TEST_DIR/ref/c" c
'

test_expect_success 'many readers of one file at once' '
	for i in 1 2 3 4 5 6; do job cmp "$SRC/shared" "$M/c/shared"; done &&
	for i in 1 2 3; do job sha256sum "$M/stable/s1"; done &&
	jobs_wait
'

replacer() { # replaces stable/r atomically (write a temp file, mv over)
	for _ in 1 2 3 4 5 6 7 8; do
		cp "$SRC/w1" "$M/stable/.r.tmp" && mv "$M/stable/.r.tmp" "$M/stable/r" &&
		cp "$SRC/w2" "$M/stable/.r.tmp" && mv "$M/stable/.r.tmp" "$M/stable/r" || break
	done
	r=$?
	: >"$TEST_DIR/replacer.done"
	return $r
}
whole_reader() { # while the replacer runs, every open and read of stable/r
	# succeeds (rename never leaves the name missing) with all of w1 or w2
	h1=$(sha256sum <"$SRC/w1") && h2=$(sha256sum <"$SRC/w2") || return 1
	n=0
	while [ ! -e "$TEST_DIR/replacer.done" ] && [ $n -lt 500 ]; do
		h=$(sha256sum <"$M/stable/r") || { echo "read $n failed"; return 1; }
		[ "$h" = "$h1" ] || [ "$h" = "$h2" ] || { echo "mixed read of r"; return 1; }
		n=$((n + 1))
	done
	echo "$n reads"
}

test_expect_success 'readers during mv-over replacement see a whole file' '
	cp "$SRC/w2" "$M/stable/r" && rm -f "$TEST_DIR/replacer.done" &&
	job replacer && job whole_reader && job whole_reader &&
	jobs_wait
	jr=$?
	cmp "$SRC/w2" "$M/stable/r" && rm -f "$M/stable/r" "$M/stable/.r.tmp" && [ $jr = 0 ]
'

test_expect_success 'after a remount, everything is still exact' '
	daemon_restart &&
	verify_all
'

test_expect_success 'parallel removes of everything, then GC, while reading' '
	job rm -r "$M/churn" && job rm -r "$M/c" && job reader &&
	jobs_wait &&
	[ "$(ls -A "$M" | tr "\n" " ")" = "stable " ] &&
	[ "$(status_get files)" = 3 ] &&
	cmp "$SRC/s1" "$M/stable/s1"
'

test_done
