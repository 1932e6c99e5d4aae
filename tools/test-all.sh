#!/bin/sh
# Installs the dependencies, builds llmfs twice (optimised, and with
# AddressSanitizer + UndefinedBehaviorSanitizer), runs every test suite in
# both builds, and ends with one line: "N passed, N failed[, N skipped]".
set -u
cd "$(dirname "$0")/.."
# A failed install is reported, and the builds and tests are tried anyway:
# the closing line is always printed.
rc=0
sh tools/install-deps.sh --test || { echo "tools/install-deps.sh failed"; rc=1; }

# An existing build folder is configured again: one set up before the test
# packages were installed (the README's first command) would otherwise keep
# the dependencies it did not find then, and skip the tests that need them.
run_build() {
    dir=$1; shift
    if [ -f "$dir/build.ninja" ]; then
        set -- --reconfigure "$@"
    fi
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 ||
        { cat "$dir.setup.log"; return 1; }
    meson compile -C "$dir" >"$dir.compile.log" 2>&1 ||
        { tail -50 "$dir.compile.log"; return 1; }
    # Three at once on the 2 cores: the mount tests spend much of their time
    # waiting (daemons starting, fsync, runc, Slurm), and with two at once
    # the cores were idle 50-78% of the time while such tests ran.
    meson test -C "$dir" --print-errorlogs --num-processes 3
    return 0
}

run_build build || rc=1
# The sanitised build is optimised at -O2 (AddressSanitizer's documentation
# asks for -O1 or higher): the training and routing tests run 1.1-1.5x faster
# than at -O1 and about 5x faster than at -O0, and nothing ASan or UBSan
# reports depends on the level.
run_build build-san -Db_sanitize=address,undefined -Db_lundef=false \
    -Ddebug=true -Doptimization=2 || rc=1

# The counts come from meson's own per-test results of both builds (one
# JSON object a line in testlog.json, each with a "result" field).
count() {
    cat build/meson-logs/testlog.json build-san/meson-logs/testlog.json 2>/dev/null |
        grep -o '"result": "[A-Z]*"' | grep -c "$1"
}
passed=$(count '"OK"\|"EXPECTEDFAIL"')
skipped=$(count '"SKIP"')
failed=$(count '"FAIL"\|"TIMEOUT"\|"ERROR"\|"UNEXPECTEDPASS"\|"INTERRUPT"')
# A build that failed ran no test: count it, so the line never reads clean.
[ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$failed" -eq 0 ] || rc=1
[ "$passed" -gt 0 ] || rc=1
line="$passed passed, $failed failed"
[ "$skipped" -eq 0 ] || line="$line, $skipped skipped"
echo "$line"
exit $rc
