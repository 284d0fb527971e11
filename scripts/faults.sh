#!/bin/sh
# The fault campaign (tests/test_campaign.c), rerunnable by anyone:
#   sh scripts/faults.sh [full|short]      (make faults; default full)
# Simulators SIGKILLed and SIGSTOPped during simulate/infer (results must be
# bit-identical to a clean run with the same seed), ppxd SIGKILLed while
# writing (every committed record readable), hostile ZMTP peers, and
# malformed queries from many concurrent clients (every one answered, RSS
# bounded).  Prints a table of inputs tried, faults injected and anything
# lost, then "N passed, N failed"; exits non-zero when a part failed.
# PPXD_FAULTS_SEED=N draws other faults (the default seed is fixed).
set -u
scale=${1:-full}
build=${PPXD_BUILD:-build}
bin="$build/tests/test_campaign"
[ -x "$bin" ] || { echo "faults: $bin not built (make)" >&2; exit 2; }
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x "$build/ppxd" ]; then
    OPENBLAS_CORETYPE=$("$build/ppxd" blas-core) && export OPENBLAS_CORETYPE
fi
log=$(mktemp /tmp/ppxd-faults-XXXXXX)
echo "fault campaign ($scale scale, seed ${PPXD_FAULTS_SEED:-20261203}); this takes a while at full scale"
start=$(date +%s)
PPXD_FAULTS_SCALE=$scale PPXD_BUILD=$build "$bin" --jobs 1 --verbose >"$log" 2>&1
rc=$?
end=$(date +%s)
printf '\n%-30s %10s %8s %5s  %s\n' part inputs faults lost notes
grep '^FAULTS|' "$log" | while IFS='|' read -r _ part inputs faults lost notes; do
    printf '%-30s %10s %8s %5s  %s\n' "$part" "$inputs" "$faults" "$lost" "$notes"
done
echo
grep -E '^\[(FAIL|PASS)\]|Assertion|Synthesis' "$log" | sed 's/^/  /'
line=$(grep 'Synthesis:' "$log" | tail -1)
p=$(printf '%s' "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
f=$(printf '%s' "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
c=$(printf '%s' "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
[ -n "$p" ] || { tail -20 "$log"; p=0; f=1; c=0; }
echo "campaign took $((end - start)) s"
echo "${p} passed, $((f + c)) failed"
rm -f "$log"
[ "$rc" -eq 0 ] && [ $((f + c)) -eq 0 ]
