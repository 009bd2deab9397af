#!/usr/bin/env bash
# A single-node SLURM on this machine (controller + node + accounting), for trying the sweep
# path on a workstation and for CI. Everything listens on 127.0.0.1 only.
#
#   bash slurm/local/cluster.sh up        # install (if needed) + start; idempotent
#   eval "$(bash slurm/local/cluster.sh env)"   # SLURM_CONF for sinfo / sbatch / hydra
#   bash slurm/local/cluster.sh status    # daemons, node state, log files (exit 0 = usable)
#   bash slurm/local/cluster.sh stop      # cancel jobs, stop the daemons by their PID files
#
# Commands: install | start | up | stop | restart | status | env | purge (stop + delete state).
# Needs root (or sudo) for install and for the daemons: slurmd runs jobs as the submitting user.
#
# Debian packages (Slurm 22.05 on bookworm): slurmctld slurmd slurm-client slurmdbd munge,
# mariadb-server-core + mariadb-client-core (MariaDB only for slurmdbd, so that submitit's
# `sacct` polls work). Daemons: munged (as user munge), mariadbd (as user mysql), slurmdbd,
# slurmctld and slurmd (as root), each with its PID file under the state directory.
#
# Requeue: a requeued job waits `cred_expire` (default 120 s) before it may start again, then for
# the next scheduling pass (backfill every 30 s by default). Here cred_expire=10 and bf_interval=2:
# a job requeued by submitit at its time limit runs again ~15 s later. slurmctld checks time limits
# (and sends `--signal` warnings) every 30 s, so a warning may come up to 30 s early.
#
# Environment:
#   GOPD_SLURM_HOME       state directory owned by this script (default /tmp/gopd-slurm):
#                         etc/ (slurm.conf, slurmdbd.conf), log/, run/ (PID files), spool/,
#                         munge/ (key, socket), db/ (MariaDB data, socket, log)
#   GOPD_SLURM_PORT       first of four loopback ports (default 16817): slurmctld, slurmd,
#                         slurmdbd, MariaDB. Non-standard, so a real SLURM/MySQL is not disturbed.
#   GOPD_SLURM_CPUS       CPUs of the node (default: nproc)
#   GOPD_SLURM_MEM_MB     schedulable memory of the node (default: 80% of MemTotal)
set -euo pipefail

H=${GOPD_SLURM_HOME:-/tmp/gopd-slurm}
PORT=${GOPD_SLURM_PORT:-16817}
CTLD_PORT=$PORT
SLURMD_PORT=$((PORT + 1))
DBD_PORT=$((PORT + 2))
DB_PORT=$((PORT + 3))
CLUSTER=gopd-local
NODE=localhost
PARTITION=debug
CONF=$H/etc/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core mariadb-client-core)
BINARIES=(slurmctld slurmd slurmdbd sbatch srun sinfo squeue sacct sacctmgr scontrol scancel munged mungekey
          mariadbd mariadb-install-db mariadb)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; stopped in reverse

die() { echo "error: $*" >&2; exit 1; }
log() { echo "[gopd-slurm] $*" >&2; }

as_root() {  # re-run this script as root (through sudo) when needed
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "'$1' needs root (or sudo)"
        exec sudo env GOPD_SLURM_HOME="$H" GOPD_SLURM_PORT="$PORT" ${GOPD_SLURM_CPUS:+GOPD_SLURM_CPUS=$GOPD_SLURM_CPUS} \
            ${GOPD_SLURM_MEM_MB:+GOPD_SLURM_MEM_MB=$GOPD_SLURM_MEM_MB} bash "$0" "$@"
    fi
}

# ---------------------------------------------------------------------------------- install
missing_binaries() {
    local b out=()
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || out+=("$b")
    done
    echo "${out[@]:-}"
}

cmd_install() {
    if [ -z "$(missing_binaries)" ]; then
        log "packages already installed ($(slurmctld -V 2>/dev/null || echo slurm))"
        return 0
    fi
    command -v apt-get >/dev/null || die "no apt-get: install ${PACKAGES[*]} with your package manager"
    # Keep the packages' own services (system munge, slurmctld, MariaDB on :3306) from starting:
    # this script runs its own instances from its own state directory.
    local policy=/usr/sbin/policy-rc.d added=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
    fi
    log "installing ${PACKAGES[*]} (apt-get)"
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${PACKAGES[@]}"; } >"/tmp/gopd-slurm-apt.log" 2>&1 || rc=$?
    [ -n "$added" ] && rm -f "$policy"
    [ "$rc" = 0 ] || { tail -20 /tmp/gopd-slurm-apt.log >&2; die "apt-get failed (log: /tmp/gopd-slurm-apt.log)"; }
    [ -z "$(missing_binaries)" ] || die "still missing after install: $(missing_binaries)"
    log "installed: $(slurmctld -V)"
}

