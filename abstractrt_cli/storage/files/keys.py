"""A run's indexed fields, as the query index stores them (``IndexKey``), and as they
are written (``raw_key``: equal raw keys mean equal index keys, at no parsing cost)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from ...core.models import RunState, RunStatus, WaitReason
from ..rules import DEADLINE_REASONS, created_micros, due_at, micros
from .index import IndexKey


def index_key(run: RunState) -> IndexKey:
    """The indexed fields of a run: the wait fields only while it waits (see index.py).

    ``until_us`` is when the run becomes due (``rules.due_at``): a timer's ``until``, or
    the ``deadline`` of a person's or an event's wait, so one index finds both."""
    w = run.waiting if run.status == RunStatus.WAITING else None
    due = due_at(run)
    return IndexKey(
        run.status.value, run.workflow_id,
        w.reason.value if w is not None else None,
        w.wait_key if w is not None else None,
        micros(due) if due is not None else None, run.parent_run_id, created_micros(run),
    )


RawKey = Tuple[Any, ...]


def raw_key(run: RunState) -> RawKey:
    """The fields ``index_key`` is made of, unparsed: what a save compares to tell
    whether the index must change (the hot path never parses a timestamp)."""
    w: Optional[Any] = run.waiting if run.status == RunStatus.WAITING else None
    if w is None:
        return (run.status, run.workflow_id, run.parent_run_id, run.created_at)
    if w.reason == WaitReason.UNTIL:
        due = w.until
    elif w.reason in DEADLINE_REASONS:
        due = w.deadline
    else:
        due = None
    return (run.status, run.workflow_id, run.parent_run_id, run.created_at, w.reason,
            w.wait_key, due)
