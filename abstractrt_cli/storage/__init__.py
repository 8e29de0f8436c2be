"""Stores: protocols, in-memory and file implementations, the ledger hash chain."""

from .chain import compute_record_hash, verify_ledger_chain
from .files import FileLedgerStore, FileRunStore, open_file_stores
from .memory import InMemoryLedgerStore, InMemoryRunStore

__all__ = [
    "InMemoryRunStore", "InMemoryLedgerStore", "FileRunStore", "FileLedgerStore",
    "open_file_stores", "compute_record_hash", "verify_ledger_chain",
]
