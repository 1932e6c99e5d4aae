#!/usr/bin/env python3
"""packtool.py: reads and damages llmfs pack files (tests only).

  packtool.py list PACK          one line per record: "OFFSET CLEN ULEN SCHEME IDHEX"
  packtool.py find PACK IDHEX    the record offset of chunk IDHEX (exit 1 if absent)
  packtool.py flip FILE OFFSET   flips the lowest bit of the byte at OFFSET

A pack is a 16-byte header ("LLMFSPAK", version) then records: a 32-byte
header (magic "LCK1", scheme byte, ulen le32 at 8, clen le32 at 12, the
16-byte chunk id at 16) followed by clen encoded bytes."""
import struct
import sys


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"LLMFSPAK":
        raise SystemExit("%s: not a pack" % path)
    off = 16
    while off + 32 <= len(data):
        h = data[off:off + 32]
        if h[:4] != b"LCK1":
            break
        ulen, clen = struct.unpack_from("<II", h, 8)
        yield off, clen, ulen, h[4], h[16:32].hex()
        off += 32 + clen


def main():
    cmd = sys.argv[1]
    if cmd == "list":
        for r in records(sys.argv[2]):
            print("%d %d %d %d %s" % r)
    elif cmd == "find":
        for r in records(sys.argv[2]):
            if r[4] == sys.argv[3]:
                print(r[0])
                return 0
        return 1
    elif cmd == "flip":
        off = int(sys.argv[3])
        with open(sys.argv[2], "r+b") as f:
            f.seek(off)
            b = f.read(1)
            if len(b) != 1:
                raise SystemExit("offset %d past the end" % off)
            f.seek(off)
            f.write(bytes([b[0] ^ 1]))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
