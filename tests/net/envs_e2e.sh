#!/bin/sh
# The Internet of LLMs, end to end (README, "A tour"): a tiny model trained through train/ on
# one daemon, pushed with cp -r to a real registry under net/, pulled with cp -r into a second
# daemon's store (another store, another mount), started in an env there with llmfs-serve,
# and a paths/ task answered by it.  Every hop is checked: the job's result, the sha256 of the
# pulled files, the env's endpoint answering, and the task's trace naming the env with the
# token counts its server reported.
. "$NET_HELPERS/lib-net.sh"

[ -x "${LLMFS_SERVE:-}" ] || skip_all "llmfs-serve is not built"
[ -r "${TRAIN_CORPUS:-}" ] || skip_all "no training corpus (TRAIN_CORPUS)"
RUNC=
for r in /usr/sbin/runc /usr/bin/runc /usr/bin/crun; do
	[ -x "$r" ] && { RUNC=$r; break; }
done
[ -n "$RUNC" ] || skip_all "no OCI runtime (runc or crun)"
STORE_A=$TEST_DIR/store-a
STORE_B=$TEST_DIR/store-b
MNT_A=$TEST_DIR/mnt
MNT_B=$TEST_DIR/mnt-b
mkdir -p "$MNT_B"

test_expect_success "daemon A trains a tiny model through train/" '
	net_registry_start noauth &&
	net_remotes "$STORE_A" lab "$REGISTRY_URL" &&
	STORE=$STORE_A && daemon_start &&
	mkdir -p "$MNT/models/corpora" &&
	head -c 100000 "$TRAIN_CORPUS" >"$MNT/models/corpora/tiny.txt" &&
	mkdir "$MNT/train/bard" &&
	printf "data=models/corpora/tiny.txt\nlayers=2 heads=2 embd=32 seq=32 batch=4 steps=40\nval-every=20 val-batches=1 ckpt-every=40 sample-every=40 sample-len=16 seed=5\n" \
		>"$MNT/train/bard/job" &&
	timeout 300 cat "$MNT/train/bard/result" >"$TEST_DIR/train.result" &&
	[ "$(cat "$MNT/train/bard/status")" = done ] &&
	[ -s "$MNT/models/bard/model.safetensors" ] && [ -s "$MNT/models/bard/config.json" ]
'

test_expect_success "cp -r pushes it to the registry under net/" '
	mkdir -p "$TEST_DIR/sums" &&
	(cd "$MNT/models/bard" && find . -type f | sort | xargs sha256sum) >"$TEST_DIR/sums/a" &&
	mkdir "$MNT/net/lab/team" &&
	cp -r "$MNT/models/bard" "$MNT/net/lab/team/bard:v1" &&
	curl -sf "$REGISTRY_URL/v2/team/bard/tags/list" | grep -q "\"v1\"" &&
	daemon_stop
'

test_expect_success "daemon B (another store, another mount) pulls it with cp -r" '
	net_remotes "$STORE_B" lab "$REGISTRY_URL" &&
	STORE=$STORE_B MNT=$MNT_B && daemon_start --env-serve "$LLMFS_SERVE" &&
	cp -r "$MNT/net/lab/team/bard/v1" "$MNT/models/bard" &&
	(cd "$MNT/models/bard" && find . -type f | sort | xargs sha256sum) >"$TEST_DIR/sums/b" &&
	cmp "$TEST_DIR/sums/a" "$TEST_DIR/sums/b" &&
	grep -q "model.safetensors" "$TEST_DIR/sums/b"
'

test_expect_success "an env on daemon B serves it" '
	mkdir "$MNT/envs/bard" &&
	printf "{\"model\": \"bard\", \"runtime\": \"llmfs-serve\", \"rootfs\": \"host\", \"limits\": {\"memory\": \"1G\", \"cpus\": 1, \"pids\": 64}}\n" \
		>"$MNT/envs/bard/env.json" &&
	echo start >"$MNT/envs/bard/control" &&
	wait_for 60 "grep -q ^running \"$MNT/envs/bard/state\" && grep -q ^unix: \"$MNT/envs/bard/endpoint\"" ||
		{ cat "$MNT/envs/bard/state" "$MNT/envs/bard/log"; false; } &&
	SOCK=$(sed "s/^unix://" "$MNT/envs/bard/endpoint") &&
	curl -sf --unix-socket "$SOCK" http://localhost/v1/models | grep -q "\"bard\""
'

test_expect_success "a paths/ task is answered from the env endpoint" '
	mkdir "$MNT/paths/t" &&
	printf "{\"prompt\": \"To be or not\", \"model\": \"bard\"}\n" >"$MNT/paths/t/task" &&
	timeout 120 cat "$MNT/paths/t/result" >"$TEST_DIR/t.result" &&
	[ "$(cat "$MNT/paths/t/status")" = done ] && [ -s "$TEST_DIR/t.result" ] &&
	grep "\"model\": *\"bard\"" "$MNT/paths/t/trace.jsonl" | grep -q "\"usage\": *\"reported\"" &&
	echo stop >"$MNT/envs/bard/control" &&
	wait_for 30 "grep -q ^stopped \"$MNT/envs/bard/state\"" && rmdir "$MNT/envs/bard"
'

test_done
