#!/bin/sh
# Run every Criterion test binary given as argument, then print one summary
# line "N passed, N failed" and exit non-zero when anything failed or crashed.
set -u
# Every test process uses the OpenBLAS kernels ppxd itself selects, so that
# results computed in a test and by a ppxd it starts are bit-identical.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x "${PPXD_BUILD:-build}/ppxd" ]; then
    OPENBLAS_CORETYPE=$("${PPXD_BUILD:-build}/ppxd" blas-core) && export OPENBLAS_CORETYPE
fi
passed=0; failed=0; bad_bins=""
for t in "$@"; do
    [ -x "$t" ] || continue
    echo "=== $(basename "$t")"
    out=$("$t" --jobs 2 2>&1); rc=$?
    printf '%s\n' "$out" | grep -vE '^\[----\] .*(Criterion|Running)' | grep -E '^\[(FAIL|----|====|PASS)\]|Warning|Error|Assertion|error' | head -60
    line=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -20
        failed=$((failed + 1)); bad_bins="$bad_bins $(basename "$t")"; continue
    fi
    p=$(printf '%s' "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
    f=$(printf '%s' "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
    c=$(printf '%s' "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
    passed=$((passed + p)); failed=$((failed + f + c))
    if [ "$rc" -ne 0 ] || [ $((f + c)) -ne 0 ]; then bad_bins="$bad_bins $(basename "$t")"; fi
done
[ -n "$bad_bins" ] && echo "failing:$bad_bins"
echo "$passed passed, $failed failed"
[ -z "$bad_bins" ]
