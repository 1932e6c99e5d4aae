#!/usr/bin/env python3
"""manifest_check.py MANIFEST DIR NAME: checks an SMIP manifest against the
tree DIR (the model's source): valid JSON, "name" is NAME, every regular
file of DIR listed once with its size and sha256 (computed here from DIR),
chunk lengths summing to the size, every sub-folder listed, and nothing
else (no .smip, no path outside the model).  Prints what differs; exit 1
if anything does."""
import hashlib
import json
import os
import sys


def main():
    mpath, root, name = sys.argv[1], sys.argv[2], sys.argv[3]
    bad = []
    with open(mpath, "rb") as f:
        raw = f.read()
    try:
        m = json.loads(raw)
    except ValueError as e:
        print("not valid JSON: %s" % e)
        return 1
    if m.get("name") != name:
        bad.append("name is %r, want %r" % (m.get("name"), name))
    files, dirs = {}, set()
    for dp, dn, fn in os.walk(root):
        rel = os.path.relpath(dp, root)
        for d in dn:
            dirs.add(os.path.normpath(os.path.join(rel, d)))
        for f in fn:
            p = os.path.join(dp, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for b in iter(lambda: fh.read(1 << 20), b""):
                    h.update(b)
            files[os.path.normpath(os.path.join(rel, f))] = (os.path.getsize(p), h.hexdigest())
    seen = set()
    total = 0
    for e in m.get("files", []):
        p = e.get("path")
        if p in seen:
            bad.append("%s listed twice" % p)
        seen.add(p)
        if p is None or p.startswith("/") or ".." in p.split("/") or ".smip" in p.split("/"):
            bad.append("bad path %r" % p)
            continue
        t = e.get("type", "file")
        if t == "dir":
            if p not in dirs:
                bad.append("dir %s not in the model" % p)
            continue
        if t != "file":
            continue
        if p not in files:
            bad.append("file %s not in the model" % p)
            continue
        size, sha = files[p]
        if e.get("size") != size:
            bad.append("%s: size %r, want %d" % (p, e.get("size"), size))
        if e.get("sha256") != sha:
            bad.append("%s: sha256 %r, want %s" % (p, e.get("sha256"), sha))
        chunks = e.get("chunks")
        if not isinstance(chunks, list):
            bad.append("%s: no chunk list" % p)
        else:
            s = sum(c[1] for c in chunks)
            if s != size:
                bad.append("%s: chunks sum to %d, want %d" % (p, s, size))
        total += size
    for p in files:
        if p not in seen:
            bad.append("file %s missing from the manifest" % p)
    for p in dirs:
        if p not in seen:
            bad.append("dir %s missing from the manifest" % p)
    if "size" in m and m["size"] != total:
        bad.append("total size %r, want %d" % (m["size"], total))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
