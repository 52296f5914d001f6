#!/usr/bin/env bash
# `make dist-test`: checks the packages `make dist` built in dist/.
#
#   packaging/dist/test.sh
#
# 1. deb: installs receptor, meshrun-agent and meshrun-coordinator with dpkg into a fresh Debian
#    container (podman; the testbed image is the EE image, itself debootstrap's minbase, plus
#    procps and systemd (installed, not running), cached), then checks files, config files, the `meshrun` user, `--version`,
#    `meshrun-agent config`, that installing started nothing, an upgrade to a higher release
#    (edits, keys and identity kept, a running job left alone, no prompt), remove (state kept)
#    and purge (state gone). Then again in the same image booted with systemd as PID 1: install
#    starts nothing; the coordinator, once [control_node] is set and it is enabled, runs sandboxed
#    as `meshrun` and answers `meshrun instances`; after join's `systemctl enable --now` the agent
#    runs receptor; reload keeps it; restart and
#    upgrade replace agent and receptor while a job runner in the unit's cgroup lives on; remove
#    stops the services and keeps state; purge removes it.
# 2. rpm: `rpm -qip`/`-qlp`/`--requires`/`-qcp`, then installs into a temporary root copied from
#    the testbed (it has /bin/sh, useradd, ...), so the scriptlets really run (chrooted by rpm);
#    checks the user and files they made, an upgrade and an erase.
# 3. `systemd-analyze verify` on both units inside that root; any warning fails. `--man=no`: the
#    man pages named in Documentation= are checked in step 1 (verify would look in the host's).
# Prints "N passed, N failed" and exits non-zero when a check failed. Cleans up the container and
# the temporary root it made (their names are printed).
# Single quotes around shell text that runs elsewhere (maintainer scripts, the container) are meant.
# shellcheck disable=SC2016
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dist=${DIST_DIR:-$repo/dist}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/packaging/podman/containers.conf}
ee_image=${MESHRUN_EE_IMAGE:-localhost/meshrun-ee:latest}
testbed=localhost/meshrun-dist-testbed:latest
. "$repo/packaging/versions.env"
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")

say() { echo "dist-test: $*" >&2; }
die() { echo "dist-test: $*" >&2; exit 1; }
passed=0 failed=0
check() { # description command...
  local what=$1; shift
  if "$@" >/tmp/dist-test-check.$$ 2>&1; then
    passed=$((passed + 1)); echo "ok   $what"
  else
    failed=$((failed + 1)); echo "FAIL $what"; sed 's/^/     /' /tmp/dist-test-check.$$ | tail -n 20
  fi
  rm -f /tmp/dist-test-check.$$
}

[ "$(id -u)" -eq 0 ] || die "must run as root (podman, chroot scriptlets)"
one() { local f; f=$(compgen -G "$1" | head -n 1) || true; [ -n "$f" ] || die "missing $1 (run make dist)"; echo "$f"; }
deb_agent=$(one "$dist/meshrun-agent_${version}-1_amd64.deb")
deb_coord=$(one "$dist/meshrun-coordinator_${version}-1_amd64.deb")

rpm_agent=$(one "$dist/meshrun-agent-${version}-1.x86_64.rpm")
rpm_coord=$(one "$dist/meshrun-coordinator-${version}-1.x86_64.rpm")
# Without the receptor package (none could be had, see make dist) nothing that installs the deb
# can run; the rpm checks and the unit checks still do.
deb_recep=$(compgen -G "$dist/receptor_${RECEPTOR_VERSION}-1_amd64.deb" || true)
rpm_recep=$(compgen -G "$dist/receptor-${RECEPTOR_VERSION}-1.x86_64.rpm" || true)
have_receptor=1
if [ -z "$deb_recep" ] || [ -z "$rpm_recep" ]; then
  have_receptor=0
  echo "=================================================================="
  echo "NOT RUN: the deb install tests (no receptor package in $dist)"
  echo "=================================================================="
fi

