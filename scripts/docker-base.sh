#!/bin/sh
# A local Debian 12 base image for docker/Dockerfile*, for machines that reach
# a Debian mirror but no container registry:
#   docker-base.sh [IMAGE]      (default localhost/ppxd-base:bookworm)
# debootstrap --variant=minbase from the mirror this machine's apt uses
# (PPXD_DEBIAN_MIRROR overrides it), then `podman import`.  Skipped when the
# image exists (delete it with `podman rmi IMAGE` to rebuild).  As root.
set -eu
image=${1:-localhost/ppxd-base:bookworm}
engine=${PPXD_ENGINE:-podman}
if "$engine" image exists "$image" 2>/dev/null; then
    echo "docker-base: $image exists (cached)"
    exit 0
fi
for t in debootstrap "$engine"; do
    command -v "$t" >/dev/null || { echo "docker-base: $t missing (sh scripts/install-deps.sh --docker)" >&2; exit 1; }
done
# The first Debian archive URI of apt's sources (deb822 URIs: or a deb line).
mirror=${PPXD_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
             sed -n -e 's/^URIs: *\([^ ]*\/debian\)\/* *$/\1/p' -e 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\/debian\)\/* .*/\2/p' |
             head -n 1)
fi
mirror=${mirror:-http://deb.debian.org/debian}
security=${PPXD_DEBIAN_SECURITY:-$(echo "$mirror" | sed 's|/debian$|/debian-security|')}
root=$(mktemp -d /var/tmp/ppxd-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "docker-base: debootstrap bookworm from $mirror (about a minute)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 20 "$root.log" >&2
    rm -f "$root.log"
    exit 1
}
rm -f "$root.log"
# apt sources as in Debian's own images: the release, its updates, security.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOT
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | "$engine" import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "docker-base: built $image"
