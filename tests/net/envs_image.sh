#!/bin/sh
# envs/ with a root filesystem from an OCI image on a registry under net/ (docs/envs.md):
# the layers pulled through the daemon's registry client from a real registry and unpacked
# safely (scheduler/env_unpack.h) — whiteouts applied, setuid bits cleared; hostile images
# (a ".." entry, a device node, a layer past the size limit) fail with a clear state and
# write nothing outside the cache.
. "$NET_HELPERS/lib-net.sh"

RUNC=
for r in /usr/sbin/runc /usr/bin/runc /usr/bin/crun; do
	[ -x "$r" ] && { RUNC=$r; break; }
done
[ -n "$RUNC" ] || skip_all "no OCI runtime (runc or crun)"
[ -x /bin/dash ] || skip_all "/bin/dash is missing (the test image's shell)"
E=$MNT/envs
# The size limit of images: 8 MiB here (the daemon's environment; docs/envs.md).
LLMFS_ENV_IMAGE_MAX=8388608
export LLMFS_ENV_IMAGE_MAX

# img_env NAME IMAGE SCRIPT: an env on net/lab/IMAGE:v1 running /bin/sh -c SCRIPT.
img_env() {
	mkdir "$E/$1" &&
	printf '{"model": "m", "rootfs": "net/lab/%s:v1", "command": ["/bin/sh", "-c", "%s"]}\n' \
		"$2" "$3" >"$E/$1/env.json" &&
	echo start >"$E/$1/control" &&
	wait_for 60 "grep -q \"^stopped\\|^failed\" \"$E/$1/state\"" &&
	say "$1: $(cat "$E/$1/state")" && sed "s/^/#  log: /" "$E/$1/log"
}

test_expect_success "images pushed to a real registry" '
	net_registry_start noauth &&
	python3 "$NET_HELPERS/mkimage.py" "$TEST_DIR/img" &&
	for i in ok evil dev big; do
		python3 "$NET_HELPERS/pushlayout.py" push "$REGISTRY_URL" "" "" "img/$i" v1 \
			"$TEST_DIR/img/$i/spec.json" >/dev/null || return 1
	done &&
	net_remotes "$STORE" lab "$REGISTRY_URL" &&
	daemon_start && mkdir "$MNT/models/m"
'

test_expect_success "an env runs on the image: layers in order, whiteout applied, setuid cleared" '
	img_env ok img/ok "read l </etc/motd; echo \$l; [ -e /etc/gone ] && echo gone-present || echo gone-absent; [ -u /usr/bin/su ] && echo setuid || echo no-setuid; echo > /etc/x || echo root-ro" &&
	[ "$(cat "$E/ok/state")" = "stopped (exit 0)" ] &&
	grep -qx "hello from the image" "$E/ok/log" &&
	grep -qx gone-absent "$E/ok/log" && grep -qx no-setuid "$E/ok/log" &&
	grep -qx root-ro "$E/ok/log" &&
	grep -q "1 setuid/setgid bits cleared, 1 whiteouts" "$E/ok/log"
'

test_expect_success "a second env of the same image uses the cached root filesystem" '
	img_env ok2 img/ok "echo again" &&
	grep -qx again "$E/ok2/log" && ! grep -q "unpacked" "$E/ok2/log" &&
	[ "$(find "$STORE/envs-cache" -maxdepth 1 -type d -name "oci-*" | wc -l)" = 1 ]
'

test_expect_success "an image with a .. entry fails, and writes nothing outside" '
	img_env evil img/evil "echo ran" &&
	grep -q "^failed: .*\.\." "$E/evil/state" && ! grep -qx ran "$E/evil/log" &&
	[ -z "$(find "$STORE" "$TEST_DIR" / -maxdepth 3 -name escape-marker 2>/dev/null)" ] &&
	[ -z "$(ls -d "$STORE"/envs-cache/oci-*.tmp 2>/dev/null)" ]
'

test_expect_success "an image with a device node fails with a clear reason" '
	img_env dev img/dev "echo ran" &&
	grep -q "^failed: .*device node" "$E/dev/state"
'

test_expect_success "a layer past the size limit fails" '
	img_env big img/big "echo ran" &&
	grep -q "^failed: .*larger than" "$E/big/state"
'

test_expect_success "an image that is not there fails with the registry's reason" '
	img_env none img/none "echo ran" &&
	grep -q "^failed: " "$E/none/state" && ! grep -qx ran "$E/none/log"
'

# This test's envs only: other tests run their own containers beside it.
test_expect_success "no container is left" '
	for d in "$E"/*; do rmdir "$d" || return 1; done &&
	! "$RUNC" list -q | grep -q "^llmfs-.*-\(ok\|ok2\|evil\|dev\|big\|none\)\$"
'

test_done
