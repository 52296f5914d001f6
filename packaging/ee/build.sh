#!/usr/bin/env bash
# Builds the execution-environment image localhost/meshrun-ee:latest without any registry:
# debootstrap (minbase, the host's own Debian suite and mirror) + apt packages from packages.txt,
# then a venv /opt/runner with the pinned ansible-runner/ansible-core installed offline from a
# wheelhouse downloaded on the host, then `podman import`.
#
#   packaging/ee/build.sh [--force]
#
# Needs root (debootstrap, chroot) and packaging/podman/install.sh's packages. Environment:
#   MESHRUN_EE_IMAGE   image name (default localhost/meshrun-ee:latest)
#   MESHRUN_EE_CACHE   cache folder (default <repo>/.tools/ee)
#   MESHRUN_EE_MIRROR  Debian mirror URL (default: read from the host's apt sources)
#   CONTAINERS_CONF    podman settings (default packaging/podman/containers.conf)
#
# Caching: the image carries the label io.meshrun.ee.inputs = sha256 of its inputs
# (versions.env, this script, packages.txt, the suite); when the existing image has the same
# label, nothing is done. The base rootfs and the wheelhouse are cached separately under
# MESHRUN_EE_CACHE with their own, narrower keys, so changing e.g. only the image config here
# re-runs just the venv + import steps. --force ignores all three caches.
# Every step builds under a temporary name and is renamed when complete, so an interrupted run
# leaves nothing that a later run would trust; one build at a time (a lock file enforces it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${MESHRUN_EE_IMAGE:-localhost/meshrun-ee:latest}
cache=${MESHRUN_EE_CACHE:-$repo/.tools/ee}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/packaging/podman/containers.conf}
force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  *) echo "usage: $0 [--force]" >&2; exit 64 ;;
esac

say() { echo "ee: $*" >&2; }
die() { echo "ee: $*" >&2; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }

# shellcheck source=../versions.env
. "$repo/packaging/versions.env"
: "${ANSIBLE_RUNNER_VERSION:?missing in versions.env}" "${ANSIBLE_CORE_VERSION:?missing in versions.env}"
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/packages.txt")
. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || die "only amd64 is supported (wheel platform tags), this host is $arch"

# Bump a stage's recipe number whenever its commands below change meaning.
base_key=$(printf 'base-2 %s %s %s\n' "$suite" "$arch" "${packages[*]}" | sha)
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
wheels_key=$(printf 'wheels-1 %s %s cp311 glibc%s\n' "$ANSIBLE_RUNNER_VERSION" "$ANSIBLE_CORE_VERSION" "$glibc" | sha)
inputs=$({ echo "$suite"; cat "$repo/packaging/versions.env" "$here/build.sh" "$here/packages.txt"; } | sha)

if [ "$force" = 0 ] &&
   [ "$(podman image inspect --format '{{index .Labels "io.meshrun.ee.inputs"}}' "$image" 2>/dev/null)" = "$inputs" ]; then
  say "$image is up to date (inputs $inputs)"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot)"
for tool in debootstrap podman chroot python3; do
  command -v "$tool" >/dev/null || die "$tool not found (run packaging/podman/install.sh)"
done

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -n 9 || die "another build holds $cache/.lock"

