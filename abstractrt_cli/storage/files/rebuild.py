"""Keeping the file store's query index whole: build it when missing, rebuild it when
corrupt or on demand.

A missing, incomplete (crashed rebuild) or corrupt index is rebuilt from the run files on
first use; ``rebuild_index()`` does it on demand — it is also the remedy for run files
edited or restored *outside* the store, which no cheap check can notice. Index-changing
saves hold ``index/rebuild.lock`` shared and a rebuild holds it exclusively, so a
rebuild never sees a row and its file half-changed and needs no per-run lock (hot-path
saves do not take it: they change no indexed field).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple, TypeVar

from ...errors import CorruptRunError, RunBusyError, StoreIOError, SymlinkRefusedError
from . import locks
from .ids import is_valid_run_id
from .index import IndexCorruptError, IndexKey, RunIndex
from .keys import index_key
from .oserrors import mapped

# The expiry of an unreadable event file's row: never (see ``_rebuild_events``).
UNREADABLE_EXPIRY = (1 << 62)

# How long a process waits for another one rebuilding the index.
REBUILD_WAIT = 3600.0

T = TypeVar("T")


class IndexUpkeep:
    """The index-keeping half of ``FileRunStore`` (a mixin).

    Where this process cannot write, an index that is missing, incomplete or corrupt is
    built in memory instead (``RunIndex.switch_to_memory``), with no lock: nobody here
    changes the run files, and the data dir is left exactly as it was.
    """

    def _with_index(self, fn: Callable[[RunIndex], T]) -> T:
        """Run ``fn`` on a complete index: build it if missing, rebuild it if corrupt."""
        idx = self._index
        for attempt in (1, 2):
            try:
                idx.connect()
                if idx.generation != self._index_checked_gen:
                    if not idx.is_complete():
                        if idx.read_only and not idx.in_memory:
                            idx.switch_to_memory()
                        self._rebuild("missing")
                    self._index_checked_gen = idx.generation
                return fn(idx)
            except IndexCorruptError as exc:
                if attempt == 2:
                    raise StoreIOError(self._layout.index_db,
                                       f"the index is unreadable even after a rebuild: {exc}",
                                       code="index_corrupt") from exc
                if idx.read_only:
                    idx.switch_to_memory()
                else:
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
        idx = self._index
        if idx.in_memory:
            stats = self._rebuild_locked(idx)
            self._index_checked_gen = idx.generation
            return stats
        with mapped(self._layout.rebuild_lock), locks.held(
                self._layout.rebuild_lock, REBUILD_WAIT, lambda: RunBusyError("(index rebuild)"),
                opener=self._open_rebuild_lock_for_held):
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
        index_fd = self._layout.dir_fd("index", create=True)
        base = os.path.basename(self._layout.index_db)
        try:
            # Kept for a post-mortem.
            os.replace(base, f"{base}.corrupt-{int(time.time())}", src_dir_fd=index_fd,
                       dst_dir_fd=index_fd)
        except FileNotFoundError:
            pass
        for suffix in ("-wal", "-shm", "-journal"):
            try:
                os.unlink(base + suffix, dir_fd=index_fd)
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
        for rid in self._iter_run_files():
            seen.add(rid)
            try:
                run = self.load(rid)
            except (CorruptRunError, SymlinkRefusedError, StoreIOError):
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
        gone = [rid for rid in existing - seen if not self._run_file_exists(rid)]
        idx.delete_many(gone)
        stats["removed"] = len(gone)
        self._rebuild_events(idx, stats)
        idx.set_meta("schema", "1")
        idx.set_meta("complete", "1", durable=True)  # makes all of the above durable too
        stats["seconds"] = round(time.perf_counter() - t0, 3)
        return stats

    def _rebuild_events(self, idx: RunIndex, stats: Dict[str, Any]) -> None:
        """The event rows and receipt rows, from the event files (``events.py``). A row of
        an unreadable event file is kept, so that reading it reports the file."""
        from .events import event_rows, receipt_rows, scan_event_files

        existing = set(idx.event_ids())
        seen: Set[str] = set()
        batch: List[Any] = []
        corrupt = 0

        def flush() -> None:
            idx.put_events(event_rows(batch))
            idx.add_receipts(receipt_rows(batch))
            batch.clear()

        for eid, event, _why in scan_event_files(self._layout, writable=not self.read_only):
            seen.add(eid)
            if event is None:
                # Its key and times are unknown: a row that only a listing of every event
                # meets, and that never expires, so the file is reported until fixed.
                corrupt += 1
                if eid not in existing:
                    idx.put_events([(eid, "", 0, UNREADABLE_EXPIRY)])
                continue
            batch.append(event)
            if len(batch) >= 1000:
                flush()
        if batch:
            flush()
        idx.delete_events(existing - seen)
        stats["events"] = len(seen) - corrupt
        stats["events_corrupt"] = corrupt

    def iter_run_ids(self) -> Iterator[str]:
        """Every run id kept, in order (from the run files: for whole-store operations
        such as export, prune and copy; never on a hot path)."""
        for shard_ids in self._run_files_by_shard():
            yield from sorted(shard_ids)

    def _run_files_by_shard(self) -> Iterator[List[str]]:
        batch: List[str] = []
        shard = None
        for rid in self._iter_run_files():
            if rid[0] != shard and batch:
                yield batch
                batch = []
            shard = rid[0]
            batch.append(rid)
        if batch:
            yield batch

    def _iter_run_files(self) -> Iterator[str]:
        """The ids of every run file, shard by shard (symlinked shards are refused)."""
        now = time.time()
        runs_fd = self._layout.dir_fd("runs", create=False)
        if runs_fd is None:
            return
        with os.scandir(runs_fd) as shards:
            names = sorted(e.name for e in shards if e.is_dir(follow_symlinks=False)
                           and len(e.name) == 1)
        for shard_name in names:
            shard = self._layout.dir_fd("runs/" + shard_name, create=False)
            if shard is None:
                continue
            with os.scandir(shard) as it:
                entries = list(it)
            for e in entries:
                name = e.name
                if name.startswith("."):
                    # A temp file left by a crash mid-write (an old one: never a live write).
                    if name.endswith(".tmp") and not self.read_only:
                        try:
                            if now - e.stat(follow_symlinks=False).st_mtime > 3600:
                                os.unlink(name, dir_fd=shard)
                        except OSError:
                            pass
                    continue
                if not name.endswith(".json"):
                    continue
                rid = name[:-5]
                if is_valid_run_id(rid) and rid[0] == shard_name:
                    yield rid
