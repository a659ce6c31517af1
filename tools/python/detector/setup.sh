#!/usr/bin/env bash
# Creates tools/python/.venv-detector (gitignored) with the pinned conversion/evaluation packages,
# and installs the pinned TFJS reference runtime used by the tests into tools/python/.cache/tfjs.
# Needs CPython 3.11 (python3.11 or python3 of that version), node and npm.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py_tools="$(dirname "$here")"
venv="$py_tools/.venv-detector"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then py="$c"; break; fi
  done
fi
[ -n "$py" ] || { echo "setup.sh: CPython 3.11 is required (set PYTHON=...)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -r "$here/requirements.txt"
mkdir -p "$py_tools/.cache/tfjs"
npm install --no-save --prefix "$py_tools/.cache/tfjs" \
  @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-backend-cpu@4.22.0 @tensorflow/tfjs-converter@4.22.0
echo "ready: $venv"
