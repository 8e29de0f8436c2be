"""Durable file stores: one JSON file per run, one JSONL ledger per run, a query index.

Layout under the data dir (created 0700; every file 0600)::

    runs/<a>/<run_id>.json        the run: its RunState JSON, indented, human-readable
    runs/<a>/<run_id>.jsonl       its ledger: one hash-chained record per line
    locks/<a>/<run_id>.lock       its lock file (fcntl.flock; kept after release)
    index/index.sqlite3           the query index (+ -wal/-shm), see ``storage/index.py``
    index/rebuild.lock            held while the index is (re)built

``<a>`` is the first character of the run id: uuid ids spread over 16 directories
(200,000 runs: 12,500 files each, easy for any file system and for ``ls``), and a fresh
data dir pays for at most a few dozen ``mkdir`` + directory fsyncs in its life. A run's
ledger sits beside its run file so that one directory fsync covers both: the run store
creates the (empty) ledger file with a new run, before the fsync that makes the run
file durable, so no append ever needs a directory fsync of its own.

Run files. ``save`` writes a temp file beside the target, fsyncs it, ``os.replace``s it
and fsyncs the directory: after a crash at any instant the file is the old or the new
run, never a torn one. ``load`` gives None only when the file does not exist; a file
that is empty, truncated, not JSON or not a run raises ``CorruptRunError`` naming it.

Ledgers. ``append`` writes one whole line (``O_APPEND``) and fdatasyncs it before
returning. Readers ignore a torn last line (no newline, or unparsable); the next append
first truncates it so a record is never glued onto half of another. An unparsable line
that is not the last is ``CorruptLedgerError`` naming the line.

Head recovery. Every record carries its ``seq``, so the head of a ledger — (count, hash
of the last record) — is in its last line. Each store caches, per run, the head, the
ledger file's (inode, size) and the last few raw lines. ``head``/``records_since`` trust
that cache only if one ``stat`` shows the file unchanged (another process appending to
the run changes the size); otherwise, and in a fresh process, they read the file
*backwards* in chunks from its end until they reach a record with ``seq`` below what is
asked for. So both cost O(records asked for), never O(ledger length).

Index. Queries read the SQLite index (``storage/index.py``) for candidate ids, then load
those run files and check each against the query: the run file is the truth. A save
writes the index only when an indexed field (status, workflow, wait reason/key/until,
parent, created_at) changes; this store remembers each run's indexed fields with the
file's identity, so a save that changes none of them costs one atomic file write (plus a
``stat`` to be sure no other process replaced the file meanwhile). When they do change,
under the run's lock: write the row as *dirty* with the new fields (durably), replace the
run file, clear the dirty flag. Queries also read the dirty rows — a crash between the
two steps leaves one — and repair them under the run's lock. A new *running* run (what
``Runtime.start`` saves) gets its row dirty from the start, so its first index-changing
save (running -> waiting, ...) finds it dirty already — read under the run's lock, not
assumed — and skips the durable first step (the argument: ``_write_indexed``). A run
file that turns out corrupt gets a dirty row too, so every query reports it
(``on_corrupt``) until fixed.

Rebuild. A missing, incomplete (crashed rebuild) or corrupt index is rebuilt from the
run files on first use; ``rebuild_index()`` does it on demand — it is also the remedy
for run files edited or restored *outside* the store, which no cheap check can notice.
Index-changing saves hold ``index/rebuild.lock`` shared and a rebuild holds it
exclusively, so a rebuild never sees a row and its file half-changed and needs no
per-run lock (hot-path saves do not take it: they change no indexed field).

Processes. SQLite serialises the writers of the index (WAL mode, busy timeout); run
locks keep two processes off one run; a forked child opens its own index connection.
"""

from __future__ import annotations

import json
import os
import re
import time
import weakref
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, TypeVar

