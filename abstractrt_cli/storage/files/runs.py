"""The file run store: one JSON file per run, saved atomically, with its index row.

``save`` writes a temp file beside the target, fsyncs it, ``os.replace``s it and fsyncs
the directory: after a crash at any instant the file is the old or the new run, never a
torn one. ``load`` gives None only when the file does not exist; a file that is empty,
truncated, not JSON or not a run raises ``CorruptRunError`` naming it.

A save writes the index only when an indexed field (status, workflow, wait reason/key/
until, parent, created_at) changes; this store remembers each run's indexed fields with
the file's identity, so a save that changes none of them costs one atomic file write
(plus a ``stat`` to be sure no other process replaced the file meanwhile). When they do
change, under the run's lock: write the row as *dirty* with the new fields (durably),
replace the run file, clear the dirty flag. Queries also read the dirty rows — a crash
between the two steps leaves one — and repair them under the run's lock (``queries.py``).
A new *running* run (what ``Runtime.start`` saves) gets its row dirty from the start, so
its first index-changing save (running -> waiting, ...) finds it dirty already — read
under the run's lock, not assumed — and skips the durable first step (the argument:
``_write_indexed``). A run file that turns out corrupt gets a dirty row too, so every
query reports it (``on_corrupt``) until fixed.
"""

from __future__ import annotations

import json
import os
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional, Set, Tuple

from ...core.models import RunState, RunStatus
from ...errors import CorruptRunError, RunBusyError
from . import locks
from .atomic import FILE_MODE, FileIdent, atomic_write, ident_of, read_file
from .ids import validate_run_id
from .index import IndexCorruptError, IndexKey, RunIndex
from .jsonfmt import dumps_readable
from .keys import index_key
from .layout import Layout
from .queries import FileQueries
from .rebuild import IndexUpkeep

# How long ``save`` waits for a run's lock when its caller does not hold it (the runtime
# always does, except for a brand-new run nobody else can know of yet).
SAVE_LOCK_TIMEOUT = 30.0
_KNOWN_MAX = 8192

