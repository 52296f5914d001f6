#!/usr/bin/env bash
# `make demo`: a real 4-node receptor mesh in a temporary folder —
#   control (coordinator + the receptor it runs, listening) <- hop (dials control, listens)
#   <- exec1, exec2 — the other nodes joining with tokens (`meshrun-agent join`), every link
# mutual TLS; runs packaging/demo/project/hello.yml on an execution node, inside a podman container of the
# execution-environment image, prints where and how it ran, and stops exactly what it started.
set -euo pipefail
started=$(date +%s.%N)
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/debug
receptor=${MESHRUN_RECEPTOR:?set MESHRUN_RECEPTOR to the receptor binary (make demo does)}
venv=${MESHRUN_VENV:?set MESHRUN_VENV to the ansible-runner venv (make demo does)}
target_node=${MESHRUN_DEMO_NODE:-}
work=$(mktemp -d /tmp/meshrun-demo.XXXXXX)
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${MESHRUN_DEMO_KEEP:-}" ]; then echo "demo files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# agent_toml NAME: the node's agent.toml (podman worker; receptor's files in its folder).
agent_toml() {
  local name=$1 dir=$work/$1
  mkdir -p "$dir"
  chmod 700 "$dir"
  cat > "$dir/agent.toml" <<TOML
node_id = "$name"
log_file = "$dir/agent.log"
state_dir = "$dir/agent-state"

[worker]
mode = "podman"

[podman]
default_image = "localhost/meshrun-ee:latest"
containers_conf = "$root/packaging/podman/containers.conf"

[receptor]
binary = "$receptor"
config = "$dir/receptor.conf"
data_dir = "$dir/receptor-data"
socket = "$dir/receptor.sock"
TOML
}

# wait_socket NAME: until the node's receptor control socket exists. Start the next node only
# once this one is up: receptor advertises its work types ~5 s after start and then only every
# 60 s, so a link that comes up late hides the node for a minute.
wait_socket() {
  for _ in $(seq 1 150); do
    [ -S "$work/$1/receptor.sock" ] && return 0
    sleep 0.1
  done
}

# join NAME TYPE [meshrun-agent join args...]: a join token from the coordinator, then
# `meshrun-agent join --no-start` (key made on the node, certificate from the mesh CA) and
# `meshrun-agent run` (receptor with mutual TLS on every link).
join() {
  local name=$1 type=$2 token
  shift 2
  agent_toml "$name"
  token=$("$bin/meshrun" token create --node-type "$type" --ttl 10m)
  "$bin/meshrun-agent" join --coordinator "https://127.0.0.1:$api_port" --token "$token" \
    --id "$name" --node-type "$type" --config-dir "$work/$name" --no-start "$@" > "$work/$name/join.log"
  "$bin/meshrun-agent" --config "$work/$name/agent.toml" run > "$work/$name/run.log" 2>&1 &
  pids+=($!)
  echo "joined $type node $name (meshrun-agent run pid $!)"
  wait_socket "$name"
}

# routable NODES...: true once the control node's receptor has a route to every one of them.
routable() { python3 "$root/packaging/mesh/routable.py" "$work/control/receptor.sock" "$@"; }

control_port=$(free_port)
hop_port=$(free_port)
api_port=$(free_port)
export MESHRUN_URL="https://127.0.0.1:$api_port"

# The control node: the coordinator renders and supervises its receptor (mutual TLS, its
# certificate from the mesh CA it makes on first start).
agent_toml control
cat > "$work/control/coordinator.toml" <<TOML
api_listen = "127.0.0.1:$api_port"
database = "$work/control/meshrun.db"
data_dir = "$work/control/coordinator"
receptor_socket = "$work/control/receptor.sock"

[control_node]
node_id = "control"
node_type = "control"
receptor = "$receptor"
receptor_config = "$work/control/receptor.conf"
data_dir = "$work/control/receptor-data"
listen_port = $control_port
listen_bind = "127.0.0.1"
agent = "$bin/meshrun-agent"
agent_config = "$work/control/agent.toml"
work_signing_key = "$work/control/keys/work.key"
work_verification_key = "$work/control/keys/work.pub"
TOML
# The API needs a bearer token; make an admin token for this demo's store.
MESHRUN_TOKEN=$("$bin/meshrun-coordinator" admin token create --config "$work/control/coordinator.toml" --name demo 2> "$work/control/token.log")
export MESHRUN_TOKEN
"$bin/meshrun-coordinator" serve --config "$work/control/coordinator.toml" > "$work/control/coordinator.log" 2>&1 &
pids+=($!)
echo "started meshrun-coordinator with the control node's receptor (pid $!, API $MESHRUN_URL)"
# The API serves HTTPS with a certificate from the mesh CA the coordinator makes on first start.
export MESHRUN_CA_CERT="$work/control/coordinator/pki/ca.crt"
for _ in $(seq 1 600); do
  if [ -s "$MESHRUN_CA_CERT" ] && curl --http1.1 -fsS --cacert "$MESHRUN_CA_CERT" "$MESHRUN_URL/api/v2/ping/" > /dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
curl --http1.1 -fsS --cacert "$MESHRUN_CA_CERT" "$MESHRUN_URL/api/v2/ping/" > /dev/null || { echo "the coordinator did not come up; logs in $work" >&2; MESHRUN_DEMO_KEEP=1; exit 1; }

join hop hop --listen "$hop_port" --advertise "127.0.0.1:$hop_port" --bind 127.0.0.1
join exec1 execution --peer "127.0.0.1:$hop_port"
join exec2 execution --peer "127.0.0.1:$hop_port"

for _ in $(seq 1 150); do
  if routable hop exec1 exec2 2>/dev/null; then
    break
  fi
  sleep 0.2
done
routable hop exec1 exec2 || { echo "the mesh did not come up; logs in $work" >&2; MESHRUN_DEMO_KEEP=1; exit 1; }
echo "mesh up: control <- hop <- exec1, exec2 (all joined with tokens, routable from control over mutual TLS)"
echo

set +e
# The scheduler places the job (MESHRUN_DEMO_NODE pins it to one node instead).
"$bin/meshrun" job run "$root/packaging/demo/project" hello.yml \
  -i "$root/packaging/demo/inventory.ini" ${target_node:+--node "$target_node"} --follow
rc=$?
set -e
echo
echo "demo finished in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)") s (job exit code $rc)"
exit $rc