from ..core.models import RunState, RunStatus, StepRecord, WaitReason
from ..core.timeutil import parse_timestamp
from ..errors import CorruptLedgerError, CorruptRunError, InvalidRunIdError, RunBusyError
from . import locks
from .atomic import (
    FILE_MODE,
    FileIdent,
    atomic_write,
    data_sync,
    ensure_private_dir,
    fsync_dir,
    ident_of,
    read_file,
    write_all,
)
from .base import OnCorrupt
from .chain import chain_record
from .index import IndexCorruptError, IndexKey, RunIndex

__all__ = [
    "FileRunStore", "FileLedgerStore", "open_file_stores", "validate_run_id", "index_key",
]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ID_CHARS = re.compile(r"[A-Za-z0-9._-]*")

# How long ``save`` waits for a run's lock when its caller does not hold it (the runtime
# always does, except for a brand-new run nobody else can know of yet).
SAVE_LOCK_TIMEOUT = 30.0
# How long a process waits for another one rebuilding the index.
REBUILD_WAIT = 3600.0
_KNOWN_MAX = 8192
_TAILS_MAX = 1024
_TAIL_LINES = 16
_TAIL_CHUNK = 8192  # first backward read of a ledger; doubles up to 1 MiB

T = TypeVar("T")


def validate_run_id(run_id: Any) -> str:
    """The run id, if it is safe to use in a file name; else InvalidRunIdError."""
    if not isinstance(run_id, str):
        raise InvalidRunIdError(repr(run_id), "a run id is a string")
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidRunIdError(
            run_id, "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if ".." in run_id:
        raise InvalidRunIdError(run_id, "'..' is not allowed")
    return run_id


# ---------------------------------------------------------------------------- index keys

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


def _micros(dt: datetime) -> int:
    return (dt - _EPOCH) // _MICRO


def _ts_micros(value: Any) -> Optional[int]:
    try:
        return _micros(parse_timestamp(value))
    except (ValueError, TypeError, OverflowError):
        return None


def _created_us(run: RunState) -> int:
    us = _ts_micros(run.created_at)
    return us if us is not None else 0


def index_key(run: RunState) -> IndexKey:
    """The indexed fields of a run, as the index stores them."""
    w = run.waiting if run.status == RunStatus.WAITING else None
    until_us = None
    if w is not None and w.reason == WaitReason.UNTIL and w.until:
        until_us = _ts_micros(w.until)
    return IndexKey(
        run.status.value, run.workflow_id,
        w.reason.value if w is not None else None,
        w.wait_key if w is not None else None,
        until_us, run.parent_run_id, _created_us(run),
    )


def _matches(run: RunState, status: Optional[RunStatus], workflow_id: Optional[str],
             wait_reason: Optional[WaitReason], wait_key: Optional[str]) -> bool:
    """The query's filter, checked on a loaded run (same rules as the memory store)."""
    if status is not None and run.status != status:
        return False
    if workflow_id is not None and run.workflow_id != workflow_id:
        return False
    if wait_reason is not None or wait_key is not None:
        w = run.waiting
        if run.status != RunStatus.WAITING or w is None:
            return False
        if wait_reason is not None and w.reason != wait_reason:
            return False
        if wait_key is not None and w.wait_key != wait_key:
            return False
    return True


def _due_at(run: RunState) -> Optional[datetime]:
    w = run.waiting
    if run.status != RunStatus.WAITING or w is None or w.reason != WaitReason.UNTIL or not w.until:
        return None
    try:
        return parse_timestamp(w.until)
    except ValueError:
        return None


def _enum_value(value: Any, enum: Any) -> Optional[str]:
    if value is None:
        return None
    return enum(getattr(value, "value", value)).value


# ---------------------------------------------------------------------------- layout


class _Layout:
    """Paths under the data dir, and lazy creation of its (private) directories."""

    def __init__(self, data_dir: Any, fsync: bool) -> None:
        self.fsync = fsync
        ensure_private_dir(os.path.abspath(os.fspath(data_dir)), fsync=fsync)
        # The real path: lock files are registered per process by path (see locks.py), so
        # two spellings of one data dir must not make two registrations of one lock.
        self.root = os.path.realpath(os.fspath(data_dir))
        self.runs = os.path.join(self.root, "runs")
        self.locks = os.path.join(self.root, "locks")
        self.index = os.path.join(self.root, "index")
        for d in (self.runs, self.locks, self.index):
            ensure_private_dir(d, fsync=fsync)
        self.index_db = os.path.join(self.index, "index.sqlite3")
        self.rebuild_lock = os.path.join(self.index, "rebuild.lock")

    def run_path(self, run_id: str) -> str:
        return os.path.join(self.runs, run_id[0], run_id + ".json")

    def ledger_path(self, run_id: str) -> str:
        return os.path.join(self.runs, run_id[0], run_id + ".jsonl")

    def lock_path(self, run_id: str) -> str:
        return os.path.join(self.locks, run_id[0], run_id + ".lock")

    def ensure_shard(self, base: str, run_id: str) -> None:
        # A lock file need not survive a crash, so its directory needs no fsync.
        ensure_private_dir(os.path.join(base, run_id[0]), fsync=self.fsync and base != self.locks)


# ---------------------------------------------------------------------------- run store


class FileRunStore:
    """Runs as JSON files, with per-run locks and an index for queries (module docstring)."""

    def __init__(self, data_dir: Any, *, fsync: bool = True) -> None:
        self._layout = _Layout(data_dir, fsync)
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
        run = _parse_run(path, data)
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

    # ------------------------------------------------------------------ queries

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        wait_reason: Optional[WaitReason] = None,
        wait_key: Optional[str] = None,
        limit: Optional[int] = None,
        on_corrupt: OnCorrupt = None,
    ) -> List[RunState]:
        """Matching runs, newest (``created_at``) first; corrupt candidates go to on_corrupt."""
        status = RunStatus(_enum_value(status, RunStatus)) if status is not None else None
        wait_reason = (WaitReason(_enum_value(wait_reason, WaitReason))
                       if wait_reason is not None else None)
        if limit is not None and limit <= 0:
            return []
        found = self._query(
            lambda cursor, n: partial(
                RunIndex.page_runs, status=status.value if status else None,
                workflow_id=workflow_id, wait_reason=wait_reason.value if wait_reason else None,
                wait_key=wait_key, before=cursor, limit=n),
            lambda run: _matches(run, status, workflow_id, wait_reason, wait_key),
            limit, on_corrupt)
        out = sorted(found.values(), key=lambda r: (_created_us(r), r.run_id), reverse=True)
        return out[:limit] if limit is not None else out

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        """Runs waiting with reason ``until`` whose time is at or before ``now``."""
        now_dt = parse_timestamp(now)
        now_us = _micros(now_dt)
        if limit is not None and limit <= 0:
            return []

        def is_due(run: RunState) -> bool:
            due = _due_at(run)
            return due is not None and due <= now_dt

        found = self._query(
            lambda cursor, n: partial(RunIndex.page_due, now_us=now_us, after=cursor, limit=n),
            is_due, limit, on_corrupt)
        out = sorted(found.values(), key=lambda r: (_due_at(r), r.run_id))
        return out[:limit] if limit is not None else out

    def _query(
        self,
        page_of: Callable[[Any, int], Callable[[RunIndex], List[Tuple[str, int]]]],
        matches: Callable[[RunState], bool],
        limit: Optional[int],
        on_corrupt: OnCorrupt,
    ) -> Dict[str, RunState]:
        """The runs a query finds: dirty rows, then clean pages of ``(run_id, sort key)``
        rows in order until ``limit`` matches, each checked against its run file.

        A clean row whose run no longer matches is repaired; a row that turned dirty while
        we paged was in neither list, so dirty rows are read once more at the end.
        """
        found: Dict[str, RunState] = {}
        repairs: List[str] = []
        seen: Set[str] = set()

        def consider(rid: str, clean: bool) -> bool:
            if rid in seen:
                return False
            seen.add(rid)
            run = self._load_candidate(rid, on_corrupt, clean, repairs)
            if run is None:
                return False
            if matches(run):
                found[rid] = run
                return True
            if clean:
                repairs.append(rid)  # a clean row that lies: fix it
            return False

        for rid in self._with_index(RunIndex.dirty_ids):
            consider(rid, False)
        page = 256 if limit is None else max(2 * limit, 16)
        cursor: Optional[Tuple[int, str]] = None
        clean_found = 0
        while limit is None or clean_found < limit:
            rows = self._with_index(page_of(cursor, page))
            for rid, sort_key in rows:
                cursor = (sort_key, rid)
                if consider(rid, True):
                    clean_found += 1
                    if limit is not None and clean_found >= limit:
                        break
            if len(rows) < page:
                break
        for rid in self._with_index(RunIndex.dirty_ids):
            consider(rid, False)
        self._repair(repairs)
        return found

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        """Runs whose ``parent_run_id`` is the given run, oldest first."""
        status = RunStatus(_enum_value(status, RunStatus)) if status is not None else None
        # A run's parent never changes, so its row names it even when dirty; dirty rows
        # are read too only for rows whose fields are unknown (left by a rebuild).
        children = self._with_index(partial(RunIndex.children, parent_run_id=parent_run_id))
        unknown = [r for r in self._with_index(RunIndex.dirty_ids) if r not in children]
        repairs: List[str] = []
        kids = []
        for rid in children + unknown:
            if rid in children:
                run = self._load_candidate(rid, None, True, repairs)  # corrupt: raise
            else:
                run = self._load_candidate(rid, lambda e: None, False, repairs)
            if run is None or run.parent_run_id != parent_run_id:
                continue
            if status is None or run.status == status:
                kids.append(run)
        self._repair(repairs)
        kids.sort(key=lambda r: (_created_us(r), r.run_id))
        return kids

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        """Ids of runs starting with ``prefix`` (at most ``limit``), sorted."""
        if limit <= 0 or not _ID_CHARS.fullmatch(prefix):
            return []
        out: List[str] = []
        repairs: List[str] = []
        after: Optional[str] = None
        page = max(limit + 8, 32)
        while len(out) < limit:
            ids = self._with_index(partial(RunIndex.page_prefix, prefix=prefix, after=after,
                                           limit=page))
            for rid in ids:
                after = rid
                if os.path.exists(self._layout.run_path(rid)):
                    out.append(rid)
                    if len(out) >= limit:
                        break
                else:
                    repairs.append(rid)  # a row left by a crash while creating the run
            if len(ids) < page:
                break
        self._repair(repairs)
        return out

    def _load_candidate(self, rid: str, on_corrupt: OnCorrupt, clean: bool,
                        repairs: List[str]) -> Optional[RunState]:
        try:
            run = self.load(rid)
        except CorruptRunError as exc:
            if clean:
                # Its true fields are unknown now: every query must show it until fixed.
                self._with_index(lambda idx: idx.mark_dirty(rid))
            if on_corrupt is None:
                raise
            on_corrupt(exc)
            return None
        except InvalidRunIdError:
            return None  # not a row we wrote
        if run is None:
            repairs.append(rid)
        elif not clean:
            repairs.append(rid)
        return run

    def _repair(self, run_ids: List[str]) -> None:
        """Make these runs' rows true again, each under its lock (busy ones are left)."""
        for rid in dict.fromkeys(run_ids):
            lp = self._layout.lock_path(rid)
            if locks.held_in_process(lp) or not locks.try_acquire(
                    lp, 0, prepare=self._lock_dir(rid)):
                continue  # its holder is changing it; a later query repairs it
            try:
                try:
                    run = self.load(rid)
                except CorruptRunError:
                    continue
                if run is None:
                    self._with_index(partial(RunIndex.delete, run_id=rid))
                else:
                    self._with_index(partial(RunIndex.put, run_id=rid, key=index_key(run),
                                             dirty=False, durable=False))
            finally:
                locks.release(lp)

    # ------------------------------------------------------------------ index upkeep

    def _with_index(self, fn: Callable[[RunIndex], T]) -> T:
        """Run ``fn`` on a complete index: build it if missing, rebuild it if corrupt."""
        idx = self._index
        for attempt in (1, 2):
            try:
                idx.connect()
                if idx.generation != self._index_checked_gen:
                    if not idx.is_complete():
                        self._rebuild("missing")
                    self._index_checked_gen = idx.generation
                return fn(idx)
            except IndexCorruptError:
                if attempt == 2:
                    raise
                self._rebuild("corrupt")
        raise AssertionError("unreachable")

    def rebuild_index(self) -> Dict[str, Any]:
        """Rebuild the index from the run files (all of them: O(runs stored)).

        Safe while other processes use the store: saves that change indexed fields wait
        for it (hot-path saves do not). Returns counts: ``runs`` indexed, ``corrupt`` run
        files (kept in the index as dirty, so every query reports them), ``removed`` rows
        without a run file, and ``seconds``.
        """
        return self._rebuild("force")

    def _rebuild(self, why: str) -> Dict[str, Any]:
        """Rebuild under the index-wide lock; ``why`` is missing, corrupt or force.

        For missing/corrupt, another process may have rebuilt it while we waited for the
        lock: then there is nothing to do.
        """
        with locks.held(self._layout.rebuild_lock, REBUILD_WAIT,
                        lambda: RunBusyError("(index rebuild)")):
            idx = self._index
            try:
                idx.connect()
                if why == "corrupt" and not idx.integrity_ok():
                    raise IndexCorruptError("integrity check failed")
                # (else another process replaced it while we waited for the lock)
                if why != "force" and idx.is_complete():
                    self._index_checked_gen = idx.generation
                    return {}
            except IndexCorruptError:
                self._discard_index()
                idx.connect()
            stats = self._rebuild_locked(idx)
            self._index_checked_gen = idx.generation
            return stats

    def _discard_index(self) -> None:
        self._index.close()
        base = self._layout.index_db
        aside = f"{base}.corrupt-{int(time.time())}"
        try:
            os.replace(base, aside)  # keep it for a post-mortem
        except FileNotFoundError:
            pass
        for suffix in ("-wal", "-shm", "-journal"):
            try:
                os.unlink(base + suffix)
            except FileNotFoundError:
                pass

    def _rebuild_locked(self, idx: RunIndex) -> Dict[str, Any]:
        """Index every run file. Runs under the exclusive rebuild lock: no save changing
        indexed fields is in flight (they hold it shared), so what a file says now is what
        its row must say, and a row without a file is a leftover, not a run being born."""
        t0 = time.perf_counter()
        idx.set_meta("complete", "0")  # a crash from here on means: rebuild again
        existing = set(idx.all_ids())
        seen: Set[str] = set()
        batch: List[Tuple[str, IndexKey, bool]] = []
        stats: Dict[str, Any] = {"runs": 0, "corrupt": 0, "removed": 0}
        for rid, _path in self._iter_run_files():
            seen.add(rid)
            try:
                run = self.load(rid)
            except CorruptRunError:
                run = None
            if run is None:  # corrupt (or gone this instant): every query must check it
                idx.mark_dirty(rid)
                stats["corrupt"] += 1
                continue
            batch.append((rid, index_key(run), False))
            stats["runs"] += 1
            if len(batch) >= 1000:
                idx.put_many(batch, durable=False)
                batch.clear()
        if batch:
            idx.put_many(batch, durable=False)
        gone = [rid for rid in existing - seen if not os.path.exists(self._layout.run_path(rid))]
        idx.delete_many(gone)
        stats["removed"] = len(gone)
        idx.set_meta("schema", "1")
        idx.set_meta("complete", "1", durable=True)  # makes all of the above durable too
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        return stats

    def _iter_run_files(self) -> Iterator[Tuple[str, str]]:
        now = time.time()
        with os.scandir(self._layout.runs) as shards:
            shard_dirs = sorted(e.path for e in shards if e.is_dir(follow_symlinks=False))
        for shard in shard_dirs:
            with os.scandir(shard) as it:
                entries = list(it)
            for e in entries:
                name = e.name
                if name.startswith("."):
                    # A temp file left by a crash mid-write (an old one: never a live write).
                    if name.endswith(".tmp"):
                        try:
                            if now - e.stat().st_mtime > 3600:
                                os.unlink(e.path)
                        except OSError:
                            pass
                    continue
                if not name.endswith(".json"):
                    continue
                rid = name[:-5]
                if _RUN_ID.fullmatch(rid) and ".." not in rid and rid[0] == os.path.basename(shard):
                    yield rid, e.path


