#!/usr/bin/env python3
"""Extracts real trained weights from TF.js graph models for the codec
benchmark.

Usage: fmt-tfjs-extract.py MODELS_DIR OUT_DIR

For every MODEL.json with a weightsManifest, walks the weights in manifest
order through MODEL.bin (the shards are concatenated) and appends:
  OUT_DIR/f32.raw  tensors stored as plain float32
  OUT_DIR/f16.raw  tensors stored float16-quantised (real fp16 data)
Other tensors (int32, uint8-quantised, bool) are skipped.
"""
import glob
import json
import math
import os
import sys

SIZES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2,
         "float16": 2}


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    n32 = n16 = 0
    with open(os.path.join(out, "f32.raw"), "wb") as f32, \
            open(os.path.join(out, "f16.raw"), "wb") as f16:
        for path in sorted(glob.glob(os.path.join(src, "*.json"))):
            with open(path) as f:
                doc = json.load(f)
            for group in doc.get("weightsManifest", []):
                data = b"".join(open(os.path.join(src, p), "rb").read()
                                for p in group["paths"])
                pos = 0
                for w in group["weights"]:
                    count = math.prod(int(d) for d in w["shape"])
                    q = w.get("quantization")
                    dtype = q["dtype"] if q else w["dtype"]
                    size = count * SIZES[dtype]
                    blob = data[pos:pos + size]
                    pos += size
                    if dtype == "float32" and not q:
                        f32.write(blob)
                        n32 += size
                    elif dtype == "float16":
                        f16.write(blob)
                        n16 += size
                if pos != len(data):
                    sys.exit(f"{path}: manifest covers {pos} of {len(data)} bytes")
    print(f"float32: {n32} bytes, float16: {n16} bytes")


if __name__ == "__main__":
    main()
