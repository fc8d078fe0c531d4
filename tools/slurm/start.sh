#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, for tests and for trying the SLURM profile.
#
#   sudo bash tools/slurm/start.sh        # then: snakemake --profile tests/fixtures/slurm-profile ...
#   sudo bash tools/slurm/stop.sh         # ALWAYS: stops exactly what start.sh started
#
# What it does (Debian/Ubuntu, as root):
#   - installs `slurm-wlm munge` with apt-get if they are missing (`apt-get update` only then);
#   - writes /etc/slurm/slurm.conf and gres.conf (the job-step plugin needs the config there:
#     SLURM_CONF does not reach the inner srun), marked as ours so that stop.sh removes them again;
#   - fakes FAKE_GPUS GPUs as GRES backed by plain files, so `--gpus=1` / `--gres=gpu:1` are accepted
#     (CUDA_VISIBLE_DEVICES stays unset, torch runs on CPU);
#   - starts munged (unless one already runs), slurmctld and slurmd, records their pids in
#     $SLURM_LOCAL/daemons and waits until the node is idle;
#   - no accounting (no slurmdbd): use `slurm-status-command: squeue` in the profile.
#
# Environment: SLURM_LOCAL (state, logs, pids; default <repo>/.slurm-local), FAKE_GPUS (default 2),
# SLURM_PARTITION (default debug), SLURM_NO_INSTALL=1 (fail instead of installing).
# Exit status: 0 running; 2 refused (not root, or a SLURM config/cluster that is not ours exists);
# 3 the packages are missing and cannot be installed; 1 any other failure (everything started is
# stopped again before exiting).
#
# Trap: while /etc/slurm/slurm.conf exists and slurmctld is down, EVERY snakemake call takes ~10 s
# longer (the SLURM plugin runs `scontrol show config` at import). Never leave the config behind.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
B=${SLURM_LOCAL:-$REPO/.slurm-local}
FAKE_GPUS=${FAKE_GPUS:-2}
PARTITION=${SLURM_PARTITION:-debug}
E=/etc/slurm
MARK="# written by overrefusal tools/slurm/start.sh (state: $B); tools/slurm/stop.sh removes it"
PACKAGES="slurm-wlm munge"
NEED_BINS="slurmctld slurmd sbatch squeue sinfo scontrol munged mungekey"

say() { echo "start.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then say "must run as root (it installs packages and writes /etc/slurm)"; exit 2; fi
if ! [[ "$FAKE_GPUS" =~ ^[0-9]+$ ]]; then say "FAKE_GPUS must be a number, got '$FAKE_GPUS'"; exit 2; fi

# A previous start.sh run with this state dir that was never stopped: stop it first.
if [ -s "$B/daemons" ]; then
  say "stale state in $B/daemons: stopping it first"
  SLURM_LOCAL="$B" bash "$HERE/stop.sh" || true
fi
if [ -e "$E/slurm.conf" ] && ! grep -qxF "$MARK" "$E/slurm.conf"; then
  # Written by start.sh for another state dir: stale if none of its recorded daemons still runs.
  other=$(sed -n 's/^# written by overrefusal tools\/slurm\/start.sh (state: \(.*\)); tools\/slurm\/stop.sh removes it$/\1/p' \
          "$E/slurm.conf" | head -n 1)
  live=""
  if [ -n "$other" ] && [ -s "$other/daemons" ]; then
    while read -r name pid; do
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && live="$live $name:$pid"
    done < "$other/daemons"
  fi
  if [ -n "$other" ] && [ -z "$live" ]; then
    say "removing the stale config of a stopped cluster (state: $other)"
    SLURM_LOCAL="$other" bash "$HERE/stop.sh" || true
  else
    say "$E/slurm.conf is in use by another cluster (${other:-not written by start.sh}${live:+; running:$live}): refusing"
    exit 2
  fi
fi

# ---- packages ---------------------------------------------------------------------------------
missing=0
for b in $NEED_BINS; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing=1
done
if [ "$missing" = 1 ]; then
  if [ "${SLURM_NO_INSTALL:-0}" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "SLURM/munge are not installed and cannot be installed here (apt-get missing or SLURM_NO_INSTALL=1)"
    exit 3
  fi
  say "installing $PACKAGES with apt-get"
  # Keep package scripts from starting daemons we would not own (restored afterwards).
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES; } \
    >"${TMPDIR:-/tmp}/slurm-apt.log" 2>&1 || rc=$?
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ "$rc" != 0 ]; then
    say "apt-get failed (status $rc); last lines of ${TMPDIR:-/tmp}/slurm-apt.log:"
    tail -n 15 "${TMPDIR:-/tmp}/slurm-apt.log" >&2
    exit 3
  fi
