"""Where things are under the data dir, and the lazy creation of its private dirs."""

from __future__ import annotations

import os
from typing import Any

from .atomic import ensure_private_dir

class Layout:
    """Paths under the data dir, and lazy creation of its (private) directories."""

    def __init__(self, data_dir: Any, fsync: bool) -> None:
        self.fsync = fsync
        ensure_private_dir(os.path.abspath(os.fspath(data_dir)), fsync=fsync)
        # The real path: lock files are registered per process by path (see locks.py), so
        # two spellings of one data dir must not make two registrations of one lock.
        self.root = os.path.realpath(os.fspath(data_dir))
        self.runs = os.path.join(self.root, "runs")
        self.locks = os.path.join(self.root, "locks")
        self.index = os.path.join(self.root, "index")
        for d in (self.runs, self.locks, self.index):
            ensure_private_dir(d, fsync=fsync)
        self.index_db = os.path.join(self.index, "index.sqlite3")
        self.rebuild_lock = os.path.join(self.index, "rebuild.lock")

    def run_path(self, run_id: str) -> str:
        return os.path.join(self.runs, run_id[0], run_id + ".json")

    def ledger_path(self, run_id: str) -> str:
        return os.path.join(self.runs, run_id[0], run_id + ".jsonl")

    def lock_path(self, run_id: str) -> str:
        return os.path.join(self.locks, run_id[0], run_id + ".lock")

    def ensure_shard(self, base: str, run_id: str) -> None:
        # A lock file need not survive a crash, so its directory needs no fsync.
        ensure_private_dir(os.path.join(base, run_id[0]), fsync=self.fsync and base != self.locks)

