# Helpers for the packages' maintainer scripts (deb) and scriptlets (rpm); packaging/dist/build.sh
# puts this file, then the package's own functions, then a dispatcher into each script.
# POSIX sh: the scripts run under the target system's /bin/sh.

# systemd is the init of the running system (not merely installed, as in a container or chroot).
systemd_running() { [ -d /run/systemd/system ]; }

# Forget a unit's enablement after its file is gone (`systemctl disable` needs the file).
forget_enablement() {
  for link in /etc/systemd/system/*.wants/"$1"; do
    [ -L "$link" ] && rm -f "$link"
  done
  return 0
}

# Remove a directory only if it is empty (others' files in it are kept).
rmdir_if_empty() { [ -d "$1" ] && rmdir "$1" 2>/dev/null || true; }
