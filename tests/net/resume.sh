#!/bin/sh
# kill -9 of the daemon in the middle of a pull and of a push; after the
# remount the same cp resumes: what was stored (pull) or uploaded (push)
# is not moved again, and the results are exact.
. "$(dirname "$0")/lib-net.sh"

SRC=$TEST_DIR/src
STORE_A=$TEST_DIR/store-a
STORE_B=$TEST_DIR/store-b

# wait_until CMD: polls CMD every 20 ms, 60 s at most.
wait_until() {
	end=$(( $(date +%s) + 60 ))
	while [ "$(date +%s)" -lt "$end" ]; do
		eval "$1" && return 0
		sleep 0.02
	done
	return 1
}

# blobs_on_registry: how many blobs the registry has stored.
blobs_on_registry() {
	find "$TEST_DIR/registry/data" -path "*/blobs/sha256/*/data" 2>/dev/null | wc -l
}

# chunks_stored: the chunks the store has committed, those no file holds
# yet (fetched) included (.llmfs/status).
chunks_stored() {
	awk '$1 == "chunks:" || $1 == "dead_chunks:" { n += $2 } END { print n + 0 }' \
		"$MNT/.llmfs/status"
}

test_expect_success "a registry behind a slow proxy, a 96 MiB model" '
	net_registry_start noauth &&
	net_proxy_start proxy &&
	mkdir -p "$SRC/m" &&
	head -c $((96 << 20)) /dev/urandom > "$SRC/m/weights.bin" &&
	net_remotes "$STORE_A" lab "$PROXY_URL" &&
	STORE=$STORE_A && daemon_start &&
	cp -r "$SRC/m" "$MNT/models/m"
'

test_expect_success "kill -9 in the middle of a push (some blobs are up)" '
	echo "{\"rules\": [{\"path\": \"/blobs/uploads/\", \"method\": \"PUT\", \"count\": -1, \"action\": \"stall\", \"seconds\": 1}]}" > "$TEST_DIR/proxy.rules" &&
	mkdir "$MNT/net/lab/team" &&
	spawn push cp -r "$MNT/models/m" "$MNT/net/lab/team/m:v1" &&
	wait_until "[ \$(blobs_on_registry) -ge 3 ]" &&
	say "# killed with $(blobs_on_registry) blobs on the registry" &&
	daemon_kill9 && spawn_wait push
'

test_expect_success "after remount the push resumes: finished blobs are not sent again" '
	echo "{\"rules\": []}" > "$TEST_DIR/proxy.rules" &&
	curl -s -X POST "$PROXY_URL/_reset" > /dev/null &&
	daemon_start && mkdir -p "$MNT/net/lab/team" &&
	cp -r "$MNT/models/m" "$MNT/net/lab/team/m:v1" &&
	sent=$(grep "team/m:v1: pushed" "$DAEMON_LOG" | tail -1 | sed "s/.*new, \([0-9]*\) bytes sent/\1/") &&
	say "# sent again: $sent of $((96 << 20))" && [ "$sent" -lt $((80 << 20)) ] &&
	curl -s "$REGISTRY_URL/v2/team/m/tags/list" | grep -q v1
'

test_expect_success "kill -9 in the middle of a pull" '
	daemon_stop && net_remotes "$STORE_B" lab "$PROXY_URL" &&
	STORE=$STORE_B && daemon_start &&
	echo "{\"rules\": [{\"path\": \"/blobs/sha256:\", \"method\": \"GET\", \"count\": -1, \"action\": \"stall\", \"seconds\": 0.3}]}" > "$TEST_DIR/proxy.rules" &&
	spawn pull cp -r "$MNT/net/lab/team/m/v1" "$MNT/models/m" &&
	wait_until "[ \$(chunks_stored) -gt 350 ]" &&
	say "# killed with $(chunks_stored) chunks stored" &&
	daemon_kill9 && spawn_wait pull
'

test_expect_success "after remount the pull resumes: stored chunks are not fetched again" '
	echo "{\"rules\": []}" > "$TEST_DIR/proxy.rules" &&
	daemon_start && rm -rf "$MNT/models/m" &&
	cp -r "$MNT/net/lab/team/m/v1" "$MNT/models/m" &&
	cmp "$SRC/m/weights.bin" "$MNT/models/m/weights.bin" &&
	got=$(net_fetched pull weights.bin) &&
	say "# fetched again: $got of $((96 << 20))" && [ "$got" -lt $((64 << 20)) ]
'

test_expect_success "fsck finds the store clean" '
	daemon_stop && fsck_store && [ "$FSCK_STATUS" = 0 ]
'

test_done