class FileRunStore(FileQueries, IndexUpkeep):
    """Runs as JSON files, with per-run locks and an index for queries (module docstring)."""

    def __init__(self, data_dir: Any, *, fsync: bool = True) -> None:
        self._layout = Layout(data_dir, fsync)
        self._fsync = fsync
        self._index = RunIndex(self._layout.index_db, fsync=fsync)
        self._index_checked_gen = -1
        # Held shared by index-changing saves, exclusively by a rebuild (locks.SharedFlock).
        self._writers = locks.SharedFlock(self._layout.rebuild_lock)
        # run_id -> (indexed fields, identity of the run file that has them)
        self._known: Dict[str, Tuple[IndexKey, FileIdent]] = {}
        # Runs this store created whose row it left dirty (see ``_write_indexed``).
        self._born_dirty: Set[str] = set()
        self._finalizer = weakref.finalize(self, _close_all, self._index, self._writers)

    @property
    def data_dir(self) -> str:
        return self._layout.root

    def path_of(self, run_id: str) -> str:
        """The file a run lives in."""
        return self._layout.run_path(validate_run_id(run_id))

    def close(self) -> None:
        """Close the index connection and lock file (reopened on next use)."""
        _close_all(self._index, self._writers)

    def __enter__(self) -> "FileRunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ save / load

    def save(self, run: RunState) -> None:
        """Atomically replace the run's file; update the index only if its fields changed."""
        rid = validate_run_id(run.run_id)
        path = self._layout.run_path(rid)
        data = dumps_readable(run.to_jsonable()).encode("utf-8")
        key = index_key(run)
        known = self._known.get(rid)
        if known is not None and known[0] == key:
            try:
                same = ident_of(os.stat(path)) == known[1]
            except FileNotFoundError:
                same = False
            if same:  # the hot path: nothing indexed changed, nobody replaced the file
                self._remember(rid, key, self._write(path, rid, data))
                return
        self._save_indexed(rid, path, data, key, known is not None)

    def _save_indexed(self, rid: str, path: str, data: bytes, key: IndexKey, known: bool) -> None:
        lp = self._layout.lock_path(rid)
        mine = locks.held_by_current_thread(lp)
        if not mine and not locks.try_acquire(lp, SAVE_LOCK_TIMEOUT, prepare=self._lock_dir(rid)):
            raise RunBusyError(rid)
        try:
            for attempt in (1, 2):
                self._with_index(_ready)  # (re)build it now: never while holding `writers`
                try:
                    with self._writers.shared():
                        self._write_indexed(rid, path, data, key, known)
                    return
                except IndexCorruptError:
                    if attempt == 2:
                        raise
                    self._rebuild("corrupt")
        finally:
            if not mine:
                locks.release(lp)

    def _write_indexed(self, rid: str, path: str, data: bytes, key: IndexKey,
                       known: bool) -> None:
        """Row first (dirty), then the file, then clean the row — or, if the row is dirty
        already, just the file and then the clean row.

        Runs under the run's lock and ``writers`` shared. Safety of the short form: a row
        that reads dirty here stays dirty until *we* change it — only saves (under the
        run's lock, which we hold) and repairs (also under it) clean a row; ``mark_dirty``
        only dirties; a rebuild waits for ``writers``. And it is dirty *durably*: every
        write that sets ``dirty = 1`` (``put(dirty=True)``, ``mark_dirty``) is a durable
        commit, and SQLite syncs a WAL commit before other connections can see it. So
        until our clean row is durable, whatever a crash leaves of the index (a prefix of
        its commits) has this row dirty: the invariant holds with no commit of our own
        before the file write, and the clean row needs no durability (losing it leaves a
        dirty row, merely re-checked).
        """
        idx = self._index
        if not os.path.exists(path):
            # A new run needs no dirty phase: until its file exists no query can miss it
            # (a crash before then leaves a row without a file, which queries delete).
            # A new *running* run (``Runtime.start``) is about to change its indexed
            # fields on its first tick (to waiting, completed, failed): its row goes in
            # dirty, so that that save takes the short form below, with one durable
            # commit fewer. Until then (or a query's repair) every query re-checks the
            # run — one file read, and it finds the run whatever the file says. Other
            # new runs (imports, tests) go in clean: queries must not re-read them all.
            born_dirty = key.status == RunStatus.RUNNING.value
            idx.put(rid, key, dirty=born_dirty, durable=True)
            self._create_ledger_file(rid)
            self._remember(rid, key, self._write(path, rid, data))
            if born_dirty:
                self._hint_dirty(rid)
            return
        row = None
        # Fields we know changed need no look at the row, unless we left it dirty (a hint
        # only: the row itself is read, under the lock, to be sure it still is).
        if not known or rid in self._born_dirty:
            row = idx.get(rid)
            self._born_dirty.discard(rid)
            if row == (key, False):
                self._remember(rid, key, self._write(path, rid, data))
                return
        if row is not None and row[1]:
            self._remember(rid, key, self._write(path, rid, data))
            idx.put(rid, key, dirty=False, durable=False)
            return
        idx.put(rid, key, dirty=True, durable=True)
        self._remember(rid, key, self._write(path, rid, data))
        idx.clear_dirty(rid, key)

    def _hint_dirty(self, rid: str) -> None:
        if len(self._born_dirty) >= _KNOWN_MAX:
            self._born_dirty.clear()  # only a hint: without it the save takes the long form
        self._born_dirty.add(rid)

    def _create_ledger_file(self, rid: str) -> None:
        """An empty ledger beside a new run file: the run's directory fsync covers both."""
        lpath = self._layout.ledger_path(rid)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(lpath, flags, FILE_MODE)
        except FileNotFoundError:
            self._layout.ensure_shard(self._layout.runs, rid)
            fd = os.open(lpath, flags, FILE_MODE)
        os.close(fd)

    def _write(self, path: str, rid: str, data: bytes) -> FileIdent:
        try:
            return atomic_write(path, data, fsync=self._fsync)
        except FileNotFoundError:
            self._layout.ensure_shard(self._layout.runs, rid)
            return atomic_write(path, data, fsync=self._fsync)

    def _remember(self, rid: str, key: IndexKey, ident: FileIdent) -> None:
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()  # only a cache: the next save of each run checks the index
        self._known[rid] = (key, ident)

    def load(self, run_id: str) -> Optional[RunState]:
        """The run, or None if there is no such run; CorruptRunError if unreadable."""
        rid = validate_run_id(run_id)
        path = self._layout.run_path(rid)
        got = read_file(path)
        if got is None:
            return None
        data, ident = got
        run = parse_run(path, data)
        if run.run_id != rid:
            raise CorruptRunError(path, f"it holds run {run.run_id!r}, not {rid!r}")
        self._remember(rid, index_key(run), ident)
        return run

    # ------------------------------------------------------------------ locks

    def _lock_dir(self, rid: str) -> Callable[[], None]:
        return lambda: self._layout.ensure_shard(self._layout.locks, rid)

    @contextmanager
    def lock(self, run_id: str, *, timeout: float) -> Iterator[None]:
        """Hold the run exclusively (between processes and threads); ``timeout=0`` tries once."""
        rid = validate_run_id(run_id)
        with locks.held(self._layout.lock_path(rid), timeout, lambda: RunBusyError(rid),
                        prepare=self._lock_dir(rid)):
            yield

    def _try_lock_for_repair(self, rid: str) -> bool:
        lp = self._layout.lock_path(rid)
        if locks.held_in_process(lp):
            return False
        return locks.try_acquire(lp, 0, prepare=self._lock_dir(rid))

    def _unlock_after_repair(self, rid: str) -> None:
        locks.release(self._layout.lock_path(rid))

    def _mark_dirty(self, rid: str) -> None:
        self._with_index(lambda idx: idx.mark_dirty(rid))

    def _run_file_exists(self, rid: str) -> bool:
        return os.path.exists(self._layout.run_path(rid))

    # ------------------------------------------------------------------ queries

    validate_run_id = staticmethod(validate_run_id)


def _ready(idx: RunIndex) -> None:
    return None


def _close_all(index: RunIndex, writers: locks.SharedFlock) -> None:
    index.close()
    writers.close()


def parse_run(path: str, data: bytes) -> RunState:
    if not data.strip():
        raise CorruptRunError(path, "the file is empty (truncated?)")
    try:
        obj = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptRunError(path, f"not valid JSON (truncated?): {exc}") from None
    try:
        return RunState.from_dict(obj)
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptRunError(path, f"not a valid run: {exc}") from None
