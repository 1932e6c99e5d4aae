# lib.sh - helpers for the llmfs mount tests (POSIX sh; sourced by each test).
#
# In the style of git's t/test-lib.sh and libfuse's test/ cases: a test
# script sources this file, runs `test_expect_success "what" 'commands'`
# blocks (&&-chained shell evaluated in the script's own shell, so later
# blocks see variables set by earlier ones) and ends with `test_done`.
#
# Environment (meson passes these; see meson.build):
#   LLMFS          the daemon binary (required)
#   LLMFS_FSCK     the fsck tool (optional: tests that need it skip)
#   MOUNT_HELPERS  folder holding errno.py and the other helpers
#   MMAPCAT        the mmapcat helper binary
#   TEST_VERBOSE=1 print every block's output, not only failures'
#   TEST_KEEP=1    keep the temp folder (stores, logs) after the run
#
# Every test gets a fresh temp folder $TEST_DIR holding the store ($STORE),
# the mount point ($MNT) and the daemon's logs.  An EXIT trap always
# unmounts, kills the daemon and removes the folder.  Each daemon's stderr
# is checked when it stops and at the end: a line "llmfs: error:" that the
# test did not declare expected (ALLOWED_ERRORS, an ERE), any sanitizer
# report, or a daemon that died on its own fails the test.

set -u

: "${LLMFS:?LLMFS must name the llmfs daemon binary}"
LLMFS_FSCK=${LLMFS_FSCK:-}
MOUNT_HELPERS=${MOUNT_HELPERS:-$(cd "$(dirname "$0")" && pwd)}
MMAPCAT=${MMAPCAT:-}
TEST_VERBOSE=${TEST_VERBOSE:-}
TEST_KEEP=${TEST_KEEP:-}
# Deadlines (seconds) for things that happen "soon": a mount coming up, a
# daemon exiting, GC freeing space.  Generous: sanitizer builds are slow
# and the machine is shared.  Never used to judge speed.
MOUNT_DEADLINE=${MOUNT_DEADLINE:-30}
GC_DEADLINE=${GC_DEADLINE:-15}

test_name=$(basename "$0" .sh)
test_count=0
test_failed=0
test_skipped=0
DAEMON_PID=
DAEMON_LOG=
DAEMON_NAME=
DAEMON_DIED=
DAEMON_ARGS=
daemon_n=0
ALLOWED_ERRORS=
TEST_DIR=

say() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------------------
# Skipping and cleanup

skip_all() {
	say "1..0 # SKIP $test_name: $*"
	TEST_SKIPPED_ALL=1
	exit 77
}

require_fuse() {
	[ "$(id -u)" = 0 ] || skip_all "needs root for FUSE mounts"
	[ -c /dev/fuse ] || skip_all "/dev/fuse is missing"
	# Opening it tells whether this container may use it at all.
	( exec 3<>/dev/fuse ) 2>/dev/null || skip_all "/dev/fuse cannot be opened"
	command -v fusermount3 >/dev/null 2>&1 || skip_all "fusermount3 is missing"
	command -v mountpoint >/dev/null 2>&1 || skip_all "mountpoint is missing"
	[ -x "$LLMFS" ] || { say "Bail out! LLMFS=$LLMFS is not executable"; exit 1; }
}

require_cmd() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip_all "$c is missing"
	done
}

# The training corpus (TRAIN_CORPUS, from the shared data folder): a test that trains
# cannot run without it, and a missing one is an error, not a skip.
require_corpus() {
	[ -n "${TRAIN_CORPUS:-}" ] && [ -f "$TRAIN_CORPUS" ] && return 0
	say "Bail out! the training corpus is missing: ${TRAIN_CORPUS:-TRAIN_CORPUS unset}" \
	    "(the shared data folder, README.md \"Tests\")"
	exit 1
}

