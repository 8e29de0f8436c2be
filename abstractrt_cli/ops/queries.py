"""Commands that only read: workflows, waiting, runs, show, ledger (and --verify)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from ..core.models import RunState, RunStatus, WaitReason
from ..errors import AbstractRTError, CorruptLedgerError, CorruptRunError, UsageError
from .session import Session, hinted, waiting_since


def list_workflows(s: Session) -> List[Dict[str, Any]]:
    from ..loader import describe

    return describe(s.workflows)


@hinted
def waiting(s: Session, *, workflow_id: Optional[str] = None,
            reason: Optional[WaitReason] = None) -> List[RunState]:
    """Waiting runs, the longest-waiting first."""
    runs = s.run_store.list_runs(status=RunStatus.WAITING, workflow_id=workflow_id,
                                 wait_reason=reason)
    runs.sort(key=lambda r: (waiting_since(r), r.run_id))
    for run in runs:
        _refresh_child_wait(s, run)
    return runs


def next_reminder(since: str, every: str, *, deadline: Optional[str] = None,
                  now: Optional[datetime] = None) -> Optional[str]:
    """When the next reminder of a wait is due (UTC ISO): the first ``since + k * every``
    (k = 1, 2, ...) after ``now``; None when it would come at or after the deadline."""
    from ..core.timeutil import parse_duration, parse_timestamp

    step = parse_duration(every)
    start = parse_timestamp(since)
    now = now or datetime.now(timezone.utc)
    if step.total_seconds() <= 0:
        return None
    k = max(1, int((now - start) / step) + 1)
    nxt = start + k * step
    if nxt <= now:  # rounding of the division: the next one is strictly later
        nxt += step
    if deadline and nxt >= parse_timestamp(deadline):
        return None
    return nxt.astimezone(timezone.utc).isoformat()


def _load_quietly(s: Session, run_id: Optional[str]) -> Optional[RunState]:
    if not run_id:
        return None
    try:
        return s.run_store.load(run_id)
    except AbstractRTError:
        return None


def _refresh_child_wait(s: Session, run: RunState) -> None:
    """Show what a parent's child waits for *now* (the parent recorded its first wait)."""
    w = run.waiting
    if w is None or w.reason != WaitReason.SUBWORKFLOW or not w.details:
        return
    child = _load_quietly(s, w.details.get("sub_run_id"))
    if child is None:
        return
    cw = child.waiting
    w.details["sub_status"] = child.status.value
    w.details["sub_waiting"] = ({"reason": cw.reason.value, "wait_key": cw.wait_key,
                                 "prompt": cw.prompt} if cw else None)


@dataclass
class RunsListing:
    runs: List[RunState]
    corrupt: List[CorruptRunError]
    where: str  # which store was read: "no runs" says so


def parse_since(text: str, *, now: Optional[datetime] = None) -> datetime:
    """``--since 2h`` → the moment two hours ago (UTC)."""
    from ..core.timeutil import parse_duration

    try:
        delta = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    return (now or datetime.now(timezone.utc)) - delta


@hinted
def list_runs(s: Session, *, status: Optional[RunStatus] = None, workflow_id: Optional[str] = None,
              limit: Optional[int] = None, since: Optional[str] = None,
              parent: Optional[str] = None) -> RunsListing:
    """Runs newest first; ``limit`` counts every listed row, corrupt ones included."""
    filters: Dict[str, Any] = {}
    if since is not None:
        filters["created_since"] = parse_since(since)
    if parent is not None:
        filters["parent_run_id"] = s.load_run(parent).run_id
    corrupt: List[CorruptRunError] = []
    runs = s.run_store.list_runs(status=status, workflow_id=workflow_id, limit=limit,
                                 on_corrupt=corrupt.append, **filters)
    if limit is not None and len(runs) + len(corrupt) > limit:
        corrupt = corrupt[:limit]
        runs = runs[:max(0, limit - len(corrupt))]
    return RunsListing(runs, corrupt, s.where())


@hinted
def show(s: Session, ref: str) -> Dict[str, Any]:
    run = s.load_run(ref)
    children = s.run_store.list_children(parent_run_id=run.run_id)
    limits = None
    if "_limits" in run.vars:
        limits = s.runtime().get_limit_status(run.run_id)
    return {"run": run, "children": children, "limits": limits}


@hinted
def ledger(s: Session, ref: str) -> Dict[str, Any]:
    run = s.load_run(ref)
    return {"run": run, "records": s.ledger_store.list(run.run_id)}


@hinted
def verify(s: Session, ref: str) -> Dict[str, Any]:
    """Check a run's hash chain, its checkpoint against it, the state digest the chain
    carries and, with a signing key, the checkpoint's signature (``core.integrity``)."""
    from ..core.integrity import KEY_FILE_NAME, load_signing_key, verify_run
    from ..settings import user_config_dir

    run = s.load_run(ref)
    try:
        records = s.ledger_store.list(run.run_id)
    except CorruptLedgerError as exc:
        return {"ok": False, "count": None, "first_bad_index": exc.line - 1,
                "first_bad_step_id": None, "errors": [{"type": "unparsable_line",
                                                       "index": exc.line - 1}],
                "head_hash": None, "message": str(exc), "run_id": run.run_id,
                "problems": [str(exc)]}
    report = verify_run(run, records, key=load_signing_key(user_config_dir() / KEY_FILE_NAME))
    report["run_id"] = run.run_id
    return report
