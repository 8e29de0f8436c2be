"""AbstractRuntime's in-memory stores: abstractrt's (``abstractrt_cli.storage.memory``)."""

from __future__ import annotations

from ....storage import memory as _memory
from ._queries import AbstractRuntimeQueries
from .base import LedgerStore, RunStore

__all__ = ["InMemoryRunStore", "InMemoryLedgerStore"]


class InMemoryRunStore(AbstractRuntimeQueries, _memory.InMemoryRunStore, RunStore):
    """abstractrt's in-memory run store with AbstractRuntime's query signatures.

    Runs are deep-copied in and out, as a durable store would: change a loaded run and
    ``save`` it for the change to count."""


class InMemoryLedgerStore(_memory.InMemoryLedgerStore, LedgerStore):
    """abstractrt's in-memory ledger: every record hash-chained as it is appended."""
