"""AbstractRuntime's ``storage``: abstractrt's stores under AbstractRuntime's names."""

from .base import LedgerStore, QueryableRunStore, RunStore
from .in_memory import InMemoryLedgerStore, InMemoryRunStore
from .json_files import JsonFileRunStore, JsonlLedgerStore
from .ledger_chain import HashChainedLedgerStore, verify_ledger_chain
from .snapshots import InMemorySnapshotStore, JsonSnapshotStore, Snapshot, SnapshotStore

__all__ = [
    "RunStore", "LedgerStore", "QueryableRunStore", "InMemoryRunStore", "InMemoryLedgerStore",
    "JsonFileRunStore", "JsonlLedgerStore", "HashChainedLedgerStore", "verify_ledger_chain",
    "Snapshot", "SnapshotStore", "InMemorySnapshotStore", "JsonSnapshotStore",
]
