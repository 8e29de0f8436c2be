"""AbstractRuntime's query signatures over abstractrt's run stores (one mixin for all).

- ``list_runs`` orders by ``updated_at``, newest first (abstractrt's stores order by
  ``created_at``). Without ``limit`` it returns every match: the runtime's own "which
  runs can move" asks through this same method and must see them all.
- ``list_due_wait_until`` takes ``now_iso=`` (a string) as well as the kernel's ``now=``
  (a datetime). Asked with ``now_iso``, it answers AbstractRuntime's question: runs
  waiting with reason ``until`` (timers and deferred retries) that are due. Times are
  compared as datetimes, never as strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, List, Optional

from ....core.models import RunState, WaitReason
from ....core.timeutil import parse_timestamp
from ....storage.rules import timestamp_micros


def _updated_key(run: RunState) -> Any:
    us = timestamp_micros(run.updated_at)
    return (us if us is not None else 0, run.run_id)


class AbstractRuntimeQueries:
    """Mix in before an abstractrt run store class."""

    def list_runs(self, *, status: Any = None, wait_reason: Any = None,
                  workflow_id: Optional[str] = None, limit: Optional[int] = None,
                  **filters: Any) -> List[RunState]:
        if limit is not None and limit <= 0:
            return []
        runs = super().list_runs(status=status, wait_reason=wait_reason,  # type: ignore[misc]
                                 workflow_id=workflow_id, **filters)
        runs.sort(key=_updated_key, reverse=True)
        return runs if limit is None else runs[:limit]

    def list_due_wait_until(self, *, now: Optional[datetime] = None, now_iso: Optional[str] = None,
                            limit: Optional[int] = None, on_corrupt: Any = None) -> List[RunState]:
        if (now is None) == (now_iso is None):
            raise TypeError("list_due_wait_until takes one of now= (a datetime) or now_iso= (a string)")
        if now_iso is None:
            return super().list_due_wait_until(now=now, limit=limit,  # type: ignore[misc]
                                               on_corrupt=on_corrupt)
        due = super().list_due_wait_until(now=parse_timestamp(now_iso),  # type: ignore[misc]
                                          on_corrupt=on_corrupt)
        due = [r for r in due if r.waiting is not None and r.waiting.reason == WaitReason.UNTIL]
        return due if limit is None else due[:max(0, limit)]
