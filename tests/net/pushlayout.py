#!/usr/bin/env python3
"""pushlayout.py - puts a model on a registry in a foreign layout, the way
the tools that own the layout would (no llmfs code involved), for the net
tests.  python3 stdlib only.

    pushlayout.py push URL USER PASS REPO TAG SPEC.json
        Uploads every blob the spec names (POST /v2/REPO/blobs/uploads/,
        then PUT LOCATION?digest=...), builds the manifest and PUTs it with
        its own media type.  Prints the manifest's digest.  SPEC:
          {"mediaType": "...", "artifactType": "..." (optional),
           "config": {"mediaType": "...", "file": PATH},
           "layers": [{"mediaType": "...", "file": PATH,
                       "annotations": {...} (optional),
                       "size": N (optional: claimed instead of the real one),
                       "digest": "sha256:..." (optional: claimed)}, ...]}
        Relative PATHs are taken from the spec's folder.
    pushlayout.py manifest URL USER PASS REPO TAG FILE MEDIATYPE
        PUTs FILE as the manifest as it is (blobs must be there).
    pushlayout.py gguf OUT [NTENSORS [ELEMS [SEED]]]
        Writes a small but valid GGUF v3 file: a few KV pairs
        (general.architecture, general.name, general.alignment, a string
        array) and NTENSORS F32 tensors of ELEMS floats (seeded), aligned
        to 32 bytes as llama.cpp writes them.
"""
import base64
import hashlib
import json
import os
import random
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request


def req(method, url, user, pw, data=None, headers=None):
    h = dict(headers or {})
    if user:
        tok = base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()
        h["Authorization"] = "Basic " + tok
    r = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        sys.exit("pushlayout.py: %s %s: HTTP %d: %s" % (method, url, e.code,
                                                        body[:300]))


def upload(base, user, pw, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    st, _, _ = req_head(base + "/v2/%s/blobs/%s" % (repo, digest), user, pw)
    if st == 200:
        return digest
    st, hdr, _ = req("POST", base + "/v2/%s/blobs/uploads/" % repo, user, pw,
                     data=b"")
    if st != 202:
        sys.exit("pushlayout.py: upload start: HTTP %d" % st)
    loc = urllib.parse.urljoin(base + "/", hdr["Location"])
    loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest)
    st, _, _ = req("PUT", loc, user, pw, data=data,
                   headers={"Content-Type": "application/octet-stream",
                            "Content-Length": str(len(data))})
    if st != 201:
        sys.exit("pushlayout.py: upload %s: HTTP %d" % (digest, st))
    return digest


def req_head(url, user, pw):
    h = {}
    if user:
        h["Authorization"] = "Basic " + base64.b64encode(
            ("%s:%s" % (user, pw)).encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD",
                                                           headers=h)) as r:
            return r.status, r.headers, b""
    except urllib.error.HTTPError as e:
        return e.code, e.headers, b""


def put_manifest(base, user, pw, repo, tag, body, mt):
    st, hdr, _ = req("PUT", base + "/v2/%s/manifests/%s" % (repo, tag), user, pw,
                     data=body, headers={"Content-Type": mt})
    if st != 201:
        sys.exit("pushlayout.py: manifest: HTTP %d" % st)
    return "sha256:" + hashlib.sha256(body).hexdigest()


def descriptor(base, user, pw, repo, d, specdir):
    with open(os.path.join(specdir, d["file"]), "rb") as f:
        data = f.read()
    digest = upload(base, user, pw, repo, data)
    out = {"mediaType": d["mediaType"], "digest": d.get("digest", digest),
           "size": d.get("size", len(data))}
    if d.get("annotations"):
        out["annotations"] = d["annotations"]
    return out


def cmd_push(base, user, pw, repo, tag, specpath):
    with open(specpath) as f:
        spec = json.load(f)
    specdir = os.path.dirname(os.path.abspath(specpath))
    man = {"schemaVersion": 2, "mediaType": spec["mediaType"]}
    if spec.get("artifactType"):
        man["artifactType"] = spec["artifactType"]
    man["config"] = descriptor(base, user, pw, repo, spec["config"], specdir)
    man["layers"] = [descriptor(base, user, pw, repo, d, specdir)
                     for d in spec["layers"]]
    body = json.dumps(man, separators=(",", ":")).encode()
    print(put_manifest(base, user, pw, repo, tag, body, spec["mediaType"]))


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def cmd_gguf(out, n=2, elems=65536, seed=1):
    align = 32
    kv = [("general.architecture", 8, gguf_str("llama")),
          ("general.name", 8, gguf_str("llmfs-test")),
          ("general.alignment", 4, struct.pack("<I", align)),
          ("tokenizer.ggml.tokens", 9,
           struct.pack("<IQ", 8, 3) + gguf_str("<s>") + gguf_str("</s>") +
           gguf_str("hi"))]
    rng = random.Random(seed)
    tensors = []
    off = 0
    for i in range(n):
        name = "blk.%d.weight" % i
        data = struct.pack("<%df" % elems,
                           *[rng.uniform(-1, 1) for _ in range(elems)])
        tensors.append((name, [elems], off, data))
        off += len(data)
        off += -off % align
    h = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, t, v in kv:
        h += gguf_str(k) + struct.pack("<I", t) + v
    for name, dims, toff, _ in tensors:
        h += gguf_str(name) + struct.pack("<I", len(dims))
        h += b"".join(struct.pack("<Q", d) for d in dims)
        h += struct.pack("<IQ", 0, toff)  # GGML_TYPE_F32
    h += b"\0" * (-len(h) % align)
    with open(out, "wb") as f:
        f.write(h)
        for _, _, _, data in tensors:
            f.write(data)
            f.write(b"\0" * (-len(data) % align))


def main():
    a = sys.argv[1:]
    if a and a[0] == "push" and len(a) == 7:
        cmd_push(a[1].rstrip("/"), a[2], a[3], a[4], a[5], a[6])
    elif a and a[0] == "manifest" and len(a) == 8:
        with open(a[6], "rb") as f:
            body = f.read()
        print(put_manifest(a[1].rstrip("/"), a[2], a[3], a[4], a[5], body, a[7]))
    elif a and a[0] == "gguf" and 2 <= len(a) <= 5:
        cmd_gguf(a[1], *[int(x) for x in a[2:]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
