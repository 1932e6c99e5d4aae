#!/bin/sh
# Programs that mmap model files (llama.cpp does) read them correctly:
# MAP_PRIVATE and MAP_SHARED, in order and out of order, first read and
# page-cache re-read, after a remount, and while the file is replaced.
. "$(dirname "$0")/lib.sh"
[ -n "$MMAPCAT" ] && [ -x "$MMAPCAT" ] || skip_all "MMAPCAT helper not built"

SRC=$TEST_DIR/src
M=$MNT/models

test_expect_success 'set up: model files of several sizes' '
	mkdir -p "$SRC" &&
	head -c 3000000 /dev/urandom >"$SRC/rand.gguf" &&
	yes "tensor 0.25 0.5 0.75" | head -c 2500001 >"$SRC/text.bin" &&
	head -c 4095 /dev/urandom >"$SRC/small" &&
	head -c 1 /dev/urandom >"$SRC/one" &&
	: >"$SRC/empty" &&
	daemon_start &&
	mkdir "$M/mm" && cp "$SRC"/* "$M/mm/"
'

test_expect_success 'mmap (MAP_PRIVATE) reads every file exactly' '
	for f in rand.gguf text.bin small one empty; do
		"$MMAPCAT" "$M/mm/$f" | cmp - "$SRC/$f" || { echo "differs: $f"; return 1; }
	done
'

test_expect_success 'mmap (MAP_SHARED, read-only) reads exactly' '
	for f in rand.gguf text.bin small; do
		"$MMAPCAT" -s "$M/mm/$f" | cmp - "$SRC/$f" || return 1
	done
'

test_expect_success 'out-of-order page faults read exactly (fresh mount, cold cache)' '
	daemon_restart &&
	"$MMAPCAT" -r "$M/mm/rand.gguf" | cmp - "$SRC/rand.gguf" &&
	"$MMAPCAT" -r -s "$M/mm/text.bin" | cmp - "$SRC/text.bin"
'

test_expect_success 'python mmap with random slices matches the source' '
	python3 - "$M/mm/rand.gguf" "$SRC/rand.gguf" <<-EOF
	import mmap, random, sys
	a = open(sys.argv[1], "rb"); b = open(sys.argv[2], "rb").read()
	m = mmap.mmap(a.fileno(), 0, prot=mmap.PROT_READ)
	assert len(m) == len(b), (len(m), len(b))
	r = random.Random(7)
	for _ in range(500):
	    o = r.randrange(len(b)); n = r.randrange(1, 70000)
	    assert m[o:o + n] == b[o:o + n], (o, n)
	assert m[:] == b
	EOF
'

test_expect_success 'mmap of an in-tree copy reads exactly' '
	cp "$M/mm/rand.gguf" "$M/mm/copy.gguf" &&
	"$MMAPCAT" "$M/mm/copy.gguf" | cmp - "$SRC/rand.gguf"
'

test_expect_success 'a file replaced while mapped: the new open maps the new content' '
	head -c 2000000 /dev/urandom >"$SRC/new.gguf" &&
	cp "$M/mm/rand.gguf" "$M/mm/swap.gguf" &&
	"$MMAPCAT" "$M/mm/swap.gguf" | cmp - "$SRC/rand.gguf" &&
	cp "$SRC/new.gguf" "$M/mm/swap.gguf" &&
	"$MMAPCAT" "$M/mm/swap.gguf" | cmp - "$SRC/new.gguf" &&
	"$MMAPCAT" -r "$M/mm/swap.gguf" | cmp - "$SRC/new.gguf"
'

test_expect_success 'mmap reads while other files are written' '
	( for i in 1 2 3; do cp "$SRC/text.bin" "$M/mm/w$i"; done ) &
	w=$! &&
	for i in 1 2 3 4 5; do
		"$MMAPCAT" "$M/mm/rand.gguf" | cmp - "$SRC/rand.gguf" || return 1
	done &&
	wait $w &&
	for i in 1 2 3; do cmp "$SRC/text.bin" "$M/mm/w$i" || return 1; done
'

test_done
