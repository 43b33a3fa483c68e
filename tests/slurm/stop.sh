#!/usr/bin/env bash
# Stop the cluster started by tests/slurm/start.sh: daemons by the PIDs in their pid files only.
set -uo pipefail
STATE=${TVTS_SLURM_STATE:-/var/tmp/tvts-slurm}
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" /run/munge/munged.pid; do
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done
echo "stop.sh: Slurm stopped"
