#!/usr/bin/env python3
"""overlap_cheat.py URL JOB SLOT TOKEN H - a dishonest replica of an overlap=1 job.

It speaks the replicas' protocol (docs/mining.md, "The wire") with urllib: for each round it
takes the weights, and posts for its slot a well-formed fp32 pseudo-gradient that no window
computes (small seeded noise), saying own=1 whenever the coordinator says its window starts
from its own pseudo-gradient (X-Llmfs-Own), as an honest overlapped replica would.  The
coordinator accepts it (it is well formed); the ledger's replay must flag it.  It ends when
the job does (410).
"""
import random, struct, sys, urllib.error, urllib.request

url, job, slot, token, H = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
base = f"{url}/v1/jobs/{job}"
rng = random.Random(7)


def call(path, body=None):
    rq = urllib.request.Request(base + path, data=body,
                                headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(rq, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


last = 0
while True:
    st, hd, body = call(f"/weights?after={last}&wait=20&slot={slot}")
    if st == 410:
        break
    if st == 204:
        continue
    assert st == 200, (st, body[:200])
    rd = int(hd["X-Llmfs-Round"])
    own = hd.get("X-Llmfs-Own") == str(rd - 1)
    n = struct.unpack_from("<Q", body, 16)[0]
    noise = struct.pack(f"<{n}f", *(rng.gauss(0, 1e-4) for _ in range(n)))
    frame = b"LLMFSPG1" + struct.pack("<IIQ", 1, 0, n) + noise
    st, _, msg = call(f"/delta/{slot}?round={rd}&steps={H}&loss=2.5{'&own=1' if own else ''}",
                      frame)
    print(f"round {rd}: own={int(own)} HTTP {st} {msg.decode().strip()}", flush=True)
    if st == 410:
        break
    last = rd