fi

# ---- from here on, a failure stops whatever was started -----------------------------------------
mkdir -p "$B"/{state,spool,log}
: > "$B/daemons"
ok=0
cleanup() { if [ "$ok" != 1 ]; then say "start failed: stopping what was started"; SLURM_LOCAL="$B" bash "$HERE/stop.sh" >&2 || true; fi; }
trap cleanup EXIT

record() { echo "$1 $2" >> "$B/daemons"; }
wait_pidfile() {  # wait_pidfile FILE NAME -> echo pid of a live process NAME
  local f=$1 name=$2 pid
  for _ in $(seq 100); do
    if [ -s "$f" ]; then
      pid=$(tr -dc 0-9 < "$f")
      if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then echo "$pid"; return 0; fi
    fi
    sleep 0.1
  done
  return 1
}
fail_with_log() { say "$1"; for f in "$B"/log/*; do [ -s "$f" ] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }; done; exit 1; }

# ---- munge -------------------------------------------------------------------------------------
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
mpid=$( { tr -dc 0-9 < /run/munge/munged.pid; } 2>/dev/null || true)
if [ -n "$mpid" ] && [ "$(cat "/proc/$mpid/comm" 2>/dev/null)" = munged ]; then
  say "munged already running (pid $mpid, not ours): using it"
else
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged </dev/null >"$B/log/munged.out" 2>&1 || fail_with_log "munged did not start"
  mpid=$(wait_pidfile /run/munge/munged.pid munged) || fail_with_log "munged wrote no pid file"
  record munged "$mpid"
fi

# ---- config ------------------------------------------------------------------------------------
mkdir -p "$E"
mem_mb=$(awk '/MemTotal/{print int($2/1024*0.85)}' /proc/meminfo)
node="NodeName=localhost CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN"
gres_types=""
rm -f "$E/gres.conf"
if [ "$FAKE_GPUS" -gt 0 ]; then
  gres_types="GresTypes=gpu"
  node="$node Gres=gpu:$FAKE_GPUS"
  for i in $(seq 0 $((FAKE_GPUS - 1))); do : > "$B/fakegpu$i"; done
  # Plain files as device files: slurmd logs "is not a valid character or block device" and still
  # registers gpu:N. Without File= the node goes INVAL ("count reported lower than configured").
  printf '%s\nAutoDetect=off\nNodeName=localhost Name=gpu File=%s/fakegpu[0-%d]\n' \
    "$MARK" "$B" $((FAKE_GPUS - 1)) > "$E/gres.conf"
fi
cat > "$E/slurm.conf" <<CONF
$MARK
ClusterName=overrefusal-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# The profile's squeue status command sees finished jobs only while MinJobAge lasts (keep >= 300).
MinJobAge=300
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool
SlurmctldPidFile=$B/slurmctld.pid
SlurmdPidFile=$B/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
$gres_types
$node
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

# ---- daemons -----------------------------------------------------------------------------------
rm -f "$B/slurmctld.pid" "$B/slurmd.pid"
# -c: start from a clean slate (no jobs recovered from an earlier run's state in $B/state).
/usr/sbin/slurmctld -c </dev/null >"$B/log/slurmctld.out" 2>&1 || fail_with_log "slurmctld did not start"
pid=$(wait_pidfile "$B/slurmctld.pid" slurmctld) || fail_with_log "slurmctld wrote no pid file"
record slurmctld "$pid"
/usr/sbin/slurmd -N localhost </dev/null >"$B/log/slurmd.out" 2>&1 || fail_with_log "slurmd did not start"
pid=$(wait_pidfile "$B/slurmd.pid" slurmd) || fail_with_log "slurmd wrote no pid file"
record slurmd "$pid"

state=""
for _ in $(seq 150); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "$state" = idle ] || fail_with_log "node localhost is '${state:-unreachable}', not idle, after 30 s"

ok=1
say "cluster up: partition $PARTITION, $(nproc) CPUs, $mem_mb MB, $FAKE_GPUS fake GPU(s); daemons: $(tr '\n' ' ' < "$B/daemons")"
