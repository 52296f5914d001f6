#!/usr/bin/env bash
# Installs the pinned receptor as <dest> (idempotent).
#
#   packaging/receptor/install.sh VERSION DEST
#
# 1. DEST already runs and reports VERSION: nothing to do.
# 2. `go install github.com/ansible/receptor/cmd/receptor-cl@vVERSION` (static, version stamped
#    through -ldflags so `status` reports it), renamed to DEST.
# 3. If the Go module proxy does not serve receptor, a receptor the machine already has is used:
#    $RECEPTOR_BIN, else `receptor` on PATH. DEST becomes a symlink to it and the version it
#    reports is printed (a different version is allowed, with a warning).
# Exits 1 with an explanation when none of these works.
set -euo pipefail
version=${1:?usage: install.sh VERSION DEST}
dest=${2:?usage: install.sh VERSION DEST}
module=github.com/ansible/receptor

have_version() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "$version" ]; }

if have_version "$dest"; then
  if [ -L "$dest" ]; then
    echo "receptor: using the machine's receptor $version at $(readlink -f "$dest") (not installed by this project)" >&2
  fi
  exit 0
fi
mkdir -p "$(dirname "$dest")"
gobin=$(mktemp -d)
trap 'rm -rf "$gobin"' EXIT
echo "receptor: go install $module/cmd/receptor-cl@v$version" >&2
if GOBIN="$gobin" CGO_ENABLED=0 go install \
     -ldflags "-X $module/internal/version.Version=$version" \
     "$module/cmd/receptor-cl@v$version" 2>"$gobin/err"; then
  mv "$gobin/receptor-cl" "$dest"
  echo "receptor: installed $("$dest" --version) as $dest" >&2
  exit 0
fi
echo "receptor: go install failed: $(tail -n 2 "$gobin/err" | tr '\n' ' ')" >&2

fallback=${RECEPTOR_BIN:-$(command -v receptor || true)}
if [ -n "$fallback" ] && [ -x "$fallback" ]; then
  found=$("$fallback" --version 2>/dev/null || echo unknown)
  ln -sfn "$(readlink -f "$fallback")" "$dest"
  if [ "$found" = "$version" ]; then
    echo "receptor: using the machine's receptor $found at $fallback (not installed by this project)" >&2
  else
    echo "receptor: WARNING: using the machine's receptor $found at $fallback; meshrun pins $version" >&2
  fi
  exit 0
fi
cat >&2 <<MSG
receptor: no receptor available.
  The Go module proxy did not serve $module@v$version, and no receptor was found
  (set RECEPTOR_BIN=/path/to/receptor or put one on PATH).
MSG
exit 1
