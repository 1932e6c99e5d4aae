#!/bin/sh
# Benchmarks of envs/ (docs/envs.md), each against its baseline in the same run:
#   start latency   `echo start > control` until `state` reads running (a poll() on state),
#                   against a bare `runc run --detach` of the same bundle (its config.json);
#   model reads     reading a file of the model inside the container (the bind of the mount)
#                   against the same read on the host mount;
#   socket hop      the round trip of one request through an env's unix socket into the
#                   container (a new connection each time, as a paths/ call makes), against
#                   the same llmfs-serve answering on the host over its own socket: what the
#                   hop into the container adds per call (needs python3-torch for the model).
#
#   sh tools/bench/envs.sh [BUILD_DIR] [ROUNDS] [SIZE_MIB]
#
# Needs root and runc (or crun).  Prints one line per measurement (the median of ROUNDS);
# docs/benchmarks.md records a run.  On a shared machine the figures are noisy: compare the
# two numbers of a line, measured in the same run, not runs with each other.
set -eu
build=$(cd "${1:-build}" && pwd)
rounds=${2:-10}
size=${3:-256}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/llmfs-envbench.XXXXXX")
mnt=$work/mnt
pid=
spid=
RUNC=
for r in /usr/sbin/runc /usr/bin/runc /usr/bin/crun; do
	[ -x "$r" ] && { RUNC=$r; break; }
done
[ -n "$RUNC" ] || { echo "no runc or crun" >&2; exit 1; }

cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null || true
	"$RUNC" delete --force llmfs-envbench-bare >/dev/null 2>&1 || true
	[ -d "$mnt/envs/b" ] && echo stop >"$mnt/envs/b/control" 2>/dev/null && sleep 1
	fusermount3 -u "$mnt" 2>/dev/null || true
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	sleep 1
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT INT TERM

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

mkdir -p "$mnt" "$work/bin" "$work/bare/rootfs"
printf 'trap "exit 0" TERM\nwhile :; do sleep 0.1; done\n' >"$work/bin/idle.sh"
"$build/fs/llmfs" --store "$work/store" -f --env-bind "$work/bin" "$mnt" 2>"$work/daemon.log" &
pid=$!
for i in $(seq 1 100); do [ -d "$mnt/envs" ] && break; sleep 0.1; done
mkdir "$mnt/models/m"
head -c "$((size << 20))" /dev/urandom >"$mnt/models/m/blob"
mkdir "$mnt/envs/b"
printf '{"model": "m", "command": ["/bin/sh", "/b/idle.sh"], "binds": [{"source": "%s", "target": "/b"}]}\n' \
	"$work/bin" >"$mnt/envs/b/env.json"

# One start: seconds from the write of "start" to the state "running", seen by poll().
start_once() {
	python3 - "$mnt/envs/b" <<'PY'
import os, select, sys, time
d = sys.argv[1]
fd = os.open(d + "/state", os.O_RDONLY)
os.read(fd, 4096)
p = select.poll()
p.register(fd, select.POLLIN)
t0 = time.monotonic()
with open(d + "/control", "w") as f:
    f.write("start\n")
while True:
    p.poll(10000)
    s = os.pread(fd, 4096, 0).decode()
    if s.startswith("running"):
        break
    if s.startswith("failed") or s.startswith("stopped"):
        sys.exit("env: " + s)
print("%.4f" % (time.monotonic() - t0))
PY
}

stop_once() {
	echo stop >"$mnt/envs/b/control"
	while ! grep -q '^stopped' "$mnt/envs/b/state"; do sleep 0.05; done
}

# The same bundle, run bare: the env's config.json with the root filesystem it names.
bare_once() {
	t0=$(date +%s.%N)
	"$RUNC" run --detach --bundle "$work/bare" llmfs-envbench-bare </dev/null >/dev/null 2>&1
	t1=$(date +%s.%N)
	"$RUNC" delete --force llmfs-envbench-bare >/dev/null 2>&1
	echo "$t1 - $t0" | bc
}

: >"$work/env.t"
: >"$work/bare.t"
for i in $(seq 1 "$rounds"); do
	start_once >>"$work/env.t"
	[ "$i" = 1 ] && sed 's/"cgroupsPath": "[^"]*"/"cgroupsPath": "llmfs-envbench-bare"/' \
		"$mnt/envs/b/config.json" >"$work/bare/config.json"
	stop_once
	bare_once >>"$work/bare.t"
