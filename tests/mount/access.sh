#!/bin/sh
# Who can see what (docs/security.md), with two throwaway users beside
# root on a mount that allows other users:
#   paths/: a task belongs to whoever made it, private until chmod;
#   models/<m>/.smip: shown only to whoever could read every file of m;
#   net/<remote>: only root, the daemon's user and the remote's "users".
. "$(dirname "$0")/lib.sh"

require_cmd useradd userdel setpriv
# The users run errno.py with the system's python (not a shim in root's home).
PY=/usr/bin/python3
[ -x "$PY" ] || skip_all "$PY is missing"

UA=llmfs-a$$
UB=llmfs-b$$
# Removed by the EXIT trap, before lib.sh's own cleanup (which keeps $?).
trap 'rc=$?; userdel "$UA" 2>/dev/null; userdel "$UB" 2>/dev/null; (exit $rc); cleanup' EXIT
useradd -M -r -s /bin/sh "$UA" || skip_all "useradd failed"
useradd -M -r -s /bin/sh "$UB" || skip_all "useradd failed"
# mktemp made the folder 0700: the users must reach the mount point.
chmod 755 "$TEST_DIR"

# expect_as U ERRNAME OP PATH: the operation, done by U, fails with exactly
# that errno ("OK": succeeds).
expect_as() {
	ea_u=$1 ea_want=$2; shift 2
	got=$(run_as "$ea_u" "$PY" "$MOUNT_HELPERS/errno.py" "$@") || { say "errno.py: $got"; return 1; }
	if [ "$got" != "$ea_want" ]; then
		say "$ea_u: $*: expected $ea_want, got $got"
		return 1
	fi
}

# Remotes that lead nowhere (port 9, discard): what is checked is whether a
# user gets past the access check, not what the registry says.
mkdir -p "$STORE"
cat >"$STORE/remotes.json" <<EOF
{"remotes": {
  "closed": {"url": "http://127.0.0.1:9", "insecure": true, "retries": 1,
             "username": "robot", "password": "s3cret"},
  "open": {"url": "http://127.0.0.1:9", "insecure": true, "retries": 1,
           "users": ["*"]},
  "listed": {"url": "http://127.0.0.1:9", "insecure": true, "retries": 1,
             "users": ["$UB"]}}}
EOF

test_expect_success "mount with a stand-in model card" '
	daemon_start &&
	mkdir "$MNT/models/echo" &&
	echo "{\"command\": [\"cat\"], \"skills\": [\"echo\"],
	       \"description\": \"stand-in LLM: echoes its prompt\"}" \
		>"$MNT/models/echo/card.json"
'

test_expect_success "any user makes a task; it is theirs and private" '
	expect_as "$UA" OK mkdir "$MNT/paths/ta" &&
	[ "$(stat -c "%U %a" "$MNT/paths/ta")" = "$UA 700" ] &&
	echo "{\"prompt\": \"private words\", \"model\": \"echo\"}" |
		run_as "$UA" tee "$MNT/paths/ta/task" >/dev/null &&
	[ "$(run_as "$UA" timeout -s KILL 30 cat "$MNT/paths/ta/result")" = "private words" ]
'

test_expect_success "another user cannot read, write or remove it" '
	expect_as "$UB" EACCES read "$MNT/paths/ta/task" &&
	expect_as "$UB" EACCES read "$MNT/paths/ta/result" &&
	expect_as "$UB" EACCES read "$MNT/paths/ta/trace.jsonl" &&
	expect_as "$UB" EACCES open-read "$MNT/paths/ta" &&
	expect_as "$UB" EACCES open-write "$MNT/paths/ta/task" &&
	expect_as "$UB" EPERM rmdir "$MNT/paths/ta" &&
	[ "$(cat "$MNT/paths/ta/result")" = "private words" ]
'

test_expect_success "its owner may share it read-only with chmod" '
	run_as "$UA" chmod 755 "$MNT/paths/ta" &&
	run_as "$UB" cat "$MNT/paths/ta/task" | grep -q "private words" &&
	expect_as "$UB" EACCES open-write "$MNT/paths/ta/task" &&
	! run_as "$UB" chmod 777 "$MNT/paths/ta" 2>/dev/null &&
	[ "$(stat -c %a "$MNT/paths/ta")" = 755 ] &&
	run_as "$UA" chmod 700 "$MNT/paths/ta" &&
	expect_as "$UB" EACCES read "$MNT/paths/ta/task"
'

test_expect_success "the second user has tasks of their own; the owner removes theirs" '
	expect_as "$UB" OK mkdir "$MNT/paths/tb" &&
	expect_as "$UA" EACCES open-read "$MNT/paths/tb" &&
	expect_as "$UB" OK rmdir "$MNT/paths/tb" &&
	expect_as "$UA" OK rmdir "$MNT/paths/ta"
'

test_expect_success ".smip is refused to a user who cannot read every file" '
	mkdir -p "$MNT/models/m/sub" &&
	echo public >"$MNT/models/m/pub.txt" &&
	echo hidden >"$MNT/models/m/sub/secret.bin" &&
	chmod 600 "$MNT/models/m/sub/secret.bin" &&
	grep -q secret.bin "$MNT/models/m/.smip/manifest.json" &&
	expect_as "$UA" OK read "$MNT/models/m/pub.txt" &&
	expect_as "$UA" EACCES read "$MNT/models/m/.smip/manifest.json" &&
	expect_as "$UA" EACCES read "$MNT/models/m/.smip/info" &&
	expect_as "$UA" EACCES read "$MNT/models/m/.smip/tensors" &&
	chmod 700 "$MNT/models/m/sub" && chmod 644 "$MNT/models/m/sub/secret.bin" &&
	expect_as "$UA" EACCES read "$MNT/models/m/.smip/manifest.json"
'

test_expect_success ".smip is shown once every file is readable" '
	chmod 755 "$MNT/models/m/sub" &&
	run_as "$UA" cat "$MNT/models/m/.smip/manifest.json" | grep -q secret.bin
'

test_expect_success "a remote without a users list is for root only" '
	[ "$(stat -c %a "$MNT/net/closed")" = 700 ] &&
	expect_as "$UA" EACCES open-read "$MNT/net/closed" &&
	expect_as "$UA" EACCES stat "$MNT/net/closed/some/repo"
'

test_expect_success "a remote lets in the users it lists, and no one else" '
	expect_as "$UA" EACCES open-read "$MNT/net/listed" &&
	expect_as "$UA" EACCES stat "$MNT/net/listed/repo" &&
	got=$(run_as "$UB" "$PY" "$MOUNT_HELPERS/errno.py" open-read "$MNT/net/listed") &&
	say "listed, as $UB: $got" && [ "$got" != EACCES ] &&
	got=$(run_as "$UA" "$PY" "$MOUNT_HELPERS/errno.py" open-read "$MNT/net/open") &&
	say "open, as $UA: $got" && [ "$got" != EACCES ]
'

test_done
