"""A run's indexed fields, as the query index stores them (``IndexKey``), and as they
are written (``raw_key``: equal raw keys mean equal index keys, at no parsing cost)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from ...core.models import RunState, RunStatus, WaitReason
from ..rules import created_micros, timestamp_micros
from .index import IndexKey


def index_key(run: RunState) -> IndexKey:
    """The indexed fields of a run: the wait fields only while it waits (see index.py)."""
    w = run.waiting if run.status == RunStatus.WAITING else None
    until_us = None
    if w is not None and w.reason == WaitReason.UNTIL and w.until:
        until_us = timestamp_micros(w.until)
    return IndexKey(
        run.status.value, run.workflow_id,
        w.reason.value if w is not None else None,
        w.wait_key if w is not None else None,
        until_us, run.parent_run_id, created_micros(run),
    )


RawKey = Tuple[Any, ...]


def raw_key(run: RunState) -> RawKey:
    """The fields ``index_key`` is made of, unparsed: what a save compares to tell
    whether the index must change (the hot path never parses a timestamp)."""
    w: Optional[Any] = run.waiting if run.status == RunStatus.WAITING else None
    if w is None:
        return (run.status, run.workflow_id, run.parent_run_id, run.created_at)
    return (run.status, run.workflow_id, run.parent_run_id, run.created_at, w.reason,
            w.wait_key, w.until if w.reason == WaitReason.UNTIL else None)
