"""Store protocols: what the runtime needs from a run store and a ledger store.

Every store (memory, files, any added later) passes the same contract suite
(``tests/store_contract.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, ContextManager, Dict, List, Optional, Protocol, Tuple

from ..core.models import RunState, RunStatus, StepRecord, WaitReason
from ..errors import CorruptRunError

OnCorrupt = Optional[Callable[[CorruptRunError], None]]


class RunStore(Protocol):
    def save(self, run: RunState) -> None:
        """Persist a run (atomically, for durable stores)."""

    def load(self, run_id: str) -> Optional[RunState]:
        """The run, or None if there is no such run; CorruptRunError if unreadable."""

    def lock(self, run_id: str, *, timeout: float) -> ContextManager[None]:
        """Hold the run exclusively; ``timeout=0`` tries once. Raises RunBusyError."""

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
        """Matching runs, newest (``created_at``) first.

        A corrupt run file among the candidates is passed to ``on_corrupt`` (raised when
        it is None); it is never silently skipped.
        """

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        """Runs waiting with reason ``until`` whose time is at or before ``now``."""

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        """Runs whose ``parent_run_id`` is the given run."""

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        """Ids of runs starting with ``prefix`` (at most ``limit``)."""


class LedgerStore(Protocol):
    def append(self, record: StepRecord) -> Dict[str, Any]:
        """Chain (``seq``, ``prev_hash``, ``record_hash``) and durably append a record."""

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        """Every record of a run, oldest first."""

    def head(self, run_id: str) -> Tuple[int, Optional[str]]:
        """(record count, hash of the last record) — cheap, without reading everything."""

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        """Records whose ``seq`` is >= ``count``: those after a checkpoint. Cheap."""
