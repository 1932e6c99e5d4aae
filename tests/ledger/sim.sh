#!/bin/sh
# sim.sh - llmfs-mining-sim runs the reward code over 24 providers, 12 designers and 6
# months: it reports retention and returns for each setting of the sweep, writes a
# well-formed SVG, and moves the way the economics say it must (a higher compute price keeps
# at least as many providers; a larger designer share leaves providers less).
set -u
: "${LLMFS_MINING_SIM:?}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
"$LLMFS_MINING_SIM" --sweep --seeds 10 --svg "$dir/r.svg" > "$dir/out" || { echo "FAIL: exit $?"; exit 1; }
cat "$dir/out"
n=$(grep -c ' retention ' "$dir/out")
[ "$n" = 10 ] || { echo "FAIL: $n retention lines, want 10"; fails=$((fails + 1)); }
python3 - "$dir/r.svg" "$dir/out" <<'PY' || fails=$((fails + 1))
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
lines = [e for e in root.iter() if e.tag.endswith('polyline')]
assert len(lines) == 10, len(lines)
rows = {}
for l in open(sys.argv[2]):
    if ' retention ' in l:
        label = l.split(' retention ')[0].strip()
        pct = [float(x.rstrip('%')) for x in l.split(' retention ')[1].split('|')[0].split()]
        mean = float(l.rsplit('mean', 1)[1])
        rows[label] = (pct, mean)
assert len(rows['base'][0]) == 6
for p in rows.values():
    assert all(0 <= x <= 100 for x in p[0])
    assert all(a >= b for a, b in zip(p[0], p[0][1:])), p  # nobody comes back
lo, mid, hi = rows['price 0.3 USD/h'], rows['price 0.45 USD/h'], rows['price 0.9 USD/h']
assert lo[0][-1] <= mid[0][-1] <= hi[0][-1], (lo, mid, hi)
assert lo[1] < mid[1] < hi[1]
assert rows['designer share 10%'][1] > rows['designer share 60%'][1] > rows['designer share 90%'][1]
print("ok: svg and monotone responses")
PY
"$LLMFS_MINING_SIM" --providers 0 >/dev/null 2>&1 && { echo "FAIL: --providers 0 accepted"; fails=$((fails + 1)); }
"$LLMFS_MINING_SIM" --eps nan >/dev/null 2>&1 && { echo "FAIL: --eps nan accepted"; fails=$((fails + 1)); }
[ "$fails" = 0 ]
