#!/bin/sh
# mining-scale.sh - how the coordinator's memory and a round's time grow with
# the replicas (docs/benchmarks.md, "Mining").
#
# For each count in COUNTS, a fresh daemon runs one job of that many replicas
# on the local provider (H inner steps, STEPS in all) and the report has:
#   rss_idle   the daemon's resident memory before the job (VmRSS, KiB)
#   rss_peak   its peak over the job (VmHWM, KiB): the coordinator's memory
#   round_s    the mean wall time of rounds 2.. (rounds.tsv)
#   compute_s  the mean time of a replica's H inner steps (its log)
#   coord_s    round_s less the slowest replica's compute in the round, mean:
#              what the round costs beyond the replicas' work (transfers, the
#              outer step, the validation)
#   job_s      the job's wall time, from its file to its result: the rounds, then
#              what the ledger still had to pay (done waits for it, docs/mining.md)
#   rest_s     job_s less the rounds' wall times: the job's start (the data, the
#              replicas' launch) and end (the model saved, and the ledger's last
#              payments, which done waits for)
# On a machine with fewer cores than replicas, compute_s itself grows with the
# count (the replicas share the cores).
#
# usage: tools/bench/mining-scale.sh
# env:   COUNTS ("1 2 4 8"), H (10), STEPS (100), BUILD, OUT, CORPUS, MODEL, TRAINKEYS
. "$(dirname "$0")/lib-mining.sh"
COUNTS=${COUNTS:-"1 2 4 8"}
H=${H:-10}
STEPS=${STEPS:-100}
current=
trap '[ -n "$current" ] && mb_daemon_stop "$current"' EXIT

echo "command: $0 (COUNTS=\"$COUNTS\" H=$H STEPS=$STEPS MODEL=\"$MODEL\" TRAINKEYS=\"$TRAINKEYS\")"
mb_machine
report=$OUT/scale.tsv
printf 'replicas\tstatus\trss_idle_KiB\trss_peak_KiB\tround_s\tcompute_s\tcoord_s\tjob_s\trest_s\n' > "$report"
for n in $COUNTS; do
	current=coord$n
	mb_daemon_start "$current" || exit 1
	mb_corpus "$MB_MNT" || exit 1
	idle=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$MB_PID/status")
	t0=$(date +%s.%N)
	st=$(mb_job "$MB_MNT" "s$n" replicas="$n" inner-steps="$H" steps="$STEPS" \
		cpus-per-replica=1) || exit 1
	job_s=$(python3 -c 'import sys, time; print(time.time() - float(sys.argv[1]))' "$t0")
	peak=$(mb_peak_rss "$MB_PID")
	cp "$MB_MNT/mining/jobs/s$n/log" "$OUT/s$n.log"
	cp "$MB_MNT/mining/jobs/s$n/rounds.tsv" "$OUT/s$n.rounds.tsv"
	mb_daemon_stop "$current"
	current=
	python3 - "$OUT/s$n" "$n" "$st" "$idle" "$peak" "$job_s" >> "$report" <<'PY'
import re, sys
base, n, st, idle, peak, job_s = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(base + ".rounds.tsv")][1:]
wall = {int(r[0]): float(r[5]) for r in rows}
comp = {}
for slot, rd, secs in re.findall(r"replica (\d+): round (\d+): \d+ inner steps in ([0-9.]+) s",
                                 open(base + ".log").read()):
    comp.setdefault(int(rd), []).append(float(secs))
later = [r for r in sorted(wall) if r >= 2 and r in comp]
mean = lambda v: sum(v) / len(v) if v else float("nan")
print(f"{n}\t{st}\t{idle}\t{peak}\t{mean([wall[r] for r in later]):.3f}\t"
      f"{mean([c for r in later for c in comp[r]]):.3f}\t"
      f"{mean([wall[r] - max(comp[r]) for r in later]):.3f}\t{float(job_s):.1f}\t"
      f"{float(job_s) - sum(wall.values()):.1f}")
PY
done
column -t -s "$(printf '\t')" "$report"
echo "runs in $OUT"
