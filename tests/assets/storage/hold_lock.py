"""Hold one run's lock in a separate process until stdin closes or a line arrives.

Usage: python hold_lock.py DATA_DIR RUN_ID
Prints ``locked`` once the lock is held (or ``busy`` if it could not be taken in 10 s).
"""

import sys

from abstractrt_cli.errors import RunBusyError
from abstractrt_cli.storage.files import FileRunStore


def main() -> int:
    data_dir, run_id = sys.argv[1], sys.argv[2]
    store = FileRunStore(data_dir)
    try:
        with store.lock(run_id, timeout=10):
            print("locked", flush=True)
            sys.stdin.readline()
    except RunBusyError:
        print("busy", flush=True)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
