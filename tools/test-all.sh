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
setup_build() {
    dir=$1; shift
    if [ -f "$dir/build.ninja" ]; then
        set -- --reconfigure "$@"
    fi
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 ||
        { cat "$dir.setup.log"; return 1; }
}

compile_build() {
    meson compile -C "$1" >"$1.compile.log" 2>&1 ||
        { tail -50 "$1.compile.log"; return 1; }
}

# Three at once on the 2 cores: the mount tests spend much of their time
# waiting (daemons starting, fsync, runc, Slurm), and with two at once the
# cores were idle 50-78% of the time while such tests ran.  A failed test is
# counted below, from meson's own results.
run_tests() {
    meson test -C "$1" --print-errorlogs --num-processes 3
    return 0
}

# The sanitised build is optimised at -O2 (AddressSanitizer's documentation
# asks for -O1 or higher): the training and routing tests run 1.1-1.5x faster
# than at -O1 and about 5x faster than at -O0, and nothing ASan or UBSan
# reports depends on the level.
san_args="-Db_sanitize=address,undefined -Db_lundef=false -Ddebug=true -Doptimization=2"

build_ok=0
setup_build build && compile_build build && build_ok=1
# The sanitised build compiles (about 100 s of both cores) while the first
# build's tests run, at a lower priority (nice): it takes the cycles those
# tests leave idle while they wait, instead of a time of its own between the
# two suites.  Its output goes to build-san.compile.log, shown if it fails.
san_pid=
rm -f build-san.compile.rc
# shellcheck disable=SC2086
if setup_build build-san $san_args; then
    ( nice -n 10 meson compile -C build-san >build-san.compile.log 2>&1
      echo $? >build-san.compile.rc ) &
    san_pid=$!
else
    rc=1
fi
if [ "$build_ok" = 1 ]; then run_tests build; else rc=1; fi
if [ -n "$san_pid" ]; then
    wait "$san_pid"
    if [ "$(cat build-san.compile.rc 2>/dev/null)" = 0 ]; then
        run_tests build-san
    else
        tail -50 build-san.compile.log
        rc=1
    fi
fi

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
