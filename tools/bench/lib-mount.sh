#!/bin/sh
# lib-mount.sh - the llmfs daemon of the store benchmarks: started in the
# foreground on a store and a mount point, and waited for.
#
# Sourced:
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
