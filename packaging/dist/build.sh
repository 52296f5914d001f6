#!/usr/bin/env bash
# `make dist`: builds into dist/ the x86_64 packages
#   meshrun-agent        /usr/bin/meshrun-agent, meshrun-agent.service, /etc/meshrun/agent.toml,
#                        /etc/meshrun/containers.conf (the podman settings a node needs)
#   meshrun-coordinator  /usr/bin/meshrun-coordinator, /usr/bin/meshrun, meshrun-coordinator.service,
#                        /etc/meshrun/coordinator.toml, /etc/meshrun/local-agent.toml (the control
#                        node's `local` work), the `meshrun` system user
#   receptor             /usr/bin/receptor at the version packaging/versions.env pins
# each as .deb (dpkg-deb) and .rpm (rpmbuild), with man pages and shell completions rendered from
# the clap definitions, and license files.
#
#   packaging/dist/build.sh [--release N] [--out DIR] [--fast]
#
# --release N  package release (default 1); the upgrade test builds a second, higher one from the
#              same binaries.
# --out DIR    where the packages go (default <repo>/dist).
# --fast       light compression (gzip -1 / zstd -1): for packages that are only tested.
#
# Binaries: one `cargo build --release` (profile: opt-level "s", LTO, one codegen unit, stripped)
# for x86_64-unknown-linux-musl, fully static, so the same packages run on any x86_64 distribution
# (a glibc-linked build from this Debian would not start on older glibc, e.g. RHEL 8/9). When the
# musl target cannot be installed, x86_64-unknown-linux-gnu with `crt-static` is used instead.
# The tools it needs (rpm, musl-tools, binutils) are installed from Debian's packages if missing.
# DIST_CARGO_TARGET_DIR: target dir for this release build (default: CARGO_TARGET_DIR).
# DIST_TARGET=x86_64-unknown-linux-gnu: the glibc crt-static build even where musl is available.
#
# receptor: built from the pinned source (`go install`, as packaging/receptor/install.sh does);
# when the Go module proxy does not serve it, the receptor binary this machine already has
# ($MESHRUN_RECEPTOR, $RECEPTOR_BIN or `receptor` on PATH) is packaged, if it reports the pinned
# version. The output says which one happened. With neither, the meshrun packages are still built
# and the output says, in a banner, that the receptor package was not.
# Single quotes around shell text that runs elsewhere (maintainer scripts, the container) are meant.
# shellcheck disable=SC2016
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
release=1
out=$repo/dist
fast=0
while [ $# -gt 0 ]; do
  case "$1" in
    --release) release=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --fast) fast=1; shift ;;
    *) echo "usage: $0 [--release N] [--out DIR] [--fast]" >&2; exit 64 ;;
  esac
done
[[ "$release" =~ ^[1-9][0-9]*$ ]] || { echo "dist: --release must be a positive number" >&2; exit 64; }
# deb: xz, which every dpkg in use reads; rpm: zstd -12 (rpm >= 4.14: RHEL 8 and later): for
# receptor 25% larger than xz -6, in 1.5 s where zstd -19 takes 21 s.
deb_compress=(-Zxz -z6) rpm_payload=w12.zstdio
[ "$fast" = 0 ] || { deb_compress=(-Zgzip -z1); rpm_payload=w1.zstdio; }

say() { echo "dist: [${SECONDS}s] $*" >&2; }
die() { echo "dist: $*" >&2; exit 1; }

# shellcheck source=../versions.env
. "$repo/packaging/versions.env"
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
[ -n "$version" ] || die "no version in [workspace.package] of Cargo.toml"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
# The release build may use a target dir of its own that outlives the checkout (CI sets one), so
# that a fresh clone rebuilds only the workspace crates, not every dependency.
release_dir=${DIST_CARGO_TARGET_DIR:-$CARGO_TARGET_DIR}
cargo=${CARGO:-cargo}

# --- tools -------------------------------------------------------------------------------------
# Debian packages this script needs, installed like packaging/podman/install.sh does (idempotent;
# `apt-get update` only when something is missing).
ensure_debs() {
  local missing=() p log
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || { say "need root to install: ${missing[*]}"; return 1; }
  say "installing ${missing[*]}"
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
}
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (dist builds on Debian)"
ensure_debs rpm binutils || die "cannot install rpm and binutils"

