#!/bin/sh
# Recovery and repair never destroy data the catalog does not describe:
# a lowered or lost packs row cuts nothing, an unknown pack is set aside
# in quarantine/ (byte for byte), a lost catalog is refused at mount and
# rebuilt by llmfs-fsck --rebuild (every file back, byte-identical, the
# records collection punched skipped quietly), a
# flipped bit in a pack header neither stops the mount nor fsck, a
# reordered chunk list is found by fsck and gives EIO to a whole read,
# crash residue is a note (exit 0), a damaged sqlite index is repaired
# (REINDEX), and the daemon starts on a full disk.
. "$(dirname "$0")/lib.sh"
have_fsck || skip_all "llmfs-fsck is not built (LLMFS_FSCK=$LLMFS_FSCK)"
require_cmd sqlite3

SRC=$TEST_DIR/src
M=$MNT/models
PACKTOOL=$MOUNT_HELPERS/packtool.py

# The daemon's report of the reordered file's EIO is expected.
ALLOWED_ERRORS='does not match its SHA-256'

fsck_is() {
	want=$1; shift
	fsck_store "$@" || return 1
	[ "$FSCK_STATUS" != 99 ] && [ "$FSCK_STATUS" = "$want" ]
}

# pack_sizes: "NAME SIZE" of every pack, sorted.
pack_sizes() {
	(cd "$STORE/packs" && for p in *.pack; do echo "$p $(stat -c %s "$p")"; done)
}

# mount_cuts_nothing: a mount leaves every pack the size sizes.before
# says and both models whole; fsck finds nothing after it.
mount_cuts_nothing() {
	daemon_start &&
	pack_sizes >"$TEST_DIR/sizes.after" &&
	diff "$TEST_DIR/sizes.before" "$TEST_DIR/sizes.after" &&
	same_tree "$SRC/A" "$M/A" && same_tree "$SRC/B" "$M/B" &&
	daemon_stop &&
	fsck_is 0
}

# mount_refused: the daemon exits non-zero without mounting; its stderr
# lands in $TEST_DIR/refused.log.
mount_refused() {
	spawn_llmfs refused "$TEST_DIR/refused.log" --store "$STORE" -f "$MNT"
	if ! spawn_wait refused 20; then
		fusermount3 -u "$MNT"
		spawn_wait refused
		say "# the daemon mounted"
		return 1
	fi
	cat "$TEST_DIR/refused.log"
	[ "$EXIT_STATUS" != 0 ] && ! is_mounted "$MNT"
}

test_expect_success 'set up: two models, then unmount' '
	make_tree "$SRC/A" rec-a &&
	make_tree "$SRC/B" rec-b &&
	daemon_start &&
	cp -r "$SRC/A" "$SRC/B" "$M/" &&
	same_tree "$SRC/A" "$M/A" && same_tree "$SRC/B" "$M/B" &&
	daemon_stop &&
	fsck_is 0
'

test_expect_success 'a lowered packs row: the next mount cuts nothing' '
	pack_sizes >"$TEST_DIR/sizes.before" &&
	sqlite3 "$STORE/catalog.db" "UPDATE packs SET size = 16" &&
	mount_cuts_nothing
'

test_expect_success 'a lost packs row: fsck reports it, the mount restores it and cuts nothing' '
	sqlite3 "$STORE/catalog.db" "DELETE FROM packs" &&
	fsck_is 1 && grep -q "chunk records but no pack row" "$TEST_DIR/fsck.out" &&
	mount_cuts_nothing
'

test_expect_success 'an unknown pack is moved to quarantine/, not deleted' '
	first=$(ls "$STORE/packs" | sort | head -1) &&
	cp "$STORE/packs/$first" "$STORE/packs/00000100.pack" &&
	daemon_start &&
	[ ! -e "$STORE/packs/00000100.pack" ] &&
	cmp "$STORE/packs/$first" "$STORE/quarantine/00000100.pack" &&
	same_tree "$SRC/A" "$M/A" &&
	daemon_stop &&
	fsck_is 0 && grep -q "quarantine" "$TEST_DIR/fsck.out" &&
	rm -r "$STORE/quarantine"
'

