#!/usr/bin/env python3
"""mining-sample.py STATUS OUT IFACE... - the wire bytes of a mining job by round.

Every 50 ms it reads the job's status file (its first line "running: round r/N") and the
host ends' counters (/sys/class/net/IFACE/statistics/{rx,tx}_bytes); it writes a line
"EVENT seconds rx tx" to OUT at its start, at every sample ("tick"), when a round starts
("round r": its number first shows, since between rounds the status names the last
completed one) and when the job has ended ("end").  rx: bytes the host received from the namespaces (the replicas' uploads), tx:
bytes it sent them.
"""
import sys
import time


def counters(ifaces):
    rx = tx = 0
    for i in ifaces:
        with open(f"/sys/class/net/{i}/statistics/rx_bytes") as f:
            rx += int(f.read())
        with open(f"/sys/class/net/{i}/statistics/tx_bytes") as f:
            tx += int(f.read())
    return rx, tx


def first_line(path):
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


def main():
    status, out, ifaces = sys.argv[1], sys.argv[2], sys.argv[3:]
    t0 = time.monotonic()
    with open(out, "w", buffering=1) as o:
        rx, tx = counters(ifaces)
        o.write(f"start 0 {rx} {tx}\n")
        last = 0
        while True:
            line = first_line(status)
            rx, tx = counters(ifaces)
            t = time.monotonic() - t0
            o.write(f"tick {t:.3f} {rx} {tx}\n")
            if line.startswith("running: round "):
                r = int(line.split()[2].split("/")[0])
                if r > last:
                    o.write(f"round{r} {t:.3f} {rx} {tx}\n")
                    last = r
            elif line.startswith(("done", "failed", "stopped")):
                o.write(f"end {t:.3f} {rx} {tx}\n")
                return
            time.sleep(0.05)


if __name__ == "__main__":
    main()
