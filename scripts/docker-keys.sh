#!/bin/sh
# CURVE keys for docker/compose.yaml and docker/k8s/: docker-keys.sh DIR
#   server.key server.pub   the daemon's key pair (server.key stays secret)
#   admin.key  admin.pub    yours: query, submit jobs, administer
#   user.key   user.pub     a query-only client
#   health.key health.pub   the container HEALTHCHECK's client (query only)
#   clients.pub             the daemon's --curve-allow list (user + health)
#   admins.pub              the daemon's --curve-admin list (admin)
# Existing keys are kept (delete DIR to start over).  The files the daemon
# reads are made readable by the image's user (uid 10001) when run as root;
# otherwise chown them yourself (rootless podman: podman unshare chown 10001 ...).
# PPXCTL names the ppxctl to run (default: build/ppxctl if built, else ppxctl).
set -eu
dir=${1:?usage: docker-keys.sh DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
ppxctl=${PPXCTL:-}
if [ -z "$ppxctl" ]; then
    if [ -x "$here/build/ppxctl" ]; then ppxctl=$here/build/ppxctl; else ppxctl=ppxctl; fi
fi
mkdir -p "$dir"
chmod 700 "$dir"
for k in server admin user health; do
    [ -f "$dir/$k.key" ] || "$ppxctl" keygen "$dir/$k" >/dev/null
done
cat "$dir/user.pub" "$dir/health.pub" > "$dir/clients.pub"
cp "$dir/admin.pub" "$dir/admins.pub"
chmod 644 "$dir"/*.pub
if [ "$(id -u)" = 0 ]; then
    chown 10001:10001 "$dir/server.key" "$dir/health.key"
    # the directory must let the engine's bind mounts (and uid 10001) through
    chmod 711 "$dir"
else
    echo "docker-keys: chown $dir/server.key and $dir/health.key to uid 10001 (the image's ppxd user)" >&2
fi
echo "docker-keys: keys in $dir (give clients server.pub; keep *.key secret)"
