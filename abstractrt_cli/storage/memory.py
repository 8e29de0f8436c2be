"""In-memory stores: for tests, benchmarks and library users who need no persistence."""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..core.models import RunState, RunStatus, StepRecord, WaitReason
from ..core.timeutil import parse_timestamp
from ..errors import RunBusyError
from .base import OnCorrupt
from .chain import chain_record


class InMemoryRunStore:
    """Runs in a dict (deep-copied in and out, like a real store would)."""

    def __init__(self) -> None:
        self._runs: Dict[str, RunState] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def save(self, run: RunState) -> None:
        self._runs[run.run_id] = copy.deepcopy(run)

    def load(self, run_id: str) -> Optional[RunState]:
        run = self._runs.get(run_id)
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
        out = []
        for run in self._runs.values():
            if status is not None and run.status != status:
                continue
            if workflow_id is not None and run.workflow_id != workflow_id:
                continue
            if wait_reason is not None or wait_key is not None:
                w = run.waiting
                if run.status != RunStatus.WAITING or w is None:
                    continue
                if wait_reason is not None and w.reason != wait_reason:
                    continue
                if wait_key is not None and w.wait_key != wait_key:
                    continue
            out.append(run)
        out.sort(key=lambda r: r.created_at, reverse=True)
        return [copy.deepcopy(r) for r in out[:limit]]

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        due = [
            r for r in self._runs.values()
            if r.status == RunStatus.WAITING and r.waiting is not None
            and r.waiting.reason == WaitReason.UNTIL and r.waiting.until
            and parse_timestamp(r.waiting.until) <= now
        ]
        due.sort(key=lambda r: parse_timestamp(r.waiting.until))  # type: ignore[union-attr]
        return [copy.deepcopy(r) for r in due[:limit]]

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        kids = [r for r in self._runs.values() if r.parent_run_id == parent_run_id
                and (status is None or r.status == status)]
        kids.sort(key=lambda r: r.created_at)
        return [copy.deepcopy(r) for r in kids]

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        return sorted(rid for rid in self._runs if rid.startswith(prefix))[:limit]


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
