#!/usr/bin/env python3
"""PyTorch reference test of the gpu/ CPU engine, after llm.c's test_gpt2.

ref_dump (C) writes a checkpoint, one batch, the logits, the gradients and the losses of ten
AdamW steps.  This script loads the checkpoint from its safetensors file (parsed here: the
safetensors module is not a dependency), runs an independent GPT-2 written in plain torch on the
same batch and compares:
  logits           max |diff| <= 1e-4
  loss             |diff| <= 1e-5
  every gradient   max |diff| <= 1e-3 * max |grad| of that tensor (+1e-7)
  10 AdamW steps   every loss within 1e-4 and every gradient norm within 1e-4 relative
                   (torch.optim.AdamW, decay on matrices and embeddings only,
                   torch.nn.utils.clip_grad_norm_ with a clip below the norms)
  loading          PyTorch's weights after the ten steps, written by this script as a
                   safetensors file with the "transformer." prefix that save_pretrained() uses,
                   load into the C engine and give torch's loss on the batch within 1e-5
usage: test_torch_ref.py REF_DUMP
       test_torch_ref.py --model DIR TEXT VAL_LOSS   (a trained model: see check_model())
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, ent in header.items():
        if name == "__metadata__":
            continue
        assert ent["dtype"] == "F32", ent
        b, e = ent["data_offsets"]
        a = np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(ent["shape"])
        out[name] = torch.tensor(a.copy())
    return out


def save_safetensors(path, tensors):
    """The format written independently of gpu/ckpt.c: header, space padding to 8, F32 data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def gpt2_forward(w, cfg, idx):
    """GPT-2 in the Hugging Face layout: Conv1D weights are (in, out)."""
    B, T = idx.shape
    C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hs = C // NH
    eps = cfg["layer_norm_epsilon"]
    x = w["wte.weight"][idx] + w["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        p = f"h.{l}."
        h = F.layer_norm(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / hs ** 0.5)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = F.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), w["ln_f.weight"], w["ln_f.bias"], eps)
    return x @ w["wte.weight"].t()


def check_model(model_dir, text_path, val_loss):
    """A trained model as llmfs stores it (config.json, model.safetensors with Hugging Face
    names) loads here and predicts the held-out end of its corpus (the last tenth, the
    engine's validation split) about as well as its run's last validation loss says."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("layer_norm_epsilon", 1e-5)
    w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    w = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in w.items()}
    with open(text_path, "rb") as f:
        data = f.read()
    val = data[len(data) - len(data) // 10:]
    T = min(64, cfg["n_positions"])
    starts = [i * (len(val) - T - 1) // 16 for i in range(16)]
    idx = torch.tensor([list(val[s:s + T]) for s in starts])
    tgt = torch.tensor([list(val[s + 1:s + T + 1]) for s in starts])
    with torch.no_grad():
        logits = gpt2_forward(w, cfg, idx)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)).item()
    print(f"torch loss on the held-out text {loss:.4f}, the run's last val_loss {val_loss:.4f}")
    ok = abs(loss - val_loss) <= 0.25 and loss < 4.5
    print("ok" if ok else "FAIL")
    return 0 if ok else 1


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--model":
        torch.set_num_threads(2)
        return check_model(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    torch.manual_seed(0)
    torch.set_num_threads(2)
    failures = []

    def check(what, diff, tol):
        ok = diff <= tol
        print(f"{what:44s} {diff:.3e} (tol {tol:.1e}) {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(what)

    d = tempfile.mkdtemp(prefix="llmfs-torchref-")
    try:
        return compare(d, check, failures)
    finally:
        shutil.rmtree(d)


def compare(d, check, failures):
    subprocess.run([sys.argv[1], d], check=True)
    with open(os.path.join(d, "ckpt", "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "results.json")) as f:
        res = json.load(f)
    w = load_safetensors(os.path.join(d, "ckpt", "model.safetensors"))
    c_logits = load_safetensors(os.path.join(d, "logits.safetensors"))["logits"]
    c_grads = load_safetensors(os.path.join(d, "grads.safetensors"))

    B, T = res["B"], res["T"]
    idx = torch.tensor(res["inputs"], dtype=torch.long).view(B, T)
    tgt = torch.tensor(res["targets"], dtype=torch.long).view(B, T)
    for t in w.values():
        t.requires_grad_(True)
    assert set(c_grads) == set(w), "gradient and weight names differ"

    logits = gpt2_forward(w, cfg, idx)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))
    check("logits max |diff|", (logits - c_logits).abs().max().item(), 1e-4)
    check("loss |diff|", abs(loss.item() - res["losses"][0]), 1e-5)
    loss.backward()
    for name in sorted(w):
        g = w[name].grad
        tol = 1e-3 * g.abs().max().item() + 1e-7
        check(f"grad {name}", (g - c_grads[name]).abs().max().item(), tol)

    decay = [t for n, t in w.items() if t.dim() == 2]
    no_decay = [t for n, t in w.items() if t.dim() != 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": res["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=res["lr"], betas=(res["beta1"], res["beta2"]), eps=res["eps"])
    for step in range(len(res["losses"])):
        opt.zero_grad(set_to_none=True)
        logits = gpt2_forward(w, cfg, idx)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))
        check(f"AdamW step {step} loss |diff| ({loss.item():.5f})",
              abs(loss.item() - res["losses"][step]), 1e-4)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(w.values()), res["grad_clip"]).item()
        check(f"AdamW step {step} grad norm rel diff ({norm:.4f})",
              abs(norm - res["grad_norms"][step]) / norm, 1e-4)
        if norm <= res["grad_clip"]:
            print(f"note: step {step} is not clipped")
        opt.step()

    # the other direction: torch's trained weights, written here, loaded by the C engine
    ck = os.path.join(d, "from-torch")
    os.mkdir(ck)
    shutil.copy(os.path.join(d, "ckpt", "config.json"), ck)
    save_safetensors(os.path.join(ck, "model.safetensors"),
                     {"transformer." + n: t for n, t in w.items()})
    with torch.no_grad():
        logits = gpt2_forward(w, cfg, idx)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1)).item()
    out = subprocess.run([sys.argv[1], "--eval", ck, os.path.join(d, "results.json")],
                         check=True, capture_output=True, text=True).stdout
    check(f"C loss on torch's weights |diff| ({loss:.5f})", abs(float(out) - loss), 1e-5)

    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
