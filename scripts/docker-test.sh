#!/bin/sh
# make docker-test: the container deployment, built and run for real with
# podman and podman-compose (no Docker engine needed).
#   1. a local Debian 12 base image (scripts/docker-base.sh; cached)
#   2. both images (docker/Dockerfile, docker/Dockerfile.sim; layer cache)
#   3. CURVE keys, then docker/compose.yaml up with SIM_REPLICAS simulators
#   4. jobs through the compose deployment, the replicas joining by themselves;
#      scaling up and down; a bind-only simulator behind ppx-bridge; a
#      posterior queried from outside through the published, CURVE port
#   5. everything torn down (also on failure)
# Step 4 drives `ppxd daemon` in the compose deployment only through its
# published, CURVE-authenticated port, as a user on another host would:
# ppxctl sims / submit / job wait / job fetch, and a posterior query.  Exit 0
# only when every step passed.
#
# Environment: BUILD (default build), PPXD_TEST_PORT (published port, default
# 15560), PPXD_BASE (base image; default the local one), KEEP=1 (leave the
# deployment up for a look; tear down with the printed command).
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
BUILD=${BUILD:-build}
work=$top/$BUILD/docker
project=ppxdtest
port=${PPXD_TEST_PORT:-15560}
base=${PPXD_BASE:-localhost/ppxd-base:bookworm}
img=localhost/ppxd:test
simimg=localhost/ppxd-sim:test
keys=$work/keys
ppxctl=$top/$BUILD/ppxctl
mkdir -p "$work"
t_start=$(date +%s)

say() { echo "docker-test: $*"; }
phase() { say "[$(($(date +%s) - t_start)) s] $*"; }

for t in podman podman-compose; do
    command -v "$t" >/dev/null || { say "FAIL: $t missing (sh scripts/install-deps.sh --docker)"; exit 1; }
done
[ -x "$ppxctl" ] || { say "FAIL: $ppxctl not built (make $BUILD/ppxctl)"; exit 1; }

# Podman on this kind of host: runc (crun fails on hybrid cgroups) and fixed
# ulimits (the sandbox cannot raise nofile/nproc to podman's defaults), for
# every build, run and exec of this test.
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$work/containers.conf"

# ---- images -------------------------------------------------------------------
phase "base image $base"
if [ "$base" = localhost/ppxd-base:bookworm ]; then sh scripts/docker-base.sh "$base"; fi
for spec in "docker/Dockerfile $img" "docker/Dockerfile.sim $simimg"; do
    set -- $spec
    phase "building $2 from $1 (log: $work/build-$(basename "$1").log)"
    # --format docker keeps HEALTHCHECK (OCI image configs have none).
    if ! podman build --format docker --build-arg BASE="$base" -f "$1" -t "$2" . \
            >"$work/build-$(basename "$1").log" 2>&1; then
        tail -n 30 "$work/build-$(basename "$1").log"
        say "FAIL: podman build $1"
        exit 1
    fi
done

# ---- deployment ----------------------------------------------------------------
phase "keys in $keys"
sh scripts/docker-keys.sh "$keys" >/dev/null 2>&1
[ -f "$work/stranger.key" ] || "$ppxctl" keygen "$work/stranger" >/dev/null 2>&1

files="-f docker/compose.yaml"
export PPXD_IMAGE=$img PPXD_SIM_IMAGE=$simimg PPXD_PORT=$port PPXD_KEYS=$keys PPXD_BASE=$base
compose() { podman-compose -p $project $files "$@"; }
ctr_of() { # the containers of a service, by compose label
    podman ps -q --filter label=com.docker.compose.project=$project --filter label=com.docker.compose.service="$1"
}

teardown() {
    rc=$?
    if [ "${KEEP:-0}" = 1 ]; then
        say "KEEP=1: left up; tear down with: cd $top && PPXD_KEYS=$keys podman-compose -p $project $files down -v"
        return
    fi
    [ $rc = 0 ] || { say "logs of the ppxd container:"; podman logs --tail 40 "${project}_ppxd_1" 2>&1 | sed 's/^/  | /'; }
    podman rm -f -t 1 "${project}_bridge" >/dev/null 2>&1 || true
    compose down -v >"$work/down.log" 2>&1 || true
    for c in $(podman ps -aq --filter label=com.docker.compose.project=$project); do podman rm -f "$c" >/dev/null 2>&1 || true; done
    podman volume rm -f ${project}_ppxd-data >/dev/null 2>&1 || true
    phase "torn down (total $(($(date +%s) - t_start)) s)"
}
trap teardown EXIT

# SIM_REPLICAS=N compose up -d: the missing replicas are created.
# podman-compose 1.0 ignores --scale and leaves replicas beyond N running, so
# those are removed here (`docker compose up -d --scale sim=N` does both).
scale_sims() {
    SIM_REPLICAS=$1 compose up -d >>"$work/up.log" 2>&1
    for c in $(ctr_of sim); do
        k=$(podman inspect --format '{{index .Config.Labels "com.docker.compose.container-number"}}' "$c")
        [ "$k" -le "$1" ] || podman rm -f -t 1 "$c" >/dev/null
    done
    got=$(ctr_of sim | wc -l)
    [ "$got" = "$1" ] || { say "FAIL: $got simulator containers running, wanted $1"; exit 1; }
}

