#!/bin/sh
# TLS is always verified: a registry serving a certificate no CA vouches
# for is refused with a clear error, and "insecure": true (which only
# allows plain http://) does not turn the check off.
. "$(dirname "$0")/lib-net.sh"
require_cmd openssl

test_expect_success "a malformed remotes file stops the daemon with a clear message" '
	mkdir -p "$TEST_DIR/bad" &&
	echo "{\"remotes\": {\"lab\": {\"url\": \"http://127.0.0.1:1\"}}}" > "$TEST_DIR/bad/remotes.json" &&
	! timeout 20 "$LLMFS" --store "$TEST_DIR/bad" -f "$MNT" 2> "$TEST_DIR/bad.err" &&
	cat "$TEST_DIR/bad.err" &&
	grep -q "remotes.json.*insecure" "$TEST_DIR/bad.err" && ! mountpoint -q "$MNT"
'

test_expect_success "a registry on https with a self-signed certificate" '
	mkdir -p "$TEST_DIR/tls/data" &&
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
		-addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$TEST_DIR/tls/key.pem" -out "$TEST_DIR/tls/cert.pem" 2>/dev/null &&
	port=$(registry_free_port) &&
	printf "version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: 127.0.0.1:%s\n  tls: {certificate: %s, key: %s}\n" \
		"$TEST_DIR/tls/data" "$port" "$TEST_DIR/tls/cert.pem" "$TEST_DIR/tls/key.pem" > "$TEST_DIR/tls/config.yml" &&
	spawn tlsreg "$REGISTRY_BIN" serve "$TEST_DIR/tls/config.yml" &&
	wait_for 20 "curl -sk -o /dev/null https://127.0.0.1:$port/v2/" &&
	TLS_URL=https://127.0.0.1:$port
'

test_expect_success "the certificate is refused, with a clear error" '
	net_remotes "$STORE" lab "$TLS_URL" &&
	ALLOWED_ERRORS="net/lab|no catalog" && daemon_start &&
	! ls "$MNT/net/lab/team/m/v1" 2>/dev/null &&
	grep -Eiq "certificate|SSL|TLS" "$DAEMON_LOG"
'

test_expect_success "the daemon and the registry stop cleanly" 'daemon_stop && spawn_kill tlsreg'

test_done
