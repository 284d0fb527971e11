#!/bin/sh
# Install the Debian 12 packages ppxd needs, when any is missing.
# Called by the Makefile when its pkg-config / flatc check fails.
#   install-deps.sh          what `make`, `make test` and `make demo` need
#   install-deps.sh --fuzz   that plus clang and its libFuzzer/sanitizer
#                            runtimes, for `make fuzz` only
#   install-deps.sh --docker that plus podman, buildah, podman-compose, runc and
#                            debootstrap, for `make docker-test` only
#   install-deps.sh --slurm  that plus slurm-wlm and munge, for `make slurm-test` only
set -eu
PKGS="build-essential gfortran pkg-config cmake libzmq3-dev libflatbuffers-dev flatbuffers-compiler
      libopenblas-dev libcriterion-dev python3 python3-zmq python3-flatbuffers python3-numpy python3-matplotlib
      python3-setuptools python3-pip python3-yaml"
if [ "${1:-}" = "--fuzz" ]; then
    PKGS="$PKGS clang libclang-rt-dev"
fi
# make docker-test: podman (with the runc runtime), podman-compose, and
# debootstrap for the local base image.
if [ "${1:-}" = "--docker" ]; then
    PKGS="$PKGS podman buildah podman-compose runc debootstrap"
fi
# make slurm-test: a one-node Slurm cluster (slurmctld + slurmd) and munge.
if [ "${1:-}" = "--slurm" ]; then
    PKGS="$PKGS slurm-wlm munge"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: not root; run as root:  apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
