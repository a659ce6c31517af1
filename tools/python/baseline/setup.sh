#!/usr/bin/env bash
# Creates tools/python/.venv-baseline (gitignored) and installs the pinned packages of requirements.txt.
# Needs CPython 3.11 (set PYTHON=... to choose the interpreter).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-baseline"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "venv ready: $venv"
