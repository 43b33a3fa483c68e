#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (Debian 12, Slurm 22.05) for the integration
# tests: munged + slurmctld + slurmd, one partition `debug`, and one fake GPU as a GRES.
# Needs root. Idempotent: a running cluster is left alone. Stop it with tests/slurm/stop.sh.
# Usage: tests/slurm/start.sh [--install]   (--install apt-installs the Debian packages first)
set -euo pipefail

STATE=${TVTS_SLURM_STATE:-/var/tmp/tvts-slurm}
CONF_DIR=/etc/slurm

if [ "${1:-}" = "--install" ] && ! command -v slurmctld >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge
fi
for bin in munged slurmctld slurmd sinfo; do
  command -v "$bin" >/dev/null || { echo "start.sh: $bin not installed (run with --install)" >&2; exit 1; }
done

if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
  echo "start.sh: a Slurm cluster is already up"; exit 0
fi

mkdir -p "$STATE"/{ctld,spool,log} /run/munge "$CONF_DIR"
chown munge:munge /run/munge
[ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
if ! [ -S /run/munge/munge.socket.2 ] || ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
fi

cpus=$(nproc)
# Half the *available* memory ("free" leaves out the page cache, which a busy machine fills).
mem=$(( $(free -m | awk '/^Mem:/ {print $7}') / 2 ))
cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=tvts-ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
echo "NodeName=localhost Name=gpu File=/dev/null" > "$CONF_DIR/gres.conf"

/usr/sbin/slurmctld
/usr/sbin/slurmd -N localhost

for _ in $(seq 1 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
    echo "start.sh: Slurm up: $(sinfo -h -o '%P %D %c cpus %m MB %G %t')"
    exit 0
  fi
  sleep 0.5
done
echo "start.sh: the node did not become idle; logs in $STATE/log" >&2
sinfo >&2 || true
exit 1
