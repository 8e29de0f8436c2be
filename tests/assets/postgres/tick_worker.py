"""One of several processes doing what ``tick --all`` does over one PostgreSQL store.

Usage: python tick_worker.py URL SCHEMA SIDE_LOG N_EFFECTS GO_FILE
Waits for GO_FILE, then, round after round, lists the running runs and ticks each one it
can lock (try-lock: a run another process holds is skipped, as ``tick --all`` does),
until no run is left running. Prints one JSON line: {"ticks": n, "busy": n, "rounds": n}.
Each process has its own connections: as far as the server can tell, another machine.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "storage"))

from abstractrt_cli import Runtime, RuntimeConfig  # noqa: E402
from abstractrt_cli.core.models import RunStatus  # noqa: E402
from abstractrt_cli.errors import RunBusyError  # noqa: E402
from abstractrt_cli.storage.postgres import open_postgres_stores  # noqa: E402
from workflows import counter_workflow, side_effect_handler  # noqa: E402


def main() -> int:
    url, schema, side_log, n_effects, go_file = sys.argv[1:6]
    wf = counter_workflow(int(n_effects))
    stores = open_postgres_stores(url, schema=schema)
    rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger,
                 config=RuntimeConfig(lock_timeout=0),
                 effect_handlers={"side": side_effect_handler(side_log)},
                 workflow_registry={wf.workflow_id: wf})
    while not os.path.exists(go_file):
        time.sleep(0.001)
    ticks = busy = rounds = 0
    while True:
        running = stores.runs.list_runs(status=RunStatus.RUNNING)
        if not running:
            break
        rounds += 1
        for run in running:
            try:
                rt.tick(run_id=run.run_id, workflow=wf, max_steps=3)
            except RunBusyError:
                busy += 1
                continue
            ticks += 1
    print(json.dumps({"ticks": ticks, "busy": busy, "rounds": rounds}), flush=True)
    stores.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
