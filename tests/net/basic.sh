#!/bin/sh
# net/ against a real registry with htpasswd auth: push a model with cp -r,
# see it as remotes/repositories/tags, read it lazily from a second store,
# pull it, push a v2 that uploads only new chunks, pull v2 after v1, wrong
# credentials, skopeo interop, and the pulled model offline.
. "$(dirname "$0")/lib-net.sh"

SRC=$TEST_DIR/src
STORE_A=$TEST_DIR/store-a
STORE_B=$TEST_DIR/store-b

test_expect_success "a registry with htpasswd auth and a model" '
	net_registry_start auth &&
	mkdir -p "$SRC/m/tok" &&
	python3 "$NET_HELPERS/mkmodel.py" "$SRC/m/model.safetensors" 48 262144 --seed 1 &&
	echo "{\"architectures\": [\"LlamaForCausalLM\"]}" > "$SRC/m/config.json" &&
	echo "hello world" > "$SRC/m/tok/vocab.txt" &&
	ln -s model.safetensors "$SRC/m/latest" &&
	net_remotes "$STORE_A" lab "$REGISTRY_URL" "$REGISTRY_USER" "$REGISTRY_PASS" &&
	STORE=$STORE_A && daemon_start
'

test_expect_success "net/ lists the configured remote" '
	[ "$(ls "$MNT/net")" = lab ] && [ -f "$MNT/.llmfs/transfers" ]
'

test_expect_success "push: cp -r into REPO:TAG of a folder made for it" '
	cp -r "$SRC/m" "$MNT/models/m" &&
	mkdir "$MNT/net/lab/team" &&
	cp -r "$MNT/models/m" "$MNT/net/lab/team/m:v1" &&
	grep -q "^push lab/team/m:v1 .* done" "$MNT/.llmfs/transfers"
'

test_expect_success "the tag is an OCI artifact with our types, manifest last" '
	rcurl -H "Accept: application/vnd.oci.image.manifest.v1+json" \
		"$REGISTRY_URL/v2/team/m/manifests/v1" > "$TEST_DIR/man.json" &&
	grep -q "\"artifactType\":\"application/vnd.llmfs.smip.v1\"" "$TEST_DIR/man.json" &&
	grep -q "application/vnd.llmfs.smip.manifest.v1+json" "$TEST_DIR/man.json" &&
	grep -q "application/vnd.llmfs.smip.pack.v1" "$TEST_DIR/man.json"
'

test_expect_success "repositories and tags appear as folders" '
	wait_for 15 "ls \"$MNT/net/lab/team\" | grep -qx m" &&
	ls "$MNT/net/lab/team/m" | grep -qx v1
'

test_expect_success "the tag holds the model: files, folders, symlinks" '
	[ "$(cd "$MNT/net/lab/team/m/v1" && find . | sort)" = "$(cd "$SRC/m" && find . | sort)" ] &&
	[ "$(readlink "$MNT/net/lab/team/m/v1/latest")" = model.safetensors ] &&
	grep -q "^layout: smip" "$MNT/net/lab/team/m/v1/.smip/info" &&
	grep -q "\"smip\":1" "$MNT/net/lab/team/m/v1/.smip/manifest.json"
'

test_expect_success "a second store: the manifest reads without fetching weights" '
	daemon_stop && net_remotes "$STORE_B" lab "$REGISTRY_URL" "$REGISTRY_USER" "$REGISTRY_PASS" &&
	STORE=$STORE_B && daemon_start &&
	cat "$MNT/net/lab/team/m/v1/.smip/manifest.json" > /dev/null &&
	! grep -q "^read" "$MNT/.llmfs/transfers"
'

test_expect_success "lazy: random ranges match the source, a fraction is fetched" '
	python3 "$NET_HELPERS/readat.py" "$SRC/m/model.safetensors" \
		"$MNT/net/lab/team/m/v1/model.safetensors" 8 1 4096 &&
	head -c 65536 "$MNT/net/lab/team/m/v1/model.safetensors" | cmp -n 65536 - "$SRC/m/model.safetensors" &&
	got=$(net_fetched read model.safetensors) && size=$(stat -c %s "$SRC/m/model.safetensors") &&
	say "# fetched $got of $size bytes" && [ "$got" -gt 0 ] && [ $((got * 2)) -lt "$size" ]
'

