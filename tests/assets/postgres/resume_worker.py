"""Resume one waiting run of a PostgreSQL store when GO_FILE appears; say who won.

Usage: python resume_worker.py URL SCHEMA SIDE_LOG RUN_ID GO_FILE LOCK_TIMEOUT
Prints ``ready``, then ``won``, ``busy`` (RunBusyError) or ``not-waiting``.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "storage"))

from abstractrt_cli import Runtime, RuntimeConfig  # noqa: E402
from abstractrt_cli.errors import RunBusyError, RunNotWaitingError  # noqa: E402
from abstractrt_cli.storage.postgres import open_postgres_stores  # noqa: E402
from workflows import ask_workflow, side_effect_handler  # noqa: E402


def main() -> int:
    url, schema, side_log, run_id, go_file, lock_timeout = sys.argv[1:7]
    wf = ask_workflow(slow=0.3)
    stores = open_postgres_stores(url, schema=schema)
    rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger,
                 config=RuntimeConfig(lock_timeout=float(lock_timeout)),
                 effect_handlers={"side": side_effect_handler(side_log)})
    stores.runs.load(run_id)  # connected before the start line, like its rival
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.0005)
    try:
        rt.resume(run_id=run_id, payload={"response": f"from {os.getpid()}"}, workflow=wf)
    except RunBusyError:
        print("busy", flush=True)
    except RunNotWaitingError:
        print("not-waiting", flush=True)
    else:
        print("won", flush=True)
    stores.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
