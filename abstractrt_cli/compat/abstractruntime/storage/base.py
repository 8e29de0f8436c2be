"""AbstractRuntime's store interfaces, for code that subclasses or checks against them.

``RunStore`` and ``LedgerStore`` are the abstract bases AbstractRuntime's own stores
derive from (ours here do too); ``QueryableRunStore`` is the ``runtime_checkable``
protocol its ``Scheduler`` requires. abstractrt's kernel asks more of a store (per-run
locks, ledger heads): see ``abstractrt_cli.storage.base``. The compatibility ``Runtime``
gives a ``RunStore`` that has no locks in-process ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

from ..core.models import RunState, RunStatus, StepRecord, WaitReason

__all__ = ["RunStore", "LedgerStore", "QueryableRunStore"]


class RunStore(ABC):
    @abstractmethod
    def save(self, run: RunState) -> None: ...

    @abstractmethod
    def load(self, run_id: str) -> Optional[RunState]: ...


@runtime_checkable
class QueryableRunStore(Protocol):
    """A run store the scheduler can ask which runs are due, waiting, or children."""

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        wait_reason: Optional[WaitReason] = None,
        workflow_id: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> List[RunState]:
        """Matching runs, most recently updated first."""
        ...

    def list_due_wait_until(self, *, now_iso: str, limit: Optional[int] = None) -> List[RunState]:
        """Runs waiting ``until`` a time at or before ``now_iso``, earliest first."""
        ...

    def list_children(self, *, parent_run_id: str,
                      status: Optional[RunStatus] = None) -> List[RunState]:
        """Runs whose ``parent_run_id`` is the given run."""
        ...


class LedgerStore(ABC):
    """Append-only journal store."""

    @abstractmethod
    def append(self, record: StepRecord) -> Any: ...

    @abstractmethod
    def list(self, run_id: str) -> List[Dict[str, Any]]: ...
