#!/usr/bin/env python3
"""GPT-2 in plain PyTorch (no transformers), for the tests and the benchmark of llmfs-serve.

  gpt2_ref.py make DIR [--layers L --heads H --embd C --ctx T --vocab V --seed S
                        --prefix transformer. --dtype f32|f16|bf16 --extra]
      writes DIR/config.json and DIR/model.safetensors: a GPT-2 with random weights in the
      Hugging Face layout (Conv1D weights (in, out)); --extra adds the h.N.attn.bias mask
      buffers and lm_head.weight that some real checkpoints carry
  gpt2_ref.py logits DIR ID...
      prints the logits (JSON, one row per position) of the sequence, computed in torch
  gpt2_ref.py greedy DIR N ID...
      prints the N ids that greedy decoding appends to the sequence (JSON)
  gpt2_ref.py bench DIR PROMPT_LEN NEW_TOKENS THREADS
      greedy generation with a KV cache in torch; prints tokens/s (tools/bench/serve.sh)
"""
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"f32": ("F32", torch.float32), "f16": ("F16", torch.float16),
          "bf16": ("BF16", torch.bfloat16)}


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (t, code) in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            b = t.view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, ent in header.items():
        if name == "__metadata__":
            continue
        b, e = ent["data_offsets"]
        buf = raw[8 + n + b:8 + n + e]
        if ent["dtype"] == "F32":
            a = torch.tensor(np.frombuffer(buf, dtype="<f4").copy())
        elif ent["dtype"] == "F16":
            a = torch.tensor(np.frombuffer(buf, dtype="<f2").copy()).float()
        elif ent["dtype"] == "BF16":
            a = torch.tensor(np.frombuffer(buf, dtype="<i2").copy()).view(torch.bfloat16).float()
        else:
            continue
        name = name[len("transformer."):] if name.startswith("transformer.") else name
        out[name] = a.reshape(ent["shape"])
    return out


