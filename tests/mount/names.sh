#!/bin/sh
# Names that are too long, not UTF-8, or reserved get the right errno, and
# nothing is left behind; odd but valid names round-trip.
. "$(dirname "$0")/lib.sh"

M=$MNT/models
long255=$(printf '%0255d' 0)
long256=$(printf '%0256d' 0)

test_expect_success 'set up: a model folder with one file' '
	daemon_start &&
	mkdir "$M/m" && echo data >"$M/m/f"
'

test_expect_success 'a 255-byte name works, 256 bytes is ENAMETOOLONG' '
	expect_errno OK create "$M/m/$long255" &&
	[ -f "$M/m/$long255" ] &&
	expect_errno ENAMETOOLONG create "$M/m/$long256" &&
	expect_errno ENAMETOOLONG mkdir "$M/m/$long256" &&
	expect_errno ENAMETOOLONG mkdir "$M/$long256" &&
	expect_errno ENAMETOOLONG rename "$M/m/f" "$M/m/$long256" &&
	expect_errno ENAMETOOLONG symlink "$M/m/$long256" f &&
	[ -f "$M/m/f" ] &&
	! ls "$M/m" | grep -q "^$long256"
'

test_expect_success 'a 255-byte name in UTF-8 multibyte characters works' '
	n=$(python3 -c "print(\"é\" * 127 + \"x\")") &&
	[ "$(printf %s "$n" | wc -c)" = 255 ] &&
	echo u >"$M/m/$n" && [ "$(cat "$M/m/$n")" = u ] &&
	n2=$(python3 -c "print(\"é\" * 128)") &&
	expect_errno ENAMETOOLONG create "$M/m/$n2"
'

test_expect_success 'names that are not UTF-8 are EILSEQ' '
	expect_errno EILSEQ create "$M/m/bad\xff" &&
	expect_errno EILSEQ create "$M/m/bad\xc3(" &&
	expect_errno EILSEQ mkdir "$M/m/dir\xfe" &&
	expect_errno EILSEQ mkdir "$M/model\xff" &&
	expect_errno EILSEQ rename "$M/m/f" "$M/m/f\xe2\x82" &&
	expect_errno EILSEQ symlink "$M/m/s\xff" f &&
	[ -f "$M/m/f" ] &&
	python3 -c "import os,sys; sys.exit(any(not n.decode(\"utf-8\", \"strict\") for n in os.listdir(b\"$M/m\")))"
'

# Names the strict validator (common/utf8.h) refuses although each byte
# looks like UTF-8: overlong forms, UTF-16 surrogates, code points past
# U+10FFFF.  Accepted, they broke the model's .smip/manifest.json (jansson
# refuses them: "Cannot allocate memory") and any push of the model.
test_expect_success 'overlong, surrogate and out-of-range names are EILSEQ' '
	mkdir "$M/u" && echo data >"$M/u/f" &&
	expect_errno EILSEQ create "$M/u/a\xe0\x80\x80z" &&
	expect_errno EILSEQ create "$M/u/a\xc0\xafz" &&
	expect_errno EILSEQ create "$M/u/a\xf0\x80\x80\xafz" &&
	expect_errno EILSEQ create "$M/u/a\xed\xa0\x80z" &&
	expect_errno EILSEQ create "$M/u/a\xf4\x90\x80\x80z" &&
	expect_errno EILSEQ create "$M/u/a\xf5\x80\x80\x80z" &&
	expect_errno EILSEQ mkdir "$M/u/d\xe0\x80\x80" &&
	expect_errno EILSEQ mkdir "$M/model\xed\xbf\xbf" &&
	expect_errno EILSEQ rename "$M/u/f" "$M/u/a\xe0\x80\x80z" &&
	expect_errno EILSEQ rename "$M/u" "$M/u\xe0\x80\x80" &&
	expect_errno EILSEQ symlink "$M/u/s\xe0\x80\x80" f &&
	[ "$(ls -A "$M/u")" = f ] && [ -d "$M/u" ] &&
	python3 -m json.tool "$M/u/.smip/manifest.json" >/dev/null &&
	expect_errno OK create "$M/u/max\xf4\x8f\xbf\xbf" &&
	expect_errno OK create "$M/u/bmp\xef\xbf\xbd\xed\x9f\xbf" &&
	python3 -m json.tool "$M/u/.smip/manifest.json" >/dev/null
'

