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

Locks (format 2). A run is locked by ``flock`` on its ledger file, which exists anyway
(the kernel's first act on a run is its ``start`` record): no lock file to create per
run. Locking a run whose ledger does not exist yet creates the ledger; its directory
entry is made durable by the directory fsync that the run file's first save ends with
(ledger and run file share the directory), or at once for a run whose file exists
already. If the ledger is still empty when the lock is released and no run was saved
under it, it is removed again (under the lock: see ``locks.py``), so a refused command
leaves nothing behind. The holder's descriptor is
opened for appending, and the ledger store appends through it.
"""

from __future__ import annotations

import errno
import json
import os
import time
import weakref
from contextlib import contextmanager
from functools import partial
from typing import Any, Dict, Iterator, Optional, Sequence, Set, Tuple

from ...core.models import RunState, RunStatus
from ...errors import CorruptRunError, RunBusyError, StoreIOError
from . import locks
from .atomic import (
    FILE_MODE,
    O_CLOEXEC,
    O_NOFOLLOW,
    FileIdent,
    atomic_write,
    data_sync,
    fsync_dir,
    ident_of,
    lstat_at,
    read_file,
    refuse_symlink,
    unlink_at,
    write_all,
)
from .ids import validate_run_id
from .index import IndexCorruptError, IndexKey, RunIndex
from .jsonfmt import dumps_readable
from .keys import RawKey, index_key, raw_key
from .layout import Layout
from .oserrors import cannot_write, mapped
from .queries import FileQueries
from .rebuild import IndexUpkeep
from .version import FORMAT_VERSION, open_version

# How long ``save`` waits for a run's lock when its caller does not hold it (the runtime
# always does, except for a brand-new run nobody else can know of yet).
SAVE_LOCK_TIMEOUT = 30.0
_KNOWN_MAX = 8192

_LEDGER_FLAGS = os.O_RDWR | os.O_APPEND | O_NOFOLLOW | O_CLOEXEC


class FileRunStore(FileQueries, IndexUpkeep):
    """Runs as JSON files, with per-run locks and an index for queries (module docstring).

    ``create=False``: the data dir must exist already (it is never created).
    """

    #: What ``Stores.capabilities`` says of a file store: a query index it can rebuild
    #: (``reindex``), durable writes that fsync (``fsync``), the parts of part two
    #: (``events``, ``snapshots``, ``artifacts``, ``audit``, ``logs``), whole-store
    #: operations (``admin``: ``iter_run_ids``, ``delete_run``, ``import_run``) and
    #: wake-ups by polling a file (``wake``).
    capabilities = frozenset({"reindex", "fsync", "events", "snapshots", "artifacts", "audit",
                              "logs", "admin", "wake"})

    def __init__(self, data_dir: Any, *, fsync: bool = True, create: bool = True) -> None:
        self._layout = Layout.of(data_dir, create=create)
        open_version(self._layout)
        self._fsync = fsync
        self._index = RunIndex(self._layout.index_db, fsync=fsync,
                               dir_ready=self._index_dir_ready)
        self._index.read_only = self._layout.read_only
        self._index_checked_gen = -1
        # Held shared by index-changing saves, exclusively by a rebuild (locks.SharedFlock).
        self._writers = locks.SharedFlock(self._layout.rebuild_lock,
                                          opener=self._open_rebuild_lock)
        # run_id -> (indexed fields, identity of the run file that has them)
        self._known: Dict[str, Tuple[RawKey, FileIdent]] = {}
        # Runs this store created whose row it left dirty (see ``_write_indexed``).
        self._born_dirty: Set[str] = set()
        self._wake_seen: Optional[Tuple[int, int]] = None  # see ``listen``
        self._listening = False
        self._finalizer = weakref.finalize(self, _close_all, self._index, self._writers)

    @property
    def data_dir(self) -> str:
        return self._layout.root

    @property
    def read_only(self) -> bool:
        """This process can read this data dir but not write it (queries still work)."""
        return self._layout.read_only or self._index.read_only

    def path_of(self, run_id: str) -> str:
        """The file a run lives in."""
        return self._layout.run_path(validate_run_id(run_id))

    validate_run_id = staticmethod(validate_run_id)

    def close(self) -> None:
        """Close the index connection and lock file (reopened on next use)."""
        _close_all(self._index, self._writers)

    def __enter__(self) -> "FileRunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def info(self) -> Dict[str, Any]:
        """Format version and runs by status (from the index; unindexed rows re-checked)."""
        counts, _dirty = self._with_index(RunIndex.counts_by_status)
        counts = dict(counts)
        for rid in self._with_index(RunIndex.dirty_ids):
            try:
                run = self.load(rid)
            except CorruptRunError:
                counts["corrupt"] = counts.get("corrupt", 0) + 1
                continue
            if run is not None:
                counts[run.status.value] = counts.get(run.status.value, 0) + 1
        return {"format": self._layout.version, "format_known": FORMAT_VERSION,
                "data_dir": self._layout.root, "read_only": self.read_only,
                "index": "memory" if self._index.in_memory else self._layout.index_db,
                "runs": {k: counts[k] for k in sorted(counts)},
                "total": sum(counts.values())}

    # ------------------------------------------------------------------ save / load

    def save(self, run: RunState) -> None:
        """Atomically replace the run's file; update the index only if its fields changed."""
        rid = validate_run_id(run.run_id)
        data = dumps_readable(run.to_jsonable()).encode("utf-8")
        raw = raw_key(run)
        with mapped(self._layout.run_path(rid)):
            shard = self._shard(rid, create=True)
            assert shard is not None  # (create=True)
            name = rid + ".json"
            st = lstat_at(shard, name)
            refuse_symlink(st)
            known = self._known.get(rid)
            if known is not None and known[0] == raw and st is not None \
                    and ident_of(st) == known[1]:
                # The hot path: nothing indexed changed, nobody replaced the file.
                self._remember(rid, raw, self._write(rid, data))
                return
            self._save_indexed(rid, shard, name, data, index_key(run), raw, known is not None)

    def _save_indexed(self, rid: str, shard: int, name: str, data: bytes, key: IndexKey,
                      raw: RawKey, known: bool) -> None:
        mine = locks.held_by_current_thread(self._layout.ledger_path(rid))
        if not mine and not self._acquire(rid, SAVE_LOCK_TIMEOUT, create=True):
            raise RunBusyError(rid)
        try:
            for attempt in (1, 2):
                self._with_index(_ready)  # (re)build it now: never while holding `writers`
                try:
                    with self._writers.shared():
                        self._write_indexed(rid, shard, name, data, key, raw, known)
                    return
                except IndexCorruptError:
                    if attempt == 2:
                        raise
                    self._rebuild("corrupt")
        finally:
            if not mine:
                self._release(rid)

    def _write_indexed(self, rid: str, shard: int, name: str, data: bytes, key: IndexKey,
                       raw: RawKey, known: bool) -> None:
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
        if lstat_at(shard, name) is None:
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
            # A ledger our lock created for this run stays: it is the run's now.
            locks.keep_file(self._layout.ledger_path(rid))
            self._remember(rid, raw, self._write(rid, data))
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
                self._remember(rid, raw, self._write(rid, data))
                return
        if row is not None and row[1]:
            self._remember(rid, raw, self._write(rid, data))
            idx.put(rid, key, dirty=False, durable=False)
            return
        idx.put(rid, key, dirty=True, durable=True)
        self._remember(rid, raw, self._write(rid, data))
        idx.clear_dirty(rid, key)

    def _hint_dirty(self, rid: str) -> None:
        if len(self._born_dirty) >= _KNOWN_MAX:
            self._born_dirty.clear()  # only a hint: without it the save takes the long form
        self._born_dirty.add(rid)

    def _shard(self, rid: str, *, create: bool, check: bool = True) -> Optional[int]:
        return self._layout.shard_fd(rid, create=create, check=check)

    def _write(self, rid: str, data: bytes) -> FileIdent:
        name = rid + ".json"
        for attempt in (1, 2):
            # (the save checked the directory a moment ago; a retry checks it again)
            shard = self._shard(rid, create=True, check=attempt == 2)
            assert shard is not None
            try:
                return atomic_write(shard, name, data, fsync=self._fsync)
            except FileNotFoundError:
                # Its directory was removed under us (the descriptor is of a dead one).
                if attempt == 2 or not self._layout.forget_if_gone(Layout.shard_of(rid)):
                    raise
        raise AssertionError("unreachable")

    def _remember(self, rid: str, raw: RawKey, ident: FileIdent) -> None:
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()  # only a cache: the next save of each run checks the index
        self._known[rid] = (raw, ident)

    def load(self, run_id: str) -> Optional[RunState]:
        """The run, or None if there is no such run; CorruptRunError if unreadable."""
        rid = validate_run_id(run_id)
        path = self._layout.run_path(rid)
        try:
            with mapped(path):
                shard = self._shard(rid, create=False)
                if shard is None:
                    return None
                try:
                    got = read_file(shard, rid + ".json")
                except IsADirectoryError:
                    raise CorruptRunError(path, "it is a directory, not a run file") from None
                if got is None:
                    return None
                data, ident = got
                run = parse_run(path, data)
                if run.run_id != rid:
                    raise CorruptRunError(path, f"it holds run {run.run_id!r}, not {rid!r}")
        except CorruptRunError as exc:
            # The run it is about, for callers that report it (errors.py has no field yet).
            exc.run_id = rid  # type: ignore[attr-defined]
            raise
        self._remember(rid, raw_key(run), ident)
        return run

    def _run_file_exists(self, rid: str) -> bool:
        shard = self._shard(rid, create=False)
        return shard is not None and lstat_at(shard, rid + ".json") is not None

    # ------------------------------------------------------------------ locks

    @contextmanager
    def lock(self, run_id: str, *, timeout: float) -> Iterator[None]:
        """Hold the run exclusively (between processes and threads); ``timeout=0`` tries once."""
        rid = validate_run_id(run_id)
        if not self._acquire(rid, timeout, create=True):
            raise RunBusyError(rid)
        try:
            yield
        finally:
            self._release(rid)

    def _acquire(self, rid: str, timeout: float, *, create: bool) -> bool:
        key = self._layout.ledger_path(rid)
        with mapped(key):
            return locks.try_acquire(key, timeout, opener=partial(self._open_ledger, rid, create),
                                     verify=partial(self._still_named, rid))

    def _release(self, rid: str) -> None:
        key = self._layout.ledger_path(rid)
        with mapped(key):
            locks.release(key, before_unlock=partial(self._drop_if_unused, rid))

    def _open_ledger(self, rid: str, create: bool) -> Tuple[int, bool]:
        """The run's ledger opened for appending (and locking); True if we created it."""
        name = rid + ".jsonl"
        for attempt in (1, 2):
            shard = self._shard(rid, create=create)
            if shard is None:
                raise FileNotFoundError(errno.ENOENT, "no such ledger",
                                        self._layout.ledger_path(rid))
            try:
                try:
                    return os.open(name, _LEDGER_FLAGS, dir_fd=shard), False
                except FileNotFoundError:
                    if not create:
                        raise
                try:
                    fd = os.open(name, _LEDGER_FLAGS | os.O_CREAT | os.O_EXCL, FILE_MODE,
                                 dir_fd=shard)
                except FileExistsError:
                    return os.open(name, _LEDGER_FLAGS, dir_fd=shard), False
                if self._fsync and lstat_at(shard, rid + ".json") is not None:
                    # A run that exists lost its ledger: the entry is durable before
                    # anything is appended. A new run's is made durable by the fsync of
                    # this same directory that saving its run file ends with: until then
                    # the run does not exist for anyone, and a crash that loses the entry
                    # loses a run that never was (one sync fewer per start).
                    fsync_dir(shard)
                return fd, True
            except FileNotFoundError:
                if attempt == 2 or not self._layout.forget_if_gone(Layout.shard_of(rid)):
                    raise
        raise AssertionError("unreachable")

    def _still_named(self, rid: str, fd: int) -> bool:
        """After the flock: is ``fd`` still the run's ledger (not one unlinked meanwhile)?"""
        shard = self._shard(rid, create=False, check=False)  # the opener just checked it
        st = lstat_at(shard, rid + ".jsonl") if shard is not None else None
        mine = os.fstat(fd)
        return st is not None and (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)

    def _drop_if_unused(self, rid: str, fd: int, created: bool) -> None:
        """A ledger the lock created and nothing used: remove it (we still hold it)."""
        if not created or os.fstat(fd).st_size != 0 or not self._still_named(rid, fd):
            return
        shard = self._shard(rid, create=False, check=False)
        if shard is not None:
            os.unlink(rid + ".jsonl", dir_fd=shard)

    def _try_lock_for_repair(self, rid: str) -> bool:
        if self.read_only or locks.held_in_process(self._layout.ledger_path(rid)):
            return False
        try:
            return self._acquire(rid, 0, create=False)
        except (OSError, StoreIOError):
            return False  # no ledger (nothing to lock without creating one), or no access

    def _unlock_after_repair(self, rid: str) -> None:
        self._release(rid)

    def _mark_dirty(self, rid: str) -> None:
        try:
            self._with_index(lambda idx: idx.mark_dirty(rid))
        except OSError as exc:
            if not cannot_write(exc):
                raise  # (else) read-only here: the next writable query marks it

    # ------------------------------------------------------------------ admin

    def delete_run(self, run_id: str) -> None:
        """Remove a run: its file, its index row, then its ledger (prune). The caller holds
        the run's lock (its ledger file: unlinked while held, so a process waiting for
        the lock finds the path gone and gets a fresh, empty ledger that its release
        removes again). A crash in between leaves a ledger without a run, which nothing
        reads (no query sees a run without a run file), never a run without its ledger."""
        rid = validate_run_id(run_id)
        ledger = self._layout.ledger_path(rid)
        if not locks.held_by_current_thread(ledger):
            raise RuntimeError(f"delete_run({rid}): the caller must hold the run's lock")
        with mapped(self._layout.run_path(rid)):
            shard = self._shard(rid, create=False)
            if shard is None:
                return
            refuse_symlink(lstat_at(shard, rid + ".json"))
            removed = unlink_at(shard, rid + ".json")
            if removed and self._fsync:
                fsync_dir(shard)
            self._known.pop(rid, None)
            self._born_dirty.discard(rid)
            self._with_index(partial(RunIndex.delete, run_id=rid))
            if unlink_at(shard, rid + ".jsonl") and self._fsync:
                fsync_dir(shard)

    def import_run(self, run: RunState, records: Sequence[Dict[str, Any]]) -> None:
        """A new run with its (already chained) ledger records, written as given: the
        ledger first (one write, synced), then the run file. StoreIOError ``run_exists``
        if the run file exists or its ledger holds anything. Takes the run's lock unless
        the calling thread holds it."""
        rid = validate_run_id(run.run_id)
        for rec in records:
            if not isinstance(rec, dict) or rec.get("run_id") != rid:
                raise ValueError(f"import_run({rid}): a record of another run, or not a record")
        data = b"".join((json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
                        .encode("utf-8") for rec in records)
        ledger = self._layout.ledger_path(rid)
        mine = locks.held_by_current_thread(ledger)
        if not mine and not self._acquire(rid, SAVE_LOCK_TIMEOUT, create=True):
            raise RunBusyError(rid)
        try:
            with mapped(ledger):
                fd = locks.held_append_fd(ledger)
                assert fd is not None  # (the run's lock is its ledger, opened to append)
                if self._run_file_exists(rid) or os.fstat(fd).st_size:
                    raise StoreIOError(self._layout.run_path(rid), "this run exists already",
                                       code="run_exists")
            try:
                with mapped(ledger):
                    if data:
                        write_all(fd, data)
                        if self._fsync:
                            data_sync(fd)
                self.save(run)
            except BaseException:
                with mapped(ledger):
                    os.ftruncate(fd, 0)  # nothing half-imported stays behind
                raise
        finally:
            if not mine:
                self._release(rid)

    # ------------------------------------------------------------------ wake-ups

    WAKE_FILE = "wake"
    POLL_INTERVAL = 0.2

    def wake(self, run_id: str = "") -> None:
        """Tell listening workers that something can move: set the data dir's wake file's
        mtime to now (no sync: a hint, not data). Nothing where we may not write."""
        with mapped(os.path.join(self._layout.root, self.WAKE_FILE)):
            try:
                fd = os.open(self.WAKE_FILE, os.O_WRONLY | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                             FILE_MODE, dir_fd=self._layout.root_fd)
            except OSError as exc:
                if cannot_write(exc):
                    return
                raise
            try:
                os.utime(fd, ns=(time.time_ns(), time.time_ns()))
            finally:
                os.close(fd)

    def _wake_state(self) -> Optional[Tuple[int, int]]:
        with mapped(os.path.join(self._layout.root, self.WAKE_FILE)):
            st = lstat_at(self._layout.root_fd, self.WAKE_FILE)
            refuse_symlink(st)
        return (st.st_ino, st.st_mtime_ns) if st is not None else None

    def listen(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a wake-up since the last call (the wake
        file's mtime changed), polling every ``POLL_INTERVAL``; True if one came. The
        first call starts listening: a worker calls ``listen(0)`` before its first round."""
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._listening:
            self._listening = True
            self._wake_seen = self._wake_state()
        while True:
            now = self._wake_state()
            if now != self._wake_seen:
                self._wake_seen = now
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.POLL_INTERVAL, left))

    # ------------------------------------------------------------------ index files

    def _index_dir_ready(self, create: bool) -> bool:
        return self._layout.dir_fd("index", create=create and not self._layout.read_only) \
            is not None

    def _open_rebuild_lock(self) -> int:
        with mapped(self._layout.rebuild_lock):
            index_fd = self._layout.dir_fd("index", create=True)
            return os.open("rebuild.lock", os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                           FILE_MODE, dir_fd=index_fd)

    def _open_rebuild_lock_for_held(self) -> Tuple[int, bool]:
        return self._open_rebuild_lock(), False


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
