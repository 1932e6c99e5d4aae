#!/bin/sh
# The root and its subtrees (fs/subtree.h): every top-level folder answers
# through its own row, and what a row does not implement gets the answers a
# local filesystem gives for an entry that allows nothing.  The answers are
# the ones the daemon gave before the rows existed; this test keeps them.
. "$(dirname "$0")/lib.sh"

M=$MNT/models

# errno_of OP PATH [PATH2]: like errno.py, for the operations it lacks.
errno_of() {
	python3 - "$@" <<-'EOF'
	import errno, os, sys
	op, p = sys.argv[1], sys.argv[2]
	q = sys.argv[3] if len(sys.argv) > 3 else None
	try:
	    if op == "readlink":
	        os.readlink(p)
	    elif op == "listdir":
	        os.listdir(p)
	    elif op == "mkfifo":
	        os.mkfifo(p)
	    elif op == "write":
	        fd = os.open(p, os.O_WRONLY)
	        try:
	            os.write(fd, q.encode())
	        finally:
	            os.close(fd)
	    elif op == "chmod":
	        os.chmod(p, int(q, 8))
	    elif op == "truncate-to":
	        os.truncate(p, int(q))
	    else:
	        sys.exit("bad op " + op)
	except OSError as e:
	    print(errno.errorcode.get(e.errno, str(e.errno)))
	else:
	    print("OK")
	EOF
}

expect_errno_of() {
	want=$1; shift
	got=$(errno_of "$@") || return 1
	[ "$got" = "$want" ] || { say "$*: expected $want, got $got"; return 1; }
}

test_expect_success 'set up: a model with a file and a link' '
	daemon_start &&
	mkdir "$M/m" && echo weights >"$M/m/w.bin" && ln -s w.bin "$M/m/l"
'

test_expect_success 'the root lists one folder per subtree, and only those' '
	[ "$(ls -a "$MNT" | tr "\n" " ")" = ". .. .llmfs mining models net paths train " ] &&
	for d in mining models net paths train .llmfs; do
		[ -d "$MNT/$d" ] || { say "$d is not a folder"; return 1; }
	done &&
	expect_errno ENOENT stat "$MNT/nothing" &&
	expect_errno EPERM mkdir "$MNT/new" &&
	expect_errno EPERM create "$MNT/new"
'

test_expect_success 'each subtree has inodes of its own' '
	n=$(stat -c %i "$MNT" "$M" "$MNT/net" "$MNT/paths" "$MNT/.llmfs" \
		"$MNT/.llmfs/status" "$MNT/.llmfs/gc" "$MNT/paths/.stats" \
		"$M/m" "$M/m/w.bin" "$M/m/.smip" "$M/m/.smip/manifest.json" \
		"$MNT/mining" "$MNT/mining/jobs" "$MNT/mining/status" |
		sort -u | wc -l) &&
	[ "$n" = 15 ] &&
	[ "$(stat -c %i "$MNT")" = 1 ] && [ "$(stat -c %i "$M")" = 16 ]
'

test_expect_success '.llmfs/ takes no new names and keeps its files' '
	expect_errno EPERM mkdir "$MNT/.llmfs/d" &&
	expect_errno EPERM create "$MNT/.llmfs/f" &&
	expect_errno EPERM symlink "$MNT/.llmfs/l" status &&
	expect_errno EPERM unlink "$MNT/.llmfs/status" &&
	expect_errno EPERM rename "$MNT/.llmfs/status" "$MNT/.llmfs/s" &&
	expect_errno ENOENT stat "$MNT/.llmfs/nothing" &&
	expect_errno_of EINVAL readlink "$MNT/.llmfs/status" &&
	expect_errno_of ENOTDIR listdir "$MNT/.llmfs/status" &&
	expect_errno_of EPERM chmod "$MNT/.llmfs/status" 644
'

test_expect_success '.llmfs/ files: status is read-only, gc takes only its words' '
	expect_errno EACCES open-write "$MNT/.llmfs/status" &&
	expect_errno_of EINVAL write "$MNT/.llmfs/gc" "collect" &&
	expect_errno_of OK write "$MNT/.llmfs/gc" "gc" &&
	grep -q "^request_error none" "$MNT/.llmfs/gc" &&
	grep -q "^files: 1" "$MNT/.llmfs/status"
'

test_expect_success 'a rename across subtrees is refused, both ways' '
	expect_errno EPERM rename "$M/m/w.bin" "$MNT/paths/w.bin" &&
	expect_errno EPERM rename "$M/m/w.bin" "$MNT/.llmfs/w.bin" &&
	expect_errno EPERM rename "$MNT/.llmfs/gc" "$M/m/gc" &&
	expect_errno EPERM rename "$M/m" "$MNT/m" &&
	[ "$(cat "$M/m/w.bin")" = weights ]
'

test_expect_success 'models/: .smip is read-only and its name reserved' '
	expect_errno EACCES open-write "$M/m/.smip/manifest.json" &&
	expect_errno EEXIST mkdir "$M/m/.smip" &&
	expect_errno EPERM rmdir "$M/m/.smip" &&
	mkdir "$M/m/sub" &&
	expect_errno EPERM rename "$M/m/sub" "$M/m/.smip" &&
	rmdir "$M/m/sub" &&
	expect_errno EPERM create "$M/m/.smip/x" &&
	expect_errno ENOENT stat "$M/m/.smip/nothing" &&
	[ "$(ls -A "$M/m" | tr "\n" " ")" = "l w.bin " ] &&
	[ "$(ls "$M/m/.smip" | tr "\n" " ")" = "info manifest.json tensors " ] &&
	expect_errno_of EINVAL readlink "$M/m/w.bin" &&
	[ "$(readlink "$M/m/l")" = w.bin ] &&
	expect_errno_of EPERM mkfifo "$M/m/fifo" &&
	expect_errno EPERM link "$M/m/w.bin" "$M/m/hard"
'

test_expect_success 'paths/: tasks are folders, its own files cannot be resized' '
	expect_errno EPERM create "$MNT/paths/f" &&
	expect_errno EPERM symlink "$MNT/paths/l" x &&
	expect_errno EPERM unlink "$MNT/paths/.stats" &&
	expect_errno_of EINVAL readlink "$MNT/paths/.stats" &&
	expect_errno_of EPERM truncate-to "$MNT/paths/.stats" 5 &&
	touch "$MNT/paths/.stats" &&
	mkdir "$MNT/paths/t1" && [ -f "$MNT/paths/t1/status" ] &&
	rmdir "$MNT/paths/t1" && expect_errno ENOENT stat "$MNT/paths/t1"
'

test_expect_success 'net/ without remotes: on, empty, its transfers listed' '
	[ -z "$(ls -A "$MNT/net")" ] &&
	expect_errno ENOENT stat "$MNT/net/x" &&
	expect_errno_of EINVAL readlink "$MNT/net" &&
	[ -f "$MNT/.llmfs/transfers" ]
'

test_expect_success 'daemon stops cleanly at the end' '
	daemon_stop
'

test_done
