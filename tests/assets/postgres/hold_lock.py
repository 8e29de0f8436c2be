"""Hold one run's lock of a PostgreSQL store in a process of its own.

Usage: python hold_lock.py URL SCHEMA RUN_ID
Prints ``locked`` once the lock is held (``busy`` if not within 10 s), then holds it
until a line arrives on stdin or stdin closes — or until the process is killed, which
is what the killed-holder test does.
"""

import sys

from abstractrt_cli.errors import RunBusyError
from abstractrt_cli.storage.postgres import open_postgres_stores


def main() -> int:
    url, schema, run_id = sys.argv[1:4]
    stores = open_postgres_stores(url, schema=schema)
    try:
        with stores.runs.lock(run_id, timeout=10):
            print("locked", flush=True)
            sys.stdin.readline()
    except RunBusyError:
        print("busy", flush=True)
        return 1
    finally:
        stores.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