# Removes a tree that may still have mounts in it (debootstrap mounts /proc and /sys in the target
# and an interruption can leave them); --one-file-system keeps rm out of anything left mounted.
remove_tree() {
  local dir=$1 m
  [ -e "$dir" ] || return 0
  dir=$(readlink -f "$dir")
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(
    awk -v d="$dir/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$dir"
}
for stale in "$cache"/*.tmp.*; do remove_tree "$stale"; done
cleanup() { local t; for t in "$cache"/*.tmp.$$; do remove_tree "$t"; done; }
trap cleanup EXIT

one_line_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && cat "$f"; done
  return 0
}

# The Debian mirror of the host's main suite, read from its apt sources (deb822 first).
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '
      function flush() { if (deb && hit && main && uri != "") { print uri; found = 1; exit } deb = hit = main = 0; uri = "" }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      tolower($1) == "types:"      { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "suites:"     { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
      tolower($1) == "components:" { for (i = 2; i <= NF; i++) if ($i == "main") main = 1 }
      tolower($1) == "uris:"       { uri = $2 }
      END { if (!found) flush() }' "$f"
  done | head -n 1 | grep . && return 0
  one_line_sources |
    awk -v s="$suite" '$1 == "deb" { sub(/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?/, ""); split($0, f, /[[:space:]]+/)
                                       if (f[2] == s) { print f[1]; exit } }' | grep .
}

# The host's Debian apt sources limited to the suite, -updates and -security, for use in the
# chroot (security fixes in the image; no third-party repositories whose keys it lacks).
host_sources_for_chroot() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '
      function flush() { if (ok && n) { for (i = 1; i <= n; i++) print buf[i]; print "" } n = 0; ok = 0 }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      { buf[++n] = $0 }
      tolower($1) == "suites:" { ok = 1; for (i = 2; i <= NF; i++) if ($i !~ "^" s "(-updates|-security)?$") ok = 0 }
      END { flush() }' "$f"
  done > "$1.sources"
  one_line_sources |
    awk -v s="$suite" '$1 == "deb" { line = $0; sub(/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?/, ""); split($0, f, /[[:space:]]+/)
                                       if (f[2] ~ "^" s "(-updates|-security)?$") print line }' > "$1.list"
  [ -s "$1.sources" ] || rm -f "$1.sources"
  [ -s "$1.list" ] || rm -f "$1.list"
}

in_chroot() { chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
                DEBIAN_FRONTEND=noninteractive "${@:2}"; }

# Stage 1: base rootfs = debootstrap minbase + packages.txt, apt lists and caches removed.
build_base() {
  local mirror tmp=$cache/rootfs.tmp.$$ log=$cache/debootstrap.log
  mirror=${MESHRUN_EE_MIRROR:-$(host_mirror)} || die "no Debian mirror for $suite in /etc/apt/sources*; set MESHRUN_EE_MIRROR"
  say "debootstrap --variant=minbase $suite ($mirror) ..."
  if ! debootstrap --variant=minbase --arch="$arch" "$suite" "$tmp" "$mirror" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "debootstrap failed (full log: $log)"
  fi
  rm -f "$log"
  host_sources_for_chroot "$tmp/etc/apt/sources.list.d/debian"
  if compgen -G "$tmp/etc/apt/sources.list.d/debian.*" >/dev/null; then rm -f "$tmp/etc/apt/sources.list"; fi
  # Like Debian's slim images: no docs (copyright files stay), man pages or translations, now or
  # for anything apt installs later.
  cat > "$tmp/etc/dpkg/dpkg.cfg.d/meshrun-ee-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
  find "$tmp/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$tmp/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$tmp"/usr/share/man/* "$tmp"/usr/share/info/*
  find "$tmp/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  cp -L /etc/resolv.conf "$tmp/etc/resolv.conf"
  say "apt-get install ${packages[*]} ..."
  log=$cache/apt.log
  if ! { in_chroot "$tmp" apt-get update -qq &&
         in_chroot "$tmp" apt-get upgrade -y -qq &&
         in_chroot "$tmp" apt-get install -y -qq --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "apt-get in the rootfs failed (full log: $log)"
  fi
  rm -f "$log"
  in_chroot "$tmp" apt-get clean
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/log/apt/* \
         "$tmp"/var/log/dpkg.log "$tmp"/var/log/alternatives.log "$tmp"/var/cache/debconf/*-old
  rm -f "$tmp/etc/resolv.conf" "$tmp/etc/hostname"
  remove_tree "$cache/rootfs"
  mv "$tmp" "$cache/rootfs"
  echo "$base_key" > "$cache/rootfs.key"
}

# Stage 2: wheelhouse for CPython 3.11 on glibc (bookworm's python3), downloaded by the host's pip;
# binary wheels only, so nothing is compiled and the host's own Python version does not matter.
build_wheels() {
  local tmp=$cache/wheels.tmp.$$ plat=() y max=${glibc#2.}
  for ((y = max; y >= 17; y--)); do plat+=(--platform "manylinux_2_${y}_x86_64"); done
  say "pip download ansible-runner==$ANSIBLE_RUNNER_VERSION ansible-core==$ANSIBLE_CORE_VERSION ..."
  python3 -m pip download --quiet --disable-pip-version-check --no-cache-dir --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --platform manylinux2014_x86_64 "${plat[@]}" \
    -d "$tmp" "ansible-runner==$ANSIBLE_RUNNER_VERSION" "ansible-core==$ANSIBLE_CORE_VERSION" >&2 ||
    die "pip download failed"
  remove_tree "$cache/wheels"
  mv "$tmp" "$cache/wheels"
  echo "$wheels_key" > "$cache/wheels.key"
}

cached() { [ "$force" = 0 ] && [ -d "$cache/$1" ] && [ "$(cat "$cache/$1.key" 2>/dev/null)" = "$2" ]; }
cached rootfs "$base_key" || build_base
cached wheels "$wheels_key" || build_wheels

# Stage 3: image tree = base + /opt/runner (installed offline) + a HOME any uid can write.
tree=$cache/image.tmp.$$
cp -a "$cache/rootfs" "$tree"
mkdir -p "$tree/tmp/wheels"
cp "$cache/wheels"/*.whl "$tree/tmp/wheels/"
say "venv /opt/runner ..."
in_chroot "$tree" python3 -m venv /opt/runner
in_chroot "$tree" /opt/runner/bin/pip install --quiet --disable-pip-version-check --no-index \
  --find-links /tmp/wheels "ansible-runner==$ANSIBLE_RUNNER_VERSION" "ansible-core==$ANSIBLE_CORE_VERSION" >&2
in_chroot "$tree" /opt/runner/bin/pip freeze --all > "$tree/opt/runner/meshrun-ee.freeze"
rm -rf "$tree/tmp/wheels" "$tree/root/.cache"
# ansible writes ~/.ansible and ansible-runner ~/.ansible_runner_uuid, so HOME must be writable by
# whatever --user the job container gets (sticky, like /tmp). The private data dir /runner is
# pre-created the same way because a non-root worker cannot create it in / (which podman keeps
# 0555 whatever the image says). A root worker removes and re-creates it (--delete); a non-root
# one empties it, runs the job, and at exit fails only to rmdir it (a harmless traceback on stderr).
install -d -m 1777 "$tree/home/runner" "$tree/runner"

old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
say "podman import ..."
tar -C "$tree" --numeric-owner -cf - . |
  podman import --quiet \
    --change 'ENV PATH=/opt/runner/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV HOME=/home/runner' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /home/runner' \
    --change "LABEL io.meshrun.ee.inputs=$inputs" \
    --change "LABEL io.meshrun.ee.ansible-runner=$ANSIBLE_RUNNER_VERSION" \
    --change "LABEL io.meshrun.ee.ansible-core=$ANSIBLE_CORE_VERSION" \
    --message "meshrun EE: $suite minbase + ${packages[*]} + ansible-runner $ANSIBLE_RUNNER_VERSION" \
    - "$image" >/dev/null
new_id=$(podman image inspect --format '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  podman rmi "$old_id" >/dev/null 2>&1 || say "previous image $old_id kept (still in use)"
fi

got=$(podman run --rm --network=none --pull=never "$image" ansible-runner --version) ||
  die "the new image cannot run ansible-runner (is CONTAINERS_CONF=$CONTAINERS_CONF right?)"
[ "$got" = "$ANSIBLE_RUNNER_VERSION" ] || die "image reports ansible-runner $got, expected $ANSIBLE_RUNNER_VERSION"
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "$image id ${new_id:0:12} size $((size / 1000000)) MB (ansible-runner $got, inputs $inputs)"
