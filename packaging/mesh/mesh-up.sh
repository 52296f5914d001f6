#!/usr/bin/env bash
# `make mesh-up`: the demo mesh, left running in the background —
#   control (meshrun-coordinator, which runs the control node's receptor itself, listening)
#     <- hop (meshrun-agent run, dials control, listens) <- exec1, exec2 (meshrun-agent run, podman)
# — hop, exec1 and exec2 joined with tokens (`meshrun-agent join --no-start`), every link mutual TLS
# — with every config, socket, key, log and database under <repo>/.meshrun/ (git-ignored).
# Writes .meshrun/demo.env (MESHRUN_URL, MESHRUN_TOKEN, PATH; mode 0600) for the meshrun CLI. Every process it starts is
# recorded in .meshrun/pids; `make mesh-down` stops exactly those.
#
# Idempotent: a node whose recorded process still runs (same PID, same command line) is left
# alone; only missing ones are started. Ports are picked once and kept in .meshrun/ports.env.
#
# Environment: MESHRUN_RECEPTOR (the receptor binary; make passes it), MESHRUN_CONTROL_NODE_TYPE
# (control, the default, or hybrid: the control node then runs jobs too), MESHRUN_MESH_DIR
# (default <repo>/.meshrun).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=packaging/mesh/common.sh
. "$root/packaging/mesh/common.sh"

receptor=$(readlink -f "${MESHRUN_RECEPTOR:?set MESHRUN_RECEPTOR to the receptor binary (make mesh-up does)}")
control_type=${MESHRUN_CONTROL_NODE_TYPE:-control}
case $control_type in
  control|hybrid) ;;
  *) echo "MESHRUN_CONTROL_NODE_TYPE must be control or hybrid, not $control_type" >&2; exit 64 ;;
esac
for exe in "$bin/meshrun-coordinator" "$bin/meshrun-agent" "$bin/meshrun" "$receptor"; do
  [ -x "$exe" ] || { echo "$exe is missing: run \`make build receptor\` first" >&2; exit 1; }
done

mkdir -p "$mesh"
chmod 700 "$mesh"
touch "$pids_file"

# Ports: chosen together (so they differ) on the first start, then reused.
if [ ! -s "$mesh/ports.env" ]; then
  python3 - > "$mesh/ports.env.tmp" <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
print("CONTROL_PORT=%d\nHOP_PORT=%d\nAPI_PORT=%d" % tuple(ports))
PY
  mv "$mesh/ports.env.tmp" "$mesh/ports.env"
fi
# shellcheck source=/dev/null
. "$mesh/ports.env"
api=https://127.0.0.1:$API_PORT
# The API serves HTTPS with a certificate from the mesh CA the coordinator makes on first start.
ca_cert=$mesh/control/coordinator/pki/ca.crt

# agent_toml NAME: the [worker] and [podman] part every node's agent.toml shares.
agent_toml() {
  local dir=$mesh/$1
  cat <<TOML
node_id = "$1"
log_file = "$dir/log/agent.log"
state_dir = "$dir/state"

[worker]
mode = "podman"

[podman]
default_image = "localhost/meshrun-ee:latest"
containers_conf = "$root/packaging/podman/containers.conf"
TOML
}

# receptor_section NAME: where that node's receptor keeps its things.
receptor_section() {
  local dir=$mesh/$1
  cat <<TOML

[receptor]
binary = "$receptor"
config = "$dir/receptor.conf"
data_dir = "$dir/receptor-data"
socket = "$dir/receptor.sock"
TOML
}

