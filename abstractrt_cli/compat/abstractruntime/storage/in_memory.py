"""AbstractRuntime's in-memory stores: abstractrt's (``abstractrt_cli.storage.memory``)."""

from __future__ import annotations

import threading
from typing import Any

from ....storage import memory as _memory
from ._queries import AbstractRuntimeQueries
from .base import LedgerStore, RunStore

__all__ = ["InMemoryRunStore", "InMemoryLedgerStore"]


class InMemoryRunStore(AbstractRuntimeQueries, _memory.InMemoryRunStore, RunStore):
    """abstractrt's in-memory run store with AbstractRuntime's query signatures.

    Runs are deep-copied in and out, as a durable store would: change a loaded run and
    ``save`` it for the change to count.

    AbstractRuntime's scheduler polls in a background thread by default, so a query may
    meet a ``save`` from another thread; the kernel store iterates its dict without a
    lock ("dictionary changed size during iteration"), so here saves and queries take
    one. (To go once ``storage/memory.py`` iterates over a copy.)
    """

    def __init__(self) -> None:
        super().__init__()
        self._rw = threading.RLock()

    def save(self, run: Any) -> None:
        with self._rw:
            super().save(run)

    def list_runs(self, **query: Any) -> Any:
        with self._rw:
            return super().list_runs(**query)

    def list_due_wait_until(self, **query: Any) -> Any:
        with self._rw:
            return super().list_due_wait_until(**query)

    def list_children(self, **query: Any) -> Any:
        with self._rw:
            return super().list_children(**query)

    def earliest_due(self) -> Any:
        with self._rw:
            return super().earliest_due()

    def match_prefix(self, prefix: str, **options: Any) -> Any:
        with self._rw:
            return super().match_prefix(prefix, **options)

    def info(self) -> Any:
        with self._rw:
            return super().info()


class InMemoryLedgerStore(_memory.InMemoryLedgerStore, LedgerStore):
    """abstractrt's in-memory ledger: every record hash-chained as it is appended."""
