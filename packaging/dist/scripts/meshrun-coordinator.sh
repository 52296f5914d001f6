# meshrun-coordinator: runs as the `meshrun` system user. Not started on install: until its config
# names the control node (or a receptor), it has nothing to serve; the operator enables it.

# The system user, made idempotently (kept on purge, as Debian does for system users: files
# it owned elsewhere must not pass to a later user with the same uid).
before_install() {
  getent group meshrun >/dev/null || groupadd --system meshrun
  getent passwd meshrun >/dev/null ||
    useradd --system --gid meshrun --home-dir /var/lib/meshrun/coordinator --no-create-home \
            --shell /usr/sbin/nologin --comment "meshrun coordinator" meshrun
}

# $1: install or upgrade.
after_install() {
  before_install
  install -d -m 0755 /var/lib/meshrun
  install -d -m 0750 -o meshrun -g meshrun /var/lib/meshrun/coordinator
  # The service reads its config as `meshrun`; nobody else needs to.
  chown root:meshrun /etc/meshrun/coordinator.toml
  chmod 0640 /etc/meshrun/coordinator.toml
  if systemd_running; then
    systemctl daemon-reload || true
    [ "$1" = upgrade ] && systemctl try-restart meshrun-coordinator.service || true
  fi
  if [ "$1" = install ]; then
    echo "meshrun-coordinator: installed. Set up /etc/meshrun/coordinator.toml (its [control_node]),"
    echo "  then: systemctl enable --now meshrun-coordinator"
  fi
}

before_remove() {
  if systemd_running; then
    systemctl stop meshrun-coordinator.service || true
  fi
}

after_remove() {
  if systemd_running; then systemctl daemon-reload || true; fi
}

# deb purge: the database, the CA and keys, the config.
purge() {
  forget_enablement meshrun-coordinator.service
  rm -rf /var/lib/meshrun/coordinator
  rm -f /var/lib/meshrun/coordinator.db* /etc/meshrun/coordinator.toml* /etc/meshrun/local-agent.toml*
  rmdir_if_empty /var/lib/meshrun
  rmdir_if_empty /etc/meshrun
}
