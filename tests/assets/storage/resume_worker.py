"""Resume one waiting run when GO_FILE appears; say who won.

Usage: python resume_worker.py DATA_DIR SIDE_LOG RUN_ID GO_FILE LOCK_TIMEOUT
Prints ``won``, ``busy`` (RunBusyError) or ``not-waiting`` (RunNotWaitingError).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from abstractrt_cli import Runtime, RuntimeConfig  # noqa: E402
from abstractrt_cli.errors import RunBusyError, RunNotWaitingError  # noqa: E402
from abstractrt_cli.storage import open_file_stores  # noqa: E402
from workflows import ask_workflow, side_effect_handler  # noqa: E402


def main() -> int:
    data_dir, side_log, run_id, go_file, lock_timeout = sys.argv[1:6]
    wf = ask_workflow(slow=0.3)
    rs, ls = open_file_stores(data_dir)
    rt = Runtime(run_store=rs, ledger_store=ls,
                 config=RuntimeConfig(lock_timeout=float(lock_timeout)),
                 effect_handlers={"side": side_effect_handler(side_log)})
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
