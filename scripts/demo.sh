#!/bin/sh
# make demo: ppxd launches 4 copies of the bundled Gaussian-unknown-mean
# simulator, runs importance sampling with obs0 = 8, obs1 = 9 and prints the
# posterior next to the exact answer N(7.25, 0.913).
set -eu
B=${PPXD_BUILD:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== ppxd infer: Gaussian with unknown mean, mu ~ N(1, sqrt 5), obs ~ N(mu, sqrt 2)"
echo "   $B/ppxd infer --sim-cmd '$B/examples/gaussian {endpoint}' -j 4 -n 50000 --observe obs0=8 --observe obs1=9 --seed 1"
"$B/ppxd" infer --sim-cmd "$B/examples/gaussian {endpoint}" -j 4 -n 50000 \
    --observe obs0=8 --observe obs1=9 --seed 1 --quiet \
    --samples-out "$out/posterior.npy" >"$out/summary.txt" 2>"$out/log.txt" || {
    cat "$out/log.txt" >&2
    exit 1
}
cat "$out/summary.txt"
mean=$(awk '$1 == "mu" { print $2 }' "$out/summary.txt")
sd=$(awk '$1 == "mu" { print $3 }' "$out/summary.txt")
echo
printf '%-22s %10s %10s\n' "" "mean" "sd"
printf '%-22s %10s %10s\n' "ppxd (IS, prior)" "$mean" "$sd"
printf '%-22s %10s %10s\n' "exact posterior" "7.25" "0.9129"
echo
grep -E "^(traces|restarts|messages|elapsed)" "$out/log.txt" || true
