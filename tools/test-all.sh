#!/bin/sh
# Installs the dependencies, builds llmfs twice (optimised, and with
# AddressSanitizer + UndefinedBehaviorSanitizer), runs every test suite in
# both builds, and ends with one line: "N passed, N failed[, N skipped]".
set -u
cd "$(dirname "$0")/.."
sh tools/install-deps.sh --test || exit 1

run_build() {
    dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 ||
            { cat "$dir.setup.log"; return 1; }
    fi
    meson compile -C "$dir" >"$dir.compile.log" 2>&1 ||
        { tail -50 "$dir.compile.log"; return 1; }
    meson test -C "$dir" --print-errorlogs --num-processes 2
    return 0
}

rc=0
run_build build || rc=1
run_build build-san -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug || rc=1

# The counts come from meson's own per-test results of both builds.
python3 - build build-san <<'PY'
import json, sys, os
ok = fail = skip = 0
for d in sys.argv[1:]:
    p = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(p):
        continue
    for line in open(p):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            ok += 1
        elif r == "SKIP":
            skip += 1
        else:
            fail += 1
s = f"{ok} passed, {fail} failed"
if skip:
    s += f", {skip} skipped"
print(s)
sys.exit(1 if fail else 0)
PY
[ $? -eq 0 ] || rc=1
exit $rc
