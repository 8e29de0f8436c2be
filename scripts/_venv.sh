# Sourced by demo.sh and test.sh: make (or reuse) the project's virtualenv and install
# abstractrt into it. VENV overrides the location (default: .venv in the checkout).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "abstractrt needs Python >= 3.10 (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".$1"
export PATH="$PWD/$VENV/bin:$PATH"
