#!/bin/sh
# Model cards of a user who owns a model folder.  Root imports the user's
# folder with `cp -a` (ownership kept, as the README shows); its card.json
# names a command, or an endpoint with root's key file.  The daemon runs as
# root: the command must not run as root, and the key must not be read and
# sent.  Root's own cards of the same text still work (so the checks below
# are not vacuous), a user's card that only names an endpoint still loads
# but gets none of root's tasks (tasks_user.sh: the user's own tasks may
# use it), and --trusted-uid lets a named user's cards through.
. "$(dirname "$0")/lib.sh"

require_cmd useradd userdel
M=$MNT/models
U=llmfs-cards-$$
SECRET=sk-ROOT-ONLY-$$-secret
OUT=
# The refused cards' warnings are expected (they are not "error:" lines
# anyway); nothing else is.
ALLOWED_ERRORS=

useradd -M -N -r -s /bin/false "$U" >/dev/null 2>&1 || skip_all "useradd failed"
UID_U=$(id -u "$U")
# lib.sh's cleanup, after the throwaway user and the output folder go.
trap 'rc_=$?; userdel "$U" 2>/dev/null; [ -n "$OUT" ] && rm -rf "$OUT"; (exit $rc_); cleanup' EXIT

# run_task NAME MODEL: submits a one-step task pinned to MODEL and waits for
# its end; its status lands in $TEST_DIR/NAME.status.
run_task() {
	mkdir "$MNT/paths/$1" &&
	printf '{"prompt": "ping", "model": "%s"}\n' "$2" >"$MNT/paths/$1/task" &&
	{ timeout 60 cat "$MNT/paths/$1/result" >"$TEST_DIR/$1.result" 2>&1; :; } &&
	cat "$MNT/paths/$1/status" >"$TEST_DIR/$1.status" &&
	say "task $1 ($2): $(cat "$TEST_DIR/$1.status")"
}

# card_dir DIR OWNER JSON: a model folder with its card, owned by OWNER.
card_dir() {
	mkdir -p "$1" && printf '%s\n' "$3" >"$1/card.json" &&
	chmod 755 "$1" && chmod 644 "$1/card.json" &&
	chown -R "$2" "$1"
}

test_expect_success 'set up: a root-only key, an endpoint, the user folders' '
	OUT=$(mktemp -d /tmp/llmfs-cards-out.XXXXXX) && chmod 1777 "$OUT" &&
	printf "%s\n" "$SECRET" >"$TEST_DIR/key" && chmod 600 "$TEST_DIR/key" &&
	spawn listen python3 "$MOUNT_HELPERS/chat_stub.py" "$TEST_DIR/auth.log" "$TEST_DIR/port" &&
	wait_for 20 "[ -f \"$TEST_DIR/port\" ]" &&
	PORT=$(cat "$TEST_DIR/port") &&
	CMD="{\"command\": [\"sh\", \"-c\", \"id -u >$OUT/\$0.uid; cat\", \"X\"]}" &&
	KEYCARD="{\"endpoint\": \"http://127.0.0.1:$PORT/v1\", \"api_key_file\": \"$TEST_DIR/key\"}" &&
	PLAIN="{\"endpoint\": \"http://127.0.0.1:$PORT/v1\"}" &&
	card_dir "$TEST_DIR/src/evil" "$U" "$(printf "%s" "$CMD" | sed "s/\"X\"/\"evil\"/")" &&
	card_dir "$TEST_DIR/src/thief" "$U" "$KEYCARD" &&
	card_dir "$TEST_DIR/src/plain" "$U" "$PLAIN" &&
	card_dir "$TEST_DIR/src/ctl-cmd" root "$(printf "%s" "$CMD" | sed "s/\"X\"/\"ctl-cmd\"/")" &&
	card_dir "$TEST_DIR/src/ctl-key" root "$KEYCARD" &&
	daemon_start &&
	cp -a "$TEST_DIR/src/"* "$M/" &&
	ls -ln "$M" "$M/evil" &&
	[ "$(stat -c %u "$M/evil/card.json")" = "$UID_U" ]
'

test_expect_success 'root'"'"'s own cards work (the checks below can fail)' '
	run_task c1 ctl-cmd && [ "$(cat "$TEST_DIR/c1.status")" = done ] &&
	[ "$(cat "$OUT/ctl-cmd.uid")" = 0 ] &&
	run_task c2 ctl-key && [ "$(cat "$TEST_DIR/c2.status")" = done ] &&
	grep -q "auth=Bearer $SECRET" "$TEST_DIR/auth.log" &&
	: >"$TEST_DIR/auth.log"
'

test_expect_success 'a user'"'"'s card never runs its command as root' '
	run_task t1 evil;
	if [ -f "$OUT/evil.uid" ]; then
		say "the command ran as uid $(cat "$OUT/evil.uid")" &&
		[ "$(cat "$OUT/evil.uid")" = "$UID_U" ]
	else
		case $(cat "$TEST_DIR/t1.status") in failed*) ;; *) false ;; esac
	fi
'

test_expect_success 'a user'"'"'s card never gets root'"'"'s key' '
	run_task t2 thief;
	cat "$TEST_DIR/auth.log" &&
	! grep -q "$SECRET" "$TEST_DIR/auth.log"
'

test_expect_success 'refused cards are named, with why; plain ones load, not for root' '
	cat "$MNT/paths/.models" &&
	! grep -q "\"name\": \"evil\"" "$MNT/paths/.models" &&
	! grep -q "\"name\": \"thief\"" "$MNT/paths/.models" &&
	grep -q "\"name\": \"plain\"" "$MNT/paths/.models" &&
	grep -q "\"name\": \"ctl-cmd\"" "$MNT/paths/.models" &&
	grep "refused" "$DAEMON_LOG" &&
	grep -q "model evil: refused: it runs a command but .* belongs to uid $UID_U" "$DAEMON_LOG" &&
	grep -q "model thief: refused: it reads a key (api_key_file)" "$DAEMON_LOG" &&
	: >"$TEST_DIR/auth.log" &&
	run_task t3 plain && grep -q "failed: .*plain is neither trusted" "$TEST_DIR/t3.status" &&
	[ ! -s "$TEST_DIR/auth.log" ]
'

test_expect_success 'a card made writable by others is refused, even root'"'"'s' '
	chmod 666 "$M/ctl-cmd/card.json" && rm -f "$OUT/ctl-cmd.uid" &&
	run_task t4 ctl-cmd; [ ! -f "$OUT/ctl-cmd.uid" ] &&
	grep -q "model ctl-cmd: refused: .* writable by its group or others" "$DAEMON_LOG" &&
	chmod 644 "$M/ctl-cmd/card.json"
'

test_expect_success '--trusted-uid lets that user'"'"'s cards through' '
	daemon_stop && daemon_start --trusted-uid "$U" &&
	run_task t5 evil && [ "$(cat "$TEST_DIR/t5.status")" = done ] &&
	[ -f "$OUT/evil.uid" ]
'

test_expect_success 'cards reach the planner in memory: no copy under the store' '
	grep -q "\"name\": \"evil\"" "$MNT/paths/.models" &&
	[ ! -e "$STORE/paths/cards" ]
'

test_expect_success 'stop the endpoint' 'spawn_kill listen'

test_done
