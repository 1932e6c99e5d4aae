#!/bin/sh
# Pushes against a real registry, with tests/remote/faultproxy.py in front:
# a push in progress holds no lock that a listing needs (ls -l and stat of
# the tag answer while the proxy holds the push's manifest upload until the
# test lets it go), and a push mounts blobs from every model of the remote
# the daemon has read, not from the first 16 only.
. "$(dirname "$0")/lib-net.sh"

SRC=$TEST_DIR/src

rule() {
	printf '{"rules": [%s]}\n' "$1" > "$TEST_DIR/proxy.rules"
}

test_expect_success "a registry, the fault proxy in front, a daemon on the proxy" '
	net_registry_start noauth &&
	net_proxy_start proxy &&
	mkdir -p "$SRC/m" &&
	python3 "$NET_HELPERS/mkmodel.py" "$SRC/m/model.safetensors" 4 65536 --seed 1 &&
	echo "{}" > "$SRC/m/config.json" &&
	net_remotes "$STORE" lab "$PROXY_URL" "" "" "\"stall_seconds\": 300" &&
	daemon_start &&
	mkdir "$MNT/net/lab/team"
'

test_expect_success "a push whose manifest upload the proxy holds" '
	touch "$TEST_DIR/hold" &&
	rule "{\"path\": \"/manifests/\", \"method\": \"PUT\", \"count\": 1, \"action\": \"hold\", \"file\": \"$TEST_DIR/hold\"}" &&
	# model.safetensors first, named (cp -r takes a folder in its own order, by inode
	# number, so config.json could go first and hold the copy before the model exists).
	mkdir "$MNT/net/lab/team/m:v1" &&
	{ cp "$SRC/m/model.safetensors" "$SRC/m/config.json" "$MNT/net/lab/team/m:v1/" \
		> "$TEST_DIR/cp.out" 2>&1
	  echo $? > "$TEST_DIR/cp.rc"; } &
	wait_for 60 "grep -q \"^push lab/team/m:v1 .* running\" \"$MNT/.llmfs/transfers\""
'

test_expect_success "ls -l and stat of the tag answer while that push is held" '
	# Past the kernel'"'"'s attribute cache (1 s), so that stat reaches the
	# daemon; SIGKILL, since a process waiting on FUSE ignores SIGTERM.
	# The push lists its files as cp closes them: on a loaded machine the
	# transfer can show before the last close, so the listing is asked again
	# (each ls bounded: one that blocks on the held push still fails).
	sleep 1.5 &&
	wait_for 30 "timeout -s KILL 20 ls -l \"\$MNT/net/lab/team/m:v1\" > \"\$TEST_DIR/ls.out\" &&
		grep -q model.safetensors \"\$TEST_DIR/ls.out\"" ||
		{ sed "s/^/# ls: /" "$TEST_DIR/ls.out"; false; } &&
	timeout -s KILL 60 stat "$MNT/net/lab/team/m:v1/model.safetensors" > /dev/null &&
	cat "$MNT/.llmfs/transfers" > "$TEST_DIR/xfers" &&
	sed "s/^/# /" "$TEST_DIR/xfers" &&
	grep -q "^push lab/team/m:v1 .* running" "$TEST_DIR/xfers"
'

test_expect_success "let go, the held push ends well, the tag holds the model" '
	rm "$TEST_DIR/hold" &&
	wait_for 120 "[ -s \"$TEST_DIR/cp.rc\" ]" &&
	[ "$(cat "$TEST_DIR/cp.rc")" = 0 ] &&
	rule "" &&
	wait_for 15 "ls \"$MNT/net/lab/team/m\" 2>/dev/null | grep -qx v1" &&
	cmp "$SRC/m/model.safetensors" "$MNT/net/lab/team/m/v1/model.safetensors"
'

test_expect_success "a push refuses a name that is not strict UTF-8 (EILSEQ), as models/ does" '
	mkdir "$MNT/net/lab/team/bad:v1" &&
	expect_errno EILSEQ create "$MNT/net/lab/team/bad:v1/a\xe0\x80\x80z" &&
	expect_errno EILSEQ mkdir "$MNT/net/lab/team/bad:v1/d\xff" &&
	expect_errno OK create "$MNT/net/lab/team/bad:v1/ok.txt"
'

test_expect_success "a push mounts blobs from all of 18 models read before" '
	for i in $(seq 1 18); do
		mkdir -p "$SRC/a$i" &&
		head -c 40000 /dev/urandom > "$SRC/a$i/w.bin" &&
		cp -r "$SRC/a$i" "$MNT/net/lab/team/a$i:v1" || return 1
	done &&
	mkdir -p "$SRC/all" &&
	for i in $(seq 1 18); do
		wait_for 15 "ls \"$MNT/net/lab/team/a$i/v1\" > /dev/null 2>&1" &&
		cp "$SRC/a$i/w.bin" "$SRC/all/w$i.bin" || return 1
	done &&
	mkdir "$MNT/net/lab/other" &&
	cp -r "$SRC/all" "$MNT/net/lab/other/all:v1" &&
	# One push per file closed: together they mount 18 blobs, send no chunk.
	grep "net/lab/other/all:v1: pushed" "$DAEMON_LOG" > "$TEST_DIR/pushed" &&
	sed "s/^/# /" "$TEST_DIR/pushed" &&
	[ "$(sed -n "s/.* \([0-9]*\) blobs mounted, \([0-9]*\) new,.*/\1 \2/p" "$TEST_DIR/pushed" |
	     awk "{ m += \$1; n += \$2 } END { print m, n }")" = "18 0" ]
'

test_done
