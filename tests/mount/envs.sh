#!/bin/sh
# envs/: a model of the tree run in an OCI container by runc (docs/envs.md), each isolation
# item of docs/security.md ("Environments") checked from inside the container: the model
# read-only, nosuid, nodev, noexec from this mount; / read-only; no capability and
# no_new_privs; a network namespace with loopback alone; memory (an OOM kill that state
# reports), CPU and pid limits that act.  Then: state poll()-able, the endpoint a unix socket
# the host reaches, who may make envs and write config.json, binds outside the allow-list and
# hostile env.json refused, rmdir of a running env refused, envs stopped with the daemon and
# started again with it, and nothing left behind (containers, mounts, cgroups).
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd python3 setpriv useradd userdel
PY=/usr/bin/python3
[ -x "$PY" ] || skip_all "$PY is missing"
RUNC=
for r in /usr/sbin/runc /usr/bin/runc /usr/bin/crun; do
	[ -x "$r" ] && { RUNC=$r; break; }
done
[ -n "$RUNC" ] || skip_all "no OCI runtime (runc or crun)"
"$RUNC" list >/dev/null 2>&1 || skip_all "$RUNC cannot run here"

U=llmfs-e$$
trap 'rc=$?; userdel "$U" 2>/dev/null; (exit $rc); cleanup' EXIT
useradd -M -r -s /bin/sh "$U" || skip_all "useradd failed"
chmod 755 "$TEST_DIR"

CTL="$PY $MOUNT_HELPERS/envctl.py"
E=$MNT/envs
# The scripts the containers run, bound at /b (and the helpers at /t).
mkdir "$TEST_DIR/bin"
BINDS="\"binds\": [{\"source\": \"$MOUNT_HELPERS\", \"target\": \"/t\"}, {\"source\": \"$TEST_DIR/bin\", \"target\": \"/b\"}]"
# Our containers: the daemon names them llmfs-<8 hex of its state folder>-<env>.
ours() { "$RUNC" list -q 2>/dev/null | grep -c "^llmfs-.*-$1\$"; }
state_is() { wait_for 30 "grep -q \"^$2\" \"$E/$1/state\""; }
# env NAME [LIMITS]: an env that runs /b/NAME.sh with the limits (a JSON object).
env_sh() {
	mkdir "$E/$1" &&
	printf '{"model": "m", "command": ["/bin/sh", "/b/%s.sh"], %s%s}\n' "$1" "$BINDS" \
		"${2:+, \"limits\": $2}" >"$E/$1/env.json"
}
# run_in NAME [LIMITS] <script: the env run to its end; its log in $TEST_DIR/NAME.out.
run_in() {
	cat >"$TEST_DIR/bin/$1.sh" && env_sh "$@" &&
	echo start >"$E/$1/control" && state_is "$1" stopped &&
	cp "$E/$1/log" "$TEST_DIR/$1.out"
}
DAEMON_OPTS="--env-bind $MOUNT_HELPERS --env-bind $TEST_DIR/bin"

test_expect_success "the daemon mounts with envs/ beside the other subtrees" '
	daemon_start $DAEMON_OPTS &&
	[ -d "$E" ] && ls "$MNT" | grep -qx envs &&
	mkdir "$MNT/models/m" && printf "weights" >"$MNT/models/m/model.bin" &&
	printf "#!/bin/sh\necho ran\n" >"$MNT/models/m/tool.sh" && chmod 755 "$MNT/models/m/tool.sh"
'

test_expect_success "mkdir makes an env with its files; state says created" '
	mkdir "$E/a" &&
	[ "$(ls "$E/a" | tr "\n" " ")" = "config.json control endpoint env.json log state " ] &&
	[ "$(cat "$E/a/state")" = created ] && [ -z "$(cat "$E/a/endpoint")" ]
'

test_expect_success "a command runs in the container; state goes to stopped (exit N)" '
	run_in run1 <<-\EOF &&
	cat /mnt/models/model.bin; echo; exit 3
	EOF
	grep -qx weights "$TEST_DIR/run1.out" &&
	[ "$(cat "$E/run1/state")" = "stopped (exit 3)" ] &&
	grep -q "\"noNewPrivileges\": true" "$E/run1/config.json"
'

test_expect_success "the model is read-only, nosuid, nodev and noexec, from this mount" '
	run_in ro <<-\EOF &&
	grep " /mnt/models " /proc/self/mountinfo
	echo x >/mnt/models/new || echo write-refused
	/mnt/models/tool.sh || echo exec-refused
	EOF
	grep " /mnt/models " "$TEST_DIR/ro.out" | grep -q "fuse.llmfs" &&
	grep " /mnt/models " "$TEST_DIR/ro.out" | grep -Eq " ro,nosuid,nodev,noexec" &&
	grep -qx write-refused "$TEST_DIR/ro.out" && grep -qx exec-refused "$TEST_DIR/ro.out" &&
	! grep -qx ran "$TEST_DIR/ro.out" && [ ! -e "$MNT/models/m/new" ]
