# lib-jobs.sh - what the ledger's job tests share (sourced after tests/mount/lib.sh):
# the corpus and llmfs-ledger they need, every window replayed (LLMFS_MINING_CHECK_Q=1);
# the mining/ folders and the helpers over a job's files are
# tests/mount/lib-mining.sh's (job, result, rows).
require_cmd python3
: "${LLMFS_LEDGER:?}"
require_corpus
L=$LLMFS_LEDGER
CHECK="python3 $(dirname "$0")/check_rounds.py"
LLMFS_MINING_CHECK_Q=1
export LLMFS_MINING_CHECK_Q

. "$MOUNT_HELPERS/lib-mining.sh"
