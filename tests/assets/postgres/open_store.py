"""Open a PostgreSQL store (creating its schema) as soon as GO_FILE appears.

Usage: python open_store.py URL SCHEMA GO_FILE
Prints ``ready`` after its imports, then ``version N`` once the store is open.
"""

import os
import sys
import time

from abstractrt_cli.storage.postgres import open_postgres_stores


def main() -> int:
    url, schema, go_file = sys.argv[1:4]
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.0005)
    stores = open_postgres_stores(url, schema=schema)
    try:
        print(f"version {stores.info()['format']}", flush=True)
    finally:
        stores.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
