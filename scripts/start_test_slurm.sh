#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine, for testing the Slurm profile:
# munged, MariaDB, slurmdbd (so that sacct has job records), slurmctld and slurmd.
#
# Every daemon runs inside a private network namespace that has only a loopback
# interface. So nothing listens on the machine's real network, although slurmctld cannot
# be bound to one address by its configuration, and the default ports cannot clash with
# other services. Clients must enter that namespace too: run them through
#
#   scripts/slurm_test_env.sh sbatch ...      (or: nsenter --net=$STATE_DIR/netns ...)
#
# All configuration, state and logs live in one folder, $QUANT_EVAL_SLURM_DIR
# (default /tmp/quant-eval-slurm); nothing under /etc is changed. Running the script
# again while the cluster is up does nothing. scripts/stop_test_slurm.sh stops it.
#
# Usage (as root): scripts/start_test_slurm.sh
# Needs the Debian 12 packages slurm-wlm, slurmdbd, munge and mariadb-server
# (scripts/install_system_packages.sh installs them) and util-linux's unshare/nsenter.
set -euo pipefail

STATE_DIR=${QUANT_EVAL_SLURM_DIR:-/tmp/quant-eval-slurm}
CLUSTER_NAME=quant-eval-test
ACCOUNT=quant-eval
NODE_NAME=$(hostname -s)
DB_PORT=3306
DB_PASSWORD=quant-eval-test

if [ "$(id -u)" -ne 0 ]; then
    echo "error: the test Slurm cluster runs its daemons as root; rerun this script as root" >&2
    exit 1
fi
for command in unshare nsenter munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr; do
    if ! command -v "$command" > /dev/null; then
        echo "error: $command not found; install the Slurm test packages with" \
            "scripts/install_system_packages.sh" >&2
        exit 1
    fi
done

mkdir -p "$STATE_DIR"
chmod 700 "$STATE_DIR"
cd "$STATE_DIR"
mkdir -p log spool/slurmctld spool/slurmd mysql

in_namespace() {
    nsenter --net="$STATE_DIR/netns" "$@"
}

is_running() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null
}

wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq "$seconds"); do
        if "$@" > /dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    echo "error: $what did not come up within $seconds s; see the logs in $STATE_DIR/log" >&2
    exit 1
}

# The network namespace is kept alive by a bind mount on the file netns.
if ! mountpoint -q netns 2> /dev/null; then
    touch netns
    unshare --net="$STATE_DIR/netns" true
fi
in_namespace ip link set lo up
# The daemons look up their listening address with getaddrinfo(AI_ADDRCONFIG), which
# finds nothing while 127.0.0.1 is the only IPv4 address. A second address on the
# loopback interface, from the range reserved for documentation (RFC 5737), fixes that
# without reaching any network.
if ! in_namespace ip -4 -o addr show dev lo | grep -q "192.0.2.1/32"; then
    in_namespace ip addr add 192.0.2.1/32 dev lo
fi

# munge: a key of our own, on munge's default socket, because slurmd asks slurmctld for
# its configuration (see SlurmctldParameters below) before it can read AuthInfo.
if [ ! -s munge.key ]; then
    dd if=/dev/urandom of=munge.key bs=1024 count=1 status=none
    chmod 400 munge.key
fi
if ! is_running munged.pid; then
    mkdir -p /run/munge
    munged --key-file="$STATE_DIR/munge.key" \
        --pid-file="$STATE_DIR/munged.pid" --log-file="$STATE_DIR/log/munged.log" \
        --seed-file="$STATE_DIR/munged.seed"
fi

# MariaDB on the namespace's loopback, for slurmdbd.
if [ ! -d mysql/mysql ]; then
    mariadb-install-db --user=root --datadir="$STATE_DIR/mysql" --auth-root-authentication-method=socket \
        > log/mariadb-install.log 2>&1
fi
if ! is_running mariadb.pid; then
    nsenter --net="$STATE_DIR/netns" mariadbd --no-defaults --user=root --datadir="$STATE_DIR/mysql" \
        --socket="$STATE_DIR/mysql.sock" --pid-file="$STATE_DIR/mariadb.pid" \
        --bind-address=127.0.0.1 --port=$DB_PORT --log-error="$STATE_DIR/log/mariadb.log" \
        --innodb-buffer-pool-size=64M > /dev/null 2>&1 &
    wait_for MariaDB 120 mariadb --no-defaults --socket="$STATE_DIR/mysql.sock" -e "SELECT 1"
fi
mariadb --no-defaults --socket="$STATE_DIR/mysql.sock" <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

cat > slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE_DIR/slurmdbd.pid
LogFile=$STATE_DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
chmod 600 slurmdbd.conf

# One node with every CPU of this machine and 90 % of its memory, one partition.
cpus=$(nproc)
memory_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat > slurm.conf <<EOF
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE_NAME(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/spool/slurmctld
SlurmdSpoolDir=$STATE_DIR/spool/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
# A container has no cgroup hierarchy that Slurm may manage: track processes through
# /proc and bind no tasks to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
MpiDefault=none
# slurmd fetches this file from slurmctld and caches it, and slurmd links the cache at
# /run/slurm/conf, where clients inside jobs find it without SLURM_CONF (the Snakemake
# jobstep executor removes SLURM_* variables, SLURM_CONF included, before its srun).
SlurmctldParameters=enable_configless
NodeName=$NODE_NAME NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF=$STATE_DIR/slurm.conf

if ! is_running slurmdbd.pid; then
    in_namespace slurmdbd
    wait_for slurmdbd 120 in_namespace sacctmgr --immediate list cluster
fi
if ! in_namespace sacctmgr --noheader --parsable2 list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
    in_namespace sacctmgr --immediate add cluster "$CLUSTER_NAME" > /dev/null
fi
if ! is_running slurmctld.pid; then
    in_namespace slurmctld
    wait_for slurmctld 120 in_namespace scontrol ping
fi
if ! is_running slurmd.pid; then
    env -u SLURM_CONF nsenter --net="$STATE_DIR/netns" slurmd --conf-server 127.0.0.1
fi
wait_for "node $NODE_NAME" 120 bash -c \
    "nsenter --net='$STATE_DIR/netns' sinfo --noheader --nodes='$NODE_NAME' --format=%t | grep -qx idle"

# An account that root may charge, so that jobs can name an account as on a site cluster.
if ! in_namespace sacctmgr --noheader --parsable2 list account format=account | grep -qx "$ACCOUNT"; then
    in_namespace sacctmgr --immediate add account "$ACCOUNT" cluster="$CLUSTER_NAME" \
        description="quant-eval tests" > /dev/null
fi
if [ -z "$(in_namespace sacctmgr --noheader --parsable2 list association user=root account="$ACCOUNT" format=user)" ]; then
    in_namespace sacctmgr --immediate add user root account="$ACCOUNT" > /dev/null
fi

echo "Slurm test cluster $CLUSTER_NAME is up: node $NODE_NAME ($cpus CPUs, $memory_mb MB), partition debug."
echo "Run clients with: scripts/slurm_test_env.sh <command>  (state in $STATE_DIR)"
