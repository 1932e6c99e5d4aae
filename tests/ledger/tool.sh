#!/bin/sh
# tool.sh - llmfs-ledger on a store's ledger: verify, show, balance, head, verify-file, and
# the clear message and exit status 1 for each hostile edit.
#   LLMFS_LEDGER   the tool; TEST_LEDGER the unit test binary (it makes the store)
set -u
: "${LLMFS_LEDGER:?}" "${TEST_LEDGER:?}"
command -v sqlite3 >/dev/null || { echo "skipped: no sqlite3 (tools/install-deps.sh --test)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
expect() { # what, wanted exit status, wanted text in the output, command...
	what=$1 want=$2 text=$3; shift 3
	out=$("$@" 2>&1); rc=$?
	if [ "$rc" = "$want" ] && printf '%s' "$out" | grep -qF -- "$text"; then ok "$what: $out"
	else bad "$what: status $rc (want $want), output: $out (want: $text)"; fi
}
fresh() { rm -rf "$dir/s"; mkdir -p "$dir/s" && "$TEST_LEDGER" --make-store "$dir/s"; }

fresh
expect "verify a good ledger" 0 "ok: 13 entries" "$LLMFS_LEDGER" verify "$dir/s"
expect "balance" 0 '{"account":"p1","balance":22700,"units":0,"flags":0,"unit":"micro-USD"}' \
	"$LLMFS_LEDGER" balance "$dir/s" p1
expect "head" 0 "13 sha256:" "$LLMFS_LEDGER" head "$dir/s"
n=$("$LLMFS_LEDGER" show "$dir/s" --account p1 | wc -l)
[ "$n" = 5 ] && ok "show --account p1: 5 entries" || bad "show --account p1: $n entries"
"$LLMFS_LEDGER" show "$dir/s" > "$dir/ledger.jsonl"
head=$("$LLMFS_LEDGER" head "$dir/s" | cut -d' ' -f2)
expect "verify-file of the export" 0 "ok: 13 entries" "$LLMFS_LEDGER" verify-file "$dir/ledger.jsonl" "$head"
sed '$d' "$dir/ledger.jsonl" > "$dir/cut.jsonl"
expect "verify-file: last line cut" 1 "is not the head given" \
	"$LLMFS_LEDGER" verify-file "$dir/cut.jsonl" "$head"
sed 's/"amount":5000,/"amount":50000,/' "$dir/ledger.jsonl" > "$dir/edit.jsonl"
expect "verify-file: amount edited" 1 "entry 5: hash does not match its contents" \
	"$LLMFS_LEDGER" verify-file "$dir/edit.jsonl"
sed 's/"amount":300,/"amount":300.5,/' "$dir/ledger.jsonl" > "$dir/frac.jsonl"
expect "verify-file: fractional amount" 1 "field amount is not an integer number of micro-USD" \
	"$LLMFS_LEDGER" verify-file "$dir/frac.jsonl"

db=$dir/s/mining/ledger.db
sqlite3 "$db" "UPDATE entries SET amount = amount + 1 WHERE seq = 3;"
expect "verify: edited entry" 1 "entry 3: hash does not match its contents (edited?)" \
	"$LLMFS_LEDGER" verify "$dir/s"
fresh; sqlite3 "$db" "DELETE FROM entries WHERE seq = 4;"
expect "verify: deleted entry" 1 "entry 5: expected seq 4" "$LLMFS_LEDGER" verify "$dir/s"
fresh; sqlite3 "$db" "UPDATE entries SET seq = 99 WHERE seq = 2; UPDATE entries SET seq = 2 WHERE seq = 3; UPDATE entries SET seq = 3 WHERE seq = 99;"
expect "verify: reordered entries" 1 "entry 2: prev does not name entry 1's hash" \
	"$LLMFS_LEDGER" verify "$dir/s"
fresh; sqlite3 "$db" "UPDATE entries SET amount = -1000 WHERE seq = 1;"
expect "verify: negative amount" 1 "entry 1: amount -1000 is negative" "$LLMFS_LEDGER" verify "$dir/s"
fresh; sqlite3 "$db" "DELETE FROM entries WHERE seq = 13; UPDATE head SET seq = 12, hash = (SELECT hash FROM entries WHERE seq = 12);"
expect "verify: a share removed with its head" 1 "round 1: shares add up to 300 but the revenue booked is 1000" \
	"$LLMFS_LEDGER" verify "$dir/s"
expect "verify: no store" 2 "No such file" "$LLMFS_LEDGER" verify "$dir/none"
expect "usage" 2 "usage:" "$LLMFS_LEDGER" frob "$dir/s"
[ "$fails" = 0 ] || { echo "$fails failed"; exit 1; }