work=$(mktemp -d /var/tmp/meshrun-dist-test.XXXXXX)
container=meshrun-dist-test-$$
say "containers $container and $container-systemd, temporary root $work/root"
cleanup() {
  podman rm -f -t 0 "$container" "$container-systemd" >/dev/null 2>&1 || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# Release 2 of the same packages, for the upgrade (same binaries; cheap).
say "building release 2 for the upgrade test"
"$here/build.sh" --release 2 --fast --out "$work/r2" >/dev/null

# --- the testbed image: EE image (debootstrap minbase) + procps + systemd, with man pages ------
ee_id=$(podman image inspect --format '{{.Id}}' "$ee_image" 2>/dev/null) || die "no $ee_image (make ee-image)"
testbed_debs="procps systemd"
testbed_key="$ee_id $testbed_debs"
if [ "$(podman image inspect --format '{{index .Labels "io.meshrun.dist.base"}}' "$testbed" 2>/dev/null)" != "$testbed_key" ]; then
  say "building $testbed from $ee_image (+ $testbed_debs)"
  podman rm -f -t 0 "$container-bed" >/dev/null 2>&1 || true
  podman run --name "$container-bed" --network=host --pull=never "$ee_image" sh -c '
      rm -f /etc/dpkg/dpkg.cfg.d/meshrun-ee-slim &&
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends '"$testbed_debs"' >/dev/null &&
      apt-get clean && rm -rf /var/lib/apt/lists/*' >&2 ||
    { podman rm -f "$container-bed" >/dev/null 2>&1; die "cannot build $testbed"; }
  podman commit --quiet --change "LABEL io.meshrun.dist.base=$testbed_key" "$container-bed" "$testbed" >/dev/null
  podman rm -f "$container-bed" >/dev/null
fi

if [ "$have_receptor" = 1 ]; then
# --- deb -----------------------------------------------------------------------------------------
podman run -d --name "$container" --network=none --pull=never -v "$dist:/dist:ro" -v "$work/r2:/r2:ro" \
  "$testbed" sleep infinity >/dev/null
in_c() { podman exec -i "$container" sh -c "$1" </dev/null; }
echo "== deb: fresh Debian container ($container)"
check "dpkg -i receptor, meshrun-agent, meshrun-coordinator" \
  in_c "dpkg -i /dist/$(basename "$deb_recep") /dist/$(basename "$deb_agent") /dist/$(basename "$deb_coord")"
check "binaries in /usr/bin" in_c 'test -x /usr/bin/meshrun-agent && test -x /usr/bin/meshrun-coordinator && test -x /usr/bin/meshrun && test -x /usr/bin/receptor'
check "systemd units" in_c 'test -f /usr/lib/systemd/system/meshrun-agent.service && test -f /usr/lib/systemd/system/meshrun-coordinator.service &&
  grep -qx "KillMode=process" /usr/lib/systemd/system/meshrun-agent.service &&
  grep -qx "ExecStart=/usr/bin/meshrun-agent run" /usr/lib/systemd/system/meshrun-agent.service &&
  grep -qx "User=meshrun" /usr/lib/systemd/system/meshrun-coordinator.service'
check "config files are dpkg conffiles" in_c 'dpkg-query -W -f="\${Conffiles}\n" meshrun-agent meshrun-coordinator > /tmp/cf &&
  grep -q " /etc/meshrun/agent.toml " /tmp/cf && grep -q " /etc/meshrun/containers.conf " /tmp/cf && grep -q " /etc/meshrun/coordinator.toml " /tmp/cf && grep -q " /etc/meshrun/local-agent.toml " /tmp/cf'
check "podman settings for the node" in_c 'grep -q "^runtime = \"runc\"" /etc/meshrun/containers.conf && grep -q containers_conf /etc/meshrun/agent.toml'
check "state and log directories" in_c '[ "$(stat -c %a:%U /var/lib/meshrun/agent)" = 700:root ] && [ "$(stat -c %a:%U:%G /var/lib/meshrun/coordinator)" = 750:meshrun:meshrun ] && test -d /var/log/meshrun'
check "man pages" in_c 'for m in meshrun-agent meshrun-agent-run meshrun-agent-config meshrun-coordinator meshrun-coordinator-serve meshrun meshrun-job; do test -s /usr/share/man/man1/$m.1.gz || { echo "no $m.1.gz"; exit 1; }; done; zcat /usr/share/man/man1/meshrun-agent.1.gz | grep -q "^.TH"'
check "shell completions" in_c 'for c in meshrun-agent meshrun-coordinator meshrun; do test -s /usr/share/bash-completion/completions/$c && test -s /usr/share/zsh/vendor-completions/_$c && test -s /usr/share/fish/vendor_completions.d/$c.fish || exit 1; done'
check "license files" in_c 'for p in meshrun-agent meshrun-coordinator receptor; do grep -q "Apache License" /usr/share/licenses/$p/LICENSE && grep -q "^License: Apache-2.0" /usr/share/doc/$p/copyright || exit 1; done; grep -q "^tokio " /usr/share/licenses/meshrun-agent/THIRD-PARTY'
check "the meshrun system user" in_c 'getent passwd meshrun | grep -q ":/var/lib/meshrun/coordinator:/usr/sbin/nologin$" && [ "$(id -u meshrun)" -lt 1000 ] && [ "$(stat -c %a:%U:%G /etc/meshrun/coordinator.toml)" = 640:root:meshrun ]'
check "meshrun-agent --version" in_c "[ \"\$(meshrun-agent --version)\" = 'meshrun-agent $version' ]"
check "meshrun --version, meshrun-coordinator --version, receptor --version" in_c "[ \"\$(meshrun --version)\" = 'meshrun $version' ] && [ \"\$(meshrun-coordinator --version)\" = 'meshrun-coordinator $version' ] && [ \"\$(receptor --version)\" = '$RECEPTOR_VERSION' ]"
check "meshrun-agent config renders receptor.conf" in_c 'meshrun-agent config --node-type execution --id exec1.example.com --peer hop1:27199 > /tmp/r.conf && grep -q "exec1.example.com" /tmp/r.conf && grep -q "/usr/bin/meshrun-agent" /tmp/r.conf && grep -q "hop1:27199" /tmp/r.conf'
check "the packaged agent.toml parses; run refuses before join" in_c '! meshrun-agent run 2>/tmp/run.err; cat /tmp/run.err; grep -q "has no \[node\] section" /tmp/run.err'
check "installing started and enabled nothing" in_c '! ls /etc/systemd/system/*.wants/meshrun-agent.service 2>/dev/null && ! pgrep -x receptor && ! pgrep -x meshrun-agent'

# Node state as a joined node has it, and a job running under a detached runner.
in_c 'echo "# edited by the operator" >> /etc/meshrun/agent.toml &&
  mkdir -p /etc/meshrun/pki && echo key > /etc/meshrun/pki/node.key && echo 11111111-2222 > /var/lib/meshrun/agent/node-uuid &&
  echo db > /var/lib/meshrun/coordinator/coordinator.db && setsid -f sleep 601 </dev/null >/dev/null 2>&1 &&
  for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -fx "sleep 601" > /tmp/job.pid && break; sleep 0.2; done'
check "upgrade to release 2 (no prompt)" in_c 'dpkg -i /r2/receptor_*-2_amd64.deb /r2/meshrun-agent_*-2_amd64.deb /r2/meshrun-coordinator_*-2_amd64.deb'
check "upgrade installed release 2" in_c "[ \"\$(dpkg-query -W -f='\${Version}' meshrun-agent)\" = '$version-2' ] && [ \"\$(dpkg-query -W -f='\${Version}' meshrun-coordinator)\" = '$version-2' ]"
check "upgrade kept configs, keys and identity" in_c 'grep -q "edited by the operator" /etc/meshrun/agent.toml && test -s /etc/meshrun/pki/node.key && grep -q 11111111 /var/lib/meshrun/agent/node-uuid && test -s /var/lib/meshrun/coordinator/coordinator.db && [ "$(stat -c %G /etc/meshrun/coordinator.toml)" = meshrun ]'
check "upgrade left the running job alone" in_c 'kill -0 "$(cat /tmp/job.pid)"'
check "remove keeps configs, keys and identity" in_c 'dpkg -r meshrun-coordinator meshrun-agent && ! test -e /usr/bin/meshrun-agent && test -f /etc/meshrun/agent.toml && test -f /etc/meshrun/coordinator.toml && test -s /etc/meshrun/pki/node.key && test -s /var/lib/meshrun/agent/node-uuid && test -s /var/lib/meshrun/coordinator/coordinator.db'
check "purge removes them" in_c 'dpkg -P meshrun-coordinator meshrun-agent receptor && ! test -e /etc/meshrun && ! test -e /var/lib/meshrun && ! test -e /usr/bin/receptor && ! dpkg -l meshrun-agent 2>/dev/null | grep -q "^.[ic]"'
podman rm -f -t 0 "$container" >/dev/null

# --- deb under a running systemd -----------------------------------------------------------------
# The same image booted with systemd as PID 1 (podman --systemd=always): what the services do on
# install, join, reload, restart, upgrade and remove, with a job runner left in the agent's cgroup.
sd=$container-systemd
podman run -d --name "$sd" --systemd=always --network=none --pull=never -v "$dist:/dist:ro" \
  -v "$work/r2:/r2:ro" "$testbed" /lib/systemd/systemd >/dev/null
in_sd() { podman exec -i "$sd" sh -c "$1" </dev/null; }
# Polls a shell condition in the container for up to 30 s.
wait_sd() { local _; for _ in $(seq 60); do in_sd "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done; in_sd "$1"; }
main_pid() { in_sd "systemctl show -p MainPID --value $1"; }
receptor_pid() { in_sd 'pgrep -P "$(systemctl show -p MainPID --value meshrun-agent)" -x receptor'; }
job_alive() { in_sd 'kill -0 "$(cat /tmp/job.pid)"'; }

echo "== deb: Debian container with systemd running ($sd)"
check "systemd boots in the container" wait_sd 'case "$(systemctl is-system-running)" in running|degraded) true ;; *) false ;; esac'
check "dpkg -i (systemd running)" in_sd "dpkg -i /dist/$(basename "$deb_recep") /dist/$(basename "$deb_agent") /dist/$(basename "$deb_coord")"
check "install leaves both services disabled and stopped" in_sd 'for u in meshrun-agent meshrun-coordinator; do
  [ "$(systemctl is-enabled $u)" = disabled ] && ! systemctl is-active $u || exit 1; done; ! pgrep -x receptor'
# The operator's set-up of a control node: [control_node] in coordinator.toml, then enable --now.
control_node_up() {
  in_sd 'sed -i -e "s/^#\[control_node\]/[control_node]/" -e "s/^#node_id = .*/node_id = \"control1\"/" \
      -e "s/^#\(node_type\|receptor\|receptor_config\|data_dir\|listen_port\|agent\|agent_config\|work_signing_key\|work_verification_key\) = /\1 = /" \
      /etc/meshrun/coordinator.toml && systemctl enable --now meshrun-coordinator' &&
    wait_sd 'journalctl -u meshrun-coordinator | grep -q "API listening"' &&
    in_sd '[ "$(ps -o user= -p "$(systemctl show -p MainPID --value meshrun-coordinator)")" = meshrun ] &&
      T=$(runuser -u meshrun -- meshrun-coordinator admin token create --name dist-test) &&
      MESHRUN_TOKEN=$T meshrun instances | grep -q "^control1 "'
}
check "coordinator with its control node runs sandboxed as meshrun; meshrun instances answers" control_node_up
# What join does: [node] into agent.toml, then `systemctl enable --now meshrun-agent`.
join_like() {
  in_sd 'sed -i "1i node_id = \"exec1\"" /etc/meshrun/agent.toml &&
    printf "\n[node]\nnode_type = \"execution\"\nlisten = 27200\n" >> /etc/meshrun/agent.toml &&
    systemctl enable --now meshrun-agent' && wait_sd 'pgrep -P "$(systemctl show -p MainPID --value meshrun-agent)" -x receptor'
}
check "systemctl enable --now meshrun-agent starts the agent and its receptor" join_like
# A detached job runner (a session of its own) in the agent's cgroup, as receptor's runners are.
check "a job runner in meshrun-agent.service's cgroup" in_sd 'cg=$(systemctl show -p ControlGroup --value meshrun-agent)
  for d in /sys/fs/cgroup/systemd$cg /sys/fs/cgroup$cg; do [ -f "$d/cgroup.procs" ] && break; done
  setsid -f sleep 603 </dev/null >/dev/null 2>&1 && for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -fx "sleep 603" > /tmp/job.pid && break; sleep 0.2; done &&
  cat /tmp/job.pid > "$d/cgroup.procs" &&
  systemctl status meshrun-agent --no-pager | grep -q "sleep 603"'
