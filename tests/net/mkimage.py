#!/usr/bin/env python3
"""mkimage.py DIR: small OCI images for tests/net/envs_image.sh, each a folder DIR/NAME with
spec.json for pushlayout.py push and its blobs (python3 stdlib only).

  ok     two layers: /bin/sh (the host's dash with its C library), /usr/bin/su setuid,
         /etc/gone; then a whiteout of /etc/gone and /etc/motd
  evil   a layer with an entry "../../escape-marker"
  dev    a layer with a character device node
  big    a layer of 12 MiB of zeros (a few KiB compressed)
"""
import gzip
import io
import json
import os
import sys
import tarfile

LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def add_bytes(t, name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    t.addfile(ti, io.BytesIO(data))


def add_special(t, name, kind, link=""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.CHRTYPE:
        ti.devmajor, ti.devminor = 1, 3
    t.addfile(ti)


def layer(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        entries(t)
    return b.getvalue()


def image(root, name, layers):
    d = os.path.join(root, name)
    os.makedirs(d)
    spec = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "file": "config.json"}, "layers": []}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architecture": "amd64", "os": "linux",
                   "rootfs": {"type": "layers", "diff_ids": []}}, f)
    for i, (data, gz) in enumerate(layers):
        fn = "layer%d.tar%s" % (i, ".gz" if gz else "")
        with open(os.path.join(d, fn), "wb") as f:
            f.write(gzip.compress(data) if gz else data)
        spec["layers"].append({"mediaType": LAYER_GZ if gz else LAYER, "file": fn})
    with open(os.path.join(d, "spec.json"), "w") as f:
        json.dump(spec, f)


def host(path):
    with open(os.path.realpath(path), "rb") as f:
        return f.read()


def base(t):
    for d in ("bin", "etc", "usr", "usr/bin", "lib", "lib/x86_64-linux-gnu", "lib64"):
        add_special(t, d, tarfile.DIRTYPE)
    add_bytes(t, "bin/sh", host("/bin/dash"), 0o755)
    add_bytes(t, "lib/x86_64-linux-gnu/libc.so.6", host("/lib/x86_64-linux-gnu/libc.so.6"), 0o755)
    add_bytes(t, "lib64/ld-linux-x86-64.so.2", host("/lib64/ld-linux-x86-64.so.2"), 0o755)
    add_bytes(t, "usr/bin/su", host("/bin/dash"), 0o4755)
    add_bytes(t, "etc/gone", b"an earlier layer's file\n")


def top(t):
    add_bytes(t, "etc/.wh.gone", b"")
    add_bytes(t, "etc/motd", b"hello from the image\n")


def main():
    root = sys.argv[1]
    image(root, "ok", [(layer(base), True), (layer(top), False)])
    image(root, "evil", [(layer(lambda t: add_bytes(t, "../../escape-marker", b"x")), False)])
    image(root, "dev", [(layer(lambda t: add_special(t, "dev/null", tarfile.CHRTYPE)), False)])
    image(root, "big", [(layer(lambda t: add_bytes(t, "zeros", bytes(12 << 20))), True)])


if __name__ == "__main__":
    main()
