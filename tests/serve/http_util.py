#!/usr/bin/env python3
"""Helpers of tests/serve/http.sh (the standard library only).

  http_util.py get FILE KEY.PATH...   print JSON fields (dotted paths, list indexes as numbers)
  http_util.py sse FILE               check a server-sent event stream and summarise it as JSON:
                                      {"text", "finish", "usage", "role", "events", "objects"}
  http_util.py decode DIR ID...       the text the server sends for these ids: the bytes of
                                      the tokens (DIR's vocab.json, or bytes when DIR is
                                      "bytes"), each byte that starts no valid UTF-8 sequence
                                      as U+FFFD (JSON string)
  http_util.py disconnect ADDR PATH BODY
                                      POST BODY, read the first event of the stream, close the
                                      connection; ADDR is unix:PATH or HOST:PORT
"""
import json
import socket
import sys


def field(doc, path):
    for k in path.split("."):
        doc = doc[int(k)] if isinstance(doc, list) else doc[k]
    return doc


def cmd_get(args):
    doc = json.load(open(args[0]))
    for p in args[1:]:
        v = field(doc, p)
        print(v if isinstance(v, str) else json.dumps(v))


def cmd_sse(args):
    raw = open(args[0], encoding="utf-8").read()
    assert raw.endswith("\n\n"), "the stream ends with a blank line"
    events = raw[:-2].split("\n\n")
    assert events[-1] == "data: [DONE]", f"the last event is [DONE], not {events[-1]!r}"
    text, finish, usage, role, objects = "", None, None, None, set()
    for ev in events[:-1]:
        assert ev.startswith("data: ") and "\n" not in ev, f"one data line per event: {ev!r}"
        doc = json.loads(ev[len("data: "):])
        assert "error" not in doc, doc
        objects.add(doc["object"])
        if doc.get("usage"):
            assert doc["choices"] == [], "the usage event has no choices"
            usage = doc["usage"]
            continue
        assert finish is None, "no text after the finish_reason"
        ch = doc["choices"][0]
        if "delta" in ch:
            if "role" in ch["delta"]:
                assert role is None and text == "", "the role comes first, once"
                role = ch["delta"]["role"]
            text += ch["delta"].get("content", "")
        else:
            text += ch["text"]
        finish = ch["finish_reason"]
    print(json.dumps({"text": text, "finish": finish, "usage": usage, "role": role,
                      "events": len(events), "objects": sorted(objects)}))


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def replace_invalid(b):
    out, i = [], 0
    while i < len(b):
        c = b[i]
        n = 1 if c < 0x80 else 2 if c < 0xe0 else 3 if c < 0xf0 else 4
        try:
            out.append(b[i:i + n].decode("utf-8", errors="strict"))
            i += n
        except UnicodeDecodeError:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def cmd_decode(args):
    ids = [int(a) for a in args[1:]]
    if args[0] == "bytes":
        b = bytes(ids)
    else:
        vocab = json.load(open(args[0] + "/vocab.json", encoding="utf-8"))
        inv = {v: k for k, v in vocab.items()}
        dec = bytes_to_unicode()
        b = b"".join(bytes(dec[ch] for ch in inv[i]) for i in ids)
    print(json.dumps(replace_invalid(b)))


def cmd_disconnect(args):
    addr, path, body = args
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(addr[5:])
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    body = body.encode()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    s.settimeout(30)
    while b"data: " not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    s.close()
    if b"data: " not in got:
        sys.exit(f"no event before the end: {got[:300]!r}")
    print("disconnected after", len(got), "bytes")


def main():
    cmds = {"get": cmd_get, "sse": cmd_sse, "decode": cmd_decode, "disconnect": cmd_disconnect}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
