# lib-jobs.sh - what the ledger's job tests share (sourced after tests/mount/lib.sh):
# the corpus and llmfs-ledger they need, the mining/ folders, every window replayed
# (LLMFS_MINING_CHECK_Q=1), and small helpers over a job's files.  A test sets OPTS (the
# job keys every job of it starts with) before it calls job.
require_cmd python3
: "${LLMFS_LEDGER:?}"
[ -n "${TRAIN_CORPUS:-}" ] && [ -f "$TRAIN_CORPUS" ] || {
	say "Bail out! the training corpus is missing: ${TRAIN_CORPUS:-TRAIN_CORPUS unset}"
	exit 1
}
L=$LLMFS_LEDGER
CHECK="python3 $(dirname "$0")/check_rounds.py"
J=$MNT/mining/jobs
P=$MNT/mining/providers
A=$MNT/mining/accounts
LLMFS_MINING_CHECK_Q=1
export LLMFS_MINING_CHECK_Q

# job NAME [KEY=VALUE...]: makes mining/jobs/NAME and writes its job file (OPTS, then these).
job() {
	jn=$1; shift
	mkdir "$J/$jn" && printf '%s\n%s\n' "$OPTS" "$*" >"$J/$jn/job"
}
# result JOB: waits (up to 300 s) for its result, kept in $TEST_DIR/JOB.result.
result() {
	timeout 300 cat "$J/$1/result" >"$TEST_DIR/$1.result" ||
		{ say "# no result for $1: $(cat "$J/$1/status")"; cat "$J/$1/log"; return 1; }
	say "# $1: $(head -n 1 "$J/$1/status")"
}
# rows TSV: its rows less the header.
rows() { tail -n +2 "$1" | wc -l; }
