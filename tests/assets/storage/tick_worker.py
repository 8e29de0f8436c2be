"""One of several processes ticking the same runs at once, skipping busy ones.

Usage: python tick_worker.py DATA_DIR SIDE_LOG N_EFFECTS GO_FILE RUN_ID...
Waits for GO_FILE to exist, then ticks every run (try-lock, a few steps at a time) until
all are terminal. Prints one JSON line: {"ticks": n, "busy": n}.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from abstractrt_cli import Runtime, RuntimeConfig  # noqa: E402
from abstractrt_cli.errors import RunBusyError  # noqa: E402
from abstractrt_cli.storage import open_file_stores  # noqa: E402
from workflows import counter_workflow, side_effect_handler  # noqa: E402


def main() -> int:
    data_dir, side_log, n_effects, go_file = sys.argv[1:5]
    pending = list(sys.argv[5:])
    wf = counter_workflow(int(n_effects))
    rs, ls = open_file_stores(data_dir)
    rt = Runtime(run_store=rs, ledger_store=ls, config=RuntimeConfig(lock_timeout=0),
                 effect_handlers={"side": side_effect_handler(side_log)},
                 workflow_registry={wf.workflow_id: wf})
    while not os.path.exists(go_file):
        time.sleep(0.001)
    ticks = busy = 0
    while pending:
        for rid in list(pending):
            try:
                run = rt.tick(run_id=rid, workflow=wf, max_steps=3)
            except RunBusyError:
                busy += 1
                continue
            ticks += 1
            if run.status.is_terminal:
                pending.remove(rid)
    print(json.dumps({"ticks": ticks, "busy": busy}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
