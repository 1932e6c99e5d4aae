#!/bin/sh
# lib-mining.sh - what the mining benchmarks (tools/bench/mining-*.sh) share:
# a daemon with its own store and mount, the corpus in its tree, a co-training
# job run to its end, and one evaluator for every model.
#
# Sourced, after setting (or leaving the defaults of)
#   BUILD   the build folder (build)        OUT     where runs and reports go
#   CORPUS  ../shared/data/tinyshakespeare.txt beside the repository
#   MODEL   the GPT's shape and the training keys every run shares (below)
# Functions:
#   mb_daemon_start NAME [llmfs options]   store and mount in $OUT/NAME; sets MB_MNT, MB_PID
#   mb_daemon_stop NAME
#   mb_corpus MNT                          the corpus at models/corpora/corpus.txt
#   mb_job MNT NAME KEY=VALUE...           runs a mining job to its end (result blocks)
#   mb_eval DIR                            validation loss of a model folder or checkpoint
#   mb_peak_rss PID                        the process's peak resident memory, KiB
set -u
MB_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$MB_ROOT/build}
case "$BUILD" in /*) ;; *) BUILD=$MB_ROOT/$BUILD ;; esac
LLMFS=$BUILD/fs/llmfs
TRAIN=$BUILD/tools/train/llmfs-train
CORPUS=${CORPUS:-$MB_ROOT/../shared/data/tinyshakespeare.txt}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/llmfs-mining-bench.XXXXXX")}
mkdir -p "$OUT"
# A GPT of about 120k parameters, a replica's inner step ~20 ms on one core.
MODEL=${MODEL:-"layers=2 heads=2 embd=64 seq=64"}
# The training keys every run shares (mining jobs and the baseline alike).
TRAINKEYS=${TRAINKEYS:-"batch=8 lr=1e-3 warmup=20 wd=0.1 clip=1.0 seed=1"}
# The evaluator: the same validation batches for every model.
EVAL_BATCHES=${EVAL_BATCHES:-64}
EVAL_SEED=${EVAL_SEED:-1234}
MB_JOB_TIMEOUT=${MB_JOB_TIMEOUT:-3600}

for f in "$LLMFS" "$TRAIN"; do
	[ -x "$f" ] || { echo "lib-mining.sh: $f not built (meson compile -C $BUILD)" >&2; exit 2; }
done
[ -f "$CORPUS" ] || { echo "lib-mining.sh: no corpus at $CORPUS" >&2; exit 2; }

# key=value words to --key value arguments.
mb_args() {
	for kv in "$@"; do
		printf -- '--%s %s ' "${kv%%=*}" "${kv#*=}"
	done
}

mb_daemon_start() {
	_d=$OUT/$1
	shift
	mkdir -p "$_d/store" "$_d/mnt"
	"$LLMFS" --store "$_d/store" -f "$@" "$_d/mnt" 2> "$_d/daemon.log" &
	MB_PID=$!
	echo "$MB_PID" > "$_d/pid"
	MB_MNT=$_d/mnt
	_end=$(($(date +%s) + 60))
	until [ -f "$MB_MNT/.llmfs/status" ]; do
		if ! kill -0 "$MB_PID" 2>/dev/null || [ "$(date +%s)" -ge "$_end" ]; then
			echo "lib-mining.sh: the daemon in $_d did not mount:" >&2
			cat "$_d/daemon.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

mb_daemon_stop() {
	_d=$OUT/$1
	[ -f "$_d/pid" ] || return 0
	_pid=$(cat "$_d/pid")
	fusermount3 -u "$_d/mnt" 2>/dev/null
	_i=0
	while kill -0 "$_pid" 2>/dev/null && [ $_i -lt 300 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	kill -9 "$_pid" 2>/dev/null
	fusermount3 -u -z "$_d/mnt" 2>/dev/null
	rm -f "$_d/pid"
}

mb_corpus() {
	mkdir -p "$1/models/corpora" && cp "$CORPUS" "$1/models/corpora/corpus.txt"
}

# mb_job MNT NAME KEY=VALUE...: the job file is MODEL, TRAINKEYS, the corpus and
# the arguments; prints its status line; its folder is MNT/mining/jobs/NAME.
mb_job() {
	_m=$1 _n=$2
	shift 2
	mkdir "$_m/mining/jobs/$_n" || return 1
	printf 'data=models/corpora/corpus.txt val-batches=8 sample-len=0\n%s\n%s\n%s\n' \
		"$MODEL" "$TRAINKEYS" "$*" > "$_m/mining/jobs/$_n/job" || return 1
	timeout "$MB_JOB_TIMEOUT" cat "$_m/mining/jobs/$_n/result" > "$OUT/$_n.result" || {
		echo "lib-mining.sh: job $_n has no result: $(head -n 3 "$_m/mining/jobs/$_n/status")" >&2
		tail -n 20 "$_m/mining/jobs/$_n/log" >&2
		return 1
	}
	head -n 1 "$_m/mining/jobs/$_n/status"
}

# mb_eval DIR: one step at learning rate 0 from the model (the weights do not
# move), validated on EVAL_BATCHES batches drawn with EVAL_SEED.
mb_eval() {
	_e=$(mktemp -d "$OUT/eval.XXXXXX")
	# shellcheck disable=SC2046
	OMP_NUM_THREADS=1 "$TRAIN" --data "$CORPUS" --out "$_e" --from "$1" \
		$(mb_args $MODEL $TRAINKEYS) --steps 1 --lr 0 --min-lr 0 --warmup 0 \
		--val-every 1 --val-batches "$EVAL_BATCHES" --sample-len 0 --seed "$EVAL_SEED" \
		> "$_e/out" 2>&1 || { cat "$_e/out" >&2; return 1; }
	tail -n 1 "$_e/loss.tsv" | cut -f3
	rm -rf "$_e"
}

mb_peak_rss() {
	sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status"
}

# A line for the reports: the machine and its load as the figures were taken.
mb_machine() {
	echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
}