test_expect_success "four readers at once, and listings meanwhile, read the source's bytes" '
	pids= &&
	for s in 2 3 4 5; do
		python3 "$NET_HELPERS/readat.py" "$SRC/m/model.safetensors" \
			"$MNT/net/lab/team/m/v1/model.safetensors" 40 $s 65536 &
		pids="$pids $!"
	done &&
	for i in 1 2 3 4 5; do ls -R "$MNT/net/lab" > /dev/null || return 1; done &&
	ok=0 && for p in $pids; do wait $p || ok=1; done && [ $ok = 0 ]
'

test_expect_success "pull: cp -r leaves an identical local model" '
	cp -r "$MNT/net/lab/team/m/v1" "$MNT/models/m" &&
	diff -r "$SRC/m" "$MNT/models/m" &&
	[ "$(readlink "$MNT/models/m/latest")" = model.safetensors ]
'

test_expect_success "the pulled file kept its SHA-256 (manifest agrees)" '
	want=$(sha256sum < "$SRC/m/model.safetensors" | cut -d" " -f1) &&
	grep -q "$want" "$MNT/models/m/.smip/manifest.json"
'

test_expect_success "a push to another repository mounts blobs, sends no chunks" '
	cp -r "$MNT/models/m" "$MNT/net/lab/team/m-ft:v1" &&
	grep "team/m-ft:v1: pushed" "$DAEMON_LOG" | sed "s/^/# /" &&
	mounted=$(grep "team/m-ft:v1: pushed" "$DAEMON_LOG" |
		sed "s/.*chunks, \([0-9]*\) blobs mounted.*/\1/" | awk "{ s += \$1 } END { print s }") &&
	sent=$(grep "team/m-ft:v1: pushed" "$DAEMON_LOG" |
		sed "s/.*new, \([0-9]*\) bytes sent/\1/" | awk "{ s += \$1 } END { print s }") &&
	say "# mounted $mounted blobs, sent $sent bytes" &&
	[ "$mounted" -gt 0 ] && [ "$sent" -lt 100000 ] &&
	diff -r "$SRC/m" "$MNT/net/lab/team/m-ft/v1"
'

test_expect_success "push v2 (10% of tensors changed, header grown): new chunks only" '
	python3 "$NET_HELPERS/mkmodel.py" "$SRC/v2.safetensors" 48 262144 --seed 1 --change 0.1 --pad 4099 &&
	mkdir "$MNT/models/m2" && cp "$SRC/v2.safetensors" "$MNT/models/m2/model.safetensors" &&
	cp -r "$MNT/models/m2" "$MNT/net/lab/team/m/v2" &&
	sent=$(grep "team/m:v2: pushed" "$DAEMON_LOG" | tail -1 | sed "s/.*new, \([0-9]*\) bytes sent/\1/") &&
	size=$(stat -c %s "$SRC/v2.safetensors") && say "# sent $sent of $size bytes" &&
	[ $((sent * 100)) -le $((size * 25)) ]
'

test_expect_success "pull v2 into the store that has v1: only changed chunks move" '
	daemon_stop && STORE=$STORE_A && daemon_start &&
	cp -r "$MNT/net/lab/team/m/v2" "$MNT/models/m2" &&
	cmp "$SRC/v2.safetensors" "$MNT/models/m2/model.safetensors" &&
	got=$(net_fetched pull v2/model.safetensors) && size=$(stat -c %s "$SRC/v2.safetensors") &&
	say "# fetched $got of $size bytes" && [ $((got * 100)) -le $((size * 20)) ]
'

test_expect_success "wrong password: EACCES, and no password in the log" '
	daemon_stop &&
	net_remotes "$STORE_A" lab "$REGISTRY_URL" "$REGISTRY_USER" "wrong-Pw-$$" &&
	ALLOWED_ERRORS="net/lab" && daemon_start &&
	! ls "$MNT/net/lab/team/m/v1" 2>"$TEST_DIR/ls.err" &&
	cat "$TEST_DIR/ls.err" && grep -qi "denied\|No such" "$TEST_DIR/ls.err" &&
	! grep -q "wrong-Pw-$$" "$DAEMON_LOG"
'

if command -v skopeo >/dev/null; then
test_expect_success "skopeo inspect --raw shows our manifest" '
	skopeo inspect --raw --tls-verify=false --creds "$REGISTRY_USER:$REGISTRY_PASS" \
		"docker://127.0.0.1:$REGISTRY_PORT/team/m:v1" > "$TEST_DIR/skopeo.json" &&
	cmp "$TEST_DIR/skopeo.json" "$TEST_DIR/man.json"
'

