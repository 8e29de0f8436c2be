"""AbstractRuntime's file stores: abstractrt's durable ones (``abstractrt_cli.storage.files``).

``JsonFileRunStore(base_dir)`` and ``JsonlLedgerStore(base_dir)`` keep AbstractRuntime's
constructor; given the same directory they make one abstractrt data dir (run files and
their ledgers side by side, an index for queries, atomic fsynced writes, per-run locks
that hold across processes). The layout on disk is abstractrt's, not AbstractRuntime's
``run_<id>.json`` / ``ledger_<id>.jsonl``: to bring old runs over, read them with
AbstractRuntime and save them through these stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ....storage.files import FileLedgerStore, FileRunStore
from ._queries import AbstractRuntimeQueries
from .base import LedgerStore, RunStore

__all__ = ["JsonFileRunStore", "JsonlLedgerStore"]


class JsonFileRunStore(AbstractRuntimeQueries, FileRunStore, RunStore):
    """abstractrt's file run store, with AbstractRuntime's constructor and query signatures."""

    def __init__(self, base_dir: Union[str, Path], **options: object) -> None:
        super().__init__(str(base_dir), **options)  # type: ignore[arg-type]


class JsonlLedgerStore(FileLedgerStore, LedgerStore):
    """abstractrt's hash-chained JSONL ledgers (appends fdatasynced before returning)."""

    def __init__(self, base_dir: Union[str, Path], **options: object) -> None:
        super().__init__(str(base_dir), **options)  # type: ignore[arg-type]