phase "compose up: ppxd + 4 simulator replicas (log: $work/up.log)"
: >"$work/up.log"
compose down -v >/dev/null 2>&1 || true
scale_sims 4
ppxd_ctr=${project}_ppxd_1
podman container exists "$ppxd_ctr" || { say "FAIL: no container $ppxd_ctr"; exit 1; }

# Query from outside: the host's ppxctl through the published port, CURVE.
q() { "$ppxctl" --endpoint tcp://127.0.0.1:$port --curve-server-key "$keys/server.pub" --curve-client-key "$@"; }
# Posterior check: the Gaussian example with obs 2, 3 has the exact posterior
# N(2.25, 0.913) (prior N(1, sqrt 5), two N(mu, sqrt 2) observations).  NPE
# on 10^4 simulations gets mean 2.24, sd 0.95 on this machine; the bounds
# leave room for a different seed's net, and catch a wrong model or garbage.
check_posterior() {
    /usr/bin/python3 - "$1" <<'EOF'
import sys, numpy as np
s = np.load(sys.argv[1]).ravel()
m, sd = s.mean(), s.std()
print(f"docker-test: posterior of mu given obs (2, 3): mean {m:.3f}, sd {sd:.3f} (exact 2.25, 0.913), n {s.size}")
sys.exit(0 if s.size == 2000 and abs(m - 2.25) < 0.3 and 0.65 < sd < 1.25 else 1)
EOF
}

# ---- ppxd daemon: jobs over the query protocol ----------------------------------
admin() { q "$keys/admin.key" "$@"; }
# The CONNECTED column of `ppxctl sims` (4th from the end: model names have
# spaces), summed over its model rows.
connected() { admin sims 2>/dev/null | awk 'NR > 1 && NF >= 5 && $(NF - 3) ~ /^[0-9]+$/ { n += $(NF - 3) } END { print n + 0 }'; }
wait_sims() {
    i=0
    while [ "$(connected)" != "$1" ]; do
        i=$((i + 1)); [ $i -lt 90 ] || { say "FAIL: ppxctl sims never showed $1 simulators"; admin sims || true; exit 1; }
        sleep 1
    done
    say "ppxctl sims: $1 simulators connected, as wanted"
}
phase "waiting for the 4 replicas to join"
wait_sims 4
podman healthcheck run "$ppxd_ctr" >/dev/null || { say "FAIL: HEALTHCHECK of $ppxd_ctr"; exit 1; }
say "HEALTHCHECK of $ppxd_ctr: healthy"

phase "prior job (simulate, 2000 traces) with 4 replicas"
id=$(admin submit --name prior -- simulate -n 2000)
admin job wait "$id" >/dev/null || { admin job status "$id"; say "FAIL: prior job"; exit 1; }
admin job status "$id"
admin job fetch "$id" -o "$work/prior-job" >/dev/null || { say "FAIL: ppxctl job fetch of the prior job"; exit 1; }

phase "scaling 4 -> 12 -> 2, plus a bind-only simulator behind ppx-bridge"
scale_sims 12 && wait_sims 12
scale_sims 2 && wait_sims 2
podman run -d --name ${project}_bridge --network ${project}_sims \
    -e PPX_DAEMON=tcp://ppxd:5556 -e PPX_BRIDGE_CMD='/usr/local/lib/ppx-sim/gaussian {endpoint}' \
    "$simimg" >/dev/null
wait_sims 3

phase "training job (NPE, 10000 simulations) with 3 simulators"
id=$(admin submit --name gauss -- train npe -n 10000 --theta mu --x obs0,obs1 --seed 1)
admin job wait "$id" >/dev/null || { admin job status "$id"; say "FAIL: training job"; exit 1; }
admin job status "$id"
podman rm -f -t 1 ${project}_bridge >/dev/null

phase "the posterior, queried from outside on the published CURVE port"
q "$keys/user.key" sample --model gauss --obs 2,3 -n 2000 --seed 1 -o "$work/samples.npy" >/dev/null
check_posterior "$work/samples.npy"
if q "$work/stranger.key" --timeout-ms 2000 status >/dev/null 2>&1; then
    say "FAIL: a client key not in the allow list was answered"; exit 1
fi
if "$ppxctl" --endpoint tcp://127.0.0.1:$port --timeout-ms 2000 status >/dev/null 2>&1; then
    say "FAIL: a plain (non-CURVE) client was answered"; exit 1
fi
if q "$keys/user.key" submit --name nope -- simulate -n 10 >/dev/null 2>&1; then
    say "FAIL: a query (non-admin) key could submit a job"; exit 1
fi
say "unlisted key, plain client, job from a query key: refused, as wanted"
admin jobs

phase "passed"
