#!/bin/sh
# Tasks written by a local user.  The daemon runs as root; a throwaway user
# makes a task folder under paths/ and writes a task whose check.command
# records who ran it: it must run as that user, with that user's groups and
# a clean environment, never as root.  The same user publishes a cheap
# model card that names only an endpoint: root's tasks must never be sent
# to it (it would receive root's prompts), while the user's own tasks may
# use it, and root's own card answers root's tasks (so the checks below can
# fail).
. "$(dirname "$0")/lib.sh"

require_cmd useradd userdel setpriv python3
M=$MNT/models
U=llmfs-tasks-$$
OUT=

useradd -M -N -r -s /bin/false "$U" >/dev/null 2>&1 || skip_all "useradd failed"
UID_U=$(id -u "$U")
GID_U=$(id -g "$U")
chmod 755 "$TEST_DIR"
trap 'rc_=$?; userdel "$U" 2>/dev/null; [ -n "$OUT" ] && rm -rf "$OUT"; (exit $rc_); cleanup' EXIT

# as_user CMD...: runs CMD as the throwaway user, with no supplementary
# groups.
as_user() { run_as "$U" "$@"; }

# run_task WHO NAME JSON: WHO (root or user) makes task NAME, writes JSON
# and waits for its end; the status lands in $TEST_DIR/NAME.status.
run_task() {
	rt_as=
	[ "$1" = user ] && rt_as=as_user
	$rt_as mkdir "$MNT/paths/$2" &&
	printf '%s\n' "$3" | $rt_as sh -c 'cat >"$0"' "$MNT/paths/$2/task" &&
	{ $rt_as timeout 60 cat "$MNT/paths/$2/result" >"$TEST_DIR/$2.result" 2>&1; :; } &&
	$rt_as cat "$MNT/paths/$2/status" >"$TEST_DIR/$2.status" &&
	say "task $2 ($1): $(cat "$TEST_DIR/$2.status")"
}

status_is() { [ "$(cat "$TEST_DIR/$1.status")" = "$2" ]; }

test_expect_success 'set up: an endpoint, root'"'"'s card, the user'"'"'s cheap card' '
	OUT=$(mktemp -d /tmp/llmfs-tasks-out.XXXXXX) && chmod 1777 "$OUT" &&
	spawn listen python3 "$MOUNT_HELPERS/chat_stub.py" "$TEST_DIR/calls.log" "$TEST_DIR/port" &&
	wait_for 20 "[ -f \"$TEST_DIR/port\" ]" &&
	PORT=$(cat "$TEST_DIR/port") &&
	daemon_start &&
	mkdir "$M/good" &&
	printf "{\"endpoint\": \"http://127.0.0.1:%s/v1\", \"price_in\": 50, \"price_out\": 50, \"skills\": [\"general\"]}\n" "$PORT" >"$M/good/card.json" &&
	mkdir "$M/cheap" && chown "$U" "$M/cheap" &&
	printf "{\"endpoint\": \"http://127.0.0.1:%s/v1\", \"price_in\": 0, \"price_out\": 0}\n" "$PORT" |
		as_user sh -c "cat >\"\$0\"" "$M/cheap/card.json" &&
	ls -ln "$M" "$M/cheap" &&
	[ "$(stat -c %u "$M/cheap/card.json")" = "$UID_U" ]
'

test_expect_success 'root'"'"'s card answers root'"'"'s task (the checks can fail)' '
	run_task root r0 "{\"prompt\": \"root-general-$$\", \"task_type\": \"general\"}" &&
	status_is r0 done && cat "$TEST_DIR/calls.log" &&
	grep -q "model=good prompt=root-general-$$" "$TEST_DIR/calls.log"
'

test_expect_success 'a user'"'"'s check.command runs as that user, not root' '
	T="{\"prompt\": \"u1\", \"check\": {\"command\": [\"sh\", \"-c\", \"id -u >$OUT/u1.uid; id -G >$OUT/u1.groups; env >$OUT/u1.env; pwd >$OUT/u1.pwd; cat /etc/shadow >$OUT/u1.shadow 2>/dev/null; exit 0\"]}}" &&
	run_task user u1 "$T" &&
	say "check ran as uid $(cat "$OUT/u1.uid" 2>/dev/null), groups $(cat "$OUT/u1.groups" 2>/dev/null)" &&
	[ "$(cat "$OUT/u1.uid")" = "$UID_U" ] &&
	[ "$(cat "$OUT/u1.groups")" = "$GID_U" ] &&
	! grep -q "^root:" "$OUT/u1.shadow" &&
	cat "$OUT/u1.env" &&
	grep -qx "PATH=/usr/bin:/bin" "$OUT/u1.env" &&
	! grep -q "^HOME=/root" "$OUT/u1.env" &&
	! grep -q "LLMFS" "$OUT/u1.env" &&
	status_is u1 done
'

test_expect_success 'a check the user may not run fails the step, not as root' '
	T="{\"prompt\": \"u2\", \"check\": {\"command\": [\"sh\", \"-c\", \"id -u >$OUT/u2.uid; cat /etc/shadow >/dev/null\"]}}" &&
	run_task user u2 "$T" &&
	[ "$(cat "$OUT/u2.uid")" = "$UID_U" ] &&
	case $(cat "$TEST_DIR/u2.status") in failed*) ;; *) false ;; esac
'

test_expect_success 'root'"'"'s check.command still runs as root' '
	T="{\"prompt\": \"r1\", \"check\": {\"command\": [\"sh\", \"-c\", \"id -u >$OUT/r1.uid\"]}}" &&
	run_task root r1 "$T" && status_is r1 done &&
	[ "$(cat "$OUT/r1.uid")" = 0 ]
'

test_expect_success 'root'"'"'s task pinned to the user'"'"'s card is refused' '
	run_task root r2 "{\"prompt\": \"root-secret-pinned-$$\", \"model\": \"cheap\"}" &&
	cat "$TEST_DIR/calls.log" &&
	! grep -q "root-secret-pinned-$$" "$TEST_DIR/calls.log" &&
	grep -q "failed: .*cheap" "$TEST_DIR/r2.status"
'

test_expect_success 'root'"'"'s task that only the user'"'"'s card serves is not sent to it' '
	run_task root r3 "{\"prompt\": \"root-secret-typed-$$\", \"task_type\": \"translate\"}" &&
	cat "$TEST_DIR/calls.log" &&
	! grep -q "root-secret-typed-$$" "$TEST_DIR/calls.log" &&
	case $(cat "$TEST_DIR/r3.status") in failed*) ;; *) false ;; esac
'

test_expect_success 'the user'"'"'s own task may use the user'"'"'s card' '
	run_task user u3 "{\"prompt\": \"user-own-$$\", \"model\": \"cheap\"}" &&
	status_is u3 done &&
	grep -q "model=cheap prompt=user-own-$$" "$TEST_DIR/calls.log"
'

test_expect_success 'stop the endpoint' 'spawn_kill listen'

test_done