done
env_ms=$(median <"$work/env.t" | awk '{ printf "%.1f", $1 * 1000 }')
bare_ms=$(median <"$work/bare.t" | awk '{ printf "%.1f", $1 * 1000 }')
echo "start latency (median of $rounds): envs/ ${env_ms} ms, bare runc run ${bare_ms} ms, difference $(echo "$env_ms - $bare_ms" | bc) ms"

# Model reads: the file, cold for the store's cache each time (a fresh read through FUSE).
printf 'cat /mnt/models/blob >/dev/null\n' >"$work/bin/read.sh"
mkdir "$mnt/envs/r"
printf '{"model": "m", "command": ["/bin/sh", "-c", "for i in $(seq 1 %s); do s=$(date +%%s.%%N); cat /mnt/models/blob >/dev/null; e=$(date +%%s.%%N); echo read $s $e; done"]}\n' \
	"$rounds" >"$mnt/envs/r/env.json"
echo start >"$mnt/envs/r/control"
while ! grep -q '^stopped\|^failed' "$mnt/envs/r/state"; do sleep 0.2; done
in_s=$(awk '$1 == "read" { print $3 - $2 }' "$mnt/envs/r/log" | median)
: >"$work/host.t"
for i in $(seq 1 "$rounds"); do
	t0=$(date +%s.%N); cat "$mnt/models/m/blob" >/dev/null; t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc >>"$work/host.t"
done
host_s=$(median <"$work/host.t")
echo "model reads of $size MiB (median of $rounds): in the container $(echo "scale=1; $size / $in_s" | bc) MiB/s, on the host mount $(echo "scale=1; $size / $host_s" | bc) MiB/s"
rmdir "$mnt/envs/r"
stop_once 2>/dev/null || true

# The socket hop: GET /health through a new connection each time, 500 times.
hop() {
	python3 - "$1" <<'PY'
import socket, sys, time
path, ts = sys.argv[1], []
for i in range(500):
    t0 = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
    ts.append(time.monotonic() - t0)
ts.sort()
print("%.3f %.3f" % (ts[len(ts) // 2] * 1e3, ts[int(len(ts) * 0.99)] * 1e3))
PY
}
serve=$build/tools/serve/llmfs-serve
PY=${PYTHON:-/usr/bin/python3}	# Debian's, with python3-torch
if [ -x "$serve" ] && "$PY" -c 'import torch' 2>/dev/null; then
	"$PY" "$(dirname "$0")/../../tests/serve/gpt2_ref.py" make "$work/tiny" --layers 2 \
		--heads 2 --embd 32 --ctx 64 --vocab 256 --seed 1 >/dev/null
	cp -r "$work/tiny" "$mnt/models/tiny"
	mkdir "$mnt/envs/s"
	echo '{"model": "tiny", "runtime": "llmfs-serve", "rootfs": "host"}' >"$mnt/envs/s/env.json"
	echo start >"$mnt/envs/s/control"
	sock=
	for i in $(seq 1 300); do
		sock=$(sed 's/^unix://' "$mnt/envs/s/endpoint")
		[ -n "$sock" ] && [ -S "$sock" ] && break
		sleep 0.1
	done
	[ -S "$sock" ] || { echo "the env's socket did not come: $(cat "$mnt/envs/s/state")" >&2; exit 1; }
	"$serve" --model "$work/tiny" --name tiny --listen "unix:$work/host.sock" \
		</dev/null >/dev/null 2>"$work/serve.log" &
	spid=$!
	for i in $(seq 1 100); do [ -S "$work/host.sock" ] && break; sleep 0.1; done
	set -- $(hop "$sock"); in_med=$1 in_p99=$2
	set -- $(hop "$work/host.sock"); host_med=$1 host_p99=$2
	kill "$spid"
	echo stop >"$mnt/envs/s/control"
	echo "socket hop (GET /health, new connection, 500 calls): into the env median ${in_med} ms (p99 ${in_p99}), same server on the host median ${host_med} ms (p99 ${host_p99}), difference $(echo "$in_med - $host_med" | bc) ms"
fi
