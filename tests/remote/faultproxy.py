#!/usr/bin/env python3
"""faultproxy.py - an HTTP proxy in front of a registry that injects faults.

    faultproxy.py --upstream http://127.0.0.1:5000 --port-file F
                  [--rules RULES.json] [--bearer USER:PASS]
                  [--upstream-auth USER:PASS]

Bodies stream in both directions (64 KiB at a time); Range, Content-Length
and Location (rewritten to point here) pass through.

Faults come from RULES.json, re-read on every request (counters restart when
its content changes):
    {"rules": [{"path": "/blobs/sha256:", "method": "GET", "count": 2,
                "action": "status", "status": 503}]}
  path    regex searched in the request path (with query)
  method  optional; count: the first N matches (default 1, -1: every one);
  prob    instead of count: each match with probability p (seed 1)
  action  status: answer `status` (503) without asking the registry
          drop: close the connection after `after` body bytes
          truncate: send Content-Length but close after half the body
          flip: flip one byte of the body at `after` (default: the middle)
          stall: sleep `seconds` before the answer, or after `after` bytes
          hold: before the answer, wait while the file `file` exists (at
                most `seconds`, default 300): a test lets the request go
                by removing it
          replace: answer `status` (200) with `body`, or `size` bytes of
                   'a', and `content_type`
          redirect: answer 307 to `to` + "/_storage" + the path
          norange: drop the Range header (the registry answers 200, whole)
Requests under /_storage/ stand in for blob storage on another host (reach
it as http://localhost:PORT while the registry is http://127.0.0.1:PORT):
they are counted as class storage_auth or storage_noauth by whether they
carry an Authorization header, and go upstream with --storage-auth.

--bearer makes it a STAND-IN bearer token server (the real registry's token
auth needs a JWT issuer we do not run): a request without a token it issued
gets 401 with a Bearer challenge (realm http://HOST:PORT/token); GET /token
checks the basic credentials USER:PASS and issues a token; accepted requests
go upstream with --upstream-auth as basic credentials.

GET /_stats answers the counts per path class (JSON); POST /_reset zeroes
them; POST /_revoke forgets the tokens issued (a 401 to a cached token).
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse

PIECE = 65536
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
       "te", "trailer", "upgrade", "host"}


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.rules_text = None
        self.rules = []
        self.hits = {}
        self.rng = random.Random(1)
        self.tokens = set()
        self.stats = {}
        up = urllib.parse.urlsplit(args.upstream)
        self.up_host, self.up_port = up.hostname, up.port or 80
        self.up_base = "%s://%s" % (up.scheme, up.netloc)

    def load_rules(self):
        path = self.args.rules
        if not path:
            return []
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            text = ""
        with self.lock:
            if text != self.rules_text:
                self.rules_text = text
                self.rules = json.loads(text)["rules"] if text.strip() else []
                self.hits = {}
                self.rng = random.Random(1)
            return self.rules

    def match(self, method, path, body_phase):
        """The first rule that fires for this request, or None.  Faults
        on the body (drop, truncate, flip, stall after bytes) are matched
        only against 2xx answers of the registry (body_phase), so that an
        anonymous first try answered 401 does not use them up."""
        for i, r in enumerate(self.load_rules()):
            if "method" in r and r["method"] != method:
                continue
            on_body = r["action"] in ("drop", "truncate", "flip") or \
                (r["action"] == "stall" and "after" in r)
            if on_body != body_phase:
                continue
            if not re.search(r["path"], path):
                continue
            with self.lock:
                n = self.hits.get(i, 0)
                self.hits[i] = n + 1
                if "prob" in r:
                    fire = self.rng.random() < r["prob"]
                else:
                    count = r.get("count", 1)
                    fire = count < 0 or n < count
                if fire:
                    self.count("faults", 1, 0, 0)
                    return r
        return None

    def count(self, cls, req, rx, tx):
        with self.lock:
            s = self.stats.setdefault(cls, {"requests": 0, "bytes_in": 0,
                                            "bytes_out": 0})
            s["requests"] += req
            s["bytes_in"] += rx
            s["bytes_out"] += tx


def path_class(method, path):
    if path.startswith("/token"):
        return "token"
    if "/blobs/uploads" in path:
        return "uploads"
    for c in ("blobs", "manifests", "tags", "_catalog"):
        if "/%s/" % c in path or path.split("?")[0].endswith("/" + c) \
                or "/%s?" % c in path:
            return c.strip("_")
    return "other"


def repo_of(path):
    m = re.match(r"/v2/(.+?)/(blobs|manifests|tags)/", path)
    return m.group(1) if m else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"

    def log_message(self, fmt, *a):
        if os.environ.get("FAULTPROXY_LOG"):
            sys.stderr.write("faultproxy: " + fmt % a + "\n")

    def do_GET(self): self.handle_any()
    def do_HEAD(self): self.handle_any()
    def do_PUT(self): self.handle_any()
    def do_POST(self): self.handle_any()
    def do_PATCH(self): self.handle_any()
    def do_DELETE(self): self.handle_any()

    # ---- small answers ----
    def answer(self, status, body=b"", ctype="application/json", headers=()):
        self.drain_request()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def drain_request(self):
        for _ in self.request_body():
            pass

    def request_body(self):
        """The request body in pieces (Content-Length or chunked)."""
        if getattr(self, "_drained", False):
            return
        self._drained = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    b = self.rfile.read(min(left, PIECE))
                    if not b:
                        raise ConnectionError("short chunk")
                    left -= len(b)
                    yield b
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            b = self.rfile.read(min(left, PIECE))
            if not b:
                raise ConnectionError("short request body")
            left -= len(b)
            yield b

    # ---- the stand-in token server ----
    def bearer_gate(self):
        """True when the request may go on upstream."""
        st = self.server.state
        if self.path.startswith("/token"):
            want = "Basic " + base64.b64encode(
                st.args.bearer.encode()).decode()
            if self.headers.get("Authorization") != want:
                self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                            headers=[("WWW-Authenticate",
                                      'Basic realm="faultproxy-token"')])
                return False
            tok = secrets.token_hex(16)
            with st.lock:
                st.tokens.add(tok)
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                st.stats.setdefault("scopes", []).extend(q.get("scope", []))
            self.answer(200, json.dumps({"token": tok,
                                         "expires_in": 300}).encode())
            return False
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in st.tokens:
            return True
        repo = repo_of(self.path)
        if repo:
            act = "pull" if self.command in ("GET", "HEAD") else "pull,push"
            scope = "repository:%s:%s" % (repo, act)
        else:
            scope = "registry:catalog:*"
        host = self.headers.get("Host", "127.0.0.1")
        chal = 'Bearer realm="http://%s/token",service="faultproxy",' \
               'scope="%s"' % (host, scope)
        self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                    headers=[("WWW-Authenticate", chal)])
        return False

    # ---- forwarding ----
    def handle_any(self):
        st = self.server.state
        self._drained = False
        cls = path_class(self.command, self.path)
        try:
            if self.path == "/_stats":
                self.answer(200, json.dumps(st.stats).encode())
                return
            if self.path == "/_revoke":
                with st.lock:
                    st.tokens.clear()
                self.answer(200, b"{}")
                return
            if self.path == "/_reset":
                with st.lock:
                    st.stats = {}
                self.answer(200, b"{}")
                return
            self.storage = self.path.startswith("/_storage/")
            if self.storage:
                auth = self.headers.get("Authorization")
                st.count("storage_auth" if auth else "storage_noauth", 1, 0, 0)
                self.path = self.path[len("/_storage"):]
            st.count(cls, 1, 0, 0)
            if st.args.bearer and not self.bearer_gate():
                return
            rule = None if self.storage else \
                st.match(self.command, self.path, False)
            if rule and rule["action"] == "status":
                self.answer(rule.get("status", 503),
                            b'{"errors":[{"code":"UNAVAILABLE"}]}')
                return
            if rule and rule["action"] == "redirect":
                self.answer(307, b"", headers=[(
                    "Location", rule["to"] + "/_storage" + self.path)])
                return
            if rule and rule["action"] == "replace":
                body = rule["body"].encode() if "body" in rule \
                    else b"a" * rule.get("size", 0)
                self.answer(rule.get("status", 200), body,
                            rule.get("content_type", "application/json"))
                return
            if rule and rule["action"] == "stall" and "after" not in rule:
                time.sleep(rule.get("seconds", 5))
            if rule and rule["action"] == "hold":
                end = time.monotonic() + rule.get("seconds", 300)
                while os.path.exists(rule["file"]) and time.monotonic() < end:
                    time.sleep(0.1)
            self.forward(cls, rule and rule["action"] == "norange")
        except (ConnectionError, BrokenPipeError, socket.timeout, OSError):
            self.close_connection = True

    def forward(self, cls, norange=False):
        st = self.server.state
        up = http.client.HTTPConnection(st.up_host, st.up_port, timeout=120)
        try:
            up.putrequest(self.command, self.path, skip_host=True,
                          skip_accept_encoding=True)
            up.putheader("Host", "%s:%d" % (st.up_host, st.up_port))
            chunked = self.headers.get("Transfer-Encoding", "").lower() \
                == "chunked"
            for k, v in self.headers.items():
                if k.lower() in HOP or k.lower() == "expect":
                    continue
                if k.lower() == "range" and norange:
                    continue
                if k.lower() == "authorization" and (
                        st.args.upstream_auth or self.storage):
                    continue
                up.putheader(k, v)
            creds = st.args.storage_auth if self.storage \
                else st.args.upstream_auth
            if creds:
                up.putheader("Authorization", "Basic " + base64.b64encode(
                    creds.encode()).decode())
            if chunked:
                up.putheader("Transfer-Encoding", "chunked")
            up.endheaders()
            rx = 0
            for b in self.request_body():
                rx += len(b)
                up.send(b"%x\r\n%s\r\n" % (len(b), b) if chunked else b)
            if chunked:
                up.send(b"0\r\n\r\n")
            resp = up.getresponse()
            rule = None
            if 200 <= resp.status < 300 and not self.storage:
                rule = st.match(self.command, self.path, True)
            self.relay(cls, rule, resp, rx)
        finally:
            up.close()

    def relay(self, cls, rule, resp, rx):
        st = self.server.state
        self.send_response(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for k, v in resp.getheaders():
            if k.lower() in HOP:
                continue
            if k.lower() == "location" and v.startswith(st.up_base):
                v = "http://%s%s" % (self.headers.get("Host"),
                                     v[len(st.up_base):])
            self.send_header(k, v)
        has_body = self.command != "HEAD" and resp.status not in (204, 304)
        if length is None and has_body:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not has_body:
            st.count(cls, 0, rx, 0)
            return
        act = rule["action"] if rule else None
        total = int(length) if length is not None else None
        cut = None
        if act == "drop":
            cut = rule.get("after", 0)
        elif act == "truncate":
            cut = (total or 0) // 2
        flip = None
        if act == "flip":
            flip = rule.get("after", (total or 2) // 2)
        stall_at = rule.get("after") if act == "stall" else None
        sent = 0
        while True:
            b = resp.read(PIECE)
            if not b:
                break
            if flip is not None and sent <= flip < sent + len(b):
                b = bytearray(b)
                b[flip - sent] ^= 0x01
                b = bytes(b)
            if stall_at is not None and sent <= stall_at < sent + len(b):
                k = stall_at - sent
                self.wfile.write(b[:k])
                self.wfile.flush()
                time.sleep(rule.get("seconds", 5))
                b, sent = b[k:], stall_at
                stall_at = None
            if cut is not None and sent + len(b) >= cut:
                self.wfile.write(b[:cut - sent])
                self.wfile.flush()
                st.count(cls, 0, rx, cut)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if length is None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            else:
                self.wfile.write(b)
            sent += len(b)
        if length is None:
            self.wfile.write(b"0\r\n\r\n")
        st.count(cls, 0, rx, sent)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--rules")
    ap.add_argument("--bearer")
    ap.add_argument("--upstream-auth")
    ap.add_argument("--storage-auth")
    args = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
