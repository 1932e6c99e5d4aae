#!/usr/bin/env python3
"""mkmodel.py - writes a safetensors file of bf16-sized tensors for the net tests.

    mkmodel.py OUT NTENSORS TENSOR_BYTES [--seed S] [--change F] [--pad N]

Tensor i holds bytes drawn from Random(seed_i), so two files made with the
same seed share every tensor; --change F gives a fraction F of the tensors
(every round(1/F)-th) new bytes, and --pad N grows the JSON header by N
bytes (the metadata), moving every tensor: a "v2" of the model.
"""
import argparse
import json
import random
import struct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("size", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--change", type=float, default=0.0)
    ap.add_argument("--pad", type=int, default=0)
    a = ap.parse_args()
    every = round(1 / a.change) if a.change > 0 else 0
    header = {"__metadata__": {"format": "pt", "pad": "x" * a.pad}}
    off = 0
    for i in range(a.n):
        elems = a.size // 2
        header["layer.%d.weight" % i] = {"dtype": "BF16", "shape": [elems],
                                        "data_offsets": [off, off + elems * 2]}
        off += elems * 2
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for i in range(a.n):
            seed = a.seed * 1000003 + i
            if every and i % every == 0:
                seed += 7777777
            f.write(random.Random(seed).randbytes((a.size // 2) * 2))


if __name__ == "__main__":
    main()
