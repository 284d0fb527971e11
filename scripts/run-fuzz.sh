#!/bin/sh
# Run every libFuzzer target in DIR (fuzz_*) for FUZZ_SECONDS (default 60)
# each, from a working corpus in DIR/corpus/<target> seeded with the
# committed tests/fuzz/corpus/<target>.  Prints one line per target and a
# summary; exits non-zero when any target found a crash, leak, timeout or
# sanitizer report (the input is kept in DIR/artifacts/).
set -u
dir=${1:-build/fuzz/fuzz}
secs=${FUZZ_SECONDS:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir/artifacts"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
passed=0; failed=0; bad=""
printf '%-12s %10s %8s %8s  %s\n' target runs corpus seconds result
for bin in "$dir"/fuzz_*; do
    [ -x "$bin" ] || continue
    t=$(basename "$bin" | sed 's/^fuzz_//')
    work="$dir/corpus/$t"
    mkdir -p "$work"
    log="$dir/$t.log"
    "$bin" "$work" "$root/tests/fuzz/corpus/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    n=$(find "$work" -type f | wc -l)
    if [ "$rc" -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
        res=ok; passed=$((passed + 1))
    else
        res="FAILED (rc $rc, see $log)"; failed=$((failed + 1)); bad="$bad $t"
        grep -E 'ERROR|runtime error|check failed|SUMMARY' "$log" | head -5
    fi
    printf '%-12s %10s %8s %8s  %s\n' "$t" "${runs:-?}" "$n" "$secs" "$res"
done
[ -n "$bad" ] && echo "failing:$bad"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
