#!/usr/bin/env bash
# `make demo`: a real 4-node receptor mesh in a temporary folder —
#   control (coordinator + receptor, listening) <- hop (dials control, listens) <- exec1, exec2
# — runs packaging/demo/project/hello.yml on an execution node, inside a podman container of the
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

# node NAME TYPE [meshrun-agent config args...]: writes the node's configs and starts its receptor.
node() {
  local name=$1 type=$2
  shift 2
  local dir=$work/$name
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
TOML
  "$bin/meshrun-agent" config --node-type "$type" --id "$name" \
    --data-dir "$dir/receptor-data" --socket "$dir/receptor.sock" \
    --worker-command "$bin/meshrun-agent" --agent-config "$dir/agent.toml" "$@" > "$dir/receptor.conf"
  "$receptor" -c "$dir/receptor.conf" > "$dir/receptor.log" 2>&1 &
  pids+=($!)
  echo "started $type node $name (receptor pid $!)"
  # Start the next node only once this one is up: receptor advertises its work types ~5 s
  # after start and then only every 60 s, so a link that comes up late (a dial that failed
  # because the listener was not ready yet waits 5-20 s to retry) hides the node for a minute.
  for _ in $(seq 1 100); do
    [ -S "$dir/receptor.sock" ] && break
    sleep 0.1
  done
}

# routable NODES...: true once the control node's receptor has a route to every one of them.
routable() { python3 "$root/packaging/mesh/routable.py" "$work/control/receptor.sock" "$@"; }

control_port=$(free_port)
hop_port=$(free_port)
api_port=$(free_port)
node control control --listen "$control_port" --bind 127.0.0.1
node hop hop --listen "$hop_port" --bind 127.0.0.1 --peer "127.0.0.1:$control_port"
node exec1 execution --peer "127.0.0.1:$hop_port"
node exec2 execution --peer "127.0.0.1:$hop_port"

cat > "$work/control/coordinator.toml" <<TOML
api_listen = "127.0.0.1:$api_port"
database = "$work/control/meshrun.db"
data_dir = "$work/control/coordinator"
receptor_socket = "$work/control/receptor.sock"
TOML
# The API needs a bearer token; make an admin token for this demo's store.
MESHRUN_TOKEN=$("$bin/meshrun-coordinator" admin token create --config "$work/control/coordinator.toml" --name demo 2> "$work/control/token.log")
export MESHRUN_TOKEN
"$bin/meshrun-coordinator" serve --config "$work/control/coordinator.toml" > "$work/control/coordinator.log" 2>&1 &
pids+=($!)
echo "started meshrun-coordinator (pid $!, API https://127.0.0.1:$api_port)"
# The API serves HTTPS with a certificate from the mesh CA the coordinator makes on first start.
export MESHRUN_CA_CERT="$work/control/coordinator/pki/ca.crt"

for _ in $(seq 1 150); do
  if routable hop exec1 exec2 2>/dev/null && [ -s "$MESHRUN_CA_CERT" ] && curl -fsS --cacert "$MESHRUN_CA_CERT" "https://127.0.0.1:$api_port/api/v2/ping/" > /dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
routable hop exec1 exec2 || { echo "the mesh did not come up; logs in $work" >&2; MESHRUN_DEMO_KEEP=1; exit 1; }
echo "mesh up: control <- hop <- exec1, exec2 (all routable from control)"
echo

set +e
# The scheduler places the job (MESHRUN_DEMO_NODE pins it to one node instead).
MESHRUN_URL="https://127.0.0.1:$api_port" "$bin/meshrun" job run "$root/packaging/demo/project" hello.yml \
  -i "$root/packaging/demo/inventory.ini" ${target_node:+--node "$target_node"} --follow
rc=$?
set -e
echo
echo "demo finished in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)") s (job exit code $rc)"
exit $rc
