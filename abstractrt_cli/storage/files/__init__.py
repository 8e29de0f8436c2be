"""Durable file stores: one JSON file per run, one JSONL ledger per run, a query index.

Layout under the data dir (created 0700; every file 0600)::

    format.json                   {"format": 3}: see ``version.py``
    runs/<a>/<run_id>.json        the run: its RunState JSON, indented, human-readable
    runs/<a>/<run_id>.jsonl       its ledger: one hash-chained record per line; also the
                                  run's lock (fcntl.flock)
    index/index.sqlite3           the query index (+ -wal/-shm), see ``index.py``
    index/rebuild.lock            held while the index is (re)built
    events/<a>/<event_id>.json    a kept event, and ``.recv`` its receipts (``events.py``)
    snapshots/<a>/<run_id>/*.json a run's snapshots (``snapshots.py``)
    artifacts/sha256/<xx>/<hex>   an artifact's bytes, and ``.meta.json`` (``artifacts.py``)
    audit/pruned.jsonl            prune records; ``audit/heartbeats/`` (``audit.py``)
    logs/<a>/<run_id>.jsonl       what a run's node code printed (``logs.py``)
    wake                          touched by ``wake``, polled by ``listen`` (``runs.py``)

``<a>`` is the first character of the run id: uuid ids spread over 16 directories
(200,000 runs: 12,500 files each, easy for any file system and for ``ls``), and a fresh
data dir pays for at most a few dozen ``mkdir`` + directory fsyncs in its life. A run's
ledger sits beside its run file so that one directory (and one kept descriptor of it)
serves both.

Nothing in the data dir is followed through a symlink (``atomic.py``); what the
environment refuses (permission, read-only, disk full, a file where a directory belongs)
is a ``StoreIOError`` naming the path (``oserrors.py``); queries work on a data dir this
process cannot write.

One concept a module: ``ids`` (which run ids are safe file names), ``layout`` (paths and
directory descriptors), ``version`` (the format version and upgrades), ``runs`` (the run
store, its dirty-row save and its locks), ``queries`` (finding runs through the index,
and repairing it), ``rebuild`` (keeping the index whole), ``index`` (the SQLite table),
``keys`` (a run's indexed fields), ``ledger`` (the ledger store and its tail scan),
``jsonfmt`` (the run files' JSON), ``atomic``, ``lines``, ``locks`` and ``oserrors``
(file primitives and what their failures mean); and the parts of part two: ``events``,
``snapshots``, ``artifacts``, ``audit``, ``logs``.

Processes. SQLite serialises the writers of the index (WAL mode, busy timeout); run
locks keep two processes off one run; a forked child opens its own index connection.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

from .ids import validate_run_id
from .jsonfmt import dumps_readable
from .keys import index_key
from .ledger import FileLedgerStore
from .oserrors import mapped
from .runs import FileRunStore
from .version import FORMAT_VERSION

__all__ = [
    "FileRunStore", "FileLedgerStore", "open_file_stores", "open_file_bundle",
    "validate_run_id", "index_key", "dumps_readable", "rebuild_index", "FORMAT_VERSION",
]


def open_file_stores(data_dir: Any, *, fsync: bool = True,
                     create: bool = True) -> Tuple[FileRunStore, FileLedgerStore]:
    """The run store and the ledger store of one data dir (``create``: make it if missing)."""
    runs = FileRunStore(data_dir, fsync=fsync, create=create)
    return runs, FileLedgerStore(runs.data_dir, fsync=fsync, create=False, version_checked=True)


def open_file_bundle(data_dir: Any, *, fsync: bool = True, create: bool = True) -> Any:
    """Every store of one data dir, as the ``Stores`` bundle commands work on.

    The parts of part two are built (and their modules imported) on first use: a tick or
    a query that never touches events, snapshots or artifacts does not pay for them.
    """
    from ..base import Stores

    runs, ledger = open_file_stores(data_dir, fsync=fsync, create=create)
    layout = runs._layout
    return Stores(runs=runs, ledger=ledger, kind="files", location=runs.data_dir,
                  capabilities=runs.capabilities,
                  events=_Lazy("events", "FileEventStore", runs),
                  snapshots=_Lazy("snapshots", "FileSnapshotStore", layout, fsync=fsync),
                  artifacts=_Lazy("artifacts", "FileArtifactStore", layout, fsync=fsync),
                  audit=_Lazy("audit", "FileAuditStore", layout, fsync=fsync),
                  logs=_Lazy("logs", "FileLogStore", layout, fsync=fsync))


class _Lazy:
    """A part of the bundle, made from ``<module>.<cls>(*args, **kwargs)`` when first used."""

    def __init__(self, module: str, cls: str, *args: Any, **kwargs: Any) -> None:
        self._how = (module, cls, args, kwargs)
        self._made: Any = None

    def _get(self) -> Any:
        if self._made is None:
            import importlib

            module, cls, args, kwargs = self._how
            self._made = getattr(importlib.import_module(f".{module}", __name__), cls)(
                *args, **kwargs)
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def close(self) -> None:
        """Close the part if it was made; one never used has nothing open."""
        if self._made is not None:
            fn = getattr(self._made, "close", None)
            if fn is not None:
                fn()


def data_dir_exists(path: str) -> bool:
    """False only if nothing is there; a path we may not look at is an error, not "no runs"."""
    with mapped(path):
        try:
            os.lstat(path)
        except FileNotFoundError:
            return False
    return True


def rebuild_index(data_dir: Any) -> dict:
    """Rebuild a data dir's query index from its run files (see ``FileRunStore``)."""
    with FileRunStore(data_dir, create=False) as store:
        return store.rebuild_index()
