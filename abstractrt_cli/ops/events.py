"""Delivering events: ``emit`` resumes every run waiting on a wait key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from ..core.models import RunState, RunStatus
from ..errors import NoWaiterError, RunBusyError, RunNotWaitingError
from ..settings import current_actor
from .session import Session, add_hint, hinted


@dataclass
class EmitResult:
    key: str
    runs: List[RunState] = field(default_factory=list)
    busy: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


@hinted
def emit(s: Session, key: str, payload: Dict[str, Any], *, max_steps: int = 100) -> EmitResult:
    """Resume every run waiting on ``key``; all are validated before any is resumed."""
    waiting = s.run_store.list_runs(status=RunStatus.WAITING, wait_key=key)
    if not waiting:
        raise add_hint(NoWaiterError(key))
    rt = s.runtime()
    result = EmitResult(key=key)
    for run in waiting:
        rt.check_resume(run, wait_key=key, payload=payload)
        result.warnings.extend(s.workflow_warnings(run))
    for run in sorted(waiting, key=lambda r: r.created_at):
        try:
            result.runs.append(rt.resume(run_id=run.run_id, payload=dict(payload), wait_key=key,
                                         max_steps=max_steps, actor_id=current_actor()))
        except RunBusyError:
            result.busy.append(run.run_id)
        except RunNotWaitingError:
            continue  # another process resumed it between our query and our lock
    if result.runs:
        from .runs import wake_workers

        wake_workers(s, result.runs[0].run_id)
    return result
