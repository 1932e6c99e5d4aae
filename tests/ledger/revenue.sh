#!/bin/sh
# revenue.sh - a mined model earns through paths/ and its share holders are paid.
# Rounds of job "m" are booked in the store's ledger (designer alice, providers p1 and p2,
# as the coordinator books them); models/m is a local command card with prices.  Each task
# that m answers books its price as revenue of model:m, shared 30 % to alice and 70 % to p1
# and p2 by their units: their balances grow by exactly those shares, and the ledger
# verifies.  A model that was not mined books nothing.
. "$MOUNT_HELPERS/lib.sh"

require_fuse
: "${LLMFS_LEDGER:?}" "${TEST_MINING_LEDGER:?}"
L=$LLMFS_LEDGER

bal() { "$L" balance "$STORE" "$1" | sed 's/.*"balance":\([0-9-]*\),.*/\1/'; }
units() { "$L" balance "$STORE" "$1" | sed 's/.*"units":\([0-9-]*\),.*/\1/'; }

# run_task NAME MODEL: a one-step task pinned to MODEL, waited for.
run_task() {
	mkdir "$MNT/paths/$1" &&
	printf '{"prompt": "ping pong ping pong", "model": "%s"}\n' "$2" >"$MNT/paths/$1/task" &&
	{ timeout 60 cat "$MNT/paths/$1/result" >"$TEST_DIR/$1.result" 2>&1; :; } &&
	[ "$(cat "$MNT/paths/$1/status")" = done ]
}

test_expect_success 'a store whose job m was mined (3 rounds booked)' '
	daemon_start &&
	"$TEST_MINING_LEDGER" --book "$STORE" m &&
	"$L" verify "$STORE" &&
	[ "$(units p1)" -gt 0 ] && [ "$(units p2)" -gt 0 ] &&
	mkdir "$MNT/models/m" "$MNT/models/plain" &&
	printf "%s\n" "{\"command\": [\"cat\"], \"price_in\": 1000000, \"price_out\": 1000000}" \
		>"$MNT/models/m/card.json" &&
	printf "%s\n" "{\"command\": [\"cat\"], \"price_in\": 1000000, \"price_out\": 1000000}" \
		>"$MNT/models/plain/card.json"
'

test_expect_success 'each answer of m pays its holders exactly their shares' '
	for t in 1 2 3; do
		a0=$(bal alice) && p10=$(bal p1) && p20=$(bal p2) &&
		run_task t$t m &&
		rev=$("$L" show "$STORE" --job model:m | grep "\"kind\":\"revenue\"" |
		      grep "\"round\":$t," | sed "s/.*\"amount\":\([0-9]*\),.*/\1/") &&
		say "task t$t: revenue $rev micro-USD" &&
		[ "$rev" -gt 0 ] &&
		da=$(( $(bal alice) - a0 )) && d1=$(( $(bal p1) - p10 )) && d2=$(( $(bal p2) - p20 )) &&
		say "  alice +$da, p1 +$d1, p2 +$d2 (units $(units p1) : $(units p2))" &&
		[ "$da" -eq $(( rev * 3000 / 10000 )) ] &&
		[ $(( da + d1 + d2 )) -eq "$rev" ] &&
		rest=$(( rev - da )) && U=$(( $(units p1) + $(units p2) )) &&
		q1=$(( rest * $(units p1) / U )) && q2=$(( rest * $(units p2) / U )) &&
		[ "$d1" -ge "$q1" ] && [ "$d1" -le $(( q1 + 1 )) ] &&
		[ "$d2" -ge "$q2" ] && [ "$d2" -le $(( q2 + 1 )) ] || return 1
	done
'

test_expect_success 'a model that was not mined books nothing' '
	n0=$("$L" show "$STORE" | wc -l) &&
	run_task u1 plain &&
	[ "$("$L" show "$STORE" | wc -l)" = "$n0" ]
'

test_expect_success 'the ledger verifies, and its export too' '
	"$L" verify "$STORE" &&
	"$L" show "$STORE" >"$TEST_DIR/ledger.jsonl" &&
	"$L" verify-file "$TEST_DIR/ledger.jsonl" "$("$L" head "$STORE" | cut -d" " -f2)"
'

test_done
