#!/bin/sh
# Runs the libFuzzer harnesses one after another, each for SECONDS, at the
# lowest priority and on one core, and prints each one's final stats.
#
# Usage: tests/fuzz/run-fuzzers.sh BUILD_DIR SECONDS WORK_DIR [NAME...]
# BUILD_DIR was set up with
#   CC=clang meson setup BUILD_DIR -Db_sanitize=address,undefined -Db_lundef=false
# New corpus entries go to WORK_DIR/NAME-corpus, crashes to
# WORK_DIR/NAME-crash-*: copy a crash into tests/fuzz/regressions/NAME/ once
# it is fixed, so the unit suite replays it from then on.
set -eu
build=$(cd "$1" && pwd)
secs=$2
work=$3
shift 3
src=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || set -- gguf safetensors config bytegroup env_unpack
mkdir -p "$work"
cd "$work"
for name in "$@"; do
    mkdir -p "$name-corpus"
    seeds="$src/corpus/$name"
    [ -d "$src/regressions/$name" ] && seeds="$seeds $src/regressions/$name"
    echo "== $name: $secs s, started $(date -u +%H:%M:%S)"
    # shellcheck disable=SC2086
    nice -n 19 "$build/tests/fuzz/fuzz_$name" -max_total_time="$secs" -jobs=1 \
        -rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1 \
        -artifact_prefix="$work/$name-crash-" "$name-corpus" $seeds \
        >"$name.log" 2>&1 || echo "$name: fuzzer exited $?"
    cat fuzz-0.log >>"$name.log" 2>/dev/null && rm -f fuzz-0.log
    grep -E "^(stat::|Done|==[0-9]+==ERROR|SUMMARY)" "$name.log" || true
    ls "$work" | grep "^$name-crash-" || echo "$name: no crashes"
done
