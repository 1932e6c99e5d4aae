#!/bin/sh
# paths/: readers waiting for a result hold no daemon thread, and idle
# tasks hold no descriptor.
#
# Many readers of a task that never ends must leave the rest of the tree
# answering, must die at kill -9, and must not keep the daemon from
# stopping on SIGTERM.  A thousand idle tasks under a low descriptor limit
# must not break writes.  Deadlines here only tell "answers" from "hangs";
# no speed is judged.
. "$(dirname "$0")/lib.sh"

READERS=80
# More than the daemon's FUSE worker threads (64): before the fix, each
# waiting reader held one, and the 65th request of any kind never ran.

# Stand-in models (local commands in place of LLMs): "hang" never answers
# (sleep outlives the test; a removed or cancelled task kills it), "slow"
# answers its prompt back after a second.
make_cards() {
	mkdir -p "$MNT/models/hang" "$MNT/models/slow" &&
	echo '{"command": ["sleep", "600"], "timeout_s": 600, "skills": ["hang"],
	       "description": "stand-in LLM that never answers"}' >"$MNT/models/hang/card.json" &&
	echo '{"command": ["sh", "-c", "sleep 1; cat"], "skills": ["slow"],
	       "description": "stand-in LLM: echoes its prompt"}' >"$MNT/models/slow/card.json"
}

# start_readers PREFIX N FILE: N background `cat FILE`, spawned as PREFIX.i.
start_readers() {
	i=1
	while [ $i -le "$2" ]; do
		spawn "$1.$i" sh -c 'exec cat "$0" >/dev/null 2>&1' "$3" || return 1
		i=$((i + 1))
	done
}

# readers_alive PREFIX N: how many of them still run.
readers_alive() {
	n=0 i=1
	while [ $i -le "$2" ]; do
		pid_alive "$(cat "$TEST_DIR/$1.$i.pid")" && n=$((n + 1))
		i=$((i + 1))
	done
	echo $n
}

kill_readers() {
	i=1
	while [ $i -le "$2" ]; do
		kill -KILL "$(cat "$TEST_DIR/$1.$i.pid")" 2>/dev/null
		i=$((i + 1))
	done
}

test_expect_success "mount with stand-in model cards" '
	daemon_start &&
	make_cards
'

test_expect_success "a task that never ends" '
	mkdir "$MNT/paths/stuck" &&
	echo "{\"prompt\": \"hi\", \"model\": \"hang\"}" >"$MNT/paths/stuck/task" &&
	wait_for 20 "grep -q running \"$MNT/paths/stuck/status\""
'

test_expect_success "$READERS readers wait on its result" '
	start_readers r "$READERS" "$MNT/paths/stuck/result" &&
	# let them reach the daemon; none may finish: the task never ends
	sleep 2 &&
	[ "$(readers_alive r "$READERS")" = "$READERS" ]
'

test_expect_success "ls, cat and stat answer while they wait" '
	timeout -s KILL 20 ls "$MNT/models" >"$TEST_DIR/ls.out" &&
	grep -qx hang "$TEST_DIR/ls.out" &&
	timeout -s KILL 20 cat "$MNT/models/slow/card.json" | grep -q stand-in &&
	timeout -s KILL 20 stat "$MNT/paths/stuck/status" >/dev/null &&
	timeout -s KILL 20 cat "$MNT/paths/stuck/status" | grep -q running &&
	echo x | timeout -s KILL 20 tee "$MNT/models/hang/note" >/dev/null &&
	[ "$(timeout -s KILL 20 cat "$MNT/models/hang/note")" = x ]
'

test_expect_success "a result that arrives reaches every waiting reader" '
	mkdir "$MNT/paths/later" &&
	echo "{\"prompt\": \"answer\", \"model\": \"slow\"}" >"$MNT/paths/later/task" &&
	for i in 1 2 3; do
		spawn "res.$i" sh -c "exec cat \"\$0\" >\"\$1\"" \
			"$MNT/paths/later/result" "$TEST_DIR/res.$i" || return 1
	done &&
	for i in 1 2 3; do
		spawn_wait "res.$i" 30 && [ "$EXIT_STATUS" = 0 ] &&
		[ "$(cat "$TEST_DIR/res.$i")" = answer ] || return 1
	done
'

test_expect_success "kill -9 frees every waiting reader" '
	kill_readers r "$READERS" &&
	i=1 &&
	while [ $i -le "$READERS" ]; do
		spawn_wait "r.$i" 20 || return 1
		i=$((i + 1))
	done &&
	[ "$(readers_alive r "$READERS")" = 0 ] &&
	grep -q running "$MNT/paths/stuck/status"
'

test_expect_success "removing the task answers its readers" '
	start_readers g 3 "$MNT/paths/stuck/result" &&
	sleep 1 &&
	[ "$(readers_alive g 3)" = 3 ] &&
	rmdir "$MNT/paths/stuck" &&
	for i in 1 2 3; do
		spawn_wait "g.$i" 20 && [ "$EXIT_STATUS" != 0 ] || return 1
	done
'

test_expect_success "SIGTERM stops the daemon while readers wait" '
	mkdir "$MNT/paths/stuck2" &&
	echo "{\"prompt\": \"hi\", \"model\": \"hang\"}" >"$MNT/paths/stuck2/task" &&
	start_readers t 10 "$MNT/paths/stuck2/result" &&
	sleep 1 &&
	daemon_stop TERM &&
	i=1 &&
	while [ $i -le 10 ]; do
		spawn_wait "t.$i" 20 || return 1
		i=$((i + 1))
	done
'

test_expect_success "the daemon raises its soft descriptor limit to the hard one" '
	ulimit -Sn 256 &&
	daemon_start &&
	lim=$(grep "^Max open files" "/proc/$DAEMON_PID/limits") &&
	say "$lim" &&
	set -- $lim &&
	[ "$4" = "$5" ]
	r=$?
	daemon_stop && return $r
'

# Last: a lower hard limit cannot be raised again in this shell.
TASKS=1200
test_expect_success "$TASKS idle tasks under a 400-descriptor limit leave writes working" '
	ulimit -n 400 &&
	daemon_start &&
	i=1 &&
	while [ $i -le $TASKS ]; do
		mkdir "$MNT/paths/idle$i" || { say "mkdir of task $i failed"; return 1; }
		i=$((i + 1))
	done &&
	[ "$(ls "$MNT/paths" | grep -c "^idle")" = $TASKS ] &&
	head -c 3000000 /dev/urandom >"$TEST_DIR/data" &&
	mkdir -p "$MNT/models/after" &&
	cp "$TEST_DIR/data" "$MNT/models/after/data" &&
	cmp "$TEST_DIR/data" "$MNT/models/after/data" &&
	rm "$MNT/models/after/data" &&
	echo "{\"prompt\": \"still\", \"model\": \"slow\"}" >"$MNT/paths/idle1/task" &&
	[ "$(timeout -s KILL 30 cat "$MNT/paths/idle1/result")" = still ] &&
	daemon_restart &&
	[ "$(cat "$MNT/models/hang/note")" = x ]
'

test_done
