#!/usr/bin/env bash
# Stop exactly the daemons tools/slurm/start.sh started (pids in $SLURM_LOCAL/daemons), after
# cancelling the cluster's jobs, then remove the /etc/slurm config files it wrote.
# Idempotent: safe to call twice, or when start.sh failed halfway. Packages stay installed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
B=${SLURM_LOCAL:-$REPO/.slurm-local}
E=/etc/slurm
MARK="# written by overrefusal tools/slurm/start.sh (state: $B); tools/slurm/stop.sh removes it"

say() { echo "stop.sh: $*" >&2; }
alive() { [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }  # alive NAME PID (guards against pid reuse)

if [ -s "$B/daemons" ]; then
  # Cancel every job of this (private) cluster first so no job step outlives slurmd.
  ctld=$(awk '$1 == "slurmctld" {print $2}' "$B/daemons")
  if [ -n "$ctld" ] && alive slurmctld "$ctld" && command -v squeue >/dev/null 2>&1; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      say "cancelling jobs: $(echo $jobs)"
      timeout 10 scancel $jobs 2>/dev/null || true
      for _ in $(seq 50); do [ -z "$(timeout 5 squeue -h -t R,CG -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  # Reverse start order: slurmd, slurmctld, then munged (only if start.sh started it).
  tac "$B/daemons" | while read -r name pid; do
    [ -n "${pid:-}" ] || continue
    if ! alive "$name" "$pid"; then say "$name (pid $pid) already gone"; continue; fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 75); do alive "$name" "$pid" || break; sleep 0.2; done
    if alive "$name" "$pid"; then say "$name (pid $pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null; sleep 0.2; fi
    say "stopped $name (pid $pid)"
  done
  rm -f "$B/daemons"
fi

for f in "$E/slurm.conf" "$E/gres.conf"; do
  [ -e "$f" ] || continue
  if grep -qxF "$MARK" "$f"; then rm -f "$f"; else say "left $f alone: not written by start.sh for $B"; fi
done
[ -e "$E/slurm.conf" ] && exit 1
exit 0
