#!/usr/bin/env bash
# Creates tools/python/.venv-demo with the pinned packages for make_demo_frames.py.
# Usage (from anywhere): bash tools/python/demo_frames/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-demo"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "ready: $venv/bin/python $here/make_demo_frames.py"
