# Sourced by the scripts: a virtual environment in .venv with the project installed from this checkout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11 or newer is needed (found $("$PYTHON" --version 2>&1)); set PYTHON=python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "${IMI_EXTRAS-test}" ]; then
  .venv/bin/python -m pip install --quiet --editable ".[${IMI_EXTRAS-test}]"
else
  .venv/bin/python -m pip install --quiet --editable .
fi
