"""Stores: protocols, in-memory and file implementations, the ledger hash chain."""

from .chain import compute_record_hash, verify_ledger_chain
from .memory import InMemoryLedgerStore, InMemoryRunStore

__all__ = ["InMemoryRunStore", "InMemoryLedgerStore", "compute_record_hash", "verify_ledger_chain"]
