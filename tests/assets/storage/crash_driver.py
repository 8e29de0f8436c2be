"""Drive a few ``counter`` runs to completion with the file stores; meant to be killed.

Usage: python crash_driver.py DATA_DIR SIDE_LOG N_RUNS N_EFFECTS
Prints ``ready`` once imports are done and it starts working, ``done`` at the end.
Run ids are fixed, so a restarted driver carries on where the killed one stopped.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from abstractrt_cli import Runtime  # noqa: E402
from abstractrt_cli.storage import open_file_stores  # noqa: E402
from workflows import counter_workflow, side_effect_handler  # noqa: E402


def run_ids(n: int):
    # Different first characters: different shard directories.
    return [f"{'abcdefgh'[k % 8]}run-{k:02d}" for k in range(n)]


def main() -> int:
    data_dir, side_log = sys.argv[1], sys.argv[2]
    n_runs, n_effects = int(sys.argv[3]), int(sys.argv[4])
    wf = counter_workflow(n_effects)
    rs, ls = open_file_stores(data_dir)
    rt = Runtime(run_store=rs, ledger_store=ls,
                 effect_handlers={"side": side_effect_handler(side_log)},
                 workflow_registry={wf.workflow_id: wf})
    print("ready", flush=True)
    for rid in run_ids(n_runs):
        if rs.load(rid) is None:
            rt.start(workflow=wf, run_id=rid)
        while not rt.tick(run_id=rid, workflow=wf, max_steps=7).status.is_terminal:
            pass
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
