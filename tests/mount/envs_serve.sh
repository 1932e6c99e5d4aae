#!/bin/sh
# envs/ with the llmfs-serve runtime (docs/envs.md): a tiny GPT-2 checkpoint copied into
# models/, served from a container on the host root filesystem, its model bound read-only
# from this mount; the OpenAI-compatible API answers through the env's unix socket, and a
# paths/ task pinned to the env is answered by it.  Needs llmfs-serve (LLMFS_SERVE) and
# python3-torch to make the checkpoint.
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd curl
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -c 'import torch' 2>/dev/null || skip_all "python3-torch is missing"
[ -x "${LLMFS_SERVE:-}" ] || skip_all "llmfs-serve is not built"
RUNC=
for r in /usr/sbin/runc /usr/bin/runc /usr/bin/crun; do
	[ -x "$r" ] && { RUNC=$r; break; }
done
[ -n "$RUNC" ] || skip_all "no OCI runtime (runc or crun)"
REF=$MOUNT_HELPERS/../serve/gpt2_ref.py
E=$MNT/envs

post() {
	curl -s -o "$TEST_DIR/out" -w '%{http_code}' --max-time 120 --unix-socket "$SOCK" \
		-H 'Content-Type: application/json' --data-binary "$2" "http://localhost$1"
}

test_expect_success "a tiny checkpoint in models/" '
	"$PY" "$REF" make "$TEST_DIR/tiny" --layers 2 --heads 2 --embd 32 --ctx 64 --vocab 256 --seed 1 &&
	daemon_start --env-serve "$LLMFS_SERVE" &&
	cp -r "$TEST_DIR/tiny" "$MNT/models/tiny" &&
	cmp "$TEST_DIR/tiny/model.safetensors" "$MNT/models/tiny/model.safetensors"
'

test_expect_success "the env starts llmfs-serve on the model; its endpoint answers" '
	mkdir "$E/bard" &&
	printf "{\"model\": \"tiny\", \"runtime\": \"llmfs-serve\", \"rootfs\": \"host\", \"limits\": {\"memory\": \"1G\", \"cpus\": 1, \"pids\": 64}}\n" >"$E/bard/env.json" &&
	grep -q "\"/opt/llmfs/llmfs-serve\"" "$E/bard/config.json" &&
	echo start >"$E/bard/control" &&
	wait_for 60 "grep -q ^running \"$E/bard/state\" && grep -q ^unix: \"$E/bard/endpoint\"" &&
	SOCK=$(sed "s/^unix://" "$E/bard/endpoint") &&
	[ "$(curl -s -o "$TEST_DIR/out" -w "%{http_code}" --unix-socket "$SOCK" http://localhost/v1/models)" = 200 ] &&
	grep -q "\"tiny\"" "$TEST_DIR/out" &&
	[ "$(post /v1/completions "{\"model\": \"tiny\", \"prompt\": \"To be\", \"max_tokens\": 8, \"temperature\": 0}")" = 200 ] &&
	grep -q "\"completion_tokens\": *8" "$TEST_DIR/out"
'

test_expect_success "a paths/ task pinned to the env is answered by it" '
	mkdir "$MNT/paths/t" &&
	printf "{\"prompt\": \"To be or not\", \"model\": \"bard\"}\n" >"$MNT/paths/t/task" &&
	timeout 120 cat "$MNT/paths/t/result" >"$TEST_DIR/t.result" &&
	cat "$MNT/paths/t/status" >"$TEST_DIR/t.status" &&
	! grep -q "^failed" "$TEST_DIR/t.status" && [ -s "$TEST_DIR/t.result" ]
'

test_expect_success "stop and rmdir leave no container" '
	echo stop >"$E/bard/control" &&
	wait_for 30 "grep -q ^stopped \"$E/bard/state\"" &&
	rmdir "$E/bard" &&
	! "$RUNC" list -q | grep -q "^llmfs-.*-bard$"
'

test_done