# write_if_changed FILE: stdin becomes FILE unless FILE already holds exactly that.
write_if_changed() {
  local tmp=$1.tmp.$$
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() {
  local d name
  for name in control hop exec1 exec2; do mkdir -p "$mesh/$name"; chmod 700 "$mesh/$name"; done
  d=$mesh/control
  agent_toml control | write_if_changed "$d/agent.toml"
  write_if_changed "$d/coordinator.toml" <<TOML
api_listen = "127.0.0.1:$API_PORT"
database = "$d/meshrun.db"
data_dir = "$d/coordinator"
receptor_socket = "$d/receptor.sock"

[control_node]
node_id = "control"
node_type = "$control_type"
receptor = "$receptor"
receptor_config = "$d/receptor.conf"
data_dir = "$d/receptor-data"
listen_port = $CONTROL_PORT
listen_bind = "127.0.0.1"
agent = "$bin/meshrun-agent"
agent_config = "$d/agent.toml"
work_signing_key = "$d/keys/work.key"
work_verification_key = "$d/work.pub"
TOML
  # hop, exec1 and exec2 get their [node] and TLS files from `meshrun-agent join` (join_node);
  # until they joined, only the shared part is written (a joined agent.toml is left alone).
  for name in hop exec1 exec2; do
    if [ ! -s "$mesh/$name/tls/node.crt" ]; then
      { agent_toml "$name"; receptor_section "$name"; } | write_if_changed "$mesh/$name/agent.toml"
    fi
  done
}

# join_node NAME TYPE [join args...]: unless NAME already joined, a join token from the
# coordinator and `meshrun-agent join --no-start` (the key is made on the node; the certificate
# comes from the mesh CA; every link is then mutual TLS).
join_node() {
  local name=$1 type=$2 token
  shift 2
  if [ -s "$mesh/$name/tls/node.crt" ]; then
    echo "$name: already joined"
    return
  fi
  token=$(MESHRUN_URL=$api MESHRUN_TOKEN=$api_token MESHRUN_CA_CERT=$ca_cert \
    "$bin/meshrun" token create --node-type "$type" --ttl 10m --name "mesh-up $name")
  "$bin/meshrun-agent" join --coordinator "$api" --token "$token" --id "$name" \
    --node-type "$type" --config-dir "$mesh/$name" --no-start "$@" >> "$mesh/$name/join.log"
  echo "$name: joined as $type"
}

# start NAME: starts the node's program in its own session (so it outlives this shell and a
# terminal's hang-up) unless its recorded process still runs; records the PID.
start() {
  local name=$1 pid
  if pid=$(running_pid "$name"); then
    echo "$name: already running (pid $pid)"
    return
  fi
  # A supervisor that crashed leaves its receptor running, holding the node's socket and
  # port: stop that receptor (only the one the supervisor recorded) before starting anew.
  local rpid
  if rpid=$(leftover_receptor "$name"); then
    echo "$name: stopping the receptor its stopped supervisor left (pid $rpid)"
    stop_pid "$rpid"
  fi
  local -a cmd
  read_cmd "$name" cmd
  setsid "${cmd[@]}" < /dev/null >> "$mesh/$name/$(log_name "$name")" 2>&1 &
  pid=$!
  record_pid "$name" "$pid"
  echo "$name: started $(basename "${cmd[0]}") (pid $pid)"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "mesh-up: $what did not happen within $secs s; logs are under $mesh" >&2
  exit 1
}

api_up() { [ -s "$ca_cert" ] && curl --http1.1 -fsS --cacert "$ca_cert" "$api/api/v2/ping/" > /dev/null; }

# routable NODES...: true once the control node's receptor routes to every one of them.
routable() { python3 "$root/packaging/mesh/routable.py" "$mesh/control/receptor.sock" "$@"; }

# advertised NODES...: true once every one of them told the control node that it runs
# ansible-runner work; until then the coordinator cannot know that it must sign for them.
advertised() {
  python3 - "$mesh/control/receptor.sock" "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
f.write("status\n")
f.flush()
ads = json.loads(f.readline())["Advertisements"] or []
offers = {a["NodeID"] for a in ads
          if any(w.get("WorkType") == "ansible-runner" for w in a.get("WorkCommands") or [])}
sys.exit(0 if all(n in offers for n in sys.argv[2:]) else 1)
PY
}

all_receptors_recorded() {
  local name
  for name in "${nodes[@]}"; do receptor_pid "$name" > /dev/null || return 1; done
}

write_configs
# The API needs a bearer token: make an admin token once (kept 0600 beside the database).
if [ ! -s "$mesh/control/api-token" ]; then
  (umask 077; "$bin/meshrun-coordinator" admin token create --config "$mesh/control/coordinator.toml" \
    --name mesh-up > "$mesh/control/api-token.tmp")
  mv "$mesh/control/api-token.tmp" "$mesh/control/api-token"
fi
api_token=$(cat "$mesh/control/api-token")
start control
# The first start makes the work-signing key pair that the execution nodes verify with.
wait_for "the coordinator's API at $api" 120 api_up
wait_for "the work-verification key" 10 test -s "$mesh/control/work.pub"
join_node hop hop --listen "$HOP_PORT" --advertise "127.0.0.1:$HOP_PORT" --bind 127.0.0.1
start hop
wait_for "a route from control to hop" 60 routable hop
join_node exec1 execution --peer "127.0.0.1:$HOP_PORT"
join_node exec2 execution --peer "127.0.0.1:$HOP_PORT"
start exec1
start exec2
wait_for "routes from control to exec1 and exec2" 60 routable hop exec1 exec2
wait_for "exec1 and exec2 to advertise their work type" 90 advertised exec1 exec2

# demo.env: what the CLI needs, and the record of what runs (mesh-down stops what .meshrun/pids
# records; these lines are the same PIDs plus each supervisor's receptor, for people and scripts).
wait_for "every node's receptor PID" 30 all_receptors_recorded
{
  cat <<ENV
# The demo mesh started by \`make mesh-up\` (stop it with \`make mesh-down\`).
export MESHRUN_URL=$api
export MESHRUN_TOKEN=$api_token
export MESHRUN_CA_CERT=$ca_cert
export PATH="$bin:\$PATH"
MESHRUN_MESH_DIR=$mesh
MESHRUN_API_URL=$api
ENV
  for name in "${nodes[@]}"; do
    up=${name^^}
    echo "${up}_DIR=$mesh/$name"
    echo "${up}_SOCKET=$mesh/$name/receptor.sock"
    echo "${up}_PID=$(running_pid "$name")"
    echo "${up}_RECEPTOR_PID=$(receptor_pid "$name")"
  done
} | (umask 077; write_if_changed "$mesh/demo.env")
chmod 600 "$mesh/demo.env"

cat <<EOF

mesh up: control ($control_type, coordinator at $api) <- hop <- exec1, exec2
files, logs and databases: $mesh

  source $mesh/demo.env
  meshrun job run $root/packaging/demo/project hello.yml \\
    -i $root/packaging/demo/inventory.ini --node exec1 --follow

stop it with: make mesh-down
EOF