a0=$(main_pid meshrun-agent); r0=$(receptor_pid || true)
reload_keeps() { in_sd 'systemctl reload meshrun-agent' && sleep 1 && [ "$(main_pid meshrun-agent)" = "$a0" ] && in_sd 'systemctl is-active meshrun-agent'; }
check "systemctl reload (SIGHUP) keeps the agent" reload_keeps
restart_keeps_job() {
  in_sd 'systemctl restart meshrun-agent' && wait_sd 'pgrep -P "$(systemctl show -p MainPID --value meshrun-agent)" -x receptor' &&
    [ "$(main_pid meshrun-agent)" != "$a0" ] && [ "$(receptor_pid)" != "$r0" ] && job_alive
}
check "systemctl restart: new agent and receptor, the job lives on (KillMode=process)" restart_keeps_job
a1=$(main_pid meshrun-agent); c1=$(main_pid meshrun-coordinator)
check "upgrade to release 2 (systemd running)" in_sd 'dpkg -i /r2/receptor_*-2_amd64.deb /r2/meshrun-agent_*-2_amd64.deb /r2/meshrun-coordinator_*-2_amd64.deb'
upgraded() {
  [ "$(main_pid meshrun-agent)" != "$a1" ] && [ "$(main_pid meshrun-coordinator)" != "$c1" ] && job_alive &&
    in_sd 'systemctl is-active meshrun-agent meshrun-coordinator && systemctl is-enabled meshrun-agent meshrun-coordinator &&
      grep -q "^node_id = \"exec1\"" /etc/meshrun/agent.toml'
}
check "upgrade restarted both services, kept them enabled and the join's config, left the job alone" upgraded
check "remove stops both services; the job, configs and state stay" in_sd 'dpkg -r meshrun-coordinator meshrun-agent &&
  ! systemctl is-active meshrun-agent && ! systemctl is-active meshrun-coordinator && kill -0 "$(cat /tmp/job.pid)" &&
  grep -q "^node_id = \"exec1\"" /etc/meshrun/agent.toml && test -d /var/lib/meshrun/coordinator/pki'
