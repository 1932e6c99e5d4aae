#!/bin/sh
# envs/: 100 create / start / stop / rmdir cycles leave nothing behind: no container in
# `runc list`, no mount, no cgroup, no shim process, no descriptor of the daemon's.  About a
# second a cycle (runc create and start, a stop by SIGTERM); ENVS_CYCLES changes the count.
. "$(dirname "$0")/lib.sh"

require_fuse
RUNC=
for r in /usr/sbin/runc /usr/bin/runc /usr/bin/crun; do
	[ -x "$r" ] && { RUNC=$r; break; }
done
[ -n "$RUNC" ] || skip_all "no OCI runtime (runc or crun)"
N=${ENVS_CYCLES:-100}
E=$MNT/envs
mkdir "$TEST_DIR/bin"
# PID 1 of its namespace: it ends on SIGTERM only because it says so, and only once its trap
# is set ("ready"): "running" says runc started it, not that the script got that far.
printf 'trap "exit 0" TERM\necho ready\nwhile :; do sleep 0.1; done\n' >"$TEST_DIR/bin/loop.sh"
fds() { ls "/proc/$DAEMON_PID/fd" | wc -l; }
cgroups() { find /sys/fs/cgroup -maxdepth 6 -type d -name "llmfs-*-c[0-9]*" 2>/dev/null | wc -l; }

test_expect_success "set up" '
	daemon_start --env-bind "$TEST_DIR/bin" && mkdir "$MNT/models/m" &&
	FDS=$(fds) && CG=$(cgroups)
'

test_expect_success "$N cycles, each running before it stops" '
	i=0 &&
	while [ $i -lt $N ]; do
		mkdir "$E/c$i" &&
		printf "{\"model\": \"m\", \"command\": [\"/bin/sh\", \"/b/loop.sh\"], \"binds\": [{\"source\": \"%s\", \"target\": \"/b\"}]}\n" \
			"$TEST_DIR/bin" >"$E/c$i/env.json" &&
		echo start >"$E/c$i/control" &&
		wait_for 30 "grep -q ^running \"$E/c$i/state\"" &&
		wait_for 30 "grep -q ^ready \"$E/c$i/log\"" &&
		echo stop >"$E/c$i/control" &&
		wait_for 30 "grep -q ^stopped \"$E/c$i/state\"" &&
		grep -qx "stopped (exit 0)" "$E/c$i/state" &&
		rmdir "$E/c$i" || { say "cycle $i: $(cat "$E/c$i/state" 2>&1)"; tail -5 "$E/c$i/log"; return 1; }
		i=$((i + 1))
	done
'

test_expect_success "nothing is left: containers, mounts, cgroups, shims, descriptors" '
	[ -z "$(ls "$E")" ] &&
	! "$RUNC" list -q | grep -q "^llmfs-.*-c[0-9]*\$" &&
	! grep -q "$STORE" /proc/mounts &&
	[ "$(cgroups)" = "$CG" ] &&
	! pgrep -f "env-shim .* $STORE/envs/" >/dev/null &&
	[ "$(fds)" -le "$FDS" ] &&
	[ -z "$(ls "$STORE/envs")" ]
'

test_done