# ---------------------------------------------------------------------------------- state
pidfile() {
    case $1 in
        munged) echo "$H/munge/munged.pid" ;;
        mariadbd) echo "$H/db/mariadbd.pid" ;;
        *) echo "$H/run/$1.pid" ;;
    esac
}

logfile() {
    case $1 in
        munged) echo "$H/munge/munged.log" ;;
        mariadbd) echo "$H/db/mariadbd.log" ;;
        *) echo "$H/log/$1.log" ;;
    esac
}

pid_of() {  # the daemon's PID if its PID file names a live process of that program
    local f pid
    f=$(pidfile "$1")
    [ -r "$f" ] || return 1
    pid=$(tr -dc 0-9 <"$f")
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    case $(cat "/proc/$pid/comm") in "$1"* | mysqld*) echo "$pid" ;; *) return 1 ;; esac
}

ensure_user() {  # system user for a daemon (the munge package creates munge; MariaDB's core package does not)
    getent passwd "$1" >/dev/null && return 0
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

write_configs() {
    local cpus mem
    cpus=${GOPD_SLURM_CPUS:-$(nproc)}
    mem=${GOPD_SLURM_MEM_MB:-$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)}
    mkdir -p "$H"/{etc,log,run,spool/ctld,spool/d}
    chmod 755 "$H" "$H/etc" "$H/log" "$H/run"
    if [ ! -s "$H/etc/db.pass" ]; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$H/etc/db.pass")
    fi
    local before=
    [ -r "$CONF" ] && before=$(cat "$CONF")
    cat >"$CONF" <<EOF
# Written by slurm/local/cluster.sh (regenerated at every start): one node on 127.0.0.1.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$H/munge/munge.socket,cred_expire=10
CredType=cred/munge
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$H/spool/ctld
SlurmdSpoolDir=$H/spool/d
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$(logfile slurmctld)
SlurmdLogFile=$(logfile slurmd)
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$H/munge/munge.socket
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 644 "$CONF"
    [ "$(cat "$CONF")" = "$before" ] || CONF_CHANGED=1
    (umask 077 && cat >"$H/etc/slurmdbd.conf" <<EOF
# Written by slurm/local/cluster.sh: accounting for sacct, MariaDB on 127.0.0.1:$DB_PORT.
AuthType=auth/munge
AuthInfo=socket=$H/munge/munge.socket
DbdHost=$NODE
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$(logfile slurmdbd)
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$H/etc/db.pass")
StorageLoc=slurm_acct_db
EOF
    )
}

# ---------------------------------------------------------------------------------- daemons
fail_start() {
    local d=$1
    echo "error: $d did not start. Its log: $(logfile "$d")" >&2
    [ -r "$(logfile "$d")" ] && tail -15 "$(logfile "$d")" | sed 's/^/    /' >&2
    echo "All logs: $H/log/, $H/munge/munged.log, $H/db/mariadbd.log" >&2
    exit 1
}

wait_for() {  # wait_for SECONDS DAEMON COMMAND...: poll COMMAND until it succeeds
    local deadline=$((SECONDS + $1)) d=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail_start "$d"
        sleep 0.2
    done
}

start_munged() {
    ensure_user munge
    local M=$H/munge
    mkdir -p "$M" && chown -R munge:munge "$M" && chmod 755 "$M"
    if [ ! -s "$M/munge.key" ]; then
        mungekey --create --keyfile="$M/munge.key" --force >/dev/null 2>&1 \
            || dd if=/dev/urandom of="$M/munge.key" bs=1024 count=1 status=none
        chown munge:munge "$M/munge.key" && chmod 400 "$M/munge.key"
    fi
    runuser -u munge -- munged --key-file="$M/munge.key" --socket="$M/munge.socket" \
        --pid-file="$(pidfile munged)" --log-file="$(logfile munged)" --seed-file="$M/munged.seed" \
        >>"$H/log/start.log" 2>&1 || fail_start munged
    wait_for 10 munged munge -S "$M/munge.socket" -n
}

db() { mariadb --no-defaults -S "$H/db/mysqld.sock" -u root "$@"; }

start_mariadbd() {
    ensure_user mysql
    local D=$H/db
    mkdir -p "$D" && chown -R mysql:mysql "$D" && chmod 750 "$D"  # -R: the uid may differ from an earlier install
    if [ ! -d "$D/data/mysql" ]; then
        log "initialising the accounting database in $D/data"
        mariadb-install-db --no-defaults --user=mysql --datadir="$D/data" --auth-root-authentication-method=socket \
            --skip-test-db >"$D/install-db.log" 2>&1 || { cat "$D/install-db.log" >&2; die "mariadb-install-db failed"; }
    fi
    setsid mariadbd --no-defaults --user=mysql --datadir="$D/data" --socket="$D/mysqld.sock" \
        --pid-file="$(pidfile mariadbd)" --log-error="$(logfile mariadbd)" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --skip-name-resolve --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        --performance-schema=OFF </dev/null >>"$H/log/start.log" 2>&1 &
    wait_for 60 mariadbd db -e "SELECT 1"
    db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
           CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$H/etc/db.pass")';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail_start mariadbd
}

