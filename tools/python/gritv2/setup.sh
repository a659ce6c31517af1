#!/usr/bin/env bash
# Create tools/python/.venv-gritv2 (gitignored) and install the pinned requirements.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-gritv2"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade "pip==26.3"
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
echo "venv ready: $venv"
