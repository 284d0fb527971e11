#!/bin/sh
# The Slurm example (docker/slurm/ppxd-sims.sbatch) on a real one-node Slurm
# cluster: Debian's slurm-wlm (slurmctld + slurmd on this machine, munge for
# authentication), started here with a private configuration in
# $BUILD/slurm (its own ports and state; /etc/slurm is not touched) and
# stopped at the end.  As root.
#   1. ppxd simulate --sim-listen tcp://127.0.0.1:PORT; a job array of 4
#      one-simulator tasks joins it: "connected in 4 joined"
#   2. again with an array of 2 tasks x --ntasks=2 (srun starts 2 each)
#   3. scancel: the array ends, nothing left in the queue
# Not part of make test (it needs the daemons and root); about a minute.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
BUILD=${BUILD:-build}
dir=$top/$BUILD/slurm
say() { echo "slurm-test: $*"; }
for t in slurmctld slurmd sbatch squeue scancel munged; do
    command -v $t >/dev/null || { say "FAIL: $t missing (apt-get install slurm-wlm munge)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { say "FAIL: run as root (starts slurmctld and slurmd)"; exit 1; }
[ -x "$BUILD/ppxd" ] && [ -x "$BUILD/examples/gaussian" ] || { say "FAIL: build first (make)"; exit 1; }
rm -rf "$dir"
mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/out"
node=$(hostname -s)
cpus=$(nproc)
export SLURM_CONF="$dir/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=ppxdtest
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=${PPXD_SLURMCTLD_PORT:-16817}
SlurmdPort=${PPXD_SLURMD_PORT:-16818}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# no cgroups in a container sandbox: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=2000 State=UNKNOWN
# many simulators per core: they mostly wait for ppxd here
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:32
EOF

started=""
cleanup() {
    rc=$?
    [ -n "${ppxd_pid:-}" ] && kill "$ppxd_pid" 2>/dev/null || true
    [ -n "${job:-}" ] && scancel "$job" 2>/dev/null || true
    for d in slurmd slurmctld; do
        [ -f "$dir/$d.pid" ] && kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
    done
    [ -n "$started" ] && [ -f "$dir/munged.pid" ] && kill "$(cat "$dir/munged.pid")" 2>/dev/null || true
    if [ $rc != 0 ]; then
        say "logs:"; tail -n 15 "$dir"/log/*.log "$dir"/out/* 2>/dev/null | sed 's/^/  | /'
    fi
}
trap cleanup EXIT

# munge: the system one if it runs, else our own.
if ! munge -n >/dev/null 2>&1; then
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    su -s /bin/sh munge -c "munged --pid-file=$dir/munged.pid" || { say "FAIL: munged"; exit 1; }
    chown munge "$dir" 2>/dev/null || true
    started=1
    sleep 1
fi
slurmctld -i
slurmd
i=0
until sinfo -h -o %T 2>/dev/null | grep -q idle; do
    i=$((i + 1)); [ $i -lt 30 ] || { say "FAIL: the node never became idle"; sinfo || true; exit 1; }
    sleep 1
done
say "one-node cluster up: $(sinfo -h -o '%P %D %T %N')"

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
round() { # name array ntasks wanted
    "$BUILD/ppxd" simulate --sim-listen "tcp://127.0.0.1:$port" -n 100000 -o "$dir/$1.ppxt" --fsync never 2>"$dir/$1.log" &
    ppxd_pid=$!
    i=0
    until grep -q 'simulators may connect' "$dir/$1.log"; do
        i=$((i + 1)); [ $i -lt 100 ] || { say "FAIL: ppxd did not listen"; exit 1; }
        sleep 0.1
    done
    job=$(PPX_DAEMON="tcp://127.0.0.1:$port" sbatch --parsable --array="$2" --ntasks="$3" \
              --output="$dir/out/$1-%A_%a.out" docker/slurm/ppxd-sims.sbatch "$top/$BUILD/examples/gaussian")
    say "$1: ppxd on port $port, job array $job ($2, --ntasks=$3)"
    wait "$ppxd_pid" || { say "FAIL: ppxd simulate failed"; exit 1; }
    ppxd_pid=""
    n=$(sed -n 's/^connected in *\([0-9]*\) joined.*/\1/p' "$dir/$1.log")
    [ "$n" = "$4" ] || { say "FAIL: $1: ${n:-no} simulators joined, wanted $4"; exit 1; }
    say "$1: $n simulators of the job array joined"
    scancel "$job"
    i=0
    while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do
        i=$((i + 1)); [ $i -lt 60 ] || { say "FAIL: job $job still queued after scancel"; exit 1; }
        sleep 1
    done
    job=""
}
round array4 0-3 1 4
round array2x2 0-1 2 4
say "passed"
