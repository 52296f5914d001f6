#!/usr/bin/env bash
# Creates VENV with the pinned ansible-runner and ansible-core (idempotent).
#
#   packaging/python/install-venv.sh VENV RUNNER_VERSION CORE_VERSION
set -euo pipefail
venv=${1:?usage: install-venv.sh VENV RUNNER_VERSION CORE_VERSION}
runner=${2:?}
core=${3:?}
stamp="$venv/.meshrun-pins"
want="ansible-runner==$runner ansible-core==$core"
if [ -x "$venv/bin/ansible-runner" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" > "$stamp"
echo "venv: $("$venv/bin/ansible-runner" --version | head -n 1), $("$venv/bin/ansible" --version | head -n 1)" >&2
