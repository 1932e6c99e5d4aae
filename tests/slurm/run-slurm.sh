#!/bin/sh
# run-slurm.sh TEST_BINARY - starts a single-node Slurm (slurm.sh) in a
# temporary folder, runs the test with SLURM_CONF, SLURM_JOBCOMP,
# SLURM_PARTITION, SLURM_TMP and SLURM_CTL (this harness, for the test to
# stop, pause or restart slurmctld) in its environment, and stops it all in
# the EXIT trap.  Exits 77 (skip) when slurm-wlm or munge is missing or when
# not root.  TEST_KEEP=1 keeps the folder (logs in log/).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/slurm.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llmfs-slurm.XXXXXX")
cleanup() {
	slurm_stop "$tmp"
	[ -n "${TEST_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM

slurm_start "$tmp" || exit 1
SLURM_TMP=$tmp
SLURM_CTL="$here/slurm.sh"
export SLURM_TMP SLURM_CTL
"$@"
