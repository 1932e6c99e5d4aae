#!/bin/sh
# llmfs-fsck against stores written through a real mount: clean stores pass,
# a store in use is refused, crash residue (a junk pack, an uncommitted
# tail) is a note with exit 0 that --repair cleans (a pack is moved to
# quarantine/, never deleted), and each kind of damage is found (exit 1),
# named, and repaired only with --repair: wrong reference counts, a
# truncated pack (the damaged files are named by path, and they are exactly
# the files the daemon refuses to read).  Skips (77) when the tool is not
# built.  recover.sh has the rest: lost catalog, headers, indexes, SHA-256.
. "$(dirname "$0")/lib.sh"
have_fsck || skip_all "llmfs-fsck is not built (LLMFS_FSCK=$LLMFS_FSCK)"
require_cmd sqlite3

SRC=$TEST_DIR/src
M=$MNT/models

# fsck_is STATUS [--repair]: runs it; its status must be STATUS ("nonzero"
# for any failure but a crash or a sanitizer report).
fsck_is() {
	want=$1; shift
	fsck_store "$@" || return 1
	[ "$FSCK_STATUS" != 99 ] || return 1
	case $want in
	nonzero) [ "$FSCK_STATUS" != 0 ] && [ "$FSCK_STATUS" -lt 128 ] ;;
	*) [ "$FSCK_STATUS" = "$want" ] ;;
	esac
}

test_expect_success 'set up: two models, one shared file, then unmount' '
	make_tree "$SRC/A" fsck-a &&
	make_tree "$SRC/B" fsck-b &&
	daemon_start &&
	cp -r "$SRC/A" "$SRC/B" "$M/" &&
	cp "$M/A/model.safetensors" "$M/B/shared.safetensors" &&
	cp "$SRC/A/model.safetensors" "$SRC/B/shared.safetensors" &&
	diff -r "$SRC/A" "$M/A" && diff -r "$SRC/B" "$M/B" &&
	daemon_stop
'

test_expect_success 'a clean store: exit 0' '
	fsck_is 0 && fsck_is 0 --repair && fsck_is 0
'

test_expect_success 'a store in use by the daemon is refused, and left alone' '
	daemon_start &&
	fsck_is nonzero &&
	grep -qi "in use" "$TEST_DIR/fsck.out" &&
	diff -r "$SRC/A" "$M/A" &&
	daemon_stop
'

test_expect_success 'a junk pack file is crash residue: a note, moved to quarantine/ by --repair' '
	# the byte where a pack header keeps its fresh mark is that mark (1): in
	# a file that is not a pack it means nothing, and the file is set aside
	head -c 100000 /dev/urandom >"$STORE/packs/000000ff.pack" &&
	printf "\001" | dd of="$STORE/packs/000000ff.pack" bs=1 seek=12 conv=notrunc 2>/dev/null &&
	cp "$STORE/packs/000000ff.pack" "$TEST_DIR/junk" &&
	fsck_is 0 &&
	grep -q "pack 255 is not in the catalog" "$TEST_DIR/fsck.out" &&
	grep -q "crash residue" "$TEST_DIR/fsck.out" &&
	[ -e "$STORE/packs/000000ff.pack" ] &&
	fsck_is 0 --repair &&
	[ ! -e "$STORE/packs/000000ff.pack" ] &&
	cmp "$TEST_DIR/junk" "$STORE/quarantine/000000ff.pack" &&
	fsck_is 0 && grep -q "quarantine" "$TEST_DIR/fsck.out" &&
	rm -r "$STORE/quarantine"
'

test_expect_success 'an uncommitted pack tail is a note (exit 0), cut by --repair' '
	last=$(ls "$STORE"/packs/*.pack | sort | tail -1) &&
	size=$(stat -c %s "$last") &&
	head -c 50000 /dev/urandom >>"$last" &&
	fsck_is 0 && grep -q "uncommitted bytes (crash residue)" "$TEST_DIR/fsck.out" &&
	fsck_is 0 --repair &&
	[ "$(stat -c %s "$last")" = "$size" ] &&
	fsck_is 0 && ! grep -q "residue" "$TEST_DIR/fsck.out"
'

test_expect_success 'wrong reference counts are reported, and fixed by --repair' '
	sqlite3 "$STORE/catalog.db" "UPDATE chunks SET refs = refs + 3 WHERE id IN (SELECT id FROM chunks LIMIT 2)" &&
	fsck_is nonzero &&
	fsck_is 0 --repair &&
	fsck_is 0
'

test_expect_success 'the repaired store mounts and reads back exactly' '
	daemon_start &&
	diff -r "$SRC/A" "$M/A" && diff -r "$SRC/B" "$M/B" &&
	daemon_stop
'

test_expect_success 'a truncated pack: the damaged files are named by path' '
	last=$(ls "$STORE"/packs/*.pack | sort | tail -1) &&
	size=$(stat -c %s "$last") &&
	truncate -s $((size - 300000)) "$last" &&
	fsck_is nonzero &&
	# "... models/PATH (why)" or "... models/PATH": the path, spaces and all
	grep -o "models/.*" "$TEST_DIR/fsck.out" | sed "s/ ([^(]*\$//" |
		sort -u >"$TEST_DIR/damaged" &&
	echo "damaged per fsck:" && cat "$TEST_DIR/damaged" &&
	[ -s "$TEST_DIR/damaged" ]
'

# The daemon's error lines naming those files are expected now.
ALLOWED_ERRORS='llmfs: error: models/'

test_expect_success 'the files fsck names are exactly those the daemon cannot read' '
	daemon_start &&
	(cd "$MNT" && find models -type f) | sort >"$TEST_DIR/all" &&
	while IFS= read -r f; do
		r=$(python3 "$MOUNT_HELPERS/errno.py" read "$MNT/$f") || return 1
		if grep -qxF "$f" "$TEST_DIR/damaged"; then
			[ "$r" = EIO ] || { echo "$f: fsck says damaged, read gives $r"; return 1; }
		else
			[ "$r" = OK ] || { echo "$f: fsck says sound, read gives $r"; return 1; }
			rel=${f#models/}
			cmp "$SRC/$rel" "$MNT/$f" || return 1
		fi
	done <"$TEST_DIR/all" &&
	daemon_stop
'

test_expect_success '--repair does not remove or change the damaged files' '
	fsck_is nonzero --repair &&
	daemon_start &&
	while IFS= read -r f; do
		[ -f "$MNT/$f" ] || { echo "$f is gone"; return 1; }
		expect_errno EIO read "$MNT/$f" || return 1
	done <"$TEST_DIR/damaged" &&
	daemon_stop
'

test_done