test_expect_success "skopeo copy mirrors it byte for byte, and net/ reads the mirror" '
	skopeo copy --src-tls-verify=false --dest-tls-verify=false \
		--src-creds "$REGISTRY_USER:$REGISTRY_PASS" --dest-creds "$REGISTRY_USER:$REGISTRY_PASS" \
		"docker://127.0.0.1:$REGISTRY_PORT/team/m:v1" "docker://127.0.0.1:$REGISTRY_PORT/mirror/m:v1" &&
	rcurl -H "Accept: application/vnd.oci.image.manifest.v1+json" \
		"$REGISTRY_URL/v2/mirror/m/manifests/v1" | cmp - "$TEST_DIR/man.json" &&
	skopeo copy --src-tls-verify=false --src-creds "$REGISTRY_USER:$REGISTRY_PASS" \
		"docker://127.0.0.1:$REGISTRY_PORT/team/m:v1" "oci:$TEST_DIR/layout:v1" &&
	d=$(sha256sum < "$TEST_DIR/man.json" | cut -d" " -f1) &&
	cmp "$TEST_DIR/layout/blobs/sha256/$d" "$TEST_DIR/man.json" &&
	daemon_stop && net_remotes "$STORE_A" lab "$REGISTRY_URL" "$REGISTRY_USER" "$REGISTRY_PASS" &&
	ALLOWED_ERRORS= && daemon_start &&
	diff -r "$SRC/m" "$MNT/net/lab/mirror/m/v1"
'

# The kernel opens folders alone and keeps their listings (fs/ops.c): a
# remote's listing, which changes past the mount, must still be made afresh.
test_expect_success "a repository pushed past the mount shows in the next listing" '
	ls "$MNT/net/lab" >"$TEST_DIR/lab.1" && grep -qx mirror "$TEST_DIR/lab.1" &&
	! grep -qx mirror2 "$TEST_DIR/lab.1" &&
	skopeo copy --src-tls-verify=false --dest-tls-verify=false \
		--src-creds "$REGISTRY_USER:$REGISTRY_PASS" --dest-creds "$REGISTRY_USER:$REGISTRY_PASS" \
		"docker://127.0.0.1:$REGISTRY_PORT/team/m:v1" "docker://127.0.0.1:$REGISTRY_PORT/mirror2/m:v1" &&
	sleep 1.2 && [ -d "$MNT/net/lab/mirror2" ] &&
	ls "$MNT/net/lab" | grep -qx mirror2
'
else
test_skip "skopeo interop" "skopeo not installed"
fi

test_expect_success "a remote with \"format\": \"modelpack\" pushes plain ModelPack artifacts" '
	daemon_stop &&
	printf "{\"remotes\": {\"lab\": {\"url\": \"%s\", \"insecure\": true, \"username\": \"%s\", \"password\": \"%s\"}, \"mp\": {\"url\": \"%s\", \"insecure\": true, \"username\": \"%s\", \"password\": \"%s\", \"format\": \"modelpack\"}}}\n" \
		"$REGISTRY_URL" "$REGISTRY_USER" "$REGISTRY_PASS" "$REGISTRY_URL" "$REGISTRY_USER" "$REGISTRY_PASS" > "$STORE_A/remotes.json" &&
	daemon_start &&
	cp -r "$MNT/models/m" "$MNT/net/mp/team/mp:v1" &&
	rcurl -H "Accept: application/vnd.oci.image.manifest.v1+json" \
		"$REGISTRY_URL/v2/team/mp/manifests/v1" > "$TEST_DIR/mp.json" &&
	grep -q "\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\"" "$TEST_DIR/mp.json" &&
	grep -q "org.cncf.model.filepath\":\"tok/vocab.txt" "$TEST_DIR/mp.json" &&
	wait_for 15 "ls \"$MNT/net/lab/team\" | grep -qx mp" &&
	grep -q "^layout: modelpack" "$MNT/net/lab/team/mp/v1/.smip/info" &&
	for f in model.safetensors config.json tok/vocab.txt; do
		cmp "$SRC/m/$f" "$MNT/net/lab/team/mp/v1/$f" || return 1
	done
'

test_expect_success "the pulled models work offline" '
	registry_stop "$TEST_DIR/registry" &&
	diff -r "$SRC/m" "$MNT/models/m" &&
	cmp "$SRC/v2.safetensors" "$MNT/models/m2/model.safetensors"
'

test_expect_success "the daemon stops cleanly" 'daemon_stop'

test_done