test_expect_success 'the catalog deleted: the mount refuses and names --rebuild' '
	pack_sizes >"$TEST_DIR/sizes.before" &&
	rm -f "$STORE/catalog.db" "$STORE/catalog.db-wal" "$STORE/catalog.db-shm" &&
	mount_refused &&
	grep -q -- "--rebuild" "$TEST_DIR/refused.log" &&
	pack_sizes >"$TEST_DIR/sizes.after" &&
	diff "$TEST_DIR/sizes.before" "$TEST_DIR/sizes.after" &&
	fsck_is 2 && grep -q -- "--rebuild" "$TEST_DIR/fsck.out"
'

test_expect_success 'llmfs-fsck --rebuild restores every file byte-identical' '
	fsck_is 0 --rebuild &&
	grep -q "files restored" "$TEST_DIR/fsck.out" &&
	fsck_is 0 &&
	daemon_start &&
	same_tree "$SRC/A" "$M/A" && same_tree "$SRC/B" "$M/B" &&
	daemon_stop
'

test_expect_success 'a catalog that opens is not rebuilt (--rebuild refuses)' '
	fsck_is 2 --rebuild && grep -q -- "--repair" "$TEST_DIR/fsck.out" &&
	! ls "$STORE"/catalog.db.lost-* 2>/dev/null
'

test_expect_success 'the catalog emptied: refused, kept aside by --rebuild, files back' '
	: >"$STORE/catalog.db" && rm -f "$STORE/catalog.db-wal" "$STORE/catalog.db-shm" &&
	mount_refused &&
	grep -q -- "--rebuild" "$TEST_DIR/refused.log" &&
	fsck_is 0 --rebuild &&
	ls "$STORE"/catalog.db.lost-* &&
	daemon_start &&
	same_tree "$SRC/A" "$M/A" && same_tree "$SRC/B" "$M/B" &&
	daemon_stop
'

# punched_bytes PACK: the bytes of PACK with no disk blocks under them.
punched_bytes() {
	echo $(( $(stat -c %s "$1") - $(stat -c %b "$1") * $(stat -c %B "$1") ))
}