_compact = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
_encode_str = json.encoder.encode_basestring  # the C one where there is one


def _leaf(value: Any) -> str:
    # Most top-level fields are strings, None or ints: skip the encoder's set-up for them.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return int.__repr__(value)
    return _compact(value)


def dumps_readable(obj: Any, *, depth: int = 2) -> str:
    """JSON for people: objects nested up to ``depth`` levels one key a line, deeper
    values on one line. Python's ``indent=`` encoder is pure Python and several times
    slower than this, which uses the C encoder for every leaf (it is on the hot path)."""

    def enc(value: Any, level: int) -> str:
        if (level < depth and isinstance(value, dict) and value
                and all(isinstance(k, str) for k in value)):
            pad = "  " * (level + 1)
            body = ",\n".join(f"{pad}{_encode_str(k)}: {enc(v, level + 1)}"
                               for k, v in value.items())
            return "{\n" + body + "\n" + "  " * level + "}"
        return _leaf(value)

    return enc(obj, 0) + "\n"


def _ready(idx: RunIndex) -> None:
    return None


def _close_all(index: RunIndex, writers: locks.SharedFlock) -> None:
    index.close()
    writers.close()


def _parse_run(path: str, data: bytes) -> RunState:
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


# ---------------------------------------------------------------------------- ledger store


