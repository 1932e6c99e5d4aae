"""A stand-in chat endpoint for the mount tests: chat_stub.py LOG PORTFILE.

Answers every POST with one assistant message "pong" and appends a line
"auth=<Authorization header> model=<model asked for> prompt=<last message>"
to LOG, so that a test can see which key was sent and which prompts
reached it.  Listens on a free loopback port, written to PORTFILE once
it is open (renamed into place, so a reader never sees half of it).
"""
import http.server
import json
import os
import sys

log, portfile = sys.argv[1], sys.argv[2]


class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            req = json.loads(body)
            model = req.get("model")
            prompt = req["messages"][-1]["content"].replace("\n", " ")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            model = prompt = None
        with open(log, "a") as f:
            f.write("auth=%s model=%s prompt=%s\n" %
                    (self.headers.get("Authorization"), model, prompt))
        out = json.dumps({"choices": [{"index": 0, "message": {
            "role": "assistant", "content": "pong"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
os.rename(portfile + ".tmp", portfile)
s.serve_forever()
