#!/usr/bin/env python3
"""errno.py OP PATH [PATH2]: runs one file operation and prints "OK" or the
errno's symbolic name (ENAMETOOLONG, EPERM, ...).  Paths are taken as raw
bytes; "\\xNN" escapes in them are decoded, so invalid UTF-8 can be passed.

OPs: create (O_CREAT|O_EXCL|O_WRONLY), open-write (O_WRONLY), open-read,
read (whole file), mkdir, rmdir, unlink, rename, link, symlink (PATH2 -> PATH),
stat, truncate.
"""
import errno
import os
import re
import sys


def arg(s):
    return re.sub(rb"\\x([0-9a-fA-F]{2})",
                  lambda m: bytes([int(m.group(1), 16)]), os.fsencode(s))


def main():
    op = sys.argv[1]
    p = arg(sys.argv[2])
    q = arg(sys.argv[3]) if len(sys.argv) > 3 else None
    try:
        if op == "create":
            os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        elif op == "open-write":
            os.close(os.open(p, os.O_WRONLY))
        elif op == "open-read":
            os.close(os.open(p, os.O_RDONLY))
        elif op == "read":
            with open(p, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass
        elif op == "mkdir":
            os.mkdir(p)
        elif op == "rmdir":
            os.rmdir(p)
        elif op == "unlink":
            os.unlink(p)
        elif op == "rename":
            os.rename(p, q)
        elif op == "link":
            os.link(p, q)
        elif op == "symlink":
            os.symlink(q, p)
        elif op == "stat":
            os.lstat(p)
        elif op == "truncate":
            os.truncate(p, 0)
        else:
            print("bad op " + op)
            return 2
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
        return 0
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