class _Tail:
    """What a store knows of a ledger file's end (valid while inode and size match)."""

    __slots__ = ("ino", "size", "valid_end", "count", "head", "lines")

    def __init__(self, ino: int, size: int, valid_end: int, count: int, head: Optional[str],
                 lines: List[Tuple[int, bytes]]) -> None:
        self.ino = ino
        self.size = size
        self.valid_end = valid_end  # end of the last good line; < size if the tail is torn
        self.count = count
        self.head = head
        self.lines = lines  # (seq, raw line) of the last few records, oldest first


class FileLedgerStore:
    """Hash-chained JSONL ledgers, one file per run (see the module docstring)."""

    def __init__(self, data_dir: Any, *, fsync: bool = True) -> None:
        self._layout = _Layout(data_dir, fsync)
        self._fsync = fsync
        self._tails: Dict[str, _Tail] = {}

    @property
    def data_dir(self) -> str:
        return self._layout.root

    def path_of(self, run_id: str) -> str:
        """The file a run's ledger lives in."""
        return self._layout.ledger_path(validate_run_id(run_id))

    def close(self) -> None:
        self._tails.clear()

    def _cache(self, rid: str, tail: _Tail) -> None:
        if len(self._tails) >= _TAILS_MAX and rid not in self._tails:
            self._tails.clear()
        self._tails[rid] = tail

    # ------------------------------------------------------------------ append

    def append(self, record: StepRecord) -> Dict[str, Any]:
        """Chain and durably append a record; fills in its seq, prev_hash and record_hash.

        Callers hold the run's lock (the runtime does), so one process appends at a time.
        """
        rid = validate_run_id(record.run_id)
        path = self._layout.ledger_path(rid)
        flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        created = False
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            # No run file made it for us (a ledger used on its own): create it, and make
            # its directory entry durable ourselves.
            created = True
            try:
                fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
            except FileNotFoundError:
                self._layout.ensure_shard(self._layout.runs, rid)
                fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
        try:
            st = os.fstat(fd)
            tail = self._tails.get(rid)
            if tail is None or tail.ino != st.st_ino or tail.size != st.st_size:
                tail = _scan_tail(fd, st.st_size, path, st.st_ino, since=None)
            if tail.valid_end < st.st_size:
                os.ftruncate(fd, tail.valid_end)  # drop a torn last line before appending
            stored = chain_record(record.to_jsonable(), seq=tail.count, prev_hash=tail.head)
            line = (json.dumps(stored, ensure_ascii=False, separators=(",", ":"))
                    + "\n").encode("utf-8")
            write_all(fd, line)
            if self._fsync:
                data_sync(fd)
                if created:
                    fsync_dir(os.path.dirname(path))
        finally:
            os.close(fd)
        lines = tail.lines[-(_TAIL_LINES - 1):] + [(tail.count, line[:-1])]
        self._cache(rid, _Tail(st.st_ino, tail.valid_end + len(line), tail.valid_end + len(line),
                               tail.count + 1, stored["record_hash"], lines))
        record.seq, record.prev_hash, record.record_hash = (
            stored["seq"], stored["prev_hash"], stored["record_hash"])
        return stored

    # ------------------------------------------------------------------ reads

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        """Every record, oldest first (a torn last line is ignored)."""
        rid = validate_run_id(run_id)
        path = self._layout.ledger_path(rid)
        got = read_file(path)
        if got is None:
            return []
        data, _ = got
        segments = data.split(b"\n")
        last = max((i for i, s in enumerate(segments) if s.strip()), default=-1)
        out: List[Dict[str, Any]] = []
        for i, seg in enumerate(segments):
            if not seg.strip():
                continue
            terminated = i < len(segments) - 1
            rec, why = _parse_line(seg)
            if i == last and (not terminated or rec is None):
                break  # a torn last line: the append it belonged to never returned
            if rec is None:
                raise CorruptLedgerError(path, i + 1, why or "unparsable")
            out.append(rec)
        return out

    def head(self, run_id: str) -> Tuple[int, Optional[str]]:
        """(record count, hash of the last record), from the cache or the file's tail."""
        tail = self._fresh_tail(validate_run_id(run_id), since=None)
        return (tail.count, tail.head) if tail is not None else (0, None)

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        """Records with ``seq >= count``, oldest first; reads only the file's tail."""
        rid = validate_run_id(run_id)
        count = max(int(count), 0)
        tail = self._fresh_tail(rid, since=None)
        if tail is None or count >= tail.count:
            return []
        if not tail.lines or tail.lines[0][0] > count:
            tail = self._fresh_tail(rid, since=count, force=True)
            if tail is None:
                return []
        out = [json.loads(raw) for seq, raw in tail.lines if seq >= count]
        del tail.lines[:-_TAIL_LINES]  # keep the cache small however far back we read
        return out

    def _fresh_tail(self, rid: str, *, since: Optional[int],
                    force: bool = False) -> Optional[_Tail]:
        path = self._layout.ledger_path(rid)
        tail = self._tails.get(rid)
        if tail is not None and not force:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._tails.pop(rid, None)
                return None
            if st.st_ino == tail.ino and st.st_size == tail.size:
                return tail
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            self._tails.pop(rid, None)
            return None
        try:
            st = os.fstat(fd)
            tail = _scan_tail(fd, st.st_size, path, st.st_ino, since=since)
        finally:
            os.close(fd)
        self._cache(rid, tail)
        return tail


