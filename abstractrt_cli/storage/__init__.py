"""Stores: protocols, in-memory, file and PostgreSQL implementations, the ledger hash chain.

``open_stores(...)`` is the one place that decides which store a command uses. The file
stores are imported on first use (they bring in sqlite3), PostgreSQL's only for a
``postgresql://`` store: ``import abstractrt_cli`` stays cheap for a command that cron
runs every minute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from .base import Stores
from .chain import compute_record_hash, verify_ledger_chain

_FILE_STORES = ("FileRunStore", "FileLedgerStore", "open_file_stores", "open_file_bundle")
_MEMORY_STORES = ("InMemoryRunStore", "InMemoryLedgerStore", "memory_stores", "empty_stores")
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
POSTGRES_EXTRA = "abstractrt-cli[postgres]"

__all__ = [
    "open_stores", "Stores", "InMemoryRunStore", "InMemoryLedgerStore", "memory_stores",
    "FileRunStore", "FileLedgerStore", "open_file_stores", "open_file_bundle",
    "compute_record_hash", "verify_ledger_chain",
]


def open_stores(store: Optional[str], data_dir: Union[str, "os.PathLike[str]"], *,
                create: bool, connect_timeout: float = 5.0) -> Stores:
    """The stores a command works on.

    ``store`` None, or a path: the file store of that data dir (``store`` wins over
    ``data_dir``). Without ``create`` a data dir that does not exist yet reads as empty
    stores, and is never created (queries and refused commands leave the disk as it
    was); with it, it is created 0700. A ``postgresql://`` URL: the PostgreSQL store
    (``connect_timeout`` seconds to reach it), which needs the extra ``[postgres]``.
    """
    if store is not None and store.startswith(_POSTGRES_SCHEMES):
        try:
            from .postgres import open_postgres_stores
        except ImportError:
            raise _needs_psycopg() from None
        try:
            return open_postgres_stores(store, connect_timeout=connect_timeout)
        except ImportError:
            raise _needs_psycopg() from None
    path = Path(store if store is not None else data_dir).expanduser()
    location = os.path.abspath(os.fspath(path))
    from . import files

    if not create and not files.data_dir_exists(location):
        # Nothing stored yet: empty stores (which never write anything anywhere), every
        # part there and empty, so that queries of any of them answer "none"; what would
        # keep something in them is refused, never silently lost.
        from .memory import empty_stores

        return empty_stores(kind="files", location=location)

    stores = files.open_file_bundle(location, create=create)
    stores.location = location
    return stores


def _needs_psycopg() -> Exception:
    from ..errors import StoreUnavailableError

    return StoreUnavailableError(
        f"the PostgreSQL store needs psycopg: pip install '{POSTGRES_EXTRA}'")


def __getattr__(name: str) -> Any:
    if name in _FILE_STORES:
        from . import files

        return getattr(files, name)
    if name in _MEMORY_STORES:
        from . import memory

        return getattr(memory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
