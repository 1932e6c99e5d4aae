# lib-mining.sh - what the tests of mining/ jobs share (sourced after tests/mount/lib.sh by
# tests/mount/mining*.sh and tests/ledger/lib-jobs.sh): the mining/ folders and small helpers
# over a job's files.  A test sets OPTS (the job keys every job of it starts with) before it
# calls job.
J=$MNT/mining/jobs
P=$MNT/mining/providers
A=$MNT/mining/accounts

# job NAME [KEY=VALUE...]: makes mining/jobs/NAME and writes its job file (OPTS, then these).
job() {
	jn=$1; shift
	mkdir "$J/$jn" && printf '%s\n%s\n' "$OPTS" "$*" >"$J/$jn/job"
}

# wait_status NAME DEADLINE PATTERN: waits for a line of the job's status to match.
wait_status() {
	wait_for "$2" "grep -Eq '$3' '$J/$1/status'" ||
		{ say "# status of $1: $(cat "$J/$1/status")"; cat "$J/$1/log"; return 1; }
}

# url: the replicas' server;  token NAME: a job's secret (root reads the daemon's state).
url() { sed -n 's/^listen //p' "$MNT/mining/status"; }
token() { cat "$STORE/mining/jobs/$1/token"; }

# result NAME: waits (up to 300 s) for the job's end (result blocks), kept in
# $TEST_DIR/NAME.result, then says its status.
result() {
	timeout 300 cat "$J/$1/result" >"$TEST_DIR/$1.result" ||
		{ say "# no result for $1: $(cat "$J/$1/status")"; cat "$J/$1/log"; return 1; }
	say "# $1: $(head -n 1 "$J/$1/status")"
}

# rows TSV: its data rows (less the header).
rows() { tail -n +2 "$1" | wc -l; }
