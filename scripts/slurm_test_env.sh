#!/usr/bin/env bash
# Run a command as a client of the test Slurm cluster of scripts/start_test_slurm.sh:
# inside its network namespace, with SLURM_CONF pointing at its configuration.
#
# Usage: scripts/slurm_test_env.sh sinfo
set -euo pipefail

STATE_DIR=${QUANT_EVAL_SLURM_DIR:-/tmp/quant-eval-slurm}
if [ ! -s "$STATE_DIR/slurm.conf" ]; then
    echo "error: no test Slurm cluster in $STATE_DIR; start one with scripts/start_test_slurm.sh" >&2
    exit 1
fi
export SLURM_CONF=$STATE_DIR/slurm.conf
exec nsenter --net="$STATE_DIR/netns" "$@"