'

test_expect_success "/ is read-only; the processes have no capability and no_new_privs" '
	run_in caps <<-\EOF &&
	touch /x || echo root-ro
	id -u
	grep -E "^(CapEff|CapPrm|CapBnd|NoNewPrivs)" /proc/self/status
	EOF
	grep -qx root-ro "$TEST_DIR/caps.out" && grep -qx 65534 "$TEST_DIR/caps.out" &&
	grep -q "^CapEff:.*0000000000000000" "$TEST_DIR/caps.out" &&
	grep -q "^CapPrm:.*0000000000000000" "$TEST_DIR/caps.out" &&
	grep -q "^CapBnd:.*0000000000000000" "$TEST_DIR/caps.out" &&
	grep -q "^NoNewPrivs:.*1" "$TEST_DIR/caps.out"
'

test_expect_success "its network namespace has loopback alone, and no way out" '
	run_in net <<-\EOF &&
	sed -n "3,\$ s/:.*//p" /proc/net/dev | tr -d " " | sed "s/^/iface /"
	/usr/bin/python3 -c "import socket; socket.create_connection((\"10.0.0.1\", 53), 2)" 2>&1 | tail -1
	EOF
	[ "$(grep ^iface "$TEST_DIR/net.out" | tr "\n" " ")" = "iface lo " ] &&
	grep -q "unreachable" "$TEST_DIR/net.out"
'

test_expect_success "memory beyond its limit is an OOM kill that state reports" '
	run_in oom "{\"memory\": \"48M\"}" <<-\EOF &&
	/usr/bin/python3 -c "x = bytearray(256 << 20); print(\"survived\")"
	EOF
	[ "$(cat "$E/oom/state")" = "stopped (OOM killed)" ] &&
	! grep -q survived "$TEST_DIR/oom.out"
'

