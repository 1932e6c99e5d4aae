#!/usr/bin/env python3
"""envctl.py: small helpers of tests/mount/envs.sh, on both sides of a container.

  write PATH TEXT      writes TEXT to PATH (one write, then close); prints OK or the
                       errno's name (a rejected env.json fails at close)
  poll PATH SECONDS    reads PATH, then waits in poll() until it is readable again;
                       prints "changed" or "timeout"
  get SOCKET URLPATH   GET over a unix socket; prints the status and the body
  serve [SOCKET]       inside a container: an HTTP server on the unix socket
                       ($LLMFS_ENDPOINT by default) answering GET /ping with "pong
                       <hostname>", GET /model with the model folder's file names and
                       POST /v1/chat/completions with "env <hostname> read: <prompt>"
                       (a stand-in for an LLM, which cannot run here at test speed)
  hog                  inside a container: busy on the CPU until throttled (20 s at most)
"""
import errno
import http.client
import http.server
import json
import os
import select
import signal
import socket
import socketserver
import sys
import time


def write(path, text):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
        return 0
    print("OK")
    return 0


def poll(path, secs):
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 65536)
    p = select.poll()
    p.register(fd, select.POLLIN)
    ev = p.poll(float(secs) * 1000)
    print("changed" if ev else "timeout")
    return 0


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def get(sock, url):
    c = UnixConn(sock)
    c.request("GET", url)
    r = c.getresponse()
    print(r.status, r.read().decode())
    return 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ping":
            body = "pong " + socket.gethostname()
        elif self.path == "/model":
            body = " ".join(sorted(os.listdir("/mnt/models")))
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n) or b"{}")
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        prompt = req["messages"][-1]["content"]
        text = "env %s read: %s" % (socket.gethostname(), prompt)
        body = json.dumps({"id": "x", "object": "chat.completion", "model": req.get("model"),
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                     "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class UnixServer(socketserver.UnixStreamServer):
    def get_request(self):
        req, _ = super().get_request()
        return req, ("local", 0)


def serve(path):
    # PID 1 of its namespace: SIGTERM is ignored unless handled.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    if os.path.exists(path):
        os.unlink(path)
    srv = UnixServer(path, Handler)
    print("listening on", path, flush=True)
    srv.serve_forever()


def throttled():
    for path in ("/sys/fs/cgroup/cpu/cpu.stat", "/sys/fs/cgroup/cpu.stat"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("nr_throttled "):
                        return int(line.split()[1])
        except OSError:
            pass
    return 0


def hog():
    """Busy until the cgroup has throttled it, or 20 s.  On a machine so
    loaded that the hog never gets its quota's share, it is never
    throttled: it then prints the share of a CPU it had, which the test
    holds to the quota instead."""
    start, cpu0 = time.time(), time.process_time()
    end = start + 20
    while time.time() < end and throttled() == 0:
        t = time.time() + 0.05
        while time.time() < t:
            pass
    wall = time.time() - start
    print("share %.3f" % ((time.process_time() - cpu0) / wall))
    return 0


def main():
    op = sys.argv[1]
    if op == "write":
        return write(sys.argv[2], sys.argv[3])
    if op == "poll":
        return poll(sys.argv[2], sys.argv[3])
    if op == "get":
        return get(sys.argv[2], sys.argv[3])
    if op == "serve":
        return serve(sys.argv[2] if len(sys.argv) > 2 else os.environ["LLMFS_ENDPOINT"])
    if op == "hog":
        return hog()
    print("bad op", op)
    return 2


if __name__ == "__main__":
    sys.exit(main())
