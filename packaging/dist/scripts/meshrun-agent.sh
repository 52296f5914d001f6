# meshrun-agent: the node service is started by `meshrun-agent join`, never by installing.

before_install() { :; }

# $1: install or upgrade.
after_install() {
  install -d -m 0755 /var/lib/meshrun
  install -d -m 0700 /var/lib/meshrun/agent
  install -d -m 0750 /var/log/meshrun
  if systemd_running; then
    systemctl daemon-reload || true
    # KillMode=process: only the agent's PID is signalled; running jobs are left alone.
    [ "$1" = upgrade ] && systemctl try-restart meshrun-agent.service || true
  fi
  if [ "$1" = install ]; then
    echo "meshrun-agent: installed. Join the mesh with 'meshrun-agent join --coordinator URL --token TOKEN';"
    echo "  join enables and starts meshrun-agent.service."
  fi
}

# Before the package's files go away (not on upgrade).
before_remove() {
  if systemd_running; then
    systemctl stop meshrun-agent.service || true
  fi
}

# After the files are gone (not on upgrade): configs, keys and state stay.
after_remove() {
  if systemd_running; then systemctl daemon-reload || true; fi
}

# deb purge: everything the agent and its receptor kept on this node.
purge() {
  forget_enablement meshrun-agent.service
  rm -rf /etc/meshrun/agent /etc/meshrun/pki /var/lib/meshrun/agent /etc/receptor/receptor.conf \
         /var/lib/receptor /run/receptor
  rm -f /etc/meshrun/agent.toml* /etc/meshrun/containers.conf* /var/log/meshrun/agent.log*
  rmdir_if_empty /var/log/meshrun
  rmdir_if_empty /var/lib/meshrun
  rmdir_if_empty /etc/receptor
  rmdir_if_empty /etc/meshrun
}
