"""A run's indexed fields, as the query index stores them (``IndexKey``)."""

from __future__ import annotations

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
