# Shared by mesh-up.sh and mesh-down.sh (sourced, with $root set): where the demo mesh lives,
# the command line of each node's program, and the record of the PIDs mesh-up started.
# shellcheck shell=bash disable=SC2034,SC2154

bin=$root/target/debug
mesh=${MESHRUN_MESH_DIR:-$root/.meshrun}
pids_file=$mesh/pids
nodes=(control hop exec1 exec2)

# read_cmd NAME ARRAY: the exact command line of NAME's program, into ARRAY.
read_cmd() {
  local -n out=$2
  if [ "$1" = control ]; then
    out=("$bin/meshrun-coordinator" serve --config "$mesh/control/coordinator.toml")
  else
    out=("$bin/meshrun-agent" --config "$mesh/$1/agent.toml" run)
  fi
}

log_name() { if [ "$1" = control ]; then echo coordinator.log; else echo run.log; fi; }

# The receptor each node's supervisor started, and that receptor's config.
receptor_pid_file() {
  if [ "$1" = control ]; then echo "$mesh/control/coordinator/receptor.pid"; else echo "$mesh/$1/state/receptor.pid"; fi
}
receptor_conf() { echo "$mesh/$1/receptor.conf"; }

# alive PID: the process exists and is not a zombie.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  case ${stat%% *} in Z|X) return 1 ;; *) return 0 ;; esac
}

# cmdline_is PID ARGS...: PID is alive and runs exactly ARGS.
cmdline_is() {
  local pid=$1
  shift
  alive "$pid" || return 1
  [ "$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null)" = "$(printf '%s\n' "$@")" ]
}

recorded_pid() { awk -v n="$1" '$1 == n { p = $2 } END { if (p) print p }' "$pids_file" 2>/dev/null; }

# running_pid NAME: prints the recorded PID of NAME's program if that process still runs it.
running_pid() {
  local pid
  pid=$(recorded_pid "$1")
  [ -n "$pid" ] || return 1
  local -a cmd
  read_cmd "$1" cmd
  cmdline_is "$pid" "${cmd[@]}" || return 1
  echo "$pid"
}

record_pid() {
  { grep -v "^$1 " "$pids_file" 2>/dev/null || true; echo "$1 $2"; } > "$pids_file.tmp"
  mv "$pids_file.tmp" "$pids_file"
}

# leftover_receptor NAME: prints the PID of the receptor NAME's supervisor recorded, if that
# process still runs `<receptor> -c <NAME's receptor.conf>`.
leftover_receptor() {
  local pid
  pid=$(cat "$(receptor_pid_file "$1")" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  local -a args
  mapfile -t args < <(tr '\0' '\n' < "/proc/$pid/cmdline")
  [ "${#args[@]}" -eq 3 ] && [ "${args[0]##*/}" = receptor ] && [ "${args[1]}" = -c ] \
    && [ "${args[2]}" = "$(receptor_conf "$1")" ] || return 1
  echo "$pid"
}

# stop_pid PID [GRACE]: SIGTERM, then SIGKILL after GRACE seconds (default 10) if still alive.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 5; i++)); do alive "$pid" || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

# receptor_pid NAME: the PID of NAME's receptor as its supervisor recorded it, if it runs.
receptor_pid() { leftover_receptor "$1"; }