# Is pid a live process (not a zombie waiting for us)?
pid_alive() {
	[ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# is_mounted DIR: DIR is a mount point, even one whose daemon died (where
# mountpoint(1) and stat fail with ENOTCONN).
is_mounted() {
	awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts
}

# show_log LOG: a sanitizer report from its start, else the log's tail.
show_log() {
	if grep -qE '^==[0-9]+==(ERROR|WARNING)|runtime error:' "$1"; then
		# the daemon's own lines (and libfuse's) first, then the report
		grep -vE '^ *#[0-9]|^==[0-9]|^ *0x|^$|^(Direct|Indirect) leak|^SUMMARY|^Shadow|^  [A-Z]' "$1" |
			tail -20 | sed 's/^/#   /'
		sed -n '/^==[0-9]*==\(ERROR\|WARNING\)\|runtime error:/,$p' "$1" |
			grep -v '^ *0x[0-9a-f]*: \|Shadow\|redzone\|Addressable\|Freed heap\|Poisoned\|Container overflow\|Array cookie\|Intra object\|ASan internal\|Global init\|Stack \(after\|use\|left\|mid\|right\)' |
			head -70 | sed 's/^/#   /'
	else
		tail -40 "$1" | sed 's/^/#   /'
	fi
}

cleanup() {
	rc=$?
	set +e
	trap - EXIT INT TERM HUP
	if [ -n "$DAEMON_PID" ] && pid_alive "$DAEMON_PID"; then
		fusermount3 -u "$MNT" 2>/dev/null
		i=0
		while pid_alive "$DAEMON_PID" && [ $i -lt 50 ]; do
			sleep 0.1; i=$((i + 1))
		done
		pid_alive "$DAEMON_PID" && kill -KILL "$DAEMON_PID" 2>/dev/null
	fi
	if [ -n "$TEST_DIR" ]; then
		# Spawned helpers still running (a writer waiting to be killed)
		# would hold the test's output open: end them.
		for pf in "$TEST_DIR"/*.pid; do
			[ -f "$pf" ] || continue
			p=$(cat "$pf")
			pid_alive "$p" && kill -KILL "$p" 2>/dev/null
		done
		# Every mount under TEST_DIR, live or dead, deepest first.
		awk -v d="$TEST_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts |
			sort -r | while IFS= read -r m; do
				fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
			done
		if [ -n "$TEST_KEEP" ]; then
			say "# kept $TEST_DIR"
		else
			# --one-file-system: never descend into a mount left behind.
			rm -rf --one-file-system "$TEST_DIR"
		fi
	fi
	exit $rc
}

trap cleanup EXIT
trap 'say "# interrupted"; exit 130' INT TERM HUP

TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/llmfs-$test_name.XXXXXX") ||
	{ say "Bail out! mktemp"; exit 1; }
STORE=$TEST_DIR/store
MNT=$TEST_DIR/mnt
mkdir -p "$MNT"

# python3 is Debian's interpreter where it is installed, whatever comes first in PATH: a
# version manager's shim there (pyenv's) costs 0.1 s of CPU and up to a second under load a
# call, and the tests call python3 hundreds of times (errno.py for each expect_errno).  What
# they run through this name is the standard library only.  A link first in PATH, not a shell
# function: a python3 spawned in the background must be the process whose pid is killed.
if [ -x /usr/bin/python3 ]; then
	mkdir "$TEST_DIR/.path" && ln -s /usr/bin/python3 "$TEST_DIR/.path/python3" &&
		PATH=$TEST_DIR/.path:$PATH && export PATH
fi

# ---------------------------------------------------------------------------
# The daemon

# spawn NAME CMD...: runs CMD in the background; its pid lands in
# $TEST_DIR/NAME.pid (and SPAWN_PID), its exit status in $TEST_DIR/NAME.rc
# once it ends.  (The status is recorded by a subshell that waits for its
# only child, so no shell's job bookkeeping can lose it.)
spawn() {
	sp_name=$1; shift
	rm -f "$TEST_DIR/$sp_name.pid" "$TEST_DIR/$sp_name.rc"
	(
		"$@" &
		echo $! >"$TEST_DIR/$sp_name.pid.tmp"
		mv "$TEST_DIR/$sp_name.pid.tmp" "$TEST_DIR/$sp_name.pid"
		wait $!
		echo $? >"$TEST_DIR/$sp_name.rc.tmp"
		mv "$TEST_DIR/$sp_name.rc.tmp" "$TEST_DIR/$sp_name.rc"
	) &
	while [ ! -f "$TEST_DIR/$sp_name.pid" ]; do sleep 0.05; done
	SPAWN_PID=$(cat "$TEST_DIR/$sp_name.pid")
}

# spawn_wait NAME [deadline]: waits for a spawned command to end; sets
# EXIT_STATUS.  Returns 1 if it is still running at the deadline.
spawn_wait() {
	end=$(( $(date +%s) + ${2:-$MOUNT_DEADLINE} ))
	while [ ! -f "$TEST_DIR/$1.rc" ]; do
		if [ "$(date +%s)" -ge "$end" ]; then
			say "# $1 (pid $(cat "$TEST_DIR/$1.pid")) still running after ${2:-$MOUNT_DEADLINE}s"
			return 1
		fi
		sleep 0.1
	done
	EXIT_STATUS=$(cat "$TEST_DIR/$1.rc")
}

# spawn_kill NAME...: kills spawned commands (if still running) and waits
# for them to end.
spawn_kill() {
	for sk in "$@"; do
		pid_alive "$(cat "$TEST_DIR/$sk.pid")" && kill "$(cat "$TEST_DIR/$sk.pid")" 2>/dev/null
		spawn_wait "$sk" || return 1
	done
}

# spawn_llmfs NAME LOG ARGS...: spawns "$LLMFS ARGS..." with stderr to LOG.
spawn_llmfs() {
	sl_name=$1 sl_log=$2; shift 2
	spawn "$sl_name" sh -c 'exec "$@" 2>"$0"' "$sl_log" "$LLMFS" "$@"
}

# daemon_start [llmfs options...]: starts "$LLMFS --store $STORE -f ... $MNT"
# in the background and waits until the tree answers.  Fails (returns 1,
# showing the log) if the daemon exits or the deadline passes.
daemon_start() {
	daemon_n=$((daemon_n + 1))
	DAEMON_NAME=daemon.$daemon_n
	DAEMON_LOG=$TEST_DIR/$DAEMON_NAME.log
	DAEMON_ARGS="$*"
	spawn_llmfs "$DAEMON_NAME" "$DAEMON_LOG" --store "$STORE" -f "$@" "$MNT"
	DAEMON_PID=$SPAWN_PID
	wait_mounted "$MNT" "$DAEMON_PID" "$DAEMON_LOG"
}

# wait_mounted MNT PID LOG
wait_mounted() {
	end=$(( $(date +%s) + MOUNT_DEADLINE ))
	while :; do
		if mountpoint -q "$1" && [ -f "$1/.llmfs/status" ]; then
			return 0
		fi
		if ! pid_alive "$2"; then
			say "# daemon (pid $2) exited before mounting $1; its log:"
			sed 's/^/#   /' "$3"
			return 1
		fi
		if [ "$(date +%s)" -ge "$end" ]; then
			say "# $1 not mounted after ${MOUNT_DEADLINE}s; daemon log:"
			sed 's/^/#   /' "$3"
			return 1
		fi
		sleep 0.1
	done
}

# check_log LOG: no unexpected error lines, no sanitizer reports.
check_log() {
	bad=$(grep -E 'llmfs: error:' "$1" |
		{ if [ -n "$ALLOWED_ERRORS" ]; then grep -Ev -- "$ALLOWED_ERRORS"; else cat; fi; })
	san=$(grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak)Sanitizer|ThreadSanitizer' "$1")
	ok=0
	if [ -n "$bad" ]; then
		say "# unexpected error lines in $1:"
		printf '%s\n' "$bad" | sed 's/^/#   /'
		ok=1
	fi
	if [ -n "$san" ]; then
		say "# sanitizer report in $1:"
		show_log "$1"
		ok=1
	fi
	return $ok
}

# daemon_stop [how]: how = umount (fusermount3 -u, default) or a signal
# name (TERM, HUP, INT).  The daemon must exit 0 within the deadline, the mount must be
# gone and its log clean.
daemon_stop() {
	how=${1:-umount}
	[ -n "$DAEMON_PID" ] || { say "# no daemon to stop"; return 1; }
	if ! pid_alive "$DAEMON_PID"; then
		spawn_wait "$DAEMON_NAME" 5
		say "# daemon (pid $DAEMON_PID) had died (status $EXIT_STATUS); log:"
		show_log "$DAEMON_LOG"
		DAEMON_PID=
		return 1
	fi
	case $how in
	umount) fusermount3 -u "$MNT" || { say "# fusermount3 -u failed"; return 1; } ;;
	TERM|HUP|INT) kill -s "$how" "$DAEMON_PID" ;;
	*) say "# daemon_stop: bad how $how"; return 1 ;;
	esac
	if ! spawn_wait "$DAEMON_NAME"; then
		kill -KILL "$DAEMON_PID"
		DAEMON_PID=
		return 1
	fi
	pid=$DAEMON_PID
	DAEMON_PID=
	if [ "$EXIT_STATUS" != 0 ]; then
		say "# daemon (pid $pid) exited with status $EXIT_STATUS; log:"
		show_log "$DAEMON_LOG"
		return 1
	fi
	if is_mounted "$MNT"; then
		say "# $MNT still mounted after the daemon exited"
		return 1
	fi
	check_log "$DAEMON_LOG"
}

# daemon_kill9: kill -9, then clear the dead mount (ENOTCONN) away.
daemon_kill9() {
	kill -KILL "$DAEMON_PID" || return 1
	spawn_wait "$DAEMON_NAME"
	DAEMON_PID=
	fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	! is_mounted "$MNT" && check_log "$DAEMON_LOG"
}

# daemon_restart: stop (its failure is reported) and start again either way,
# so that one bad stop does not leave the later blocks without a mount.
daemon_restart() {
	daemon_stop
	dr=$?
	# shellcheck disable=SC2086
	daemon_start $DAEMON_ARGS && return $dr
}

# The daemon must still be alive (called after every block).
daemon_alive_check() {
	[ -z "$DAEMON_PID" ] && return 0
	pid_alive "$DAEMON_PID" && return 0
	spawn_wait "$DAEMON_NAME" 5
	say "# the daemon died (status $EXIT_STATUS) during this block; its log:"
	show_log "$DAEMON_LOG"
	DAEMON_PID=
	DAEMON_DIED=1
	return 1
}

# ---------------------------------------------------------------------------
# Test blocks

test_expect_success() {
	test_count=$((test_count + 1))
	out=$TEST_DIR/block.$test_count.out
	# A function, so that "return 1" inside a block ends that block.
	eval "test_body_() {
$2
}"
	t0_=$(date +%s)
	test_body_ >"$out" 2>&1 </dev/null
	r=$?
	daemon_alive_check >>"$out" 2>&1 || r=1
	if [ $r -eq 0 ]; then
		say "ok $test_count - $1"
		# the block's wall time, for whoever trims the suite's run time
		say "# $(($(date +%s) - t0_)) s"
		[ -n "$TEST_VERBOSE" ] && sed 's/^/#   /' "$out"
	else
		test_failed=$((test_failed + 1))
		say "not ok $test_count - $1"
		printf '%s\n' "$2" | sed 's/^/#	/'
		say "# output (exit $r):"
		tail -100 "$out" | sed 's/^/#   /'
	fi
	if [ -n "$DAEMON_DIED" ]; then
		# Every later block would fail with ENOTCONN: stop here.
		say "Bail out! the daemon died unexpectedly (see above)"
		say "# $test_name: failed $test_failed of $test_count (and bailed out)"
		exit 1
	fi
	return 0
}

# test_skip "what" "why"
test_skip() {
	test_count=$((test_count + 1))
	test_skipped=$((test_skipped + 1))
	say "ok $test_count # SKIP $1 ($2)"
}

test_done() {
	# Every daemon log of the run, once more: a daemon still running at
	# the end is stopped here so that its log is complete.
	if [ -n "$DAEMON_PID" ]; then
		test_expect_success "daemon stops cleanly at the end" 'daemon_stop'
	fi
	say "1..$test_count"
	if [ $test_failed -gt 0 ]; then
		say "# $test_name: failed $test_failed of $test_count"
		exit 1
	fi
	if [ $test_skipped -eq $test_count ] && [ $test_count -gt 0 ]; then
		say "# $test_name: all $test_count skipped"
		exit 77
	fi
	say "# $test_name: passed all $test_count ($test_skipped skipped)"
	exit 0
}

# ---------------------------------------------------------------------------
# Assertions and data

# expect_errno ERRNAME OP PATH [PATH2]: the operation fails with exactly
# that errno ("OK" expects success).  See errno.py for the operations.
expect_errno() {
	want=$1; shift
	got=$(python3 "$MOUNT_HELPERS/errno.py" "$@") || { say "errno.py failed: $got"; return 1; }
	if [ "$got" != "$want" ]; then
		say "$*: expected $want, got $got"
		return 1
	fi
}

# run_as USER CMD...: runs CMD as USER (a name or uid) with USER's own
# group and no supplementary groups (needs setpriv: require_cmd setpriv).
run_as() {
	ra_u=$1; shift
	setpriv --reuid="$ra_u" --regid="$(id -g "$ra_u")" --clear-groups "$@"
}

# status_get KEY [FILE]: the value of KEY in .llmfs/status (or in FILE, one reading of it).
status_get() {
	v=$(sed -n "s/^$1: *//p" "${2:-$MNT/.llmfs/status}")
	[ -n "$v" ] || { say "status has no $1" >&2; return 1; }
	printf '%s\n' "$v"
}

# wait_for DEADLINE 'shell condition': polls until it holds.
wait_for() {
	end=$(( $(date +%s) + $1 ))
	while ! eval "$2"; do
		if [ "$(date +%s)" -ge "$end" ]; then
			say "# condition not met after $1s: $2"
			return 1
		fi
		sleep 0.2
	done
}

# make_tree DIR SEED: a small model-like tree: random (incompressible)
# and compressible files, nested folders, an empty file, odd names.
make_tree() {
	mkdir -p "$1/onnx/sub" "$1/original" &&
	head -c 1500000 /dev/urandom >"$1/model.safetensors" &&
	# compressible: repeated text with the seed in it
	yes "layer $2 weight 0.0001 0.0002 0.0003" | head -c 1200000 >"$1/tokenizer.json" &&
	head -c 700000 /dev/urandom >"$1/onnx/model.onnx" &&
	yes "onnx $2" | head -c 300000 >"$1/onnx/sub/data.txt" &&
	head -c 200000 /dev/urandom >"$1/original/consolidated.pth" &&
	printf '{"seed": "%s"}\n' "$2" >"$1/config.json" &&
	: >"$1/empty" &&
	printf 'x\n' >"$1/name with spaces" &&
	printf 'y\n' >"$1/ünïcödé-名前"
}

# same_tree A B: identical files, names and types (diff -r), and no
# .smip anywhere in B.
same_tree() {
	diff -r "$1" "$2" || return 1
	if find "$2" -name .smip | grep -q .; then
		say "$2 holds a .smip"
		return 1
	fi
}

# sums DIR: sorted "sha256  relpath" lines for every file under DIR.
sums() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

require_fuse
require_cmd python3 sha256sum

# fsck_store [--repair]: runs llmfs-fsck on $STORE (daemon stopped); its
# output lands in $TEST_DIR/fsck.out, its exit status in FSCK_STATUS.
# Returns 0 whatever the status; have_fsck tells whether it exists.
have_fsck() {
	[ -n "$LLMFS_FSCK" ] && [ -x "$LLMFS_FSCK" ]
}
fsck_store() {
	"$LLMFS_FSCK" "$@" --store "$STORE" >"$TEST_DIR/fsck.out" 2>&1
	FSCK_STATUS=$?
	say "# llmfs-fsck $* exited $FSCK_STATUS:"
	sed 's/^/#   /' "$TEST_DIR/fsck.out"
	check_log "$TEST_DIR/fsck.out" || FSCK_STATUS=99
	return 0
}

# small_store SIZE: a store on a tmpfs of SIZE (e.g. 40m) at $TEST_DIR/small,
# for tests of a full disk; sets SMALL and STORE.  Returns 1 where no tmpfs
# can be mounted.  The EXIT trap unmounts it with the rest of $TEST_DIR.
small_store() {
	SMALL=$TEST_DIR/small
	mkdir -p "$SMALL" &&
	mount -t tmpfs -o size="$1" llmfs-test "$SMALL" 2>/dev/null || return 1
	STORE=$SMALL/store
}

# swap_entries PATH: swaps the first two entries of the chunk list of
# models/PATH in the catalog (the daemon stopped), as a damaged catalog could.
swap_entries() {
	python3 - "$STORE/catalog.db" "$1" <<-'EOF'
	import sqlite3, sys
	db = sqlite3.connect(sys.argv[1])
	ino = 16
	for name in sys.argv[2].split("/"):
	    ino = db.execute("SELECT ino FROM inodes WHERE parent = ? AND name = ?",
	                     (ino, name)).fetchone()[0]
	blob = db.execute("SELECT chunks FROM inodes WHERE ino = ?", (ino,)).fetchone()[0]
	assert len(blob) >= 40 and blob[:20] != blob[20:40]
	db.execute("UPDATE inodes SET chunks = ? WHERE ino = ?",
	           (blob[20:40] + blob[:20] + blob[40:], ino))
	db.commit()
	EOF
}
