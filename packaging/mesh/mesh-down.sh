#!/usr/bin/env bash
# `make mesh-down`: stops exactly the processes `make mesh-up` recorded in .meshrun/pids — each
# only while it still runs the command line mesh-up gave it — with SIGTERM, then SIGKILL after a
# grace period. The coordinator and the agents stop their receptors themselves; a receptor whose
# supervisor had to be killed is stopped here (only the one that supervisor recorded). Running
# jobs' detached work runners are left alone, as a supervisor's stop leaves them. Configs, keys,
# ports and databases stay in .meshrun/ for the next mesh-up; remove the folder to start afresh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=packaging/mesh/common.sh
. "$root/packaging/mesh/common.sh"

# The supervisors give receptor 10 s after SIGTERM before they kill it.
grace=${MESHRUN_MESH_DOWN_GRACE:-20}

if [ ! -s "$pids_file" ]; then
  echo "mesh-down: nothing recorded in $pids_file; nothing to stop"
  exit 0
fi

declare -A stopping=()
for name in exec2 exec1 hop control; do
  if pid=$(running_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    stopping[$name]=$pid
    echo "$name: SIGTERM to pid $pid"
  elif [ -n "$(recorded_pid "$name")" ]; then
    echo "$name: pid $(recorded_pid "$name") is no longer running it; left alone"
  fi
done

for ((i = 0; i < grace * 5; i++)); do
  left=0
  for name in "${!stopping[@]}"; do
    if running_pid "$name" > /dev/null; then left=1; fi
  done
  [ $left = 0 ] && break
  sleep 0.2
done

status=0
for name in "${!stopping[@]}"; do
  if pid=$(running_pid "$name"); then
    echo "$name: still running after ${grace} s; SIGKILL to pid $pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
    status=1
  fi
done
for name in "${nodes[@]}"; do
  # A supervisor that was killed (now or earlier) leaves its receptor behind.
  if running_pid "$name" > /dev/null; then continue; fi
  if rpid=$(leftover_receptor "$name"); then
    echo "$name: stopping the receptor its supervisor left (pid $rpid)" >&2
    stop_pid "$rpid"
  fi
done

rm -f "$pids_file"
echo "mesh down (files kept in $mesh)"
exit $status