def make(dir, layers=2, heads=2, embd=32, ctx=64, vocab=256, seed=1, prefix="", dtype="f32",
         extra=False):
    g = torch.Generator().manual_seed(seed)
    C = embd
    code, tdt = DTYPES[dtype]

    def rnd(*shape, std=0.2):
        return (torch.randn(*shape, generator=g) * std).to(tdt)

    t = {"wte.weight": rnd(vocab, C), "wpe.weight": rnd(ctx, C, std=0.1)}
    for l in range(layers):
        p = f"h.{l}."
        t[p + "ln_1.weight"] = (1 + rnd(C, std=0.1).float()).to(tdt)
        t[p + "ln_1.bias"] = rnd(C, std=0.1)
        t[p + "attn.c_attn.weight"] = rnd(C, 3 * C)
        t[p + "attn.c_attn.bias"] = rnd(3 * C, std=0.1)
        t[p + "attn.c_proj.weight"] = rnd(C, C)
        t[p + "attn.c_proj.bias"] = rnd(C, std=0.1)
        t[p + "ln_2.weight"] = (1 + rnd(C, std=0.1).float()).to(tdt)
        t[p + "ln_2.bias"] = rnd(C, std=0.1)
        t[p + "mlp.c_fc.weight"] = rnd(C, 4 * C)
        t[p + "mlp.c_fc.bias"] = rnd(4 * C, std=0.1)
        t[p + "mlp.c_proj.weight"] = rnd(4 * C, C)
        t[p + "mlp.c_proj.bias"] = rnd(C, std=0.1)
        if extra:
            t[p + "attn.bias"] = torch.tril(torch.ones(1, 1, ctx, ctx)).to(tdt)
    t["ln_f.weight"] = (1 + rnd(C, std=0.1).float()).to(tdt)
    t["ln_f.bias"] = rnd(C, std=0.1)
    named = {prefix + k: (v, code) for k, v in t.items()}
    if extra:
        named["lm_head.weight"] = (t["wte.weight"], code)
    os.makedirs(dir, exist_ok=True)
    save_safetensors(os.path.join(dir, "model.safetensors"), named)
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": layers,
           "n_head": heads, "n_embd": C, "n_positions": ctx, "n_ctx": ctx, "vocab_size": vocab,
           "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}
    with open(os.path.join(dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def load(dir):
    cfg = json.load(open(os.path.join(dir, "config.json")))
    w = load_safetensors(os.path.join(dir, "model.safetensors"))
    return w, cfg


def block(w, cfg, l, x, past=None):
    """One layer over x (B, T, C); past (k, v) of earlier positions; returns x, (k, v)."""
    C, NH = cfg["n_embd"], cfg["n_head"]
    hs = C // NH
    B, T, _ = x.shape
    p = f"h.{l}."
    h = F.layer_norm(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
    qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B, T, NH, hs).transpose(1, 2)
    k = k.view(B, T, NH, hs).transpose(1, 2)
    v = v.view(B, T, NH, hs).transpose(1, 2)
    if past is not None:
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
    S = k.shape[2]
    att = (q @ k.transpose(-2, -1)) / (hs ** 0.5)
    mask = torch.tril(torch.ones(S, S, dtype=torch.bool))[S - T:]
    att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
    x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
    h = F.layer_norm(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
    h = F.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
    x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return x, (k, v)


def forward(w, cfg, idx, past=None):
    """idx (B, T) at positions after the past's; returns logits (B, T, V) and the new past."""
    start = 0 if past is None else past[0][0].shape[2]
    T = idx.shape[1]
    x = w["wte.weight"][idx] + w["wpe.weight"][start:start + T]
    new = []
    for l in range(cfg["n_layer"]):
        x, kv = block(w, cfg, l, x, None if past is None else past[l])
        new.append(kv)
    x = F.layer_norm(x, (cfg["n_embd"],), w["ln_f.weight"], w["ln_f.bias"], 1e-5)
    return x @ w["wte.weight"].T, new


def main():
    cmd = sys.argv[1]
    if cmd == "make":
        args = sys.argv[3:]
        kw = {}
        names = {"--layers": "layers", "--heads": "heads", "--embd": "embd", "--ctx": "ctx",
                 "--vocab": "vocab", "--seed": "seed"}
        i = 0
        while i < len(args):
            if args[i] in names:
                kw[names[args[i]]] = int(args[i + 1])
                i += 2
            elif args[i] == "--prefix":
                kw["prefix"] = args[i + 1]
                i += 2
            elif args[i] == "--dtype":
                kw["dtype"] = args[i + 1]
                i += 2
            elif args[i] == "--extra":
                kw["extra"] = True
                i += 1
            else:
                sys.exit(f"unknown option {args[i]}")
        make(sys.argv[2], **kw)
    elif cmd == "logits":
        w, cfg = load(sys.argv[2])
        idx = torch.tensor([[int(a) for a in sys.argv[3:]]])
        with torch.no_grad():
            logits, _ = forward(w, cfg, idx)
        json.dump(logits[0].tolist(), sys.stdout)
    elif cmd == "greedy":
        w, cfg = load(sys.argv[2])
        n = int(sys.argv[3])
        ids = [int(a) for a in sys.argv[4:]]
        out = []
        with torch.no_grad():
            for _ in range(n):
                logits, _ = forward(w, cfg, torch.tensor([ids + out]))
                out.append(int(logits[0, -1].argmax()))
        print(json.dumps(out))
    elif cmd == "bench":
        w, cfg = load(sys.argv[2])
        n_prompt, n_new, threads = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        torch.set_num_threads(threads)
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(0, cfg["vocab_size"], (1, n_prompt), generator=g)
        with torch.no_grad():
            t0 = time.perf_counter()
            logits, past = forward(w, cfg, idx)
            t1 = time.perf_counter()
            tok = logits[:, -1:].argmax(-1)
            for _ in range(n_new - 1):
                logits, past = forward(w, cfg, tok, past)
                tok = logits[:, -1:].argmax(-1)
            t2 = time.perf_counter()
        print(json.dumps({"prefill_s": t1 - t0, "decode_tokens_per_s": (n_new - 1) / (t2 - t1)}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