check "purge removes configs, state and enablement" in_sd 'dpkg -P meshrun-coordinator meshrun-agent receptor &&
  ! test -e /etc/meshrun && ! test -e /var/lib/meshrun && ! ls /etc/systemd/system/*.wants/meshrun-* 2>/dev/null'
podman rm -f -t 0 "$sd" >/dev/null

fi

# --- rpm -----------------------------------------------------------------------------------------
echo "== rpm: metadata"
check "rpm -qip (name, version, license)" bash -c "rpm -qip '$rpm_agent' | grep -q '^Name *: meshrun-agent' && rpm -qip '$rpm_coord' | grep -q '^Version *: $version' && rpm -qip '$rpm_coord' | grep -q '^License *: Apache-2.0'"
check "rpm -qlp lists binaries, units, configs, man pages, licenses" bash -c "
  rpm -qlp '$rpm_agent' | grep -qx /usr/bin/meshrun-agent &&
  rpm -qlp '$rpm_agent' | grep -qx /usr/lib/systemd/system/meshrun-agent.service &&
  rpm -qlp '$rpm_agent' | grep -qx /usr/share/man/man1/meshrun-agent.1.gz &&
  rpm -qlp '$rpm_agent' | grep -qx /usr/share/licenses/meshrun-agent/LICENSE &&
  rpm -qlp '$rpm_coord' | grep -qx /usr/bin/meshrun &&
  rpm -qlp '$rpm_coord' | grep -qx /usr/lib/systemd/system/meshrun-coordinator.service &&
  { [ -z '$rpm_recep' ] || rpm -qlp '$rpm_recep' | grep -qx /usr/bin/receptor; }"
check "rpm config files (noreplace)" bash -c "rpm -qcp '$rpm_agent' | grep -qx /etc/meshrun/agent.toml && rpm -qcp '$rpm_coord' | grep -qx /etc/meshrun/coordinator.toml"
check "rpm requires" bash -c "rpm -qp --requires '$rpm_agent' | grep -q '^receptor >= $RECEPTOR_VERSION' && rpm -qp --requires '$rpm_coord' | grep -q '^meshrun-agent = $version-1'"

echo "== rpm: temporary root $work/root"
root=$work/root
podman create --name "$container-root" --pull=never "$testbed" true >/dev/null
mkdir -p "$root"
podman export "$container-root" | tar -C "$root" -xf -
podman rm -f "$container-root" >/dev/null
rpm --root "$root" --initdb
# The root's system tools belong to dpkg, so rpm's database cannot see /bin/sh or useradd: the
# only dependencies left open may be those (and receptor when its package could not be built).
system_deps='/bin/sh|/usr/sbin/useradd|/usr/sbin/groupadd|/usr/bin/kill'
[ "$have_receptor" = 1 ] || system_deps="$system_deps|receptor >= $RECEPTOR_VERSION"
rpm_deps_resolve() {
  local out open
  # shellcheck disable=SC2086 # $rpm_recep: one file or none
  out=$(rpm --root "$root" -i --test $rpm_recep "$rpm_agent" "$rpm_coord" 2>&1 || true)
  open=$(grep 'is needed by' <<<"$out" | grep -v -E "^[[:space:]]*($system_deps) is needed" || true)
  [ -z "$open" ] || { echo "$open"; return 1; }
  grep -q 'is needed by' <<<"$out"   # the check saw rpm's dependency report at all
}
check "rpm deps between the packages resolve" rpm_deps_resolve
# shellcheck disable=SC2086 # $rpm_recep: one file or none
check "rpm -i into the root (scriptlets run)" rpm --root "$root" -i --nodeps $rpm_recep "$rpm_agent" "$rpm_coord"
check "rpm %pre made the meshrun user" grep -q '^meshrun:x:[0-9]*:[0-9]*:meshrun coordinator:/var/lib/meshrun/coordinator:/usr/sbin/nologin$' "$root/etc/passwd"
check "rpm scriptlets made the state dirs, owners right" bash -c "
  uid=\$(awk -F: '\$1==\"meshrun\"{print \$3}' '$root/etc/passwd')
  [ \"\$(stat -c %u:%a '$root/var/lib/meshrun/coordinator')\" = \"\$uid:750\" ] &&
  [ \"\$(stat -c %a '$root/var/lib/meshrun/agent')\" = 700 ] &&
  [ \"\$(stat -c %a '$root/etc/meshrun/coordinator.toml')\" = 640 ]"
check "installed binaries run in the root" chroot "$root" sh -c "[ \"\$(meshrun-agent --version)\" = 'meshrun-agent $version' ] && { [ $have_receptor = 0 ] || receptor --version >/dev/null; }"
echo "# edited" >> "$root/etc/meshrun/agent.toml"
echo 11111111 > "$root/var/lib/meshrun/agent/node-uuid"
check "rpm -U to release 2 keeps edits and identity" bash -c "
  rpm --root '$root' -U --nodeps '$work'/r2/*.rpm &&
  [ \"\$(rpm --root '$root' -q --qf '%{RELEASE}' meshrun-agent)\" = 2 ] &&
  grep -q '# edited' '$root/etc/meshrun/agent.toml' && ! test -e '$root/etc/meshrun/agent.toml.rpmnew' &&
  grep -q 11111111 '$root/var/lib/meshrun/agent/node-uuid'"

# --- systemd-analyze verify ----------------------------------------------------------------------
echo "== systemd-analyze verify (in the installed root)"
for unit in meshrun-agent.service meshrun-coordinator.service; do
  check "systemd-analyze verify $unit: no warnings" bash -c "
    out=\$(systemd-analyze verify --man=no --root='$root' '$unit' 2>&1); rc=\$?
    [ -n \"\$out\" ] && echo \"\$out\"; [ \$rc -eq 0 ] && [ -z \"\$out\" ]"
done

check "rpm -e keeps configs and identity" bash -c "
  rpm --root '$root' -e --nodeps meshrun-coordinator meshrun-agent \$([ $have_receptor = 0 ] || echo receptor) &&
  ! test -e '$root/usr/bin/meshrun-agent' && test -f '$root/etc/meshrun/agent.toml.rpmsave' -o -f '$root/etc/meshrun/agent.toml' &&
  grep -q 11111111 '$root/var/lib/meshrun/agent/node-uuid'"

echo "dist-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
