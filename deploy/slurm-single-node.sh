#!/usr/bin/env bash
# A single-node SLURM cluster on one Debian machine, for development and CI.
#
#   deploy/slurm-single-node.sh start|stop|status [SCRATCH_DIR]
#
# Everything lives in SCRATCH_DIR (default: ${RATAG_SLURM_DIR:-${TMPDIR:-/tmp}/ratag-slurm}):
# slurm.conf, state, spool, logs, PID files and a private munged socket.  Nothing in /etc
# is written except the MUNGE key when it is absent (/etc/munge/munge.key, or
# $RATAG_MUNGE_KEY).  Client commands find the cluster through SLURM_CONF:
#
#   eval "$(deploy/slurm-single-node.sh start /tmp/slurm)"   # prints export SLURM_CONF=...
#   sinfo; sbatch ...; squeue
#   deploy/slurm-single-node.sh stop /tmp/slurm
#
# Ports: slurmctld listens on $RATAG_SLURM_PORT (default 6817), slurmd on the next port, so
# two instances with different scratch dirs and ports can run side by side.
#
# Needs root (munged runs as user munge, slurmd as root) and the Debian packages
#   apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
# Idempotent: `start` on a running instance only waits for the node to be idle; `stop` on
# a stopped one does nothing.  Exit codes: 0 ok, 1 not running (status) or did not come
# up, 2 usage, 3 missing packages or not root.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|status [SCRATCH_DIR]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
action=$1
scratch=${2:-${RATAG_SLURM_DIR:-${TMPDIR:-/tmp}/ratag-slurm}}
scratch=$(realpath -m "$scratch")  # slurm.conf needs absolute paths
port=${RATAG_SLURM_PORT:-6817}
munge_key=${RATAG_MUNGE_KEY:-/etc/munge/munge.key}
host=$(hostname -s)
# CPUs this process may use; OMP_NUM_THREADS would lower nproc's answer (Dask sets it to 1
# in the environment of a process that started a LocalCluster).
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)

conf=$scratch/slurm.conf
run=$scratch/run
munge_dir=$scratch/munge
munge_socket=$munge_dir/munge.socket
export SLURM_CONF=$conf

log() { echo "slurm-single-node: $*" >&2; }

need_tools() {
    local missing=()
    for tool in slurmctld slurmd sinfo squeue scancel sbatch munged; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "missing: ${missing[*]}"
        log "install: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
        exit 3
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "must run as root (munged runs as user munge, slurmd as root)"
        exit 3
    fi
    if ! id munge >/dev/null 2>&1; then
        log "user 'munge' does not exist (is the munge package installed?)"
        exit 3
    fi
}

# alive PIDFILE: the PID in PIDFILE names a live process
alive() {
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

any_alive() {
    local pid
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}

# stop_pids PIDFILE...: TERM them all, wait up to 10 s, then KILL what is left
stop_pids() {
    local pidfile pid pids=()
    for pidfile in "$@"; do
        alive "$pidfile" && pids+=("$(cat "$pidfile")")
    done
    if [[ ${#pids[@]} -gt 0 ]]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for _ in $(seq 100); do
            any_alive "${pids[@]}" || break
            sleep 0.1
        done
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                log "pid $pid ignored TERM for 10 s: killing"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
    rm -f "$@"
}

running() {
    alive "$munge_dir/munged.pid" && alive "$run/slurmctld.pid" && alive "$run/slurmd.pid"
}

write_conf() {
    local mem_mib
    # Without RealMemory every --mem request is rejected; stay a little under the total so
    # slurmd never finds less memory than configured (which would drain the node).
    mem_mib=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.95 }' /proc/meminfo)
    cat >"$conf" <<EOF
# Written by deploy/slurm-single-node.sh: a single node on 127.0.0.1
ClusterName=ratag
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket
StateSaveLocation=$scratch/state
SlurmdSpoolDir=$scratch/spool
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$scratch/log/slurmctld.log
SlurmdLogFile=$scratch/log/slurmd.log
# No systemd or cgroups here: track processes by parent PID, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

ensure_munge_key() {
    if [[ ! -s $munge_key ]]; then
        log "creating MUNGE key $munge_key"
        install -d -o munge -g munge -m 0700 "$(dirname "$munge_key")"
        (umask 077 && dd if=/dev/urandom of="$munge_key" bs=1 count=1024 status=none)
        chown munge:munge "$munge_key"
        chmod 0400 "$munge_key"
    fi
}

start_munged() {
    # munged refuses sockets and logs in directories others may write to: a private,
    # munge-owned directory that everyone may enter (clients connect to the socket).
    install -d -o munge -g munge -m 0755 "$munge_dir"
    rm -f "$munge_socket" "$munge_socket.lock"
    runuser -u munge -- munged --socket="$munge_socket" --key-file="$munge_key" \
        --pid-file="$munge_dir/munged.pid" --log-file="$munge_dir/munged.log" \
        --seed-file="$munge_dir/munged.seed"
    for _ in $(seq 50); do
        [[ -S $munge_socket ]] && return 0
        sleep 0.1
    done
    log "munged did not create $munge_socket; see $munge_dir/munged.log"
    exit 1
}

# wait_idle SECONDS: wait until sinfo reports the node idle (or mixed/allocated: in use)
wait_idle() {
    local state=""
    for _ in $(seq $(($1 * 5))); do
        state=$(sinfo -h -N -n "$host" -o %t 2>/dev/null | head -n1 || true)
        case $state in
            idle | mix | alloc) return 0 ;;
        esac
        sleep 0.2
    done
    log "node $host is not idle after $1 s (state: '${state:-no answer}'); logs in $scratch/log"
    return 1
}

do_stop() {
    if alive "$run/slurmctld.pid"; then
        # Cancel jobs first so no job step outlives its slurmd.
        scancel --full --quiet --partition=debug 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $(squeue -h 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    stop_pids "$run/slurmd.pid" "$run/slurmctld.pid"
    stop_pids "$munge_dir/munged.pid"  # last: the daemons authenticate through it
    rm -f "$munge_socket" "$munge_socket.lock"
}

do_start() {
    if running; then
        wait_idle 30 || exit 1
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    do_stop  # leftovers of a half-started or crashed instance
    mkdir -p "$scratch"
    # munged must reach its socket directory through every parent.
    chmod 0755 "$scratch"
    mkdir -p "$scratch/state" "$scratch/spool" "$scratch/log" "$run"
    rm -rf "${scratch:?}/state/"*  # a fresh start: no jobs from an earlier life
    write_conf
    ensure_munge_key
    start_munged
    slurmctld
    slurmd -N "$host"
    if ! wait_idle 30; then
        do_stop
        exit 1
    fi
    log "single-node SLURM up: node $host, $cpus CPUs, scratch $scratch"
    echo "export SLURM_CONF=$conf"
}

do_status() {
    if running; then
        sinfo -N -l
        squeue
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    log "not running (scratch $scratch)"
    return 1
}

case $action in
    start) need_tools; do_start ;;
    stop) need_tools; do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
