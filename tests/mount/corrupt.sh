#!/bin/sh
# Every chunk is verified when read: a flipped bit in a pack record (its
# payload, or its header) gives EIO for the reads of that chunk only, never
# wrong bytes, and an error line naming the file and the offset; other files
# and other chunks of the same file still read; llmfs-fsck reports the
# damaged files by path, and --repair does not silently change them.
. "$(dirname "$0")/lib.sh"

SRC=$TEST_DIR/src
M=$MNT/models
K=2    # the chunk of f.bin that gets damaged (0-based)

# chunk_info FILE K: "OFFSET LENGTH IDHEX NCHUNKS" of FILE's chunk K, from the
# model's manifest (FILE relative to the model m).
chunk_info() {
	python3 - "$M/m/.smip/manifest.json" "$1" "$2" <<-'EOF'
	import json, sys
	m = json.load(open(sys.argv[1]))
	f = [e for e in m["files"] if e["path"] == sys.argv[2]][0]
	k = int(sys.argv[3]); ch = f["chunks"]
	print(sum(c[1] for c in ch[:k]), ch[k][1], ch[k][0], len(ch))
	EOF
}

# find_record IDHEX: "PACKFILE OFFSET" of the chunk's record.
find_record() {
	for p in "$STORE"/packs/*.pack; do
		o=$(python3 "$MOUNT_HELPERS/packtool.py" find "$p" "$1") &&
			{ echo "$p $o"; return 0; }
	done
	echo "chunk $1 is in no pack" >&2
	return 1
}

# read_range FILE OFFSET LENGTH REF: prints OK if those bytes equal REF's,
# BAD if they differ, or the errno name.
read_range() {
	python3 - "$@" <<-'EOF'
	import errno, os, sys
	p, off, n, ref = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
	fd = os.open(p, os.O_RDONLY)
	os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
	try:
	    got = os.pread(fd, n, off)
	except OSError as e:
	    print(errno.errorcode[e.errno]); sys.exit(0)
	want = open(ref, "rb").read()[off:off + n]
	print("OK" if got == want else "BAD")
	EOF
}

test_expect_success 'set up: files in a fresh store' '
	mkdir -p "$SRC" &&
	head -c 2500000 /dev/urandom >"$SRC/f.bin" &&
	head -c 800000 /dev/urandom >"$SRC/g.bin" &&
	yes "compressible h" | head -c 900000 >"$SRC/h.txt" &&
	daemon_start &&
	mkdir "$M/m" &&
	cp "$SRC/f.bin" "$SRC/g.bin" "$SRC/h.txt" "$M/m/" &&
	cp "$M/m/f.bin" "$M/m/f-copy.bin" &&
	set -- $(chunk_info f.bin $K) &&
	FOFF=$1 FLEN=$2 FID=$3 FN=$4 &&
	echo "f.bin chunk $K: offset $FOFF length $FLEN id $FID of $FN" &&
	[ "$FN" -ge $((K + 3)) ] &&
	set -- $(chunk_info g.bin 0) && GID=$3 &&
	daemon_stop
'

test_expect_success 'flip a bit in a payload and in a record header (unmounted)' '
	set -- $(find_record "$FID") && echo "f.bin chunk $K record: $*" &&
	python3 "$MOUNT_HELPERS/packtool.py" flip "$1" $(($2 + 32 + 100)) &&
	set -- $(find_record "$GID") && echo "g.bin chunk 0 record: $*" &&
	python3 "$MOUNT_HELPERS/packtool.py" flip "$1" $(($2 + 20))
'

# The damaged files' error lines are expected from here on.
ALLOWED_ERRORS='models/m/(f|f-copy|g)\.bin'

test_expect_success 'remount; reading the damaged chunk is EIO' '
	daemon_start &&
	r=$(read_range "$M/m/f.bin" "$FOFF" "$FLEN" "$SRC/f.bin") &&
	echo "damaged chunk: $r" && [ "$r" = EIO ] &&
	expect_errno EIO read "$M/m/f.bin" &&
	! cat "$M/m/f.bin" >/dev/null 2>"$TEST_DIR/cat.err" &&
	grep -q "Input/output error" "$TEST_DIR/cat.err"
'

test_expect_success 'the error line names the file and the offset' '
	grep "llmfs: error:" "$DAEMON_LOG" &&
	grep "llmfs: error:.*models/m/f\.bin" "$DAEMON_LOG" | grep -qw "$FOFF"
'

test_expect_success 'chunks away from the damage still read correctly' '
	r=$(read_range "$M/m/f.bin" 0 65536 "$SRC/f.bin") && echo "start: $r" && [ "$r" = OK ] &&
	sz=$(stat -c %s "$SRC/f.bin") &&
	r=$(read_range "$M/m/f.bin" $((sz - 4096)) 4096 "$SRC/f.bin") && echo "end: $r" && [ "$r" = OK ]
'

test_expect_success 'a damaged record header is EIO too' '
	expect_errno EIO read "$M/m/g.bin" &&
	grep "llmfs: error:.*models/m/g\.bin" "$DAEMON_LOG"
'

test_expect_success 'an in-tree copy sharing the chunk is EIO, and named' '
	expect_errno EIO read "$M/m/f-copy.bin" &&
	grep "llmfs: error:.*models/m/f-copy\.bin" "$DAEMON_LOG" | grep -qw "$FOFF"
'

test_expect_success 'undamaged files read exactly; the daemon is fine' '
	cmp "$SRC/h.txt" "$M/m/h.txt" &&
	[ "$(sha256sum <"$M/m/h.txt")" = "$(sha256sum <"$SRC/h.txt")" ] &&
	! grep "llmfs: error:.*h\.txt" "$DAEMON_LOG" &&
	echo new >"$M/m/new" && [ "$(cat "$M/m/new")" = new ]
'

test_expect_success 'cp -r out fails loudly rather than copying wrong bytes' '
	! cp -r "$M/m" "$TEST_DIR/out" 2>"$TEST_DIR/cp.err" &&
	cat "$TEST_DIR/cp.err" &&
	grep -q "f\.bin" "$TEST_DIR/cp.err" &&
	cmp "$SRC/h.txt" "$TEST_DIR/out/h.txt" &&
	! cmp -s "$SRC/f.bin" "$TEST_DIR/out/f.bin" &&
	[ "$(stat -c %s "$TEST_DIR/out/f.bin")" -le "$FOFF" ]
'

if have_fsck; then
	test_expect_success 'llmfs-fsck reports the damaged files by path' '
		daemon_stop &&
		fsck_store &&
		[ "$FSCK_STATUS" != 0 ] && [ "$FSCK_STATUS" != 99 ] &&
		grep -q "m/f\.bin" "$TEST_DIR/fsck.out" &&
		grep -q "m/f-copy\.bin" "$TEST_DIR/fsck.out" &&
		grep -q "m/g\.bin" "$TEST_DIR/fsck.out" &&
		! grep -q "h\.txt" "$TEST_DIR/fsck.out"
	'
	test_expect_success 'llmfs-fsck --repair keeps reporting them and changes nothing' '
		fsck_store --repair &&
		[ "$FSCK_STATUS" != 0 ] && [ "$FSCK_STATUS" != 99 ] &&
		grep -q "m/f\.bin" "$TEST_DIR/fsck.out" &&
		daemon_start &&
		r=$(read_range "$M/m/f.bin" "$FOFF" "$FLEN" "$SRC/f.bin") && [ "$r" = EIO ] &&
		cmp "$SRC/h.txt" "$M/m/h.txt" && [ "$(cat "$M/m/new")" = new ]
	'
else
	test_skip 'llmfs-fsck reports the damaged files by path' 'llmfs-fsck not built'
	test_skip 'llmfs-fsck --repair keeps reporting them' 'llmfs-fsck not built'
fi

test_expect_success 'rewriting a damaged file gives a sound file again' '
	{ mountpoint -q "$MNT" || daemon_start; } &&
	cp "$SRC/f.bin" "$M/m/f.bin" &&
	cmp "$SRC/f.bin" "$M/m/f.bin" &&
	daemon_restart &&
	cmp "$SRC/f.bin" "$M/m/f.bin"
'

test_done
