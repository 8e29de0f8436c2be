"""The rules every store's queries follow, written once.

A store may find its candidates however it likes (a dict scan, an index, SQL), but which
runs a query returns, and in which order, is decided here:

- ``RunFilter.matches``: the ``list_runs`` filter. ``wait_reason`` and ``wait_key``
  also mean "waiting" (a finished run keeps no wait); ``created_since`` is inclusive.
- ``due_at`` / ``is_due``: a run is due when it waits with reason ``until`` and that
  time (a real instant, whatever its zone) is at or before ``now``.
- ``newest_first`` / ``earliest_due_first``: the sort keys, ties broken by run id so
  every store gives the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Tuple

from ..core.models import RunState, RunStatus, WaitReason
from ..core.timeutil import parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


def micros(dt: datetime) -> int:
    """Microseconds since the epoch of an aware (or UTC-naive) datetime."""
    return (parse_timestamp(dt) - EPOCH) // _MICRO


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def timestamp_micros(value: Any) -> Optional[int]:
    """``micros`` of an ISO-8601 string or datetime; None if it is not one."""
    try:
        return micros(parse_timestamp(value))
    except (ValueError, TypeError, OverflowError):
        return None


def created_micros(run: RunState) -> int:
    """When a run was created; an unreadable ``created_at`` sorts as the oldest."""
    us = timestamp_micros(run.created_at)
    return us if us is not None else 0


def as_status(value: Any) -> Optional[RunStatus]:
    """A RunStatus from itself or its value; None stays None (ValueError if unknown)."""
    return None if value is None else RunStatus(getattr(value, "value", value))


def as_reason(value: Any) -> Optional[WaitReason]:
    return None if value is None else WaitReason(getattr(value, "value", value))


@dataclass(frozen=True)
class RunFilter:
    """What ``list_runs`` asks for (every field None: every run)."""

    status: Optional[RunStatus] = None
    workflow_id: Optional[str] = None
    wait_reason: Optional[WaitReason] = None
    wait_key: Optional[str] = None
    parent_run_id: Optional[str] = None
    created_since: Optional[datetime] = None

    @classmethod
    def of(cls, *, status: Any = None, workflow_id: Optional[str] = None,
           wait_reason: Any = None, wait_key: Optional[str] = None,
           parent_run_id: Optional[str] = None, created_since: Any = None) -> "RunFilter":
        """Normalised: enums from their values, ``created_since`` an aware datetime."""
        since = parse_timestamp(created_since) if created_since is not None else None
        return cls(as_status(status), workflow_id, as_reason(wait_reason), wait_key,
                   parent_run_id, since)

    @property
    def created_since_us(self) -> Optional[int]:
        return micros(self.created_since) if self.created_since is not None else None

    def matches(self, run: RunState) -> bool:
        if self.status is not None and run.status != self.status:
            return False
        if self.workflow_id is not None and run.workflow_id != self.workflow_id:
            return False
        if self.parent_run_id is not None and run.parent_run_id != self.parent_run_id:
            return False
        if self.wait_reason is not None or self.wait_key is not None:
            w = run.waiting
            if run.status != RunStatus.WAITING or w is None:
                return False
            if self.wait_reason is not None and w.reason != self.wait_reason:
                return False
            if self.wait_key is not None and w.wait_key != self.wait_key:
                return False
        if self.created_since is not None:
            created = timestamp_micros(run.created_at)
            if created is None or created < micros(self.created_since):
                return False
        return True


def due_at(run: RunState) -> Optional[datetime]:
    """The instant a run waiting ``until`` becomes due; None for every other run."""
    w = run.waiting
    if run.status != RunStatus.WAITING or w is None or w.reason != WaitReason.UNTIL or not w.until:
        return None
    try:
        return parse_timestamp(w.until)
    except ValueError:
        return None


def is_due(run: RunState, now: datetime) -> bool:
    due = due_at(run)
    return due is not None and due <= now


def newest_first(run: RunState) -> Tuple[int, str]:
    """Sort key for ``list_runs`` (use with ``reverse=True``)."""
    return created_micros(run), run.run_id


def oldest_first(run: RunState) -> Tuple[int, str]:
    """Sort key for ``list_children``."""
    return created_micros(run), run.run_id


def earliest_due_first(run: RunState) -> Tuple[datetime, str]:
    """Sort key for ``list_due_wait_until`` (due runs only)."""
    return due_at(run) or EPOCH, run.run_id