test_expect_success 'a file deleted and collected (its records punched), the catalog lost: --rebuild, no damage' '
	daemon_start && mkdir "$M/P" &&
	head -c 3000000 /dev/urandom >"$SRC/keep.bin" &&
	head -c 1500000 /dev/urandom >"$SRC/gone.bin" &&
	cp "$SRC/keep.bin" "$M/P/" && cp "$SRC/gone.bin" "$M/P/" &&
	rm "$M/P/gone.bin" && echo gc >"$MNT/.llmfs/gc" &&
	daemon_stop &&
	last=$(ls "$STORE"/packs/*.pack | sort | tail -1) &&
	punched=$(punched_bytes "$last") && echo "punched: $punched bytes" &&
	{ [ "$punched" -gt 1000000 ] ||
	  { echo "# $STORE cannot punch holes: not checked"; return 0; }; } &&
	fsck_is 0 && ! grep -q "damaged" "$TEST_DIR/fsck.out" &&
	rm -f "$STORE/catalog.db" "$STORE/catalog.db-wal" "$STORE/catalog.db-shm" &&
	fsck_is 0 --rebuild &&
	! grep -E -q "damaged|uncommitted" "$TEST_DIR/fsck.out" &&
	fsck_is 0 && ! grep -E -q "damaged|uncommitted|residue" "$TEST_DIR/fsck.out" &&
	daemon_start &&
	cmp "$SRC/keep.bin" "$M/P/keep.bin" && [ ! -e "$M/P/gone.bin" ] &&
	same_tree "$SRC/A" "$M/A" && same_tree "$SRC/B" "$M/B" &&
	rm -r "$M/P" &&
	daemon_stop
'

test_expect_success 'a flipped bit in the current pack header: mounts; fsck reports, --repair rewrites' '
	last=$(ls "$STORE"/packs/*.pack | sort | tail -1) &&
	python3 "$PACKTOOL" flip "$last" 3 &&
	daemon_start &&
	same_tree "$SRC/A" "$M/A" && same_tree "$SRC/B" "$M/B" &&
	daemon_stop &&
	fsck_is 1 && grep -q "damaged header" "$TEST_DIR/fsck.out" &&
	fsck_is 0 --repair &&
	[ "$(head -c 8 "$last")" = LLMFSPAK ] &&
	fsck_is 0
'

test_expect_success 'two chunk-list entries swapped: fsck names the file, a whole read gives EIO' '
	swap_entries A/model.safetensors &&
	fsck_is 1 &&
	grep -q "damaged file: models/A/model.safetensors.*SHA-256" "$TEST_DIR/fsck.out" &&
	daemon_start &&
	expect_errno EIO read "$M/A/model.safetensors" &&
	! cat "$M/A/model.safetensors" >/dev/null 2>&1 &&
	same_tree "$SRC/B" "$M/B" &&
	daemon_stop &&
	grep -q "models/A/model.safetensors.*SHA-256" "$DAEMON_LOG" &&
	swap_entries A/model.safetensors &&
	fsck_is 0
'

# hold_unlinked FILE MARK: opens FILE, unlinks it, creates MARK, and waits
# with FILE open until it is killed.
hold_unlinked() {
	python3 -c '
import os, sys, time
f = open(sys.argv[1], "rb")
os.unlink(sys.argv[1])
open(sys.argv[2], "w").close()
time.sleep(120)
' "$1" "$2"
}

test_expect_success 'crash residue (an orphan, a pack tail): a note, exit 0' '
	daemon_start &&
	spawn holder hold_unlinked "$M/B/config.json" "$TEST_DIR/unlinked" &&
	wait_for 10 "[ -e \"$TEST_DIR/unlinked\" ]" &&
	daemon_kill9 &&
	spawn_kill holder &&
	last=$(ls "$STORE"/packs/*.pack | sort | tail -1) &&
	head -c 5000 /dev/urandom >>"$last" &&
	fsck_is 0 &&
	grep -q "orphan inode" "$TEST_DIR/fsck.out" &&
	grep -q "crash residue" "$TEST_DIR/fsck.out" &&
	daemon_start && daemon_stop &&
	fsck_is 0 && ! grep -q "residue" "$TEST_DIR/fsck.out" &&
	rm "$SRC/B/config.json"
'

# break_index DB: points index chunks_pack at an empty b-tree (the index
# loses every entry; the table is intact).
break_index() {
	python3 - "$1" <<-'EOF'
	import sqlite3, sys
	db = sqlite3.connect(sys.argv[1])
	db.execute("CREATE INDEX broken_tmp ON chunks(pack) WHERE 0")
	db.commit()
	root = dict(db.execute("SELECT name, rootpage FROM sqlite_master"
	                       " WHERE name IN ('chunks_pack', 'broken_tmp')"))
	db.execute("PRAGMA writable_schema = ON")
	db.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'chunks_pack'",
	           (root["broken_tmp"],))
	db.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'broken_tmp'",
	           (root["chunks_pack"],))
	db.commit()
	db.close()
	db = sqlite3.connect(sys.argv[1])
	db.execute("DROP INDEX broken_tmp")
	db.commit()
	EOF
}

test_expect_success 'a damaged catalog index: reported (exit 1), rebuilt by --repair' '
	break_index "$STORE/catalog.db" &&
	fsck_is 1 && grep -q "catalog damaged" "$TEST_DIR/fsck.out" &&
	fsck_is 0 --repair && grep -q "REINDEX" "$TEST_DIR/fsck.out" &&
	fsck_is 0 &&
	daemon_start &&
	same_tree "$SRC/A" "$M/A" && same_tree "$SRC/B" "$M/B" &&
	daemon_stop
'

test_expect_success 'a full disk: the daemon starts, and a delete makes room' '
	{ small_store 24m || { echo "# cannot mount a tmpfs: not checked"; return 0; }; } &&
	daemon_start && mkdir "$M/m" &&
	head -c 6000000 /dev/urandom >"$TEST_DIR/big.bin" &&
	cp "$TEST_DIR/big.bin" "$SRC/A/model.safetensors" "$M/m/" &&
	daemon_stop &&
	{ dd if=/dev/zero of="$SMALL/filler" bs=64k 2>/dev/null; true; } &&
	df "$SMALL" &&
	daemon_start &&
	cmp "$SRC/A/model.safetensors" "$M/m/model.safetensors" &&
	rm "$M/m/big.bin" &&
	[ ! -e "$M/m/big.bin" ] &&
	daemon_stop &&
	rm "$SMALL/filler" &&
	daemon_start && [ ! -e "$M/m/big.bin" ] &&
	cmp "$SRC/A/model.safetensors" "$M/m/model.safetensors" &&
	daemon_stop
'

test_done
