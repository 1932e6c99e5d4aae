#!/bin/sh
# transfer.sh - moving money between accounts through mining/accounts/<name>/transfer.
# Accounts p1 (user U, a provider), p2 (user V, a provider) and alice (root, the designer)
# hold what three booked rounds paid them.  Only an account's owner moves its money (another
# user cannot open the file; root is refused by the daemon); no one credits himself; hostile
# requests are refused with their errno and change nothing; a retried request pays once; and a
# seeded random sequence of transfers, some over the balance, ends with the balances of a
# model kept by the test.  The chain verifies after each block.
. "$MOUNT_HELPERS/lib.sh"

require_fuse
require_cmd python3 useradd userdel
: "${LLMFS_LEDGER:?}" "${TEST_MINING_LEDGER:?}"
L=$LLMFS_LEDGER
A=$MNT/mining/accounts
TW="python3 $(dirname "$0")/transfer.py"
U=llmfs-pay-$$
V=llmfs-pay2-$$
useradd -M -N -r -s /bin/false "$U" >/dev/null 2>&1 || skip_all "useradd failed"
useradd -M -N -r -s /bin/false "$V" >/dev/null 2>&1 || { userdel "$U"; skip_all "useradd failed"; }
chmod 755 "$TEST_DIR"
trap 'rc_=$?; userdel "$U" 2>/dev/null; userdel "$V" 2>/dev/null; (exit $rc_); cleanup' EXIT

bal() { "$L" balance "$STORE" "$1" | sed 's/.*"balance":\([0-9-]*\),.*/\1/'; }
# tw USER ACCOUNT LINE WANT: one write of LINE to ACCOUNT's transfer as USER gets WANT
tw() {
	got=$($TW one "$1" "$A/$2/transfer" "$3") &&
	{ [ "$got" = "$4" ] || { say "# $1 -> $2: \"$3\": $got, wanted $4"; return 1; }; }
}
snap() { echo "$(bal p1) $(bal p2) $(bal alice)"; }

test_expect_success 'set up: three booked rounds, accounts of two users and root' '
	daemon_start &&
	"$TEST_MINING_LEDGER" --book "$STORE" m &&
	mkdir "$A/alice" && run_as "$U" mkdir "$A/p1" &&
	run_as "$V" mkdir "$A/p2" &&
	ls "$A/p1" | grep -qx transfer &&
	[ "$(stat -c "%a %U" "$A/p1/transfer")" = "200 $U" ] &&
	[ "$(bal p1)" -gt 2000000 ] && [ "$(bal p2)" -gt 2000000 ] && "$L" verify "$STORE"
'

test_expect_success 'the owner moves money; a retried request pays once' '
	p1=$(bal p1) && p2=$(bal p2) &&
	tw "$U" p1 "to=p2 amount=1000000 key=t1" OK &&
	[ "$(bal p1)" = $((p1 - 1000000)) ] && [ "$(bal p2)" = $((p2 + 1000000)) ] &&
	tw "$U" p1 "to=p2 amount=1000000 key=t1" OK &&
	[ "$(bal p1)" = $((p1 - 1000000)) ] && [ "$(bal p2)" = $((p2 + 1000000)) ] &&
	tw "$U" p1 "to=p2 amount=1000001 key=t1" EEXIST &&
	tw "$U" p1 "to=alice amount=1000000 key=t1" EEXIST &&
	run_as "$U" sh -c "printf \"to=alice amount=5 key=t2\\n\" >\"\$0\"" "$A/p1/transfer" &&
	[ "$(bal alice)" -ge 5 ] && [ "$(bal p1)" = $((p1 - 1000005)) ] &&
	"$L" show "$STORE" --account p1 | grep -q "\"kind\":\"debit\"" &&
	grep -q "\"job\":\"transfer:p1:t1\"" "$MNT/mining/ledger.jsonl" &&
	"$L" verify "$STORE"
'

test_expect_success 'no one moves another account s money, nor credits himself' '
	before=$(snap) &&
	tw "$V" p1 "to=p2 amount=1 key=steal" EACCES &&
	tw 0 p1 "to=alice amount=1 key=steal" EPERM &&
	tw "$U" p2 "to=p1 amount=1 key=steal" EACCES &&
	tw "$V" p2 "to=p2 amount=1000 key=self" EINVAL &&
	! run_as "$V" chmod 666 "$A/p1/transfer" 2>/dev/null &&
	! run_as "$V" sh -c "echo 1 >\"\$0\"" "$A/p2/balance" 2>/dev/null &&
	! run_as "$V" sh -c "cat \"\$0\"" "$STORE/mining/ledger.db" >/dev/null 2>&1 &&
	! run_as "$V" rmdir "$A/p2" 2>/dev/null && [ -d "$A/p2" ] &&
	[ "$(snap)" = "$before" ] && "$L" verify "$STORE"
'

test_expect_success 'hostile requests get their errno and change nothing' '
	before=$(snap) &&
	tw "$U" p1 "to=p2 amount=-5 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=0 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=+5 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=1.5 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=1e6 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=1000000000000001 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=99999999999999999999999 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=18446744073709551617 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=1000000000000000 key=h" EDQUOT &&
	tw "$U" p1 "to=nobody amount=5 key=h" ENOENT &&
	tw "$U" p1 "to=model:m amount=5 key=h" ENOENT &&
	tw "$U" p1 "to=../p2 amount=5 key=h" ENOENT &&
	tw "$U" p1 "to=p1 amount=5 key=h" EINVAL &&
	tw "$U" p1 "to=p2 amount=5" EINVAL &&
	tw "$U" p1 "to=p2 amount=5 key=a/b" EINVAL &&
	tw "$U" p1 "to=p2 amount=5 key=$(printf "%060d" 0)" EINVAL &&
	tw "$U" p1 "to=p2 amount=5 key=h bonus=1" EINVAL &&
	tw "$U" p1 "to=p2 to=alice amount=5 key=h" EINVAL &&
	tw "$U" p1 "amount=5 key=h to" EINVAL &&
	tw "$U" p1 "$(head -c 3000 /dev/zero | tr "\\0" x)" EINVAL &&
	[ "$(snap)" = "$before" ] &&
	tw "$U" p1 "  to=p2   amount=5   key=h  " OK &&
	[ "$(bal p2)" = $(($(echo "$before" | cut -d" " -f2) + 5)) ] &&
	"$L" verify "$STORE"
'

test_expect_success 'a seeded random sequence of transfers ends with the model s balances' '
	MNT=$MNT $TW random "${TRANSFER_SEED:-16}" "${TRANSFERS:-60}" \
		"p1:$U,p2:$V,alice:root" "$L" "$STORE" &&
	"$L" verify "$STORE" &&
	cat "$MNT/mining/ledger.jsonl" >"$TEST_DIR/l.jsonl" &&
	"$L" verify-file "$TEST_DIR/l.jsonl" "$("$L" head "$STORE" | cut -d" " -f2)"
'

test_expect_success 'transfers outlive a restart: balances and the chain as they were' '
	before=$(snap) && daemon_kill9 && daemon_start &&
	[ "$(snap)" = "$before" ] && "$L" verify "$STORE" &&
	tw "$U" p1 "to=p2 amount=1000000 key=t1" OK && [ "$(snap)" = "$before" ]
'

test_done
