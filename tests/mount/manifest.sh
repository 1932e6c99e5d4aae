#!/bin/sh
# The SMIP manifest of each model folder (models/NAME/.smip/manifest.json):
# valid JSON whose sizes and sha256 match sha256sum of the files, hidden
# from readdir (ls -a, find), found by lookup, kept up to date, read-only,
# and never copied out by cp -r or rsync -a.
. "$(dirname "$0")/lib.sh"
require_cmd rsync diff

SRC=$TEST_DIR/src
M=$MNT/models

test_expect_success 'set up: a model copied in with cp -r' '
	make_tree "$SRC/Llama" manifest &&
	daemon_start &&
	cp -r "$SRC/Llama" "$M/" &&
	diff -r "$SRC/Llama" "$M/Llama"
'

test_expect_success 'the manifest is found by lookup and is valid JSON' '
	[ -d "$M/Llama/.smip" ] &&
	[ -f "$M/Llama/.smip/manifest.json" ] &&
	[ "$(stat -c %s "$M/Llama/.smip/manifest.json")" -gt 0 ] &&
	python3 -m json.tool "$M/Llama/.smip/manifest.json" >/dev/null
'

test_expect_success 'its sizes and sha256 match the files (sha256sum)' '
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Llama/.smip/manifest.json" "$SRC/Llama" Llama &&
	# the same, against sha256sum of the files read through the mount
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Llama/.smip/manifest.json" "$M/Llama" Llama &&
	want=$(sha256sum <"$M/Llama/model.safetensors" | cut -d" " -f1) &&
	grep -q "$want" "$M/Llama/.smip/manifest.json"
'

test_expect_success 'it is hidden from ls -a, find and readdir' '
	! ls -a "$M/Llama" | grep -qx ".smip" &&
	! find "$M" -name .smip | grep -q . &&
	[ "$(ls -A "$M/Llama" | sort)" = "$(ls -A "$SRC/Llama" | sort)" ]
'

test_expect_success 'cp -r and rsync -a out do not copy it' '
	cp -r "$M/Llama" "$TEST_DIR/cp-out" &&
	same_tree "$SRC/Llama" "$TEST_DIR/cp-out" &&
	rsync -a "$M/Llama/" "$TEST_DIR/rs-out/" &&
	same_tree "$SRC/Llama" "$TEST_DIR/rs-out" &&
	cp -a "$M" "$TEST_DIR/models-out" &&
	same_tree "$SRC/Llama" "$TEST_DIR/models-out/Llama"
'

test_expect_success 'it is read-only and cannot be removed or renamed' '
	r=$(python3 "$MOUNT_HELPERS/errno.py" open-write "$M/Llama/.smip/manifest.json") &&
	echo "open for writing: $r" && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" unlink "$M/Llama/.smip/manifest.json") &&
	echo "unlink: $r" && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" rename "$M/Llama/.smip" "$M/Llama/smip2") &&
	echo "rename: $r" && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" create "$M/Llama/.smip/other") &&
	echo "create inside: $r" && [ "$r" != OK ] &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Llama/.smip/manifest.json" "$SRC/Llama" Llama
'

test_expect_success 'sub-folders have no manifest of their own' '
	expect_errno ENOENT stat "$M/Llama/onnx/.smip" &&
	expect_errno ENOENT stat "$M/Llama/onnx/sub/.smip"
'

test_expect_success 'the manifest follows changes: rewrite, add, remove, mv' '
	cp -a "$SRC/Llama" "$TEST_DIR/ref" &&
	echo "{\"rewritten\": true}" >"$M/Llama/config.json" &&
	echo "{\"rewritten\": true}" >"$TEST_DIR/ref/config.json" &&
	head -c 300000 /dev/urandom >"$TEST_DIR/ref/added.bin" &&
	cp "$TEST_DIR/ref/added.bin" "$M/Llama/added.bin" &&
	rm "$M/Llama/empty" "$TEST_DIR/ref/empty" &&
	mv "$M/Llama/onnx/model.onnx" "$M/Llama/moved.onnx" &&
	mv "$TEST_DIR/ref/onnx/model.onnx" "$TEST_DIR/ref/moved.onnx" &&
	mkdir "$M/Llama/newdir" "$TEST_DIR/ref/newdir" &&
	diff -r "$TEST_DIR/ref" "$M/Llama" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Llama/.smip/manifest.json" "$TEST_DIR/ref" Llama
'

test_expect_success 'a renamed model and an in-tree copy have their own manifests' '
	mv "$M/Llama" "$M/Renamed" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Renamed/.smip/manifest.json" "$TEST_DIR/ref" Renamed &&
	cp -r "$M/Renamed" "$M/Copy" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Copy/.smip/manifest.json" "$TEST_DIR/ref" Copy &&
	expect_errno ENOENT stat "$M/Llama/.smip/manifest.json"
'

test_expect_success 'an empty model has a valid, empty manifest' '
	mkdir "$M/Empty" && mkdir "$TEST_DIR/empty-ref" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Empty/.smip/manifest.json" "$TEST_DIR/empty-ref" Empty
'

test_expect_success 'manifests survive a remount' '
	daemon_restart &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Renamed/.smip/manifest.json" "$TEST_DIR/ref" Renamed &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/Copy/.smip/manifest.json" "$TEST_DIR/ref" Copy
'

test_expect_success 'rm -r of a model removes it with its manifest' '
	rm -r "$M/Copy" &&
	[ ! -e "$M/Copy" ] &&
	expect_errno ENOENT stat "$M/Copy/.smip/manifest.json" &&
	diff -r "$TEST_DIR/ref" "$M/Renamed"
'

test_done
