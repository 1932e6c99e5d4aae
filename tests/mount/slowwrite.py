#!/usr/bin/env python3
"""slowwrite.py SRC DST MARK STOP_AT [FSYNC_AT]: writes SRC to DST (created
or truncated) in 64 KiB blocks; after FSYNC_AT bytes (if given) it fsyncs
(a commit); after STOP_AT bytes it creates MARK and then waits, the file
still open, until it is killed (up to 120 s) or a write fails.  Lets a test
kill the daemon at a known point in the middle of a write."""
import os
import sys
import time


def main():
    src, dst, mark, stop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    fsync_at = int(sys.argv[5]) if len(sys.argv) > 5 else -1
    data = open(src, "rb").read()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    off, synced = 0, False
    while off < len(data):
        if off >= stop:
            open(mark, "w").close()
            time.sleep(120)
            return 3
        n = os.write(fd, data[off:off + 65536])
        off += n
        if fsync_at >= 0 and not synced and off >= fsync_at:
            os.fsync(fd)
            synced = True
    os.close(fd)
    open(mark, "w").close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
