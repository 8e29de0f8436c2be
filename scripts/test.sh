#!/usr/bin/env bash
# Install abstractrt with its test extra into .venv and run the whole test suite.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k ledger -x
source "$(dirname "$0")/_venv.sh" "[test]"
exec "$VENV/bin/python" -m pytest "$@"
