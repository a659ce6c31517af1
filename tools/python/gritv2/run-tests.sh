#!/usr/bin/env bash
# Run the GRITv2-S tooling tests: creates the venv first if it is missing. Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-gritv2"
if [ ! -x "$venv/bin/python" ]; then
  bash "$here/setup.sh"
fi
cd "$here"
exec nice -n 10 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
