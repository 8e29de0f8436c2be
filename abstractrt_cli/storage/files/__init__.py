"""Durable file stores: one JSON file per run, one JSONL ledger per run, a query index.

Layout under the data dir (created 0700; every file 0600)::

    runs/<a>/<run_id>.json        the run: its RunState JSON, indented, human-readable
    runs/<a>/<run_id>.jsonl       its ledger: one hash-chained record per line
    locks/<a>/<run_id>.lock       its lock file (fcntl.flock; kept after release)
    index/index.sqlite3           the query index (+ -wal/-shm), see ``index.py``
    index/rebuild.lock            held while the index is (re)built

``<a>`` is the first character of the run id: uuid ids spread over 16 directories
(200,000 runs: 12,500 files each, easy for any file system and for ``ls``), and a fresh
data dir pays for at most a few dozen ``mkdir`` + directory fsyncs in its life. A run's
ledger sits beside its run file so that one directory fsync covers both: the run store
creates the (empty) ledger file with a new run, before the fsync that makes the run
file durable, so no append ever needs a directory fsync of its own.

One concept a module: ``ids`` (which run ids are safe file names), ``layout`` (paths and
dirs), ``runs`` (the run store and its dirty-row save), ``queries`` (finding runs through
the index, and repairing it), ``rebuild`` (keeping the index whole), ``index`` (the SQLite
table), ``keys`` (a run's indexed fields), ``ledger`` (the ledger store and its tail
scan), ``jsonfmt`` (the run files' JSON), ``atomic`` and ``locks`` (file primitives).

Processes. SQLite serialises the writers of the index (WAL mode, busy timeout); run
locks keep two processes off one run; a forked child opens its own index connection.
"""

from __future__ import annotations

from typing import Any, Tuple

from .ids import validate_run_id
from .jsonfmt import dumps_readable
from .keys import index_key
from .ledger import FileLedgerStore
from .runs import FileRunStore

__all__ = [
    "FileRunStore", "FileLedgerStore", "open_file_stores", "validate_run_id", "index_key",
    "dumps_readable",
]


def open_file_stores(data_dir: Any, *, fsync: bool = True) -> Tuple[FileRunStore, FileLedgerStore]:
    """The run store and the ledger store of one data dir."""
    return FileRunStore(data_dir, fsync=fsync), FileLedgerStore(data_dir, fsync=fsync)
