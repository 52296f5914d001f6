#!/usr/bin/env bash
# Creates VENV with the pinned ansible-runner, ansible-core and receptorctl (idempotent).
# receptorctl is pinned to receptor's own version; bench-jobs runs it as the bare baseline.
#
#   packaging/python/install-venv.sh VENV RUNNER_VERSION CORE_VERSION RECEPTORCTL_VERSION
set -euo pipefail
usage="usage: install-venv.sh VENV RUNNER_VERSION CORE_VERSION RECEPTORCTL_VERSION"
venv=${1:?$usage}
runner=${2:?$usage}
core=${3:?$usage}
receptorctl=${4:?$usage}
stamp="$venv/.meshrun-pins"
want="ansible-runner==$runner ansible-core==$core receptorctl==$receptorctl"
if [ -x "$venv/bin/ansible-runner" ] && [ -x "$venv/bin/receptorctl" ] &&
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
# shellcheck disable=SC2086 # $want is a list of requirement specifiers
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" > "$stamp"
echo "venv: $("$venv/bin/ansible-runner" --version | sed -n 1p), $("$venv/bin/ansible" --version | sed -n 1p), receptorctl $("$venv/bin/pip" show receptorctl 2>/dev/null | sed -n 's/^Version: //p')" >&2