start_slurmdbd() {
    SLURM_CONF=$CONF slurmdbd >>"$H/log/start.log" 2>&1 || fail_start slurmdbd
    wait_for 60 slurmdbd env SLURM_CONF="$CONF" sacctmgr -n -P show cluster
    if [ -z "$(SLURM_CONF=$CONF sacctmgr -n -P show cluster format=cluster | grep -x "$CLUSTER")" ]; then
        SLURM_CONF=$CONF sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurmctld() {
    slurmctld -f "$CONF" >>"$H/log/start.log" 2>&1 || fail_start slurmctld
    wait_for 30 slurmctld env SLURM_CONF="$CONF" scontrol ping
}

start_slurmd() {
    slurmd -f "$CONF" -N "$NODE" >>"$H/log/start.log" 2>&1 || fail_start slurmd
}

check_loopback() {  # every socket our daemons listen on must be on 127.0.0.0/8
    command -v ss >/dev/null || return 0
    local d pid bad=
    for d in "${DAEMONS[@]}"; do
        pid=$(pid_of "$d") || continue
        bad+=$(ss -H -ltnp 2>/dev/null | grep "pid=$pid," | awk '{print $4}' | grep -v '^127\.' | sed "s/^/ $d:/" || true)
    done
    if [ -n "$bad" ]; then
        echo "error: listening beyond loopback:$bad; stopping (this cluster is for 127.0.0.1 only:" \
            "make the host name resolve to 127.0.0.1, or report this)" >&2
        cmd_stop
        exit 1
    fi
}

node_state() { SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }

cmd_start() {
    [ -z "$(missing_binaries)" ] || die "SLURM is not installed: bash $0 install  (missing: $(missing_binaries))"
    write_configs
    local d started=0
    for d in "${DAEMONS[@]}"; do
        if pid_of "$d" >/dev/null; then
            if [ "$d" = slurmctld ] && [ -n "${CONF_CHANGED:-}" ]; then  # e.g. new knobs from a newer checkout
                log "slurm.conf changed: scontrol reconfigure"
                SLURM_CONF=$CONF scontrol reconfigure || log "reconfigure failed: bash $0 restart"
            fi
            continue
        fi
        started=1
        log "starting $d"
        "start_$d"
    done
    # the node: idle (or busy) within a minute; a node left down by an earlier run is resumed
    local deadline=$((SECONDS + 60)) st
    while :; do
        st=$(node_state)
        case $st in
            idle* | mixed* | allocated* | completing*) break ;;
            down* | drain*) SLURM_CONF=$CONF scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        [ $SECONDS -lt $deadline ] || fail_start slurmd
        sleep 0.3
    done
    wait_for 30 slurmdbd env SLURM_CONF="$CONF" sacct -n -X -j 1
    check_loopback
    [ "$started" = 1 ] && log "up: node $NODE ($st), partition $PARTITION, accounting on; state in $H" \
        || log "already running (node $st); state in $H"
    log "in your shell: eval \"\$(bash $0 env)\"   (exports SLURM_CONF=$CONF)"
}

cmd_stop() {
    if [ ! -d "$H" ]; then log "nothing to stop ($H does not exist)"; return 0; fi
    if pid_of slurmctld >/dev/null; then  # jobs would outlive slurmd otherwise
        SLURM_CONF=$CONF squeue -h -o %A 2>/dev/null | xargs -r env SLURM_CONF="$CONF" scancel 2>/dev/null || true
    fi
    local i d pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        d=${DAEMONS[$i]}
        pid=$(pid_of "$d") || continue
        log "stopping $d ($pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then log "$d ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
        rm -f "$(pidfile "$d")"
    done
    log "stopped (state kept in $H; 'purge' deletes it)"
}

cmd_status() {
    local d pid ok=0
    echo "state: $H   SLURM_CONF=$CONF"
    for d in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$d"); then
            printf '  %-10s running (pid %s)  log %s\n' "$d" "$pid" "$(logfile "$d")"
        else
            printf '  %-10s stopped              log %s\n' "$d" "$(logfile "$d")"
            ok=1
        fi
    done
    if [ "$ok" = 0 ]; then
        echo "  node $NODE: $(node_state || true)"
        SLURM_CONF=$CONF sacct -n -X -j 1 >/dev/null 2>&1 && echo "  accounting: ok" || { echo "  accounting: FAILING"; ok=1; }
    fi
    [ "$ok" = 0 ] || echo "not running: bash $0 up"
    return $ok
}

case ${1:-} in
    install) [ -z "$(missing_binaries)" ] || as_root "$1" ;;
    start | up | stop | restart | purge) as_root "$1" ;;
esac
case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    up) cmd_install && cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    purge) cmd_stop && rm -rf "$H" && log "deleted $H" ;;
    help | -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
