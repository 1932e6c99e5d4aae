#!/bin/sh
# Write patterns beyond a sequential cp: out-of-order blocks, holes past
# the end, appends to committed files, fsync in the middle, reading back
# through the same descriptor before close, O_TRUNC rewrites, truncate of
# an open file; every result is compared with the same operations done on
# a local file.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models

# both OPS...: runs the python ops script on a local file and on the mount.
# ops.py is written below; it prints what it read back, which must agree.
both() {
	python3 "$TEST_DIR/ops.py" "$TEST_DIR/local/$1" "$@" >"$TEST_DIR/local.out" &&
	python3 "$TEST_DIR/ops.py" "$M/w/$1" "$@" >"$TEST_DIR/mount.out" &&
	cmp "$TEST_DIR/local.out" "$TEST_DIR/mount.out" &&
	cmp "$TEST_DIR/local/$1" "$M/w/$1"
}

test_expect_success 'set up' '
	mkdir -p "$SRC" "$TEST_DIR/local" &&
	head -c 2000000 /dev/urandom >"$SRC/r" &&
	cat >"$TEST_DIR/ops.py" <<-\EOF &&
	import hashlib, os, random, sys
	path, name, op = sys.argv[1], sys.argv[2], sys.argv[3]
	src = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else b""
	B = 65536
	def out(b):
	    print(len(b), hashlib.sha256(b).hexdigest())
	if op == "shuffled":          # blocks in a random order
	    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
	    offs = list(range(0, len(src), B)); random.Random(3).shuffle(offs)
	    for o in offs:
	        os.pwrite(fd, src[o:o + B], o)
	    out(os.pread(fd, len(src) + 10, 0)); os.close(fd)
	elif op == "holes":           # writes past the end leave zeros
	    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
	    os.pwrite(fd, src[:1000], 0)
	    os.pwrite(fd, src[1000:5000], 700000)
	    os.pwrite(fd, src[5000:6000], 300000)
	    out(os.pread(fd, 800000, 0)); os.close(fd)
	elif op == "append":          # appends to a committed file, twice
	    for part in (src[:300000], src[300000:310000]):
	        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
	        os.write(fd, part); os.close(fd)
	    out(open(path, "rb").read())
	elif op == "fsync-middle":    # fsync half-way, then go on
	    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
	    os.write(fd, src[:700000]); os.fsync(fd)
	    os.write(fd, src[700000:1500000]); os.fsync(fd)
	    os.write(fd, src[1500000:])
	    out(os.pread(fd, len(src), 0)); os.close(fd)
	elif op == "overwrite-middle":  # patch bytes inside a committed file
	    fd = os.open(path, os.O_RDWR)
	    os.pwrite(fd, b"PATCHED" * 1000, 123457)
	    out(os.pread(fd, 200000, 100000)); os.close(fd)
	elif op == "truncate-open":   # shrink and regrow through the descriptor
	    fd = os.open(path, os.O_RDWR)
	    os.ftruncate(fd, 54321); os.pwrite(fd, b"tail", 60000)
	    out(os.pread(fd, 100000, 0)); os.close(fd)
	elif op == "rewrite-shorter":  # O_TRUNC with less data than before
	    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
	    os.write(fd, src[:1234]); os.close(fd)
	    out(open(path, "rb").read())
	elif op == "two-fds":         # two descriptors, writes interleaved
	    a = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
	    b = os.open(path, os.O_RDWR)
	    os.pwrite(a, src[:100000], 0); os.pwrite(b, src[100000:200000], 100000)
	    os.pwrite(a, b"x" * 10, 50); os.close(a)
	    out(os.pread(b, 300000, 0)); os.close(b)
	else:
	    sys.exit("bad op " + op)
	EOF
	daemon_start &&
	mkdir "$M/w"
'

test_expect_success 'blocks written in a shuffled order' '
	both f1 shuffled "$SRC/r"
'

test_expect_success 'writes past the end leave holes of zeros' '
	both f2 holes "$SRC/r"
'

test_expect_success 'appends to a committed file (O_APPEND, twice)' '
	head -c 500000 "$SRC/r" >"$TEST_DIR/local/f3" &&
	cp "$TEST_DIR/local/f3" "$M/w/f3" &&
	both f3 append "$SRC/r"
'

test_expect_success 'fsync in the middle of a write, then more writes' '
	both f4 fsync-middle "$SRC/r"
'

test_expect_success 'patching bytes inside a committed file' '
	cp "$SRC/r" "$TEST_DIR/local/f5" && cp "$SRC/r" "$M/w/f5" &&
	both f5 overwrite-middle
'

test_expect_success 'ftruncate of an open file, then a write past the new end' '
	cp "$SRC/r" "$TEST_DIR/local/f6" && cp "$SRC/r" "$M/w/f6" &&
	both f6 truncate-open
'

