"""Queries of the file run store: the index proposes, the run files decide.

Queries read the SQLite index (``index.py``) for candidate ids, then load those run
files and check each against the query (``rules.py``): the run file is the truth. Every
query also reads the *dirty* rows (normally none: a crash between a row and its file
leaves one, a corrupt run file keeps one) and repairs rows that turn out to lie, each
under its run's lock. So a query costs what its matches cost, not what every stored run
costs (PRODUCT §3), and a crash never hides a run from a query.

A corrupt run among the candidates goes to ``on_corrupt`` (raised when None), once per
query, and counts towards ``limit`` like a run: ``--limit 5`` shows five lines.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ...core.models import RunState, RunStatus
from ...core.timeutil import parse_timestamp
from ...errors import CorruptRunError, InvalidRunIdError, StoreIOError, SymlinkRefusedError
from .. import rules
from ..base import OnCorrupt
from .ids import ID_CHARS
from .index import RunIndex
from .keys import index_key
from .oserrors import cannot_write

PageOf = Callable[[Any, int], Callable[[RunIndex], List[Tuple[str, Any]]]]


class FileQueries:
    """The query half of ``FileRunStore`` (a mixin: it uses the store's load, index, locks)."""

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        wait_reason: Any = None,
        wait_key: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        created_since: Optional[datetime] = None,
        limit: Optional[int] = None,
        on_corrupt: OnCorrupt = None,
    ) -> List[RunState]:
        """Matching runs, newest (``created_at``) first; corrupt candidates go to on_corrupt."""
        f = rules.RunFilter.of(status=status, workflow_id=workflow_id, wait_reason=wait_reason,
                               wait_key=wait_key, parent_run_id=parent_run_id,
                               created_since=created_since)
        if limit is not None and limit <= 0:
            return []
        since_us = f.created_since_us

        def page_of(cursor: Any, n: int) -> Callable[[RunIndex], List[Tuple[str, Any]]]:
            return partial(
                RunIndex.page_runs, status=f.status.value if f.status else None,
                workflow_id=f.workflow_id, wait_reason=f.wait_reason.value if f.wait_reason
                else None, wait_key=f.wait_key, parent_run_id=f.parent_run_id,
                created_since_us=since_us, before=cursor, limit=n)

        found, reported = self._query(page_of, f.matches, limit, on_corrupt)
        out = sorted(found.values(), key=rules.newest_first, reverse=True)
        return out[:limit - reported] if limit is not None else out

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        """Runs waiting with reason ``until`` whose time is at or before ``now``."""
        now_dt = parse_timestamp(now)
        now_us = rules.micros(now_dt)
        if limit is not None and limit <= 0:
            return []
        found, reported = self._query(
            lambda cursor, n: partial(RunIndex.page_due, now_us=now_us, after=cursor, limit=n),
            lambda run: rules.is_due(run, now_dt), limit, on_corrupt)
        out = sorted(found.values(), key=rules.earliest_due_first)
        return out[:limit - reported] if limit is not None else out

    def earliest_due(self) -> Optional[datetime]:
        """The earliest ``until`` of any run waiting on time (None if none waits)."""
        clean = self._with_index(RunIndex.earliest_until)
        best = rules.from_micros(clean) if clean is not None else None
        repairs: List[str] = []
        for rid in self._with_index(RunIndex.dirty_ids):
            # A corrupt run is reported by the queries that list runs; here it only
            # cannot say when it is due.
            run = self._load_candidate(rid, lambda exc: None, False, repairs)
            due = rules.due_at(run) if run is not None else None
            if due is not None and (best is None or due < best):
                best = due
        self._repair(repairs)
        return best

    def _query(self, page_of: PageOf, matches: Callable[[RunState], bool],
               limit: Optional[int], on_corrupt: OnCorrupt) -> Tuple[Dict[str, RunState], int]:
        """The runs a query finds, and how many corrupt ones it reported.

        Dirty rows first, then clean pages of ``(run_id, sort key)`` rows in order until
        ``limit`` matches (corrupt reports included), each checked against its run file.
        A clean row whose run no longer matches is repaired; a row that turned dirty
        while we paged was in neither list, so dirty rows are read once more at the end.
        """
        found: Dict[str, RunState] = {}
        repairs: List[str] = []
        seen: Set[str] = set()
        reported = 0

        def report(exc: CorruptRunError) -> None:
            nonlocal reported
            if limit is not None and reported >= limit:
                return  # the page is full: a later page (or query) shows it
            reported += 1
            if on_corrupt is None:
                raise exc
            on_corrupt(exc)

        def consider(rid: str, clean: bool) -> bool:
            if rid in seen:
                return False
            seen.add(rid)
            run = self._load_candidate(rid, report, clean, repairs)
            if run is None:
                return False
            if matches(run):
                found[rid] = run
                return True
            if clean:
                repairs.append(rid)  # a clean row that lies: fix it
            return False

        try:
            for rid in self._with_index(RunIndex.dirty_ids):
                consider(rid, False)
            page = 256 if limit is None else max(2 * limit, 16)
            cursor: Optional[Tuple[Any, str]] = None
            clean_found = 0
            while limit is None or clean_found + reported < limit:
                rows = self._with_index(page_of(cursor, page))
                for rid, sort_key in rows:
                    cursor = (sort_key, rid)
                    if consider(rid, True):
                        clean_found += 1
                        if limit is not None and clean_found + reported >= limit:
                            break
                if len(rows) < page:
                    break
            for rid in self._with_index(RunIndex.dirty_ids):
                consider(rid, False)
        finally:
            self._repair(repairs)
        return found, reported

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        """Runs whose ``parent_run_id`` is the given run, oldest first."""
        status = rules.as_status(status)
        # A run's parent never changes, so its row names it even when dirty; dirty rows
        # are read too only for rows whose fields are unknown (left by a rebuild).
        children = self._with_index(partial(RunIndex.children, parent_run_id=parent_run_id))
        known = set(children)
        unknown = [r for r in self._with_index(RunIndex.dirty_ids) if r not in known]
        repairs: List[str] = []
        kids = []
        try:
            for rid in children + unknown:
                if rid in known:
                    run = self._load_candidate(rid, None, True, repairs)  # corrupt: raise
                else:
                    run = self._load_candidate(rid, lambda e: None, False, repairs)
                if run is None or run.parent_run_id != parent_run_id:
                    continue
                if status is None or run.status == status:
                    kids.append(run)
        finally:
            self._repair(repairs)
        kids.sort(key=rules.oldest_first)
        return kids

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        """Ids of runs starting with ``prefix`` (at most ``limit``), sorted."""
        if limit <= 0 or not ID_CHARS.fullmatch(prefix):
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
                if self._run_file_exists(rid):
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
            try:
                run = self.load(rid)
            except (SymlinkRefusedError, StoreIOError) as exc:
                # One unreadable run file (a symlink, no permission) is that run's
                # problem: reported like a corrupt one, it never hides the others.
                path = self.path_of(rid)
                why = ("it is a symbolic link: refused, never followed"
                       if isinstance(exc, SymlinkRefusedError) else exc.message)
                if why.startswith(path + ": "):
                    why = why[len(path) + 2:]
                bad = CorruptRunError(path, why)
                bad.run_id = rid  # type: ignore[attr-defined]
                raise bad from exc
        except CorruptRunError as exc:
            if clean:
                # Its true fields are unknown now: every query must show it until fixed.
                self._mark_dirty(rid)
            if on_corrupt is None:
                raise
            on_corrupt(exc)
            return None
        except InvalidRunIdError:
            return None  # not a row we wrote
        if run is None or not clean:
            repairs.append(rid)
        return run

    def _repair(self, run_ids: List[str]) -> None:
        """Make these runs' rows true again, each under its lock (busy ones are left)."""
        for rid in dict.fromkeys(run_ids):
            if not self._try_lock_for_repair(rid):
                continue  # its holder is changing it; a later query repairs it
            try:
                try:
                    run = self.load(rid)
                except (CorruptRunError, SymlinkRefusedError, StoreIOError):
                    continue
                try:
                    if run is None:
                        self._with_index(partial(RunIndex.delete, run_id=rid))
                    else:
                        self._with_index(partial(RunIndex.put, run_id=rid, key=index_key(run),
                                                 dirty=False, durable=False))
                except OSError as exc:
                    if not cannot_write(exc):
                        raise
                    return  # the index is read-only to us: a writable query repairs it
            finally:
                self._unlock_after_repair(rid)
