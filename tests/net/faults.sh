#!/bin/sh
# A registry that misbehaves (tests/remote/faultproxy.py in front of a real
# one): 503s, dropped connections, truncated bodies, flipped bytes and
# stalls are retried and the pulled models are exact; a registry that keeps
# serving wrong bytes gets EIO, a failed transfer with a reason, and nothing
# into the store; the bearer token flow works through the stand-in token
# server.
. "$(dirname "$0")/lib-net.sh"

SRC=$TEST_DIR/src
STORE_A=$TEST_DIR/store-a
STORE_B=$TEST_DIR/store-b

# rule JSON: the proxy's rules file (re-read on every request).
rule() {
	printf '{"rules": [%s]}\n' "$1" > "$TEST_DIR/proxy.rules"
}

# pull N: cp -r of model mN from the proxied remote, compared with the source.
pull() {
	cp -r "$MNT/net/lab/team/m$1/v1" "$MNT/models/m$1" &&
	diff -r "$SRC/m$1" "$MNT/models/m$1"
}

test_expect_success "a registry, a fault proxy in front, six models pushed directly" '
	net_registry_start noauth &&
	net_proxy_start proxy &&
	for i in 1 2 3 4 5 6 7; do
		mkdir -p "$SRC/m$i" &&
		python3 "$NET_HELPERS/mkmodel.py" "$SRC/m$i/model.safetensors" 16 262144 --seed $i &&
		echo "{\"n\": $i}" > "$SRC/m$i/config.json" || return 1
	done &&
	net_remotes "$STORE_A" lab "$REGISTRY_URL" &&
	STORE=$STORE_A && daemon_start &&
	mkdir "$MNT/net/lab/team" &&
	for i in 1 2 3 4 5 6 7; do
		cp -r "$SRC/m$i" "$MNT/models/m$i" &&
		cp -r "$MNT/models/m$i" "$MNT/net/lab/team/m$i:v1" || return 1
	done &&
	daemon_stop &&
	net_remotes "$STORE_B" lab "$PROXY_URL" "" "" "\"stall_seconds\": 2, \"retries\": 4" &&
	STORE=$STORE_B && daemon_start
'

test_expect_success "503 on blob reads: retried" '
	rule "{\"path\": \"/blobs/sha256:\", \"method\": \"GET\", \"count\": 3, \"action\": \"status\", \"status\": 503}" &&
	pull 1
'

test_expect_success "connections dropped mid-body: retried" '
	rule "{\"path\": \"/blobs/sha256:\", \"method\": \"GET\", \"count\": 3, \"action\": \"drop\", \"after\": 1000}" &&
	pull 2
'

test_expect_success "truncated bodies: retried" '
	rule "{\"path\": \"/blobs/sha256:\", \"method\": \"GET\", \"count\": 3, \"action\": \"truncate\"}" &&
	pull 3
'

test_expect_success "flipped bytes: caught by the chunk check and fetched again" '
	rule "{\"path\": \"/blobs/sha256:\", \"method\": \"GET\", \"count\": 3, \"action\": \"flip\"}" &&
	pull 4
'

test_expect_success "a stalled answer: given up after stall_seconds, retried" '
	rule "{\"path\": \"/blobs/sha256:\", \"method\": \"GET\", \"count\": 1, \"action\": \"stall\", \"seconds\": 8}" &&
	pull 5
'

test_expect_success "bytes always wrong: EIO, a failed transfer, nothing stored" '
	ls "$MNT/net/lab/team/m6/v1" > /dev/null &&
	rule "{\"path\": \"/blobs/sha256:\", \"method\": \"GET\", \"count\": -1, \"action\": \"flip\"}" &&
	ALLOWED_ERRORS="net/lab/team/m6" &&
	! cp -r "$MNT/net/lab/team/m6/v1" "$MNT/models/m6" 2>"$TEST_DIR/cp.err" &&
	grep -q "Input/output error" "$TEST_DIR/cp.err" &&
	grep -q "^pull lab/team/m6:v1/model.safetensors .* failed: .*wrong bytes" "$MNT/.llmfs/transfers" &&
	! cmp -s "$SRC/m6/model.safetensors" "$MNT/models/m6/model.safetensors" &&
	! cat "$MNT/net/lab/team/m6/v1/model.safetensors" > /dev/null 2>&1
'

test_expect_success "the store holds nothing wrong (fsck), and the pull works once the registry heals" '
	rule "" && daemon_stop && fsck_store && [ "$FSCK_STATUS" = 0 ] &&
	daemon_start && rm -rf "$MNT/models/m6" && pull 6
'

test_expect_success "bearer token flow (stand-in token server), wrong credentials refused" '
	daemon_stop &&
	net_proxy_start bearer --bearer "alice:pw-$$" &&
	net_remotes "$STORE_B" lab "$PROXY_URL" alice "pw-$$" &&
	daemon_start && pull 7 &&
	curl -s "$PROXY_URL/_stats" | grep -q "repository:team/m7:pull" &&
	daemon_stop &&
	net_remotes "$STORE_B" lab "$PROXY_URL" alice "nope-$$" &&
	ALLOWED_ERRORS="net/lab" && daemon_start &&
	! ls "$MNT/net/lab/team/m1/v1" 2>/dev/null &&
	! grep -q "nope-$$" "$DAEMON_LOG"
'

test_expect_success "the daemon stops cleanly" 'daemon_stop'

test_done
