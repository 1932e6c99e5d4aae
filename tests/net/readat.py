#!/usr/bin/env python3
"""readat.py A B N SEED LEN: reads N ranges of LEN bytes at random offsets
(seeded) from files A and B and exits 1 at the first difference."""
import random
import sys

a, b, n, seed, ln = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
with open(a, "rb") as fa, open(b, "rb") as fb:
    fa.seek(0, 2)
    size = fa.tell()
    for _ in range(n):
        off = rng.randrange(0, max(1, size - ln))
        fa.seek(off)
        fb.seek(off)
        if fa.read(ln) != fb.read(ln):
            print("differ at", off)
            sys.exit(1)