test_expect_success "the pid limit holds: forks past it fail" '
	run_in pids "{\"pids\": 16}" <<-\EOF &&
	/usr/bin/python3 -c "
	import os, time
	n = 0
	for i in range(40):
	    try:
	        if os.fork() == 0:
	            time.sleep(3)
	            os._exit(0)
	        n += 1
	    except OSError as e:
	        print(\"fork refused:\", e.strerror)
	        break
	print(\"forked\", n)
	"
	EOF
	grep -q "^fork refused: Resource temporarily unavailable" "$TEST_DIR/pids.out" &&
	n=$(sed -n "s/^forked //p" "$TEST_DIR/pids.out") && [ "$n" -lt 16 ] && [ "$n" -gt 0 ]
'

test_expect_success "the CPU limit holds: a busy container is throttled by its quota" '
	run_in cpu "{\"cpus\": 0.2}" <<-\EOF &&
	cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>/dev/null
	/usr/bin/python3 /t/envctl.py hog
	cat /sys/fs/cgroup/cpu/cpu.stat /sys/fs/cgroup/cpu.stat 2>/dev/null | grep nr_throttled
	EOF
	grep -Eq "^(20000|20000 100000)$" "$TEST_DIR/cpu.out" &&
	t=$(sed -n "s/^nr_throttled //p" "$TEST_DIR/cpu.out") &&
	share=$(sed -n "s/^share //p" "$TEST_DIR/cpu.out") &&
	{ [ "$t" -gt 0 ] || awk "BEGIN { exit !($share < 0.25) }"; }
'

test_expect_success "state is poll()-able: a start wakes a waiting poll" '
	printf "exit 0\n" >"$TEST_DIR/bin/p.sh" && env_sh p &&
	spawn poller sh -c "$CTL poll \"$E/p/state\" 30 >\"$TEST_DIR/poll.out\"" &&
	sleep 0.5 && echo start >"$E/p/control" &&
	spawn_wait poller && grep -qx changed "$TEST_DIR/poll.out" &&
	state_is p stopped && sleep 0.3 &&
	$CTL poll "$E/p/state" 0.3 | grep -qx timeout
'

test_expect_success "the endpoint is a unix socket the host reaches" '
	printf "exec /usr/bin/python3 /t/envctl.py serve\n" >"$TEST_DIR/bin/srv.sh" && env_sh srv &&
	echo start >"$E/srv/control" && state_is srv running &&
	wait_for 30 "grep -q ^unix: \"$E/srv/endpoint\"" &&
	sock=$(sed "s/^unix://" "$E/srv/endpoint") && [ -S "$sock" ] &&
	[ "$($CTL get "$sock" /ping)" = "200 pong srv" ] &&
	[ "$($CTL get "$sock" /model)" = "200 model.bin tool.sh" ] &&
	[ "$(ours srv)" = 1 ]
'

test_expect_success "paths/ routes a task to the running env through its card" '
	mkdir "$MNT/paths/t1" &&
	printf "{\"prompt\": \"To be or not\", \"model\": \"srv\"}\n" >"$MNT/paths/t1/task" &&
	timeout 60 cat "$MNT/paths/t1/result" >"$TEST_DIR/t1.result" &&
	grep -q "env srv read: To be or not" "$TEST_DIR/t1.result"
'

test_expect_success "a user's card may not name a unix socket; root's may" '
	mkdir "$MNT/models/usock" "$MNT/models/rsock" &&
	printf "{\"endpoint\": \"http://localhost/v1\", \"unix_socket\": \"%s\"}\n" "$sock" \
		>"$MNT/models/rsock/card.json" &&
	cp "$MNT/models/rsock/card.json" "$MNT/models/usock/card.json" &&
	chown -R "$U" "$MNT/models/usock" &&
	mkdir "$MNT/paths/tr" &&
	printf "{\"prompt\": \"u\", \"model\": \"usock\"}\n" >"$TEST_DIR/tu.task" &&
	chmod 644 "$TEST_DIR/tu.task" &&
	run_as "$U" mkdir "$MNT/paths/tu" && run_as "$U" cp "$TEST_DIR/tu.task" "$MNT/paths/tu/task" &&
	printf "{\"prompt\": \"r\", \"model\": \"rsock\"}\n" >"$MNT/paths/tr/task" &&
	{ timeout 60 cat "$MNT/paths/tu/result" >"$TEST_DIR/tu.result" 2>&1; :; } &&
	timeout 60 cat "$MNT/paths/tr/result" >"$TEST_DIR/tr.result" &&
	grep -q "^failed" "$MNT/paths/tu/status" && ! grep -q "env srv read" "$TEST_DIR/tu.result" &&
	grep -q "env srv read: r" "$TEST_DIR/tr.result" &&
	rm -r "$MNT/models/usock" "$MNT/models/rsock"
'

test_expect_success "rmdir of a running env is refused; stop, then rmdir, leaves nothing" '
	expect_errno EBUSY rmdir "$E/srv" &&
	echo stop >"$E/srv/control" && state_is srv stopped &&
	[ -z "$(cat "$E/srv/endpoint")" ] && [ "$(ours srv)" = 0 ] &&
	rmdir "$E/srv" && [ ! -e "$E/srv" ] && [ ! -e "$STORE/envs/srv" ]
'

test_expect_success "paths/ never calls an env that is not running" '
	mkdir "$MNT/paths/t2" &&
	printf "{\"prompt\": \"again\", \"model\": \"srv\"}\n" >"$MNT/paths/t2/task" 2>"$TEST_DIR/t2.err";
	{ timeout 60 cat "$MNT/paths/t2/result" >"$TEST_DIR/t2.result" 2>&1; :; } &&
	! grep -q "env srv read" "$TEST_DIR/t2.result" &&
	grep -q "^failed" "$MNT/paths/t2/status"
'

test_expect_success "hostile env.json: clear errors, nothing runs" '
	mkdir "$E/bad" &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"privileged\": true}")" = EINVAL ] &&
	grep -q "^failed: unknown key \"privileged\"" "$E/bad/state" &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"../../etc\"}")" = EINVAL ] &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"command\": [\"sh\"]}")" = EINVAL ] &&
	grep -q "absolute path" "$E/bad/state" &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"rootfs\": \"debian: --hook=x\"}")" = EINVAL ] &&
	grep -q "not a Debian package name" "$E/bad/state" &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"binds\": [{\"source\": \"/etc\", \"target\": \"/x\"}]}")" = EPERM ] &&
	grep -q "outside the folders the daemon allows" "$E/bad/state" &&
	ln -s /etc "$TEST_DIR/bin/evil" &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"binds\": [{\"source\": \"$TEST_DIR/bin/evil\", \"target\": \"/x\"}]}")" = EPERM ] &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"binds\": [{\"source\": \"$TEST_DIR/bin/../../../etc\", \"target\": \"/x\"}]}")" = EINVAL ] &&
	rm "$TEST_DIR/bin/evil" &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"binds\": [{\"source\": \"$MOUNT_HELPERS\", \"target\": \"/proc\"}]}")" = EINVAL ] &&
	[ "$($CTL write "$E/bad/env.json" "{\"model\": \"m\", \"limits\": {\"memory\": \"1\"}}")" = EINVAL ] &&
	[ "$($CTL write "$E/bad/control" start)" = EINVAL ] &&
	[ "$(ours bad)" = 0 ]
'

test_expect_success "an env of a model that is not in models/ does not start" '
	mkdir "$E/nomodel" &&
	printf "{\"model\": \"absent\", \"command\": [\"/bin/true\"]}" >"$E/nomodel/env.json" &&
	[ "$($CTL write "$E/nomodel/control" start)" = ENOENT ] &&
	[ "$(cat "$E/nomodel/state")" = created ]
'

test_expect_success "only root makes envs and writes config.json; only the owner controls" '
	[ "$(run_as "$U" $CTL write "$E/a/control" start)" = EACCES ] &&
	[ "$(run_as "$U" $CTL write "$E/a/config.json" "{}")" = EACCES ] &&
	got=$(run_as "$U" "$PY" "$MOUNT_HELPERS/errno.py" mkdir "$E/mine") && [ "$got" = EACCES ] &&
	[ "$(stat -c %U "$E/a/config.json")" = root ] &&
	[ "$(stat -c %a "$E/a/state")" = 444 ]
'

test_expect_success "root writes its own config.json: used as it is" '
	printf "exit 1\n" >"$TEST_DIR/bin/custom.sh" && env_sh custom &&
	sed "s|\"/b/custom.sh\"|\"-c\", \"echo custom-spec; exit 0\"|" "$E/custom/config.json" >"$TEST_DIR/c.json" &&
	cp "$TEST_DIR/c.json" "$E/custom/config.json" &&
	echo start >"$E/custom/control" && state_is custom stopped &&
	[ "$(cat "$E/custom/state")" = "stopped (exit 0)" ] && grep -qx custom-spec "$E/custom/log"
'

test_expect_success "a daemon that stops stops its envs; started again, they run again" '
	printf "exec /usr/bin/python3 /t/envctl.py serve\n" >"$TEST_DIR/bin/keep.sh" && env_sh keep &&
	echo start >"$E/keep/control" && state_is keep running &&
	daemon_stop && [ "$(ours keep)" = 0 ] &&
	! pgrep -f "llmfs.*--env-shim.*$STORE" >/dev/null &&
	daemon_start $DAEMON_OPTS &&
	state_is keep running && [ "$(ours keep)" = 1 ] &&
	[ "$(cat "$E/run1/state")" = "stopped (exit 3)" ] &&
	echo stop >"$E/keep/control" && state_is keep stopped
'

test_expect_success "a daemon killed with -9 takes its containers down; the next one runs them again" '
	echo start >"$E/keep/control" && state_is keep running && [ "$(ours keep)" = 1 ] &&
	daemon_kill9 &&
	wait_for 30 "[ \"\$(ours keep)\" = 0 ]" &&
	wait_for 30 "! pgrep -f \"env-shim .*$STORE/envs/keep\" >/dev/null" &&
	daemon_start $DAEMON_OPTS &&
	state_is keep running && echo stop >"$E/keep/control" && state_is keep stopped
'

test_expect_success "with --env-group, the group's members make and run envs, not config.json" '
	daemon_stop && daemon_start $DAEMON_OPTS --env-group "$(id -gn "$U")" &&
	[ "$(stat -c %a "$E")" = 775 ] && [ "$(stat -c %G "$E")" = "$(id -gn "$U")" ] &&
	run_as "$U" mkdir "$E/grp" &&
	[ "$(stat -c %U "$E/grp/env.json")" = "$U" ] &&
	printf "exit 4\n" >"$TEST_DIR/bin/grp.sh" &&
	printf "{\"model\": \"m\", \"command\": [\"/bin/sh\", \"/b/grp.sh\"], %s}\n" "$BINDS" >"$TEST_DIR/grp.json" &&
	chmod 644 "$TEST_DIR/grp.json" &&
	run_as "$U" cp "$TEST_DIR/grp.json" "$E/grp/env.json" &&
	[ "$(run_as "$U" $CTL write "$E/grp/config.json" "{}")" = EACCES ] &&
	[ "$(run_as "$U" $CTL write "$E/a/control" start)" = EACCES ] &&
	[ "$(run_as "$U" $CTL write "$E/grp/control" start)" = OK ] &&
	state_is grp stopped && [ "$(cat "$E/grp/state")" = "stopped (exit 4)" ] &&
	run_as "$U" rmdir "$E/grp"
'

test_expect_success "nothing is left behind: no container, mount or cgroup of ours" '
	for d in "$E"/*; do rmdir "$d" || return 1; done &&
	[ -z "$(ls "$E")" ] &&
	! "$RUNC" list -q | grep -q "^llmfs-.*-\(run1\|srv\|keep\|oom\|p\)\$" &&
	! grep -q "$STORE" /proc/mounts &&
	[ -z "$(find /sys/fs/cgroup -maxdepth 4 -name "llmfs-*-keep" 2>/dev/null)" ]
'

test_done