test_expect_success 'O_TRUNC rewrite with less data' '
	cp "$SRC/r" "$TEST_DIR/local/f7" && cp "$SRC/r" "$M/w/f7" &&
	both f7 rewrite-shorter "$SRC/r"
'

# A file opened write-only to be written afresh is written past the page
# cache (docs/architecture.md, A write): a reader that had the old content
# cached, even on a descriptor opened before, reads the new one.
test_expect_success 'a write-only O_TRUNC rewrite: a reader with the old content cached reads the new' '
	head -c 3000000 /dev/urandom >"$TEST_DIR/new" &&
	cp "$SRC/r" "$M/w/dio" && cat "$M/w/dio" >/dev/null &&
	python3 - "$M/w/dio" "$TEST_DIR/new" "$SRC/r" <<-\EOF &&
	import hashlib, os, sys
	path, new, old = sys.argv[1:]
	r = os.open(path, os.O_RDONLY)
	assert os.pread(r, 4096, 0) == open(old, "rb").read(4096)
	w = os.open(path, os.O_WRONLY | os.O_TRUNC)
	data = open(new, "rb").read()
	for i in range(0, len(data), 1 << 20):
	    os.write(w, data[i:i + (1 << 20)])
	os.close(w)
	got = b""
	while True:
	    b = os.pread(r, 1 << 20, len(got))
	    if not b:
	        break
	    got += b
	assert got == data, "the descriptor opened before reads old or short content"
	EOF
	cmp "$TEST_DIR/new" "$M/w/dio" &&
	rm "$M/w/dio"
'

test_expect_success 'two descriptors on one file, writes interleaved' '
	both f8 two-fds "$SRC/r"
'

test_expect_success 'an in-tree copy is independent of its original' '
	cp "$SRC/r" "$M/w/orig" && cp "$M/w/orig" "$M/w/copy" &&
	printf "CHANGED" | dd of="$M/w/copy" bs=1 seek=777777 conv=notrunc 2>/dev/null &&
	cmp "$SRC/r" "$M/w/orig" &&
	! cmp -s "$SRC/r" "$M/w/copy" &&
	truncate -s 1000 "$M/w/orig" &&
	[ "$(stat -c %s "$M/w/copy")" = "$(stat -c %s "$SRC/r")" ] &&
	{ head -c 777777 "$SRC/r"; printf CHANGED; tail -c +777785 "$SRC/r"; } | cmp - "$M/w/copy" &&
	head -c 1000 "$SRC/r" | cmp - "$M/w/orig" &&
	rm "$M/w/orig" "$M/w/copy"
'

test_expect_success 'an unlinked file stays readable (and writable) through an open descriptor' '
	cp "$SRC/r" "$M/w/gone" &&
	python3 - "$M/w/gone" "$SRC/r" <<-\EOF &&
	import os, sys
	fd = os.open(sys.argv[1], os.O_RDWR)
	os.unlink(sys.argv[1])
	assert not os.path.exists(sys.argv[1])
	want = open(sys.argv[2], "rb").read()
	got = os.pread(fd, len(want) + 1, 0)
	assert got == want, "read after unlink differs"
	os.pwrite(fd, b"still here", 0)
	assert os.pread(fd, 10, 0) == b"still here"
	os.close(fd)
	EOF
	[ ! -e "$M/w/gone" ]
'

test_expect_success 'a file written while its folder is renamed ends up complete in the new place' '
	mkdir -p "$M/w/d1" &&
	python3 - "$M/w/d1/f" "$M/w/d1" "$M/w/d2" "$SRC/r" <<-\EOF &&
	import os, sys
	data = open(sys.argv[4], "rb").read()
	fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
	os.write(fd, data[:1000000])
	os.rename(sys.argv[2], sys.argv[3])
	os.write(fd, data[1000000:])
	os.close(fd)
	EOF
	[ ! -e "$M/w/d1" ] && cmp "$SRC/r" "$M/w/d2/f" && rm -r "$M/w/d2"
'

test_expect_success 'a file open for writing moved to another model keeps all its content' '
	mkdir "$M/other" &&
	python3 - "$M/w/mv-me" "$M/other/moved" "$SRC/r" <<-\EOF &&
	import os, sys
	data = open(sys.argv[3], "rb").read()
	fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
	os.write(fd, data[:700000])
	os.rename(sys.argv[1], sys.argv[2])
	os.write(fd, data[700000:])
	os.close(fd)
	EOF
	[ ! -e "$M/w/mv-me" ] && cmp "$SRC/r" "$M/other/moved" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/other/.smip/manifest.json" "$M/other" other &&
	rm -r "$M/other"
'

test_expect_success 'everything is the same after a remount' '
	daemon_restart &&
	diff -r "$TEST_DIR/local" "$M/w" &&
	cp -r "$M/w" "$TEST_DIR/w-out" &&
	python3 "$MOUNT_HELPERS/manifest_check.py" "$M/w/.smip/manifest.json" "$TEST_DIR/local" w
'

test_done