def _parse_line(raw: bytes) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    try:
        rec = json.loads(raw)
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(rec, dict):
        return None, f"not a JSON object but {type(rec).__name__}"
    return rec, None


def _scan_tail(fd: int, size: int, path: str, ino: int, *, since: Optional[int]) -> _Tail:
    """Read a ledger backwards from its end: its head, its torn tail, recent records.

    Stops at the last valid record (``since`` None) or at the first record with
    ``seq < since``. Only the last line may be bad (torn); a bad line before a good one
    raises CorruptLedgerError.
    """
    chunk = _TAIL_CHUNK
    pos = size
    buf = b""
    found: List[Tuple[int, bytes]] = []  # newest first
    count: Optional[int] = None
    head: Optional[str] = None
    valid_end = 0
    seen_last_line = False  # the file's last non-blank line has been looked at
    while True:
        if pos > 0:
            n = min(chunk, pos)
            pos -= n
            buf = os.pread(fd, n, pos) + buf
            chunk = min(chunk * 2, 1 << 20)
            nl = buf.find(b"\n")
            if nl < 0:
                continue  # not one whole line yet
            # Bytes before the first newline belong to a line that starts further back.
            keep, rest, rest_off = buf[:nl + 1], buf[nl + 1:], pos + nl + 1
        else:
            keep, rest, rest_off = b"", buf, 0
        segs = rest.split(b"\n")
        offsets = []
        off = rest_off
        for s in segs:
            offsets.append(off)
            off += len(s) + 1
        for i in range(len(segs) - 1, -1, -1):
            seg = segs[i]
            if not seg.strip():
                continue
            terminated = i < len(segs) - 1
            rec, why = _parse_line(seg) if terminated else (None, "no newline (torn write)")
            seq = rec.get("seq") if rec is not None else None
            if rec is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
                # Not one of ours (no seq): count records from the start instead.
                return _full_tail(fd, size, path, ino)
            if rec is None:
                if not seen_last_line:
                    seen_last_line = True
                    continue  # the torn last line: ignored (and truncated on next append)
                raise CorruptLedgerError(path, _line_no(fd, offsets[i]), why or "unparsable")
            seen_last_line = True
            assert isinstance(seq, int)
            if count is None:
                count, head = seq + 1, rec.get("record_hash")
                valid_end = offsets[i] + len(seg) + 1
            if since is not None and seq >= since or not found:
                found.append((seq, seg))
            if since is None or seq < since:
                return _Tail(ino, size, valid_end, count, head, found[::-1])
        buf = keep
        if pos == 0 and not buf:
            break
        if pos == 0:
            # ``keep`` is the first line of the file, already complete: process it next.
            continue
    if count is None:
        return _Tail(ino, size, 0, 0, None, [])
    return _Tail(ino, size, valid_end, count, head, found[::-1])