test_expect_success '.smip in a model folder is reserved' '
	expect_errno EEXIST mkdir "$M/m/.smip" &&
	mkdir "$M/m/d" &&
	expect_errno EPERM rename "$M/m/d" "$M/m/.smip" &&
	expect_errno EPERM rename "$M/m/.smip" "$M/m/other" &&
	expect_errno EPERM rmdir "$M/m/.smip" &&
	expect_errno EPERM unlink "$M/m/.smip/manifest.json" &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" create "$M/m/.smip") &&
	echo "create .smip: $r" && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" symlink "$M/m/.smip" f) &&
	echo "symlink .smip: $r" && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" rename "$M/m/f" "$M/m/.smip") &&
	echo "rename a file onto .smip: $r" && [ "$r" != OK ] &&
	[ -f "$M/m/f" ] && [ "$(cat "$M/m/f")" = data ] &&
	python3 -m json.tool "$M/m/.smip/manifest.json" >/dev/null
'

test_expect_success 'entries at the mount root are EPERM' '
	expect_errno EPERM create "$MNT/file" &&
	expect_errno EPERM mkdir "$MNT/dir" &&
	expect_errno EPERM symlink "$MNT/link" models &&
	expect_errno EPERM rename "$M/m" "$MNT/m" &&
	[ -d "$M/m" ] &&
	ls -A "$MNT" >"$TEST_DIR/root" && cat "$TEST_DIR/root" &&
	! grep -qxE "file|dir|link|m" "$TEST_DIR/root" &&
	grep -qx models "$TEST_DIR/root" && grep -qx .llmfs "$TEST_DIR/root"
'

test_expect_success 'models/ and .llmfs/ cannot be removed or renamed' '
	r=$(python3 "$MOUNT_HELPERS/errno.py" rename "$M" "$MNT/x") && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" rmdir "$MNT/.llmfs") && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" create "$MNT/.llmfs/new") && [ "$r" != OK ] &&
	r=$(python3 "$MOUNT_HELPERS/errno.py" open-write "$MNT/.llmfs/status") && [ "$r" != OK ] &&
	[ -d "$M/m" ] && [ -f "$MNT/.llmfs/status" ]
'

test_expect_success 'hard links are EPERM' '
	expect_errno EPERM link "$M/m/f" "$M/m/f2" &&
	expect_errno ENOENT stat "$M/m/f2"
'

test_expect_success 'odd but valid names round-trip (spaces, newline, dash, unicode, dots)' '
	for n in "with space" "$(printf "new\nline")" "-dash" "..dots" "émoji-🦙" "tab	x" "a\\\\b" ".hidden"; do
		printf "%s" "$n" >"$M/m/$n" || return 1
		[ "$(cat "$M/m/$n")" = "$n" ] || { echo "bad content for $n"; return 1; }
	done &&
	[ "$(ls -A "$M/m" | wc -l)" -ge 10 ] &&
	cp -r "$M/m" "$TEST_DIR/out" &&
	diff -r "$M/m" "$TEST_DIR/out"
'

test_expect_success 'names that only look like .smip are ordinary' '
	mkdir "$M/look" &&
	for n in .smip2 .SMIP smip .smip.json; do
		echo "$n" >"$M/look/$n" && [ "$(cat "$M/look/$n")" = "$n" ] || return 1
	done &&
	ls -A "$M/look" | grep -qx .smip2 &&
	mkdir "$M/look/sub" && mkdir "$M/look/sub/.smip" && echo deep >"$M/look/sub/.smip/f" &&
	[ "$(cat "$M/look/sub/.smip/f")" = deep ]
'

test_expect_success 'a folder of 600 entries lists each exactly once' '
	mkdir "$M/big" &&
	python3 -c "
import sys
for i in range(600):
    open(sys.argv[1] + \"/entry-%04d-\" % i + \"x\" * (i % 97), \"w\").write(str(i))
" "$M/big" &&
	[ "$(ls -A "$M/big" | wc -l)" = 600 ] &&
	[ "$(ls -A "$M/big" | sort -u | wc -l)" = 600 ] &&
	[ "$(find "$M/big" -type f | wc -l)" = 600 ] &&
	[ "$(cat "$M/big/entry-0377-"* )" = 377 ] &&
	cp -r "$M/big" "$TEST_DIR/big-out" &&
	[ "$(ls -A "$TEST_DIR/big-out" | wc -l)" = 600 ] &&
	rm -r "$M/big" && [ ! -e "$M/big" ]
'

test_expect_success 'everything is the same after a remount' '
	(cd "$M/m" && ls -A | sort) >"$TEST_DIR/before" &&
	daemon_restart &&
	(cd "$M/m" && ls -A | sort) >"$TEST_DIR/after" &&
	cmp "$TEST_DIR/before" "$TEST_DIR/after" &&
	diff -r "$M/m" "$TEST_DIR/out"
'

test_done
