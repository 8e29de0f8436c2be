#!/usr/bin/env bash
# Install abstractrt into .venv, then run the demo: start the `approval` example workflow,
# show its waiting prompt, answer it, and print the run's ledger. Data goes to a
# throw-away directory (kept and printed at the end so you can explore it).
source "$(dirname "$0")/_venv.sh" ""
export ABSTRACTRT_DATA_DIR=${ABSTRACTRT_DATA_DIR:-$(mktemp -d -t abstractrt-demo.XXXXXX)}
export ABSTRACTRT_WORKFLOWS=${ABSTRACTRT_WORKFLOWS:-$PWD/workflows}

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say abstractrt workflows
abstractrt workflows

say abstractrt start approval --set title="New laptop" --set amount=1450
RUN=$(abstractrt start approval --set title="New laptop" --set amount=1450 --json \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["run_id"])')
echo "started run $RUN"

say abstractrt waiting
abstractrt waiting

say abstractrt resume "${RUN:0:8}" --answer approve
abstractrt resume "${RUN:0:8}" --answer approve

say abstractrt resume "${RUN:0:8}" --answer "\"within this quarter's budget\""
abstractrt resume "${RUN:0:8}" --answer "within this quarter's budget"

say abstractrt ledger "${RUN:0:8}"
abstractrt ledger "${RUN:0:8}"

say abstractrt ledger "${RUN:0:8}" --verify
abstractrt ledger "${RUN:0:8}" --verify

printf '\nDemo data is in %s — try: ABSTRACTRT_DATA_DIR=%s .venv/bin/abstractrt runs\n' \
  "$ABSTRACTRT_DATA_DIR" "$ABSTRACTRT_DATA_DIR"
