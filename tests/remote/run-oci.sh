#!/bin/sh
# run-oci.sh TEST_BINARY - starts a registry with htpasswd auth, a fault
# proxy and a stand-in bearer proxy in front of it, and runs the test with
# their urls in the environment.  Everything stops in the EXIT trap.
# Exits 77 (skip) when docker-registry is not installed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/registry.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmfs-remote.XXXXXX")
fp=
bp=
cleanup() {
	[ -n "$fp" ] && kill "$fp" 2>/dev/null
	[ -n "$bp" ] && kill "$bp" 2>/dev/null
	registry_stop "$tmp/reg"
	[ -n "${TEST_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM

registry_start "$tmp/reg" auth || exit 1
: > "$tmp/rules.json"
python3 "$here/faultproxy.py" --upstream "$REGISTRY_URL" \
	--port-file "$tmp/fp.port" --rules "$tmp/rules.json" \
	--storage-auth "$REGISTRY_USER:$REGISTRY_PASS" &
fp=$!
python3 "$here/faultproxy.py" --upstream "$REGISTRY_URL" \
	--port-file "$tmp/bp.port" --bearer tokenuser:tokenpass \
	--upstream-auth "$REGISTRY_USER:$REGISTRY_PASS" &
bp=$!
deadline=$(($(date +%s) + 20))
while [ ! -f "$tmp/fp.port" ] || [ ! -f "$tmp/bp.port" ]; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "run-oci.sh: the proxies did not start" >&2
		exit 1
	fi
	sleep 0.1
done

OCI_URL=$REGISTRY_URL
OCI_USER=$REGISTRY_USER
OCI_PASS=$REGISTRY_PASS
OCI_PROXY=http://127.0.0.1:$(cat "$tmp/fp.port")
OCI_RULES=$tmp/rules.json
OCI_BEARER=http://127.0.0.1:$(cat "$tmp/bp.port")
OCI_BEARER_USER=tokenuser
OCI_BEARER_PASS=tokenpass
OCI_TMP=$tmp
export OCI_URL OCI_USER OCI_PASS OCI_PROXY OCI_RULES OCI_BEARER \
	OCI_BEARER_USER OCI_BEARER_PASS OCI_TMP
"$@"