def _full_tail(fd: int, size: int, path: str, ino: int) -> _Tail:
    """The slow path for ledgers whose records carry no ``seq``: read it all."""
    data = os.pread(fd, size, 0)
    segments = data.split(b"\n")
    last = max((i for i, s in enumerate(segments) if s.strip()), default=-1)
    records: List[Tuple[int, bytes]] = []
    head: Optional[str] = None
    valid_end = off = 0
    for i, seg in enumerate(segments):
        start, off = off, off + len(seg) + 1
        if not seg.strip():
            continue
        rec, why = _parse_line(seg)
        if i == last and (i == len(segments) - 1 or rec is None):
            break
        if rec is None:
            raise CorruptLedgerError(path, i + 1, why or "unparsable")
        records.append((len(records), seg))
        head = rec.get("record_hash")
        valid_end = start + len(seg) + 1
    return _Tail(ino, size, valid_end, len(records), head, records[-_TAIL_LINES:])


def _line_no(fd: int, offset: int) -> int:
    """1-based line number of the line starting at ``offset`` (error path only)."""
    n = 1
    pos = 0
    while pos < offset:
        block = os.pread(fd, min(1 << 20, offset - pos), pos)
        if not block:
            break
        n += block.count(b"\n")
        pos += len(block)
    return n


def open_file_stores(data_dir: Any, *, fsync: bool = True) -> Tuple[FileRunStore, FileLedgerStore]:
    """The run store and the ledger store of one data dir."""
    return FileRunStore(data_dir, fsync=fsync), FileLedgerStore(data_dir, fsync=fsync)
