#!/usr/bin/env bash
# Installs the Debian packages an execution node (and the tests) need to run jobs in podman
# (idempotent, quiet). Uses the machine's own apt sources; `apt-get update` runs only when a
# package is actually missing.
#
#   packaging/podman/install.sh
#
# - podman, netavark: the container engine and its network backend (host/none networks need
#   nothing more; a bridge network would also need iptables).
# - runc: crun cannot run on these hosts' hybrid cgroup v1 layout; containers.conf selects runc.
# - catatonit: the init that `podman run --init` injects as PID 1 of the job container.
# - debootstrap, debian-archive-keyring: packaging/ee/build.sh builds the EE image from them.
# Rootful only, so no uidmap/slirp4netns/fuse-overlayfs (the kernel overlay driver works).
set -euo pipefail
packages=(podman netavark runc catatonit debootstrap debian-archive-keyring)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "podman/install.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "podman/install.sh: installing ${missing[*]}" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq &&
       "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "podman/install.sh: apt-get failed (see above)" >&2
  exit 1
fi
echo "podman/install.sh: $(podman --version), $(runc --version | head -n 1)" >&2
