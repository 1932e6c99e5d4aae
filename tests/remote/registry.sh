#!/bin/sh
# registry.sh - a real Distribution registry (Debian's docker-registry) on
# 127.0.0.1 for the remote tests.
#
# Sourced:  . registry.sh; registry_start DIR [auth|noauth]; ...; registry_stop DIR
#   sets REGISTRY_URL, REGISTRY_PORT, REGISTRY_USER, REGISTRY_PASS (auth).
#   The caller stops it in its EXIT trap.
# Run:      registry.sh start DIR [auth|noauth]   (prints the url)
#           registry.sh stop DIR
# Exits 77 (skip) when docker-registry or htpasswd is not installed.
#
# The registry keeps its storage, config and log in DIR; deletes are
# enabled and the catalog answers 3 names a page, so pagination is tested.

REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}

# A free port below the kernel's ephemeral range (32768 and up), so that no
# client socket of another test takes it between this check and the
# registry's bind.
registry_free_port() {
	python3 -c '
import random, socket
for _ in range(200):
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
'
}

# registry_wait URL CODE: polls until URL/v2/ answers CODE, 20 s at most.
registry_wait() {
	deadline=$(($(date +%s) + 20))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		code=$(curl -s -o /dev/null -w '%{http_code}' "$1/v2/" 2>/dev/null)
		[ "$code" = "$2" ] && return 0
		sleep 0.1
	done
	echo "registry.sh: no answer $2 from $1/v2/ within 20 s" >&2
	return 1
}

registry_start() {
	dir=$1
	mode=${2:-auth}
	if [ ! -x "$REGISTRY_BIN" ]; then
		echo "registry.sh: $REGISTRY_BIN not installed (apt install docker-registry)" >&2
		exit 77
	fi
	mkdir -p "$dir/data" || return 1
	REGISTRY_PORT=$(registry_free_port) || return 1
	REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT
	REGISTRY_USER=tester
	REGISTRY_PASS=s3cret-Pw-$$
	{
		echo "version: 0.1"
		echo "log: {level: error, accesslog: {disabled: true}}"
		echo "storage:"
		echo "  filesystem: {rootdirectory: $dir/data}"
		echo "  delete: {enabled: true}"
		echo "http: {addr: 127.0.0.1:$REGISTRY_PORT, secret: llmfs-test-secret}"
		echo "catalog: {maxentries: 3}"
	} > "$dir/config.yml"
	want=200
	if [ "$mode" = auth ]; then
		if ! command -v htpasswd >/dev/null; then
			echo "registry.sh: htpasswd not installed (apt install apache2-utils)" >&2
			exit 77
		fi
		htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASS" > "$dir/htpasswd" || return 1
		echo "auth: {htpasswd: {realm: llmfs-test, path: $dir/htpasswd}}" >> "$dir/config.yml"
		want=401
	fi
	"$REGISTRY_BIN" serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
	echo $! > "$dir/registry.pid"
	if ! registry_wait "$REGISTRY_URL" "$want"; then
		cat "$dir/registry.log" >&2
		registry_stop "$dir"
		return 1
	fi
	export REGISTRY_URL REGISTRY_PORT REGISTRY_USER REGISTRY_PASS
}

registry_stop() {
	[ -f "$1/registry.pid" ] || return 0
	pid=$(cat "$1/registry.pid")
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -f "$1/registry.pid"
}

case "${0##*/}" in
registry.sh)
	case "$1" in
	start) registry_start "$2" "$3" && echo "$REGISTRY_URL" ;;
	stop) registry_stop "$2" ;;
	*) echo "usage: registry.sh start DIR [auth|noauth] | stop DIR" >&2; exit 2 ;;
	esac
	;;
esac
