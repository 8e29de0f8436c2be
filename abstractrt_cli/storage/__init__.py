"""Stores: protocols, in-memory and file implementations, the ledger hash chain.

The file stores are imported on first use (they bring in sqlite3): ``import
abstractrt_cli`` stays cheap for a command that cron runs every minute.
"""

from typing import Any

from .chain import compute_record_hash, verify_ledger_chain
from .memory import InMemoryLedgerStore, InMemoryRunStore

_FILE_STORES = ("FileRunStore", "FileLedgerStore", "open_file_stores")

__all__ = [
    "InMemoryRunStore", "InMemoryLedgerStore", "FileRunStore", "FileLedgerStore",
    "open_file_stores", "compute_record_hash", "verify_ledger_chain",
]


def __getattr__(name: str) -> Any:
    if name in _FILE_STORES:
        from . import files

        return getattr(files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
