#!/usr/bin/env python3
"""check_rounds.py LEDGER.jsonl JOB_DIR JOB ACCOUNT PRICE_USD_PER_HOUR [--all-verified]

A mining job's rounds against its ledger entries, recomputed here from the job's own reports
(an independent reading of docs/mining.md, not the C code):
  - every round of rounds.tsv has its designer record, exactly once;
  - each round's compute entry for ACCOUNT is the sum over its accepted replicas of
    floor(1000 x round(ds x 1000) x price_micro / 3.6e9), ds the device-seconds in the entry's
    evidence, and those device-seconds are contributions.tsv's (the provider's metering)
    within 1 %;
  - a round beating the best validation loss before it by more than 0.5 % pays
    floor(100 USD x relative improvement) in breakthrough entries (+-1 micro-USD), others none;
  - ACCOUNT's units are its compute plus breakthrough pay.
"""
import json, math, sys
from collections import defaultdict

led, jdir, job, acct, price = sys.argv[1:6]
all_verified = '--all-verified' in sys.argv
price_micro = round(float(price) * 1e6)
entries = [json.loads(l) for l in open(led)]
mine = [e for e in entries if e['job'] == job]

def tsv(name):
    lines = open(f'{jdir}/{name}').read().splitlines()
    head = lines[0].split('\t')
    return [dict(zip(head, l.split('\t'))) for l in lines[1:]]

rounds = tsv('rounds.tsv')
contrib = tsv('contributions.tsv')
val_col = [k for k in rounds[0] if 'val' in k][0]
n = len(rounds)
designer = [e for e in mine if e['account'] == f'job:{job}']
assert sorted(e['round'] for e in designer) == list(range(1, n + 1)), \
    ('designer records', sorted(e['round'] for e in designer), n)

metered = defaultdict(float)
for c in contrib:
    if c['accepted'] == '1':
        metered[int(c['round'])] += float(c['device_seconds'])

best = None
ds_ledger = ds_metered = 0.0
for row in rounds:
    r = int(row['round'])
    L = float(row[val_col])
    comp = [e for e in mine if e['round'] == r and e['kind'] == 'compute' and e['account'] == acct]
    flags = [e for e in mine if e['round'] == r and e['kind'] == 'flag']
    assert len(comp) <= 1
    if metered[r] > 0:
        assert len(comp) == 1 or flags, ('round', r, 'no compute entry')
    if comp:
        reps = comp[0]['evidence']['replicas']
        want = sum(1000 * round(x['device_seconds'] * 1000) * price_micro // 3600000000
                   for x in reps)
        assert comp[0]['amount'] == want, ('round', r, comp[0]['amount'], want)
        ds = sum(x['device_seconds'] for x in reps)
        ds_ledger += ds
        ds_metered += metered[r]
        if all_verified:
            assert all(x.get('verified') is True for x in reps), ('round', r, reps)
    if all_verified:
        assert not flags, ('round', r, flags)
    bt = sum(e['amount'] for e in mine if e['round'] == r and e['kind'] == 'breakthrough')
    if best is not None and (best - L) / best > 0.005:
        want = math.floor(100e6 * (best - L) / best)
        assert abs(bt - want) <= 1, ('round', r, 'breakthrough', bt, want, best, L)
    else:
        assert bt == 0, ('round', r, 'unexpected breakthrough', bt, best, L)
    best = L if best is None else min(best, L)

assert ds_metered > 0
assert abs(ds_ledger - ds_metered) <= 0.01 * ds_metered + 0.002 * n, (ds_ledger, ds_metered)
money = sum(e['amount'] for e in mine if e['account'] == acct and e['kind'] in ('compute', 'breakthrough'))
units = sum(e['amount'] for e in mine if e['account'] == acct and e['kind'] == 'units')
assert units == money, (units, money)
nbt = sum(1 for e in mine if e['kind'] == 'breakthrough')
print(f'ok: {n} rounds, {len(mine)} entries, {ds_ledger:.3f} device-seconds credited of '
      f'{ds_metered:.3f} metered, {money} micro-USD to {acct}, {nbt} breakthrough entries')
