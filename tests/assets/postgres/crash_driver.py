"""Drive a few ``counter`` runs to completion over the PostgreSQL store; meant to be killed.

Usage: python crash_driver.py URL SCHEMA SIDE_LOG N_RUNS N_EFFECTS
Prints ``ready`` once imports are done and it starts working, ``done`` at the end.
Run ids are fixed, so a restarted driver carries on where the killed one stopped.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "storage"))

from abstractrt_cli import Runtime  # noqa: E402
from abstractrt_cli.storage.postgres import open_postgres_stores  # noqa: E402
from workflows import counter_workflow, side_effect_handler  # noqa: E402


def run_ids(n: int):
    return [f"run-{k:02d}" for k in range(n)]


def main() -> int:
    url, schema, side_log = sys.argv[1:4]
    n_runs, n_effects = int(sys.argv[4]), int(sys.argv[5])
    wf = counter_workflow(n_effects)
    stores = open_postgres_stores(url, schema=schema)
    rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger,
                 effect_handlers={"side": side_effect_handler(side_log)},
                 workflow_registry={wf.workflow_id: wf})
    print("ready", flush=True)
    for rid in run_ids(n_runs):
        if stores.runs.load(rid) is None:
            rt.start(workflow=wf, run_id=rid)
        while not rt.tick(run_id=rid, workflow=wf, max_steps=7).status.is_terminal:
            pass
    print("done", flush=True)
    stores.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
