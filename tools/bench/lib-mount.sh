#!/bin/sh
# lib-mount.sh - the llmfs daemon of the store benchmarks: started in the
# foreground on a store and a mount point, and waited for.
#
# Sourced (bench_work, now, load, tmed and small_tree below too):
#   . tools/bench/lib-mount.sh
#   bench_mount LLMFS STORE MNT LOG [OPTION...]
#       starts LLMFS --store STORE [OPTION...] -f MNT in the background, its
#       stderr appended to LOG; sets pid to its process id (a child of the
#       caller's shell, so `wait "$pid"` works) and returns once the mount
#       answers (.llmfs/status is there).  Exits the script, the log's tail
#       printed, when the daemon dies first or 30 s pass.
bench_mount() {
	_bm_bin=$1 _bm_store=$2 _bm_mnt=$3 _bm_log=$4
	shift 4
	"$_bm_bin" --store "$_bm_store" "$@" -f "$_bm_mnt" 2>>"$_bm_log" &
	pid=$!
	_bm_i=0
	until [ -f "$_bm_mnt/.llmfs/status" ]; do
		_bm_i=$((_bm_i + 1))
		if [ "$_bm_i" -ge 300 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "mount failed: $_bm_mnt" >&2
			tail "$_bm_log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# bench_work NAME: a fresh folder $work (under $TMPDIR or /var/tmp) and
# pid= ; on exit the mount $work/mnt is unmounted, the daemon $pid
# killed and $work removed.
bench_work() {
	work=$(mktemp -d "${TMPDIR:-/var/tmp}/llmfs-$1.XXXXXX")
	pid=
	trap bench_cleanup EXIT INT TERM
}
bench_cleanup() {
	fusermount3 -u "$work/mnt" 2>/dev/null || true
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}

now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }

# tmed N CMD...: runs CMD N times, prints the median wall seconds (a warm
# listing of 10,000 files takes about 10 ms: one run is within the noise).
tmed() {
	python3 - "$@" <<-'PY'
	import statistics, subprocess, sys, time
	n, cmd = int(sys.argv[1]), sys.argv[2:]
	ts = []
	for _ in range(n):
	    t = time.perf_counter()
	    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
	    ts.append(time.perf_counter() - t)
	print("%.5f" % statistics.median(ts))
	PY
}

# small_tree DIR N: N small files of 100-4000 B (half random, half
# word-like text) in 100 folders under DIR, the same for every caller.
small_tree() {
	python3 - "$1" "$2" <<-'PY'
	import os, random, sys
	root, n = sys.argv[1], int(sys.argv[2])
	r = random.Random(5)
	words = [b"weight", b"bias", b"layer", b"config", b"token", b"vocab", b"{", b"}", b"\n"]
	for i in range(n):
	    d = os.path.join(root, "d%03d" % (i % 100))
	    os.makedirs(d, exist_ok=True)
	    size = r.randint(100, 4000)
	    if i % 2:
	        data = r.randbytes(size)
	    else:
	        data = b" ".join(r.choice(words) for _ in range(size))[:size]
	    with open(os.path.join(d, "f%05d" % i), "wb") as f:
	        f.write(data)
	PY
}
