# lib-net.sh - helpers for the net/ tests (suite remote): the mount tests'
# lib.sh (daemon, blocks, cleanup) plus a real registry (Debian's
# docker-registry, tests/remote/registry.sh) on loopback, stopped by the
# same EXIT trap, and remotes files for the daemon.
#
# Environment (meson passes these): LLMFS, LLMFS_FSCK, MOUNT_HELPERS (as for
# the mount suite), REMOTE_HELPERS (tests/remote), NET_HELPERS (tests/net).

. "$MOUNT_HELPERS/lib.sh"
. "$REMOTE_HELPERS/registry.sh"

require_fuse
require_cmd curl
require_cmd python3

# net_registry_start auth|noauth: a registry in $TEST_DIR/registry; its pid
# goes where lib.sh's cleanup kills spawned helpers.
net_registry_start() {
	registry_start "$TEST_DIR/registry" "${1:-auth}" || return 1
	cp "$TEST_DIR/registry/registry.pid" "$TEST_DIR/registry-daemon.pid"
}

# net_proxy_start NAME ARGS...: the fault-injecting proxy in front of the
# registry; sets PROXY_URL.  Rules go to $TEST_DIR/NAME.rules.
net_proxy_start() {
	np_name=$1; shift
	echo '{"rules": []}' > "$TEST_DIR/$np_name.rules"
	rm -f "$TEST_DIR/$np_name.port"
	spawn "$np_name" python3 "$REMOTE_HELPERS/faultproxy.py" \
		--upstream "$REGISTRY_URL" --port-file "$TEST_DIR/$np_name.port" \
		--rules "$TEST_DIR/$np_name.rules" "$@"
	wait_for 20 "[ -s \"$TEST_DIR/$np_name.port\" ]" || return 1
	PROXY_URL=http://127.0.0.1:$(cat "$TEST_DIR/$np_name.port")
}

# net_remotes STORE NAME URL [USER PASS [extra JSON members]]: writes
# STORE/remotes.json with one insecure (plain http) remote.
net_remotes() {
	mkdir -p "$1"
	{
		printf '{"remotes": {"%s": {"url": "%s", "insecure": true' "$2" "$3"
		[ -n "${4:-}" ] && printf ', "username": "%s", "password": "%s"' "$4" "$5"
		[ -n "${6:-}" ] && printf ', %s' "$6"
		printf '}}}\n'
	} > "$1/remotes.json"
}

# net_fetched KIND NAME: bytes the daemon's .llmfs/transfers reports for
# the newest transfer of KIND (pull, push, read) whose name ends in NAME.
net_fetched() {
	awk -v k="$1" -v n="$2" '$1 == k && substr($2, length($2) - length(n) + 1) == n {
		split($3, a, "/"); print a[1]; exit }' "$MNT/.llmfs/transfers"
}

# rcurl ARGS...: curl to the registry with the test credentials.
rcurl() {
	curl -sf -u "$REGISTRY_USER:$REGISTRY_PASS" "$@"
}
