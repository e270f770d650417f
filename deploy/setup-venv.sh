#!/usr/bin/env bash
# Create the virtualenv (default .venv) and install mininova into it, editable.
# Re-runs only pip when setup.cfg changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
# Extras to install (default "test"; deploy/controller.sh and compute.sh pass "").
EXTRAS=${MININOVA_VENV_EXTRAS-test}
spec=.
[[ -z $EXTRAS ]] || spec=".[$EXTRAS]"
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
stamp=$VENV/.mininova-installed
if [[ ! -e $stamp || setup.cfg -nt $stamp || pyproject.toml -nt $stamp ]]; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e "$spec"
    touch "$stamp"
fi
echo "setup-venv.sh: $VENV ready"
