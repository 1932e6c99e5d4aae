#!/usr/bin/env python3
"""gpu/infer.h against an independent GPT-2 in PyTorch (tests/serve/gpt2_ref.py), on
checkpoints written in Hugging Face's layout by torch (random weights, no transformers):

  plain F32 names; the "transformer." prefix with the extra tensors real checkpoints carry
  (h.N.attn.bias masks, lm_head.weight); F16 and BF16 weights (torch reads them as the C does,
  upcast to fp32).  For each, the logits of every position through the KV cache (infer_dump)
  equal torch's full forward within 1e-4 of the largest logit, and torch's own KV-cache loop
  agrees with its full forward (the reference checks itself).
usage: test_torch.py INFER_DUMP
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref  # noqa: E402

failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)
    else:
        print("ok:", msg)


def run(dump, d, ids, label):
    out = subprocess.run([dump, d] + [str(i) for i in ids], check=True, capture_output=True,
                         text=True).stdout
    got = torch.tensor(json.loads(out))
    w, cfg = gpt2_ref.load(d)
    with torch.no_grad():
        ref, _ = gpt2_ref.forward(w, cfg, torch.tensor([ids]))
        ref = ref[0]
        # torch's own cached loop
        past, rows = None, []
        for i in ids:
            l, past = gpt2_ref.forward(w, cfg, torch.tensor([[i]]), past)
            rows.append(l[0, 0])
        cached = torch.stack(rows)
    scale = ref.abs().max().item()
    diff = (got - ref).abs().max().item() / scale
    check(diff <= 1e-4, f"{label}: C KV cache vs torch forward, max diff {diff:.2e} of max |logit|")
    d2 = (cached - ref).abs().max().item() / scale
    check(d2 <= 1e-5, f"{label}: torch cached loop vs torch forward {d2:.2e}")


def main():
    dump = sys.argv[1]
    g = torch.Generator().manual_seed(5)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("f32", dict(layers=2, heads=4, embd=64, ctx=96, vocab=300, seed=1)),
            ("prefix+extra", dict(layers=3, heads=2, embd=32, ctx=80, vocab=256, seed=2,
                                  prefix="transformer.", extra=True)),
            ("f16", dict(layers=2, heads=2, embd=32, ctx=80, vocab=256, seed=3, dtype="f16")),
            ("bf16", dict(layers=2, heads=2, embd=32, ctx=80, vocab=256, seed=4,
                          dtype="bf16")),
        ]
        for label, kw in cases:
            d = os.path.join(tmp, label)
            gpt2_ref.make(d, **kw)
            n = min(kw["ctx"], 70)  # 70 > one prefill block of 64
            ids = torch.randint(0, kw["vocab"], (n,), generator=g).tolist()
            run(dump, d, ids, label)
        # a checkpoint whose file lacks a layer the config promises is refused
        d = os.path.join(tmp, "short")
        gpt2_ref.make(d, layers=1, heads=2, embd=32, ctx=16, vocab=256)
        cfg = json.load(open(os.path.join(d, "config.json")))
        cfg["n_layer"] = 2
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        r = subprocess.run([dump, d, "1"], capture_output=True, text=True)
        check(r.returncode != 0 and "Invalid argument" in r.stderr,
              f"a missing layer is refused: {r.stderr.strip()}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
