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
# usage: tools/bench/mining-quality.sh
# env:   STEPS (400), REPLICAS (4), HS ("10 50 200"), BUILD, OUT, CORPUS,
#        MODEL, TRAINKEYS, EVAL_BATCHES (lib-mining.sh), JOBKEYS (keys of the
#        mining jobs only, e.g. "window-warmup=10"; the baseline does not see them)
. "$(dirname "$0")/lib-mining.sh"
STEPS=${STEPS:-400}
REPLICAS=${REPLICAS:-4}
HS=${HS:-"10 50 200"}
JOBKEYS=${JOBKEYS:-}
batch=$(echo "$TRAINKEYS" | tr ' ' '\n' | sed -n 's/^batch=//p')
trap 'mb_daemon_stop coord' EXIT

echo "command: $0 (STEPS=$STEPS REPLICAS=$REPLICAS HS=\"$HS\" MODEL=\"$MODEL\" TRAINKEYS=\"$TRAINKEYS\" JOBKEYS=\"$JOBKEYS\")"
mb_machine
mb_daemon_start coord || exit 1
mb_corpus "$MB_MNT" || exit 1

report=$OUT/quality.tsv
printf 'run\ttokens\tval_loss\tvs_dp\twall_s\n' > "$report"

# The baseline first: its loss is what the others are measured against.
t0=$(date +%s)
# shellcheck disable=SC2046
OMP_NUM_THREADS=1 nice "$TRAIN" --data "$CORPUS" --out "$OUT/dp" $(mb_args $MODEL $TRAINKEYS) \
	--batch $((REPLICAS * batch)) --steps "$STEPS" --val-every "$STEPS" --val-batches 8 \
	--sample-len 0 > "$OUT/dp.out" 2>&1 || { cat "$OUT/dp.out" >&2; exit 1; }
dp_wall=$(($(date +%s) - t0))
dp_tokens=$(tail -n 1 "$OUT/dp/loss.tsv" | cut -f8)
dp=$(mb_eval "$(ls -d "$OUT"/dp/ckpt-* | tail -n 1)") || exit 1
printf 'dp (batch %d, every step)\t%s\t%s\t0.00%%\t%s\n' $((REPLICAS * batch)) "$dp_tokens" \
	"$dp" "$dp_wall" >> "$report"

for H in $HS; do
	t0=$(date +%s)
	# shellcheck disable=SC2086
	st=$(mb_job "$MB_MNT" "q$H" replicas="$REPLICAS" inner-steps="$H" steps="$STEPS" \
		cpus-per-replica=1 $JOBKEYS) || exit 1
	wall=$(($(date +%s) - t0))
	cp "$MB_MNT/mining/jobs/q$H/rounds.tsv" "$OUT/q$H.rounds.tsv"
	cp "$MB_MNT/mining/jobs/q$H/log" "$OUT/q$H.log"
	if [ "$st" != done ]; then
		# A failed job has no model: its last completed round, as the coordinator
		# validated it (val-batches=8, not the evaluator above), and its status.
		rd=$(tail -n 1 "$OUT/q$H.rounds.tsv" | cut -f1)
		v=$(tail -n 1 "$OUT/q$H.rounds.tsv" | cut -f2)
		seq=$(echo "$MODEL" | tr ' ' '\n' | sed -n 's/^seq=//p')
		printf 'diloco H=%s: %s\t%s\t(%s at round %s, coordinator)\t-\t%s\n' "$H" "$st" \
			$((rd * H * REPLICAS * batch * seq)) "$v" "$rd" "$wall" >> "$report"
		continue
	fi
	tokens=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tokens"])' \
		"$OUT/q$H.result")
	val=$(mb_eval "$MB_MNT/models/q$H") || exit 1
	rel=$(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print("%+.2f%%" % (100 * (a - b) / b))' \
		"$val" "$dp")
	printf 'diloco H=%s (%d rounds)\t%s\t%s\t%s\t%s\n' "$H" $((STEPS / H)) "$tokens" "$val" \
		"$rel" "$wall" >> "$report"
done
column -t -s "$(printf '\t')" "$report"
echo "runs in $OUT"