# DIST_TARGET=x86_64-unknown-linux-gnu forces the glibc fallback (to test it).
target=${DIST_TARGET:-x86_64-unknown-linux-musl}
static_flags=()  # only for the release build below, never for host tools (proc-macros)
if [ "$target" = x86_64-unknown-linux-gnu ]; then
  target=""
elif ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target" >&2 || target=""
fi
if [ -n "$target" ] && ! ensure_debs musl-tools; then target=""; fi
if [ -z "$target" ]; then
  target=x86_64-unknown-linux-gnu
  static_flags=(CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static")
  say "musl target unavailable: static glibc build (crt-static) for $target"
fi

# --- binaries ----------------------------------------------------------------------------------
say "cargo build --release --target $target (meshrun-agent, meshrun-coordinator, meshrun)"
start=$SECONDS
env CARGO_TARGET_DIR="$release_dir" "${static_flags[@]}" "$cargo" build -j"${DIST_JOBS:-2}" --locked --release --target "$target" \
  -p meshrun-agent -p meshrun-coordinator >&2
say "release build took $((SECONDS - start)) s"
bindir=$release_dir/$target/release
for b in meshrun-agent meshrun-coordinator meshrun; do
  [ -x "$bindir/$b" ] || die "missing $bindir/$b"
  # Static: no program interpreter and no shared libraries.
  if readelf -lW "$bindir/$b" | grep -q 'INTERP' || readelf -dW "$bindir/$b" | grep -q '(NEEDED)'; then
    die "$b is not statically linked"
  fi
done
agent_ver=$("$bindir/meshrun-agent" --version)
[ "$agent_ver" = "meshrun-agent $version" ] || die "meshrun-agent --version says '$agent_ver', expected $version"

build=$out/.build
rm -rf "$build"
mkdir -p "$build" "$out"
say "man pages and completions (meshrun-dist-docs)"
"$cargo" run -q -j"${DIST_JOBS:-2}" --locked -p meshrun-tests --bin meshrun-dist-docs -- "$build/docs" >&2

# Third-party crates linked into each binary, with their licenses.
third_party() {
  "$cargo" tree --locked -e normal --target "$target" -p "$1" --prefix none -f '{p} {l}' 2>/dev/null |
    sed -e 's/ (\*)$//' -e 's/ (proc-macro)//' | grep -v '^meshrun-' | grep -v '(/' | sort -u
}

# --- receptor ----------------------------------------------------------------------------------
rbin=$build/receptor-bin/receptor
mkdir -p "$(dirname "$rbin")"
if RECEPTOR_BIN=${RECEPTOR_BIN:-${MESHRUN_RECEPTOR:-}} \
     "$repo/packaging/receptor/install.sh" "$RECEPTOR_VERSION" "$rbin" 2>"$build/receptor.log"; then
  if [ -L "$rbin" ]; then
    receptor_origin="the machine's receptor binary $(readlink -f "$rbin") (NOT built from source: the Go module proxy does not serve github.com/ansible/receptor here)"
    cp "$(readlink -f "$rbin")" "$rbin.copy" && mv -f "$rbin.copy" "$rbin"
  else
    receptor_origin="built from source: go install github.com/ansible/receptor/cmd/receptor-cl@v$RECEPTOR_VERSION"
  fi
  [ "$("$rbin" --version)" = "$RECEPTOR_VERSION" ] ||
    die "receptor reports $("$rbin" --version), the pin is $RECEPTOR_VERSION; not packaging it"
  strip "$rbin"
else
  # Like `make test`'s mesh tests: what cannot be had is said loudly, the rest still builds.
  cat "$build/receptor.log" >&2
  receptor_origin=""
  echo "==================================================================" >&2
  echo "NOT BUILT: the receptor package (no receptor $RECEPTOR_VERSION could be built or found)" >&2
  echo "==================================================================" >&2
fi
[ -z "$receptor_origin" ] || say "receptor $RECEPTOR_VERSION: $receptor_origin"

say "staging"
# --- staging -----------------------------------------------------------------------------------
# stage/<pkg>/ is the package's file tree; <pkg>.conffiles lists its config files.
stage=$build/stage
put() { install -D -m "$1" "$2" "$stage/$3"; }
man_and_completions() { # pkg command...
  local pkg=$1 cmd f; shift
  for cmd in "$@"; do
    for f in "$build/docs/man/$cmd"/*.1; do
      put 0644 "$f" "$pkg/usr/share/man/man1/$(basename "$f")"
      gzip -9n "$stage/$pkg/usr/share/man/man1/$(basename "$f")"
    done
    put 0644 "$build/docs/completions/bash/$cmd.bash" "$pkg/usr/share/bash-completion/completions/$cmd"
    put 0644 "$build/docs/completions/zsh/_$cmd" "$pkg/usr/share/zsh/vendor-completions/_$cmd"
    put 0644 "$build/docs/completions/fish/$cmd.fish" "$pkg/usr/share/fish/vendor_completions.d/$cmd.fish"
  done
}
licenses() { # pkg upstream-name copyright-holder third-party-text
  local pkg=$1
  put 0644 "$repo/LICENSE" "$pkg/usr/share/licenses/$pkg/LICENSE"
  mkdir -p "$stage/$pkg/usr/share/doc/$pkg"
  {
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: $2"
    echo
    echo "Files: *"
    echo "Copyright: $3"
    echo "License: Apache-2.0"
    echo " See /usr/share/licenses/$pkg/LICENSE or /usr/share/common-licenses/Apache-2.0."
    if [ -n "$4" ]; then
      echo
      echo "Comment: statically linked Rust crates (name version license):"
      sed 's/^/ /' <<<"$4"
    fi
  } > "$stage/$pkg/usr/share/doc/$pkg/copyright"
  [ -z "$4" ] || printf '%s\n' "$4" > "$stage/$pkg/usr/share/licenses/$pkg/THIRD-PARTY"
}

put 0755 "$bindir/meshrun-agent" meshrun-agent/usr/bin/meshrun-agent
put 0644 "$here/systemd/meshrun-agent.service" meshrun-agent/usr/lib/systemd/system/meshrun-agent.service
put 0644 "$here/etc/agent.toml" meshrun-agent/etc/meshrun/agent.toml
put 0644 "$repo/packaging/podman/containers.conf" meshrun-agent/etc/meshrun/containers.conf
install -d -m 0755 "$stage/meshrun-agent/var/lib/meshrun"
install -d -m 0700 "$stage/meshrun-agent/var/lib/meshrun/agent"
install -d -m 0750 "$stage/meshrun-agent/var/log/meshrun"
man_and_completions meshrun-agent meshrun-agent
licenses meshrun-agent meshrun "the meshrun authors" "$(third_party meshrun-agent)"
printf '%s\n' /etc/meshrun/agent.toml /etc/meshrun/containers.conf > "$build/meshrun-agent.conffiles"

put 0755 "$bindir/meshrun-coordinator" meshrun-coordinator/usr/bin/meshrun-coordinator
put 0755 "$bindir/meshrun" meshrun-coordinator/usr/bin/meshrun
put 0644 "$here/systemd/meshrun-coordinator.service" \
  meshrun-coordinator/usr/lib/systemd/system/meshrun-coordinator.service
put 0640 "$here/etc/coordinator.toml" meshrun-coordinator/etc/meshrun/coordinator.toml
install -d -m 0755 "$stage/meshrun-coordinator/var/lib/meshrun"
install -d -m 0750 "$stage/meshrun-coordinator/var/lib/meshrun/coordinator"
man_and_completions meshrun-coordinator meshrun-coordinator meshrun
licenses meshrun-coordinator meshrun "the meshrun authors" "$(third_party meshrun-coordinator)"
put 0644 "$here/etc/local-agent.toml" meshrun-coordinator/etc/meshrun/local-agent.toml
printf '%s\n' /etc/meshrun/coordinator.toml /etc/meshrun/local-agent.toml > "$build/meshrun-coordinator.conffiles"

if [ -n "$receptor_origin" ]; then
  put 0755 "$rbin" receptor/usr/bin/receptor
  licenses receptor receptor "Red Hat, Inc." ""
  echo "Source: https://github.com/ansible/receptor (v$RECEPTOR_VERSION); binary: $receptor_origin" \
    > "$stage/receptor/usr/share/doc/receptor/README.meshrun"
  : > "$build/receptor.conffiles"
fi

# Maintainer script for one package and one hook: helpers + the package's functions + $body.
script() { # pkg body
  printf '#!/bin/sh\nset -e\n'
  cat "$here/scripts/common.sh" "$here/scripts/$1.sh"
  printf '\n%s\n' "$2"
}

# --- deb ---------------------------------------------------------------------------------------
deb() { # pkg version depends recommends description
  local pkg=$1 v=$2-$release root=$build/deb/$1 file
  rm -rf "$root"; mkdir -p "$build/deb"; cp -a "$stage/$pkg" "$root"
  mkdir -p "$root/DEBIAN"
  {
    echo "Package: $pkg"
    echo "Version: $v"
    echo "Architecture: amd64"
    echo "Maintainer: meshrun maintainers <meshrun@localhost>"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)"
    [ -z "$3" ] || echo "Depends: $3"
    [ -z "$4" ] || echo "Recommends: $4"
    echo "Section: admin"
    echo "Priority: optional"
    echo "Homepage: https://github.com/ansible/receptor"
    echo "Description: $5"
  } > "$root/DEBIAN/control"
  [ "$pkg" = receptor ] || sed -i '/^Homepage:/d' "$root/DEBIAN/control"
  [ -s "$build/$pkg.conffiles" ] && cp "$build/$pkg.conffiles" "$root/DEBIAN/conffiles"
  if [ "$pkg" != receptor ]; then
    # No preinst: the user is made in postinst, where `passwd` (a Depends) is sure to be there.
    script "$pkg" 'case "$1" in configure) if [ -z "$2" ]; then after_install install; else after_install upgrade; fi ;; esac' > "$root/DEBIAN/postinst"
    script "$pkg" 'case "$1" in remove|deconfigure) before_remove ;; esac' > "$root/DEBIAN/prerm"
    script "$pkg" 'case "$1" in remove) after_remove ;; purge) after_remove; purge ;; esac' > "$root/DEBIAN/postrm"
    chmod 0755 "$root"/DEBIAN/{postinst,prerm,postrm}
  fi
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
     xargs -r md5sum > DEBIAN/md5sums)
  file=$out/${pkg}_${v}_amd64.deb
  dpkg-deb --root-owner-group "${deb_compress[@]}" --build "$root" "$file" >/dev/null
  echo "$file"
}

# --- rpm ---------------------------------------------------------------------------------------
rpm_pkg() { # pkg version requires recommends summary
  local pkg=$1 v=$2 top=$build/rpm/$1 spec f path attr
  rm -rf "$top"; mkdir -p "$top"/{BUILD,RPMS,SPECS,SRPMS,BUILDROOT}
  spec=$top/SPECS/$pkg.spec
  {
    echo "Name: $pkg"
    echo "Version: $v"
    echo "Release: $release"
    echo "Summary: $5"
    echo "License: Apache-2.0"
    [ "$pkg" != receptor ] || echo "URL: https://github.com/ansible/receptor"
    echo "BuildArch: x86_64"
    echo "AutoReqProv: no"
    echo "Requires: /bin/sh"
    [ -z "$3" ] || echo "Requires: $3"
    [ "$pkg" != meshrun-coordinator ] || echo "Requires(pre): /usr/sbin/useradd, /usr/sbin/groupadd"
    [ -z "$4" ] || echo "Recommends: $4"
    echo "%description"
    echo "$5"
    echo "%install"
    echo "cp -a '$stage/$pkg/.' %{buildroot}/"
    if [ "$pkg" != receptor ]; then
      echo "%pre";    script "$pkg" 'before_install' | tail -n +2
      echo "%post";   script "$pkg" 'if [ "$1" -eq 1 ]; then after_install install; else after_install upgrade; fi' | tail -n +2
      echo "%preun";  script "$pkg" 'if [ "$1" -eq 0 ]; then before_remove; fi' | tail -n +2
      echo "%postun"; script "$pkg" 'if [ "$1" -eq 0 ]; then after_remove; fi' | tail -n +2
    fi
    echo "%files"
    (cd "$stage/$pkg" && find . -mindepth 1 \( -type f -o -type d \) | sed 's|^\.||' | LC_ALL=C sort) |
      while read -r path; do
        # Only directories the package owns alone; shared ones (/usr/bin, /etc, ...) are the system's.
        if [ -d "$stage/$pkg$path" ]; then
          case "$path" in
            /etc/meshrun|/var/lib/meshrun|/var/lib/meshrun/*|/var/log/meshrun|/usr/share/doc/"$pkg"|/usr/share/licenses/"$pkg") ;;
            *) continue ;;
          esac
          attr=$(stat -c '%a' "$stage/$pkg$path")
          if [ "$path" = /var/lib/meshrun/coordinator ]; then
            echo "%dir %attr($attr,meshrun,meshrun) $path"
          else
            echo "%dir %attr($attr,root,root) $path"
          fi
        elif grep -qx "$path" "$build/$pkg.conffiles"; then
          attr=$(stat -c '%a' "$stage/$pkg$path")
          if [ "$pkg" = meshrun-coordinator ]; then
            echo "%config(noreplace) %attr($attr,root,meshrun) $path"
          else
            echo "%config(noreplace) %attr($attr,root,root) $path"
          fi
        else
          case "$path" in
            /usr/share/licenses/*) echo "%license $path" ;;
            *) echo "%attr($(stat -c '%a' "$stage/$pkg$path"),root,root) $path" ;;
          esac
        fi
      done
  } > "$spec"
  rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "_build_id_links none" \
    --define "debug_package %{nil}" \
    --define "__os_install_post %{nil}" \
    --define "_binary_payload $rpm_payload" \
    --buildroot "$top/BUILDROOT/root" "$spec" >"$top/rpmbuild.log" 2>&1 ||
    { cat "$top/rpmbuild.log" >&2; die "rpmbuild $pkg failed"; }
  f=$(find "$top/RPMS" -name '*.rpm' | head -n 1)
  mv "$f" "$out/"
  echo "$out/$(basename "$f")"
}

rm -f "$out"/*.deb "$out"/*.rpm
say "packing .deb and .rpm"
agent_desc="meshrun node agent: runs receptor and the Ansible jobs it is sent"
coord_desc="meshrun control plane (coordinator service) and the meshrun command line"
receptor_desc="Receptor overlay network for distributed work (meshrun's pinned build)"
deb meshrun-agent "$version" "receptor (>= $RECEPTOR_VERSION), procps" "podman, runc, catatonit" "$agent_desc" >/dev/null
deb meshrun-coordinator "$version" "meshrun-agent (= $version-$release), passwd" "" "$coord_desc" >/dev/null
[ -z "$receptor_origin" ] || deb receptor "$RECEPTOR_VERSION" "" "" "$receptor_desc" >/dev/null
rpm_pkg meshrun-agent "$version" "receptor >= $RECEPTOR_VERSION, /usr/bin/kill" "podman" "$agent_desc" >/dev/null
rpm_pkg meshrun-coordinator "$version" "meshrun-agent = $version-$release" "" "$coord_desc" >/dev/null
[ -z "$receptor_origin" ] || rpm_pkg receptor "$RECEPTOR_VERSION" "" "" "$receptor_desc" >/dev/null

say "packages done"

# --- footprint ---------------------------------------------------------------------------------
{
  echo "meshrun $version-$release, target $target"
  echo "receptor $RECEPTOR_VERSION: ${receptor_origin:-NOT BUILT (none could be built or found)}"
  echo "binaries (bytes):"
  for b in meshrun-agent meshrun-coordinator meshrun; do
    printf '  %-22s %10s\n' "$b" "$(stat -c %s "$bindir/$b")"
  done
  [ -z "$receptor_origin" ] || printf '  %-22s %10s\n' receptor "$(stat -c %s "$rbin")"
  echo "packages (bytes; installed size in KiB):"
  for f in "$out"/*.deb; do
    printf '  %-48s %10s  installed %s KiB\n' "$(basename "$f")" "$(stat -c %s "$f")" \
      "$(dpkg-deb -f "$f" Installed-Size)"
  done
  for f in "$out"/*.rpm; do
    printf '  %-48s %10s  installed %s KiB\n' "$(basename "$f")" "$(stat -c %s "$f")" \
      "$(( $(rpm -qp --qf '%{SIZE}' "$f" 2>/dev/null) / 1024 ))"
  done
} | tee "$out/FOOTPRINT.txt"
