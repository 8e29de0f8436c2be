"""In-memory stores: for tests, benchmarks and library users who need no persistence."""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..core.models import RunState, RunStatus, StepRecord, WaitReason
from ..core.timeutil import parse_timestamp
from ..errors import InvalidRunIdError, RunBusyError
from . import rules
from .base import OnCorrupt
from .chain import chain_record


class InMemoryRunStore:
    """Runs in a dict (deep-copied in and out, like a real store would)."""

    def __init__(self) -> None:
        self._runs: Dict[str, RunState] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def save(self, run: RunState) -> None:
        self._runs[self.validate_run_id(run.run_id)] = copy.deepcopy(run)

    def load(self, run_id: str) -> Optional[RunState]:
        run = self._runs.get(self.validate_run_id(run_id))
        return copy.deepcopy(run) if run is not None else None

    @contextmanager
    def lock(self, run_id: str, *, timeout: float) -> Iterator[None]:
        with self._guard:
            lk = self._locks.setdefault(run_id, threading.Lock())
        acquired = lk.acquire(timeout=timeout) if timeout > 0 else lk.acquire(blocking=False)
        if not acquired:
            raise RunBusyError(run_id)
        try:
            yield
        finally:
            lk.release()

    def validate_run_id(self, run_id: Any) -> str:
        """Any non-empty string without '/' or NUL (nothing here is a file name)."""
        if not isinstance(run_id, str):
            raise InvalidRunIdError(repr(run_id), "a run id is a string")
        if not run_id or "/" in run_id or "\0" in run_id:
            raise InvalidRunIdError(run_id, "a run id is a non-empty string without '/' or NUL")
        return run_id

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        wait_reason: Optional[WaitReason] = None,
        wait_key: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        created_since: Optional[datetime] = None,
        limit: Optional[int] = None,
        on_corrupt: OnCorrupt = None,
    ) -> List[RunState]:
        f = rules.RunFilter.of(status=status, workflow_id=workflow_id, wait_reason=wait_reason,
                               wait_key=wait_key, parent_run_id=parent_run_id,
                               created_since=created_since)
        if limit is not None and limit <= 0:
            return []
        out = sorted((r for r in list(self._runs.values()) if f.matches(r)),
                     key=rules.newest_first, reverse=True)
        return [copy.deepcopy(r) for r in out[:limit]]

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        if limit is not None and limit <= 0:
            return []
        now_dt = parse_timestamp(now)
        due = sorted((r for r in list(self._runs.values()) if rules.is_due(r, now_dt)),
                     key=rules.earliest_due_first)
        return [copy.deepcopy(r) for r in due[:limit]]

    def earliest_due(self) -> Optional[datetime]:
        dues = [d for d in map(rules.due_at, list(self._runs.values())) if d is not None]
        return min(dues) if dues else None

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        status = rules.as_status(status)
        kids = sorted((r for r in list(self._runs.values()) if r.parent_run_id == parent_run_id
                       and (status is None or r.status == status)), key=rules.oldest_first)
        return [copy.deepcopy(r) for r in kids]

    def info(self) -> Dict[str, Any]:
        """Runs by status (what ``store info`` shows)."""
        counts: Dict[str, int] = {}
        for run in list(self._runs.values()):
            counts[run.status.value] = counts.get(run.status.value, 0) + 1
        return {"runs": {k: counts[k] for k in sorted(counts)}, "total": len(self._runs)}

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        return sorted(rid for rid in list(self._runs) if rid.startswith(prefix))[:limit]


class InMemoryLedgerStore:
    """Hash-chained records in lists."""

    def __init__(self) -> None:
        self._records: Dict[str, List[Dict[str, Any]]] = {}

    def append(self, record: StepRecord) -> Dict[str, Any]:
        recs = self._records.setdefault(record.run_id, [])
        prev = recs[-1]["record_hash"] if recs else None
        stored = chain_record(record.to_jsonable(), seq=len(recs), prev_hash=prev)
        recs.append(stored)
        record.seq, record.prev_hash, record.record_hash = stored["seq"], prev, stored["record_hash"]
        return copy.deepcopy(stored)

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return copy.deepcopy(self._records.get(run_id, []))

    def head(self, run_id: str) -> Tuple[int, Optional[str]]:
        recs = self._records.get(run_id)
        return (len(recs), recs[-1]["record_hash"]) if recs else (0, None)

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        return copy.deepcopy(self._records.get(run_id, [])[count:])
