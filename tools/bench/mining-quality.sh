#!/bin/sh
# mining-quality.sh - co-training (DiLoCo) against synchronous data-parallel
# training at equal tokens (docs/benchmarks.md, "Mining").
#
# REPLICAS replicas on the local provider train the GPT of lib-mining.sh for
# STEPS inner steps each, synchronising every H steps, for each H in HS.  The
# baseline is what all-reduce every step computes: one process whose batch
# is the union of the replicas' batches (REPLICAS x batch), the same steps,
# schedule and optimizer, so the same tokens.  Every final model is scored
# by one evaluator (lib-mining.sh's mb_eval: the same validation batches).
#
# With SEEDS (e.g. "1 2 3"), every run is repeated for each seed (the seed= of
# TRAINKEYS: the initial weights, the batches and the replicas' windows), each
# DiLoCo run compared with the baseline of its own seed, and a summary gives
# per setting the mean of those relative gaps and their range.
#
# usage: tools/bench/mining-quality.sh
# env:   STEPS (400), REPLICAS (4), HS ("10 50 200"), SEEDS (the seed of
#        TRAINKEYS), BUILD, OUT, CORPUS, MODEL, TRAINKEYS, EVAL_BATCHES
#        (lib-mining.sh), JOBKEYS (keys of the mining jobs only, e.g.
#        "window-warmup=10"; the baseline does not see them)
. "$(dirname "$0")/lib-mining.sh"
STEPS=${STEPS:-400}
REPLICAS=${REPLICAS:-4}
HS=${HS:-"10 50 200"}
JOBKEYS=${JOBKEYS:-}
batch=$(echo "$TRAINKEYS" | tr ' ' '\n' | sed -n 's/^batch=//p')
SEEDS=${SEEDS:-$(echo "$TRAINKEYS" | tr ' ' '\n' | sed -n 's/^seed=//p')}
SEEDS=${SEEDS:-1}
keys0=$(echo "$TRAINKEYS" | tr ' ' '\n' | grep -v '^seed=' | tr '\n' ' ')
trap 'mb_daemon_stop coord' EXIT

echo "command: $0 (STEPS=$STEPS REPLICAS=$REPLICAS HS=\"$HS\" SEEDS=\"$SEEDS\" MODEL=\"$MODEL\" TRAINKEYS=\"$TRAINKEYS\" JOBKEYS=\"$JOBKEYS\")"
mb_machine
mb_daemon_start coord || exit 1
mb_corpus "$MB_MNT" || exit 1

report=$OUT/quality.tsv
printf 'run\ttokens\tval_loss\tvs_dp\twall_s\n' > "$report"

for seed in $SEEDS; do
	# one seed: names as before; several: each run's name ends in -s<seed>
	sfx= stag=
	[ "$(echo $SEEDS | wc -w)" -gt 1 ] && sfx=-s$seed stag=" seed $seed"
	TRAINKEYS="$keys0 seed=$seed" # the jobs' files (mb_job) and the baseline
	# The baseline first: its loss is what the others are measured against.
	t0=$(date +%s)
	# shellcheck disable=SC2046
	OMP_NUM_THREADS=1 nice "$TRAIN" --data "$CORPUS" --out "$OUT/dp$sfx" $(mb_args $MODEL $TRAINKEYS) \
		--batch $((REPLICAS * batch)) --steps "$STEPS" --val-every "$STEPS" --val-batches 8 \
		--sample-len 0 > "$OUT/dp$sfx.out" 2>&1 || { cat "$OUT/dp$sfx.out" >&2; exit 1; }
	dp_wall=$(($(date +%s) - t0))
	dp_tokens=$(tail -n 1 "$OUT/dp$sfx/loss.tsv" | cut -f8)
	dp=$(mb_eval "$(ls -d "$OUT"/dp$sfx/ckpt-* | tail -n 1)") || exit 1
	printf 'dp (batch %d, every step)%s\t%s\t%s\t0.00%%\t%s\n' $((REPLICAS * batch)) "$stag" "$dp_tokens" \
		"$dp" "$dp_wall" >> "$report"

	for H in $HS; do
		t0=$(date +%s)
		# shellcheck disable=SC2086
		st=$(mb_job "$MB_MNT" "q$H$sfx" replicas="$REPLICAS" inner-steps="$H" steps="$STEPS" \
			cpus-per-replica=1 $JOBKEYS) || exit 1
		wall=$(($(date +%s) - t0))
		cp "$MB_MNT/mining/jobs/q$H$sfx/rounds.tsv" "$OUT/q$H$sfx.rounds.tsv"
		cp "$MB_MNT/mining/jobs/q$H$sfx/log" "$OUT/q$H$sfx.log"
		if [ "$st" != done ]; then
			# A failed job has no model: its last completed round, as the coordinator
			# validated it (val-batches=8, not the evaluator above), and its status.
			rd=$(tail -n 1 "$OUT/q$H$sfx.rounds.tsv" | cut -f1)
			v=$(tail -n 1 "$OUT/q$H$sfx.rounds.tsv" | cut -f2)
			seq=$(echo "$MODEL" | tr ' ' '\n' | sed -n 's/^seq=//p')
			printf 'diloco H=%s%s: %s\t%s\t(%s at round %s, coordinator)\t-\t%s\n' "$H" "$stag" "$st" \
				$((rd * H * REPLICAS * batch * seq)) "$v" "$rd" "$wall" >> "$report"
			continue
		fi
		tokens=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tokens"])' \
			"$OUT/q$H$sfx.result")
		val=$(mb_eval "$MB_MNT/models/q$H$sfx") || exit 1
		rel=$(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print("%+.2f%%" % (100 * (a - b) / b))' \
			"$val" "$dp")
		printf 'diloco H=%s (%d rounds)%s\t%s\t%s\t%s\t%s\n' "$H" $((STEPS / H)) "$stag" "$tokens" "$val" \
			"$rel" "$wall" >> "$report"
	done
done
column -t -s "$(printf '\t')" "$report"
if [ "$(echo $SEEDS | wc -w)" -gt 1 ]; then
	# per setting: the mean of the seeds' gaps to their own baseline, and the range
	python3 - "$report" <<'PY'
import re, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
by = {}
for r in rows:
	m = re.match(r"(.*?) seed (\d+)$", r[0])
	if m and r[3].endswith("%") and not m.group(1).startswith("dp"):
		by.setdefault(m.group(1), []).append(float(r[3].rstrip("%")))
print("summary: setting, seeds, mean gap to data-parallel, range")
for k, v in by.items():
	print(f"  {k}\t{len(v)}\t{sum(v) / len(v):+.2f}%\t[{min(v):+.2f}%, {max(v):+.2f}%]")
PY
fi
echo "runs in $OUT"
