#!/bin/sh
# The user's round trip of issue 2: mkdir, cp, cp -r, ls -l, du, df,
# sha256sum, in-tree cp -r (shares chunks), cp -r out + diff -r, rsync -a
# twice, mv, rm -r (space comes back), .llmfs/status, and the small POSIX
# operations (symlink, truncate, chmod, utimes).
. "$(dirname "$0")/lib.sh"
require_cmd rsync diff du df

SRC=$TEST_DIR/src
OUT=$TEST_DIR/out
M=$MNT/models

test_expect_success 'generate the source models' '
	make_tree "$SRC/Llama" llama &&
	mkdir -p "$SRC/single" &&
	head -c 2000000 /dev/urandom >"$SRC/single/q8_0.gguf" &&
	yes "gguf tensor block" | head -c 800000 >>"$SRC/single/q8_0.gguf"
'

test_expect_success 'the daemon mounts an empty store' '
	daemon_start &&
	[ -d "$M" ] && [ -f "$MNT/.llmfs/status" ] &&
	[ "$(ls -A "$M")" = "" ] &&
	[ "$(status_get files)" = 0 ] &&
	[ "$(status_get logical_bytes)" = 0 ]
'

test_expect_success 'mkdir a model folder, cp a file into it' '
	mkdir "$M/qwen" &&
	[ -d "$M/qwen" ] &&
	cp "$SRC/single/q8_0.gguf" "$M/qwen/" &&
	cmp "$SRC/single/q8_0.gguf" "$M/qwen/q8_0.gguf"
'

test_expect_success 'sha256sum through the mount equals the source' '
	a=$(cd "$SRC/single" && sha256sum q8_0.gguf) &&
	b=$(cd "$M/qwen" && sha256sum q8_0.gguf) &&
	echo "$a / $b" && [ "$a" = "$b" ]
'

test_expect_success 'cp -r of nested folders' '
	cp -r "$SRC/Llama" "$M/" &&
	sums "$SRC/Llama" >"$TEST_DIR/src.sums" &&
	sums "$M/Llama" >"$TEST_DIR/mnt.sums" &&
	cmp "$TEST_DIR/src.sums" "$TEST_DIR/mnt.sums" &&
	diff -r "$SRC/Llama" "$M/Llama"
'

