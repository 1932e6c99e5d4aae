#!/bin/sh
# envs/ on a "debian: pkg..." root filesystem (docs/envs.md): built once with mmdebstrap from
# the host's Debian archive, kept in the cache and shared by the next env with the same
# packages.  Skips when mmdebstrap is missing or the archive cannot be reached; the build
# takes minutes (downloads and unpacks a minimal Debian).
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd mmdebstrap curl
RUNC=
for r in /usr/sbin/runc /usr/bin/runc /usr/bin/crun; do
	[ -x "$r" ] && { RUNC=$r; break; }
done
[ -n "$RUNC" ] || skip_all "no OCI runtime (runc or crun)"
MIRROR=$(sed -n 's/^URIs: *//p; s/^deb \(http[^ ]*\) .*/\1/p' /etc/apt/sources.list.d/*.sources \
	/etc/apt/sources.list 2>/dev/null | head -1)
[ -n "$MIRROR" ] || skip_all "no Debian archive configured"
curl -sfI --max-time 20 "$MIRROR/" >/dev/null || skip_all "the archive $MIRROR cannot be reached"
[ ! -e /usr/bin/hello ] || skip_all "/usr/bin/hello is on the host: the check would not tell"
E=$MNT/envs

test_expect_success "an env on debian: hello runs a program the host does not have" '
	daemon_start && mkdir "$MNT/models/m" && mkdir "$E/deb" &&
	printf "{\"model\": \"m\", \"rootfs\": \"debian: hello\", \"command\": [\"/usr/bin/hello\"]}\n" >"$E/deb/env.json" &&
	echo start >"$E/deb/control" &&
	wait_for 1200 "grep -q \"^stopped\\|^failed\" \"$E/deb/state\"" &&
	say "state: $(cat "$E/deb/state")" &&
	[ "$(cat "$E/deb/state")" = "stopped (exit 0)" ] &&
	grep -q "Hello, world!" "$E/deb/log"
'

test_expect_success "a second env with the same packages uses the cached build" '
	mkdir "$E/deb2" &&
	printf "{\"model\": \"m\", \"rootfs\": \"debian: hello\", \"command\": [\"/bin/sh\", \"-c\", \"test -w / || echo root-ro; hello\"]}\n" >"$E/deb2/env.json" &&
	echo start >"$E/deb2/control" &&
	wait_for 120 "grep -q \"^stopped\\|^failed\" \"$E/deb2/state\"" &&
	grep -q "Hello, world!" "$E/deb2/log" && grep -qx root-ro "$E/deb2/log" &&
	[ "$(find "$STORE/envs-cache" -maxdepth 1 -type d -name "debian-*" | wc -l)" = 1 ]
'

test_done
