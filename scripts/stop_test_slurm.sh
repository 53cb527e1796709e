#!/usr/bin/env bash
# Stop the test Slurm cluster of scripts/start_test_slurm.sh and remove its network
# namespace. Its job records stay in $QUANT_EVAL_SLURM_DIR for the next start; delete that
# folder to start afresh.
#
# Usage (as root): scripts/stop_test_slurm.sh
set -euo pipefail

STATE_DIR=${QUANT_EVAL_SLURM_DIR:-/tmp/quant-eval-slurm}
[ -d "$STATE_DIR" ] || exit 0
cd "$STATE_DIR"

stop() {
    local name=$1 pid
    [ -s "$name.pid" ] || return 0
    pid=$(cat "$name.pid")
    if kill -0 "$pid" 2> /dev/null; then
        kill "$pid"
        for _ in $(seq 30); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2> /dev/null; then
            echo "error: $name (pid $pid) did not stop within 30 s" >&2
            exit 1
        fi
    fi
    rm -f "$name.pid"
}

# Reverse order of start: the node, the controller, accounting, its database, munge.
for name in slurmd slurmctld slurmdbd mariadb munged; do
    stop "$name"
done
if mountpoint -q netns 2> /dev/null; then
    umount netns
fi
# slurmd's link to its cached configuration, when it points into this cluster's folder.
if [ "$(readlink /run/slurm/conf 2> /dev/null)" = "$STATE_DIR/spool/slurmd/conf-cache" ]; then
    rm /run/slurm/conf
fi
echo "Slurm test cluster in $STATE_DIR stopped."