test_expect_success 'ls -l shows every entry with its size' '
	ls -l "$M/Llama" >"$TEST_DIR/ls.out" && cat "$TEST_DIR/ls.out" &&
	for f in "$SRC/Llama"/*; do
		n=$(basename "$f") &&
		grep -F -- "$n" "$TEST_DIR/ls.out" >/dev/null || { echo "missing $n"; return 1; }
		[ -d "$f" ] && { [ -d "$M/Llama/$n" ] || return 1; continue; }
		[ "$(stat -c %s "$f")" = "$(stat -c %s "$M/Llama/$n")" ] ||
			{ echo "size of $n differs"; return 1; }
	done &&
	[ "$(ls -A "$M/Llama" | sort)" = "$(ls -A "$SRC/Llama" | sort)" ] &&
	ls -l "$M/Llama/onnx/sub" | grep -q "data.txt"
'

test_expect_success 'du counts the files (apparent size and blocks)' '
	want=$(find "$SRC/Llama" -type f -printf "%s\n" | awk "{s+=\$1} END {print s}") &&
	got=$(du -s --apparent-size -B1 "$M/Llama" | cut -f1) &&
	echo "apparent: want $want got $got" &&
	[ "$got" -ge "$want" ] && [ "$got" -le $((want + 65536)) ] &&
	kb=$(du -sk "$M/Llama" | cut -f1) &&
	echo "du -sk: $kb" && [ "$kb" -ge $((want / 1024 / 2)) ] &&
	du -sh "$M" && du -sh "$M/Llama"
'

test_expect_success 'df on the mount agrees with .llmfs/status' '
	df -h "$MNT" &&
	df -B1 --output=source,used,avail "$MNT" | tail -1 >"$TEST_DIR/df" &&
	read -r src used avail <"$TEST_DIR/df" &&
	pb=$(status_get pack_bytes) && sb=$(status_get stored_bytes) &&
	echo "df used $used avail $avail; status pack $pb stored $sb" &&
	[ "$src" = llmfs ] &&
	[ "$used" -ge $((sb - 1048576)) ] && [ "$used" -le $((pb + 1048576)) ] &&
	[ "$avail" -gt 0 ]
'

test_expect_success '.llmfs/status counts files and bytes' '
	cat "$MNT/.llmfs/status" &&
	nfiles=$(find "$SRC/Llama" "$SRC/single" -type f | wc -l) &&
	[ "$(status_get files)" = "$nfiles" ] &&
	lb=$(find "$SRC/Llama" "$SRC/single" -type f -printf "%s\n" | awk "{s+=\$1} END {print s}") &&
	[ "$(status_get logical_bytes)" = "$lb" ] &&
	ub=$(status_get unique_bytes) && [ "$ub" -le "$lb" ] && [ "$ub" -gt 0 ] &&
	# compressible data went in: stored is smaller than unique
	[ "$(status_get stored_bytes)" -lt "$ub" ] &&
	for k in files directories logical_bytes unique_bytes stored_bytes \
		pack_bytes garbage_bytes chunks dead_chunks packs dedup_ratio \
		compression_ratio total_ratio disk_free_bytes; do
		status_get $k >/dev/null || return 1
	done
'

test_expect_success 'in-tree cp -r stores no new data; dedup ratio rises' '
	ub0=$(status_get unique_bytes) && sb0=$(status_get stored_bytes) &&
	lb0=$(status_get logical_bytes) && dr0=$(status_get dedup_ratio) &&
	cp -r "$M/Llama" "$M/Llama-copy" &&
	diff -r "$SRC/Llama" "$M/Llama-copy" &&
	ub1=$(status_get unique_bytes) && sb1=$(status_get stored_bytes) &&
	lb1=$(status_get logical_bytes) && dr1=$(status_get dedup_ratio) &&
	llama=$(find "$SRC/Llama" -type f -printf "%s\n" | awk "{s+=\$1} END {print s}") &&
	echo "unique $ub0 -> $ub1, stored $sb0 -> $sb1, logical $lb0 -> $lb1, dedup $dr0 -> $dr1" &&
	[ "$ub1" = "$ub0" ] && [ "$sb1" = "$sb0" ] &&
	[ "$lb1" = $((lb0 + llama)) ] &&
	awk -v a="$dr0" -v b="$dr1" "BEGIN { exit !(b > a) }" &&
	awk -v r="$dr1" -v l="$lb1" -v u="$ub1" \
		"BEGIN { x = l / u; d = r - x; if (d < 0) d = -d; exit !(d < 0.01) }"
'

test_expect_success 'cp -r out of the tree reproduces the model exactly' '
	cp -r "$M/Llama" "$OUT" &&
	same_tree "$SRC/Llama" "$OUT" &&
	[ ! -e "$OUT/.smip" ] &&
	diff -r "$M/Llama" "$OUT" &&
	rm -rf "$OUT"
'

test_expect_success 'rsync -a into the tree, then again: nothing transferred' '
	rsync -a "$SRC/Llama/" "$M/Llama-rs/" &&
	diff -r "$SRC/Llama" "$M/Llama-rs" &&
	rsync -a --stats "$SRC/Llama/" "$M/Llama-rs/" >"$TEST_DIR/rs2" &&
	cat "$TEST_DIR/rs2" &&
	grep -q "^Number of regular files transferred: 0$" "$TEST_DIR/rs2" &&
	diff -r "$SRC/Llama" "$M/Llama-rs"
'

test_expect_success 'rsync -a over an existing copy with one changed file' '
	cp -a "$SRC/Llama" "$TEST_DIR/Llama2" &&
	echo "{\"changed\": 1}" >"$TEST_DIR/Llama2/config.json" &&
	touch -d "2020-01-02 03:04:05" "$TEST_DIR/Llama2/config.json" &&
	rsync -a --stats "$TEST_DIR/Llama2/" "$M/Llama-rs/" >"$TEST_DIR/rs3" &&
	grep -q "^Number of regular files transferred: 1$" "$TEST_DIR/rs3" &&
	diff -r "$TEST_DIR/Llama2" "$M/Llama-rs" &&
	rsync -a --stats "$M/Llama-rs/" "$TEST_DIR/rs-out/" >"$TEST_DIR/rs4" &&
	same_tree "$TEST_DIR/Llama2" "$TEST_DIR/rs-out" &&
	[ "$(stat -c %Y "$M/Llama-rs/model.safetensors")" = \
	  "$(stat -c %Y "$SRC/Llama/model.safetensors")" ]
'

test_expect_success 'mv renames a model and moves files between models' '
	mv "$M/Llama-rs" "$M/Llama-moved" &&
	[ ! -e "$M/Llama-rs" ] &&
	diff -r "$TEST_DIR/Llama2" "$M/Llama-moved" &&
	mv "$M/Llama-moved/config.json" "$M/qwen/config.json" &&
	[ ! -e "$M/Llama-moved/config.json" ] &&
	cmp "$TEST_DIR/Llama2/config.json" "$M/qwen/config.json" &&
	mv "$M/Llama-moved/onnx" "$M/qwen/onnx2" &&
	diff -r "$SRC/Llama/onnx" "$M/qwen/onnx2" &&
	mv "$M/qwen/onnx2/model.onnx" "$M/qwen/onnx2/renamed.onnx" &&
	cmp "$SRC/Llama/onnx/model.onnx" "$M/qwen/onnx2/renamed.onnx"
'

test_expect_success 'mv onto an existing file replaces it' '
	cp "$SRC/Llama/config.json" "$M/qwen/a" &&
	cp "$SRC/single/q8_0.gguf" "$M/qwen/b" &&
	mv -f "$M/qwen/a" "$M/qwen/b" &&
	[ ! -e "$M/qwen/a" ] && cmp "$SRC/Llama/config.json" "$M/qwen/b"
'

test_expect_success 'symlinks, truncate, chmod and utimes' '
	ln -s q8_0.gguf "$M/qwen/link.gguf" &&
	[ "$(readlink "$M/qwen/link.gguf")" = q8_0.gguf ] &&
	cmp "$SRC/single/q8_0.gguf" "$M/qwen/link.gguf" &&
	cp "$SRC/single/q8_0.gguf" "$M/qwen/t" &&
	truncate -s 1000 "$M/qwen/t" && [ "$(stat -c %s "$M/qwen/t")" = 1000 ] &&
	head -c 1000 "$SRC/single/q8_0.gguf" | cmp - "$M/qwen/t" &&
	truncate -s 3000 "$M/qwen/t" && [ "$(stat -c %s "$M/qwen/t")" = 3000 ] &&
	{ head -c 1000 "$SRC/single/q8_0.gguf"; head -c 2000 /dev/zero; } | cmp - "$M/qwen/t" &&
	chmod 600 "$M/qwen/t" && [ "$(stat -c %a "$M/qwen/t")" = 600 ] &&
	touch -d "2001-02-03 04:05:06 UTC" "$M/qwen/t" &&
	[ "$(stat -c %Y "$M/qwen/t")" = "$(date -d "2001-02-03 04:05:06 UTC" +%s)" ]
'

test_expect_success 'symlinks in a model round-trip through cp -a and rsync -a' '
	mkdir -p "$TEST_DIR/withlinks/sub" &&
	head -c 100000 /dev/urandom >"$TEST_DIR/withlinks/sub/real.bin" &&
	ln -s sub/real.bin "$TEST_DIR/withlinks/rel-link" &&
	ln -s ../rel-link "$TEST_DIR/withlinks/sub/chain" &&
	ln -s /nonexistent/target "$TEST_DIR/withlinks/dangling" &&
	cp -a "$TEST_DIR/withlinks" "$M/withlinks" &&
	[ "$(readlink "$M/withlinks/rel-link")" = sub/real.bin ] &&
	[ "$(readlink "$M/withlinks/dangling")" = /nonexistent/target ] &&
	cmp "$TEST_DIR/withlinks/sub/real.bin" "$M/withlinks/sub/chain" &&
	rsync -a "$M/withlinks/" "$TEST_DIR/links-out/" &&
	[ -L "$TEST_DIR/links-out/rel-link" ] && [ -L "$TEST_DIR/links-out/dangling" ] &&
	[ "$(readlink "$TEST_DIR/links-out/sub/chain")" = ../rel-link ] &&
	diff -r "$TEST_DIR/withlinks/sub" "$TEST_DIR/links-out/sub" &&
	rm -r "$M/withlinks"
'

test_expect_success 'overwriting a file in place (cp onto it) gives the new content' '
	cp "$SRC/Llama/onnx/model.onnx" "$M/qwen/t" &&
	cmp "$SRC/Llama/onnx/model.onnx" "$M/qwen/t" &&
	printf "ABC" | dd of="$M/qwen/t" bs=1 seek=5000 conv=notrunc 2>/dev/null &&
	{ head -c 5000 "$SRC/Llama/onnx/model.onnx"; printf ABC;
	  tail -c +5004 "$SRC/Llama/onnx/model.onnx"; } >"$TEST_DIR/patched" &&
	cmp "$TEST_DIR/patched" "$M/qwen/t"
'

test_expect_success 'everything reads back the same after a remount' '
	sums "$M" >"$TEST_DIR/before" &&
	daemon_restart &&
	sums "$M" >"$TEST_DIR/after" &&
	cmp "$TEST_DIR/before" "$TEST_DIR/after" &&
	diff -r "$SRC/Llama" "$M/Llama" && diff -r "$SRC/Llama" "$M/Llama-copy"
'

test_expect_success 'rm -r of a shared model keeps the data of the other copy' '
	sb0=$(status_get stored_bytes) &&
	rm -r "$M/Llama-copy" &&
	[ ! -e "$M/Llama-copy" ] &&
	diff -r "$SRC/Llama" "$M/Llama" &&
	[ "$(status_get stored_bytes)" = "$sb0" ]
'

test_expect_success 'rm -r of a unique model gives its space back (after GC)' '
	sb0=$(status_get stored_bytes) &&
	mkdir "$M/unique" &&
	head -c 3000000 /dev/urandom >"$M/unique/r.bin" &&
	sb1=$(status_get stored_bytes) &&
	echo "stored $sb0 -> $sb1" && [ "$sb1" -ge $((sb0 + 3000000)) ] &&
	rm -r "$M/unique" && [ ! -e "$M/unique" ] &&
	wait_for "$GC_DEADLINE" "[ \$(status_get stored_bytes) -le $sb0 ]" &&
	cat "$MNT/.llmfs/status"
'

test_expect_success 'truncate(2) of a closed file leaves collection working' '
	mkdir "$M/trunc" &&
	head -c 2000000 /dev/urandom >"$M/trunc/a" &&
	sb0=$(status_get stored_bytes) &&
	python3 -c "import os, sys; os.truncate(sys.argv[1], 1000)" "$M/trunc/a" &&
	[ "$(stat -c %s "$M/trunc/a")" = 1000 ] &&
	wait_for "$GC_DEADLINE" "[ \$(status_get stored_bytes) -le $((sb0 - 1500000)) ]" &&
	# dead chunks go only if collection runs: no writer may be left open
	head -c 3000000 /dev/urandom >"$M/trunc/b" && rm "$M/trunc/b" &&
	wait_for "$GC_DEADLINE" "[ \$(status_get dead_chunks) = 0 ]" &&
	rm -r "$M/trunc"
'

test_expect_success 'the ratios in .llmfs/status agree with its byte counts' '
	# One reading: the collector may compact packs between two reads.
	cat "$MNT/.llmfs/status" >"$TEST_DIR/status" && cat "$TEST_DIR/status" &&
	st=$TEST_DIR/status &&
	l=$(status_get logical_bytes "$st") && u=$(status_get unique_bytes "$st") &&
	s=$(status_get stored_bytes "$st") && p=$(status_get pack_bytes "$st") &&
	dr=$(status_get dedup_ratio "$st") && cr=$(status_get compression_ratio "$st") &&
	tr=$(status_get total_ratio "$st") &&
	awk -v l="$l" -v u="$u" -v s="$s" -v p="$p" -v dr="$dr" -v cr="$cr" -v tr="$tr" "
		function near(a, b) { d = a - b; if (d < 0) d = -d; return d < 0.0011 + b / 500 }
		BEGIN {
			ok = near(dr, l / u) && near(cr, u / s) && near(tr, l / p)
			if (!ok) print \"dedup\", dr, l / u, \"compression\", cr, u / s, \"total\", tr, l / p
			exit !ok
		}" &&
	[ "$s" -le "$p" ] && [ "$(status_get disk_free_bytes)" -gt 0 ]
'

test_expect_success 'rewriting one file many times does not grow the store without bound' '
	mkdir "$M/rewrite" &&
	for i in 1 2 3 4 5 6 7 8; do
		head -c 1500000 /dev/urandom >"$TEST_DIR/rw" &&
		cp "$TEST_DIR/rw" "$M/rewrite/f" || return 1
	done &&
	cmp "$TEST_DIR/rw" "$M/rewrite/f" &&
	# packs under half live get compacted: at most about twice what is live
	wait_for "$GC_DEADLINE" "[ \$(status_get pack_bytes) -le \$(( 2 * \$(status_get stored_bytes) + 1048576 )) ]" ||
	{ cat "$MNT/.llmfs/status"; ls -l "$STORE/packs"; return 1; }
'

test_expect_success 'rm -r of everything: packs shrink to (almost) nothing' '
	pb0=$(status_get pack_bytes) && echo "pack_bytes $pb0" &&
	rm -r "$M"/* &&
	[ "$(ls -A "$M")" = "" ] &&
	[ "$(status_get files)" = 0 ] && [ "$(status_get logical_bytes)" = 0 ] &&
	wait_for "$GC_DEADLINE" "[ \$(status_get pack_bytes) -lt 1048576 ]" &&
	wait_for "$GC_DEADLINE" "[ \$(du -sb \"\$STORE/packs\" | cut -f1) -lt 1048576 ]" &&
	cat "$MNT/.llmfs/status" && du -sb "$STORE/packs" &&
	[ "$(status_get stored_bytes)" -lt 65536 ]
'

test_expect_success 'fusermount3 -u unmounts cleanly' '
	daemon_stop umount
'

test_done
