"""Prune: delete ended runs older than a cutoff, keeping a record of each (PRODUCT §9).

``plan_prune`` decides, changing nothing (``prune --dry-run`` prints it): the runs that
ended (``updated_at``) at or before ``now - older_than``, with one of the statuses asked
for (completed, failed, cancelled), except

- a run whose parent has not ended (its parent may still act on it), and
- a run with a child that has not ended (the child would report to a run that is gone);

and the artifacts to delete with them: those one of these runs references (stored by
it — its metadata names it — or whose ref appears in its vars, its ledger or its
snapshots) that no run that stays references. Only the runs being pruned are read, and
the metadata of their artifacts: an artifact stays if a run its metadata names is kept.
(A run that merely *mentions* a ref it did not store — not through the metadata — does
not keep it: whoever copies a ref into another run should store the artifact for that
run too, which merges the metadata.)

``apply_prune`` does it, one run at a time under the run's lock (a run busy elsewhere is
skipped, and reported): it checks the run again (it may have been retried since the
plan), appends the prune record (``AuditStore``; durable before anything is deleted, so
no run ever disappears without one), then deletes the run's snapshots, log and the run
itself with its ledger (``RunAdmin.delete_run``), and, once every run is done, the
artifacts no kept run references any more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence, Set

from ..core.models import RunState, RunStatus
from ..errors import CorruptRunError, RunBusyError, UsageError
from . import rules
from .base import Stores

ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)

__all__ = ["plan_prune", "apply_prune", "prune", "PrunePlan", "ENDED"]


@dataclass
class PrunePlan:
    """What a prune would do (``to_jsonable`` is what ``prune --dry-run --json`` shows)."""

    now: datetime
    cutoff: datetime
    statuses: List[RunStatus]
    runs: List[RunState] = field(default_factory=list)
    skipped: List[Dict[str, Any]] = field(default_factory=list)  # {run_id, why}
    artifacts: List[str] = field(default_factory=list)  # refs deleted if every run goes
    refs: Dict[str, Set[str]] = field(default_factory=dict)  # run id -> refs it references

    def to_jsonable(self) -> Dict[str, Any]:
        return {
            "now": self.now.isoformat(), "cutoff": self.cutoff.isoformat(),
            "statuses": [s.value for s in self.statuses],
            "runs": [{"run_id": r.run_id, "workflow_id": r.workflow_id,
                      "status": r.status.value, "ended_at": r.updated_at} for r in self.runs],
            "skipped": list(self.skipped), "artifacts": list(self.artifacts),
        }


def _statuses(statuses: Optional[Sequence[Any]]) -> List[RunStatus]:
    if not statuses:
        return list(ENDED)
    out: List[RunStatus] = []
    for s in statuses:
        try:
            st = RunStatus(getattr(s, "value", s))
        except ValueError:
            st = None
        if st not in ENDED:
            raise UsageError(f"cannot prune runs of status {getattr(s, 'value', s)!r}: only "
                             "completed, failed or cancelled runs are pruned")
        if st not in out:
            out.append(st)
    return out


def _ended_by(run: RunState, cutoff_us: int) -> bool:
    ended = rules.timestamp_micros(run.updated_at)
    return ended is not None and ended <= cutoff_us


def plan_prune(stores: Stores, *, older_than: timedelta, statuses: Optional[Sequence[Any]] = None,
               now: Optional[datetime] = None) -> PrunePlan:
    """What ``apply_prune`` would do now (nothing changes). ``older_than`` is measured from
    when each run ended; ``timedelta(0)``: every ended run."""
    if older_than < timedelta(0):
        raise UsageError("--older-than cannot be negative")
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    plan = PrunePlan(now=when, cutoff=when - older_than, statuses=_statuses(statuses))
    cutoff_us = rules.micros(plan.cutoff)

    def corrupt(exc: CorruptRunError) -> None:
        plan.skipped.append({"run_id": getattr(exc, "run_id", None),
                             "why": f"unreadable: {exc.message}"})

    candidates: Dict[str, RunState] = {}
    for status in plan.statuses:
        for run in stores.runs.list_runs(status=status, on_corrupt=corrupt):
            if _ended_by(run, cutoff_us):
                candidates[run.run_id] = run
    for rid in sorted(candidates, key=lambda r: rules.oldest_first(candidates[r])):
        run = candidates[rid]
        why = _why_kept(stores, run)
        if why is not None:
            plan.skipped.append({"run_id": rid, "why": why})
            continue
        plan.runs.append(run)
    pruned = {r.run_id for r in plan.runs}
    plan.refs = {r.run_id: _refs_of(stores, r) for r in plan.runs}
    plan.artifacts = _doomed_artifacts(stores, plan.refs, pruned)
    return plan


def _why_kept(stores: Stores, run: RunState) -> Optional[str]:
    """Why an ended, old run must stay, or None."""
    if run.parent_run_id:
        try:
            parent = stores.runs.load(run.parent_run_id)
        except CorruptRunError:
            return f"its parent {run.parent_run_id} is unreadable"
        if parent is not None and not parent.status.is_terminal:
            return f"its parent {run.parent_run_id} has not ended ({parent.status.value})"
    for kid in stores.runs.list_children(parent_run_id=run.run_id):
        if not kid.status.is_terminal:
            return f"its child {kid.run_id} has not ended ({kid.status.value})"
    return None


def _refs_of(stores: Stores, run: RunState) -> Set[str]:
    refs = rules.refs_in(run.vars) | rules.refs_in(run.output or {})
    refs |= rules.refs_in(stores.ledger.list(run.run_id))
    if stores.snapshots is not None:
        refs |= rules.refs_in(stores.snapshots.list_snapshots(run_id=run.run_id))
    if stores.artifacts is not None:
        refs |= {m["ref"] for m in stores.artifacts.list_artifacts(run_id=run.run_id)}
    return refs


def _doomed_artifacts(stores: Stores, refs: Dict[str, Set[str]], pruned: Set[str]) -> List[str]:
    """The refs of the pruned runs that no kept run references (by the metadata)."""
    if stores.artifacts is None:
        return []
    out = []
    for ref in sorted(set().union(*refs.values()) if refs else set()):
        meta = stores.artifacts.artifact_meta(ref)
        if meta is None:
            continue  # not kept here
        holders = [r for r in (meta.get("run_ids") or []) if r not in pruned]
        if any(_exists(stores, r) for r in holders):
            continue
        out.append(ref)
    return out


def _exists(stores: Stores, run_id: str) -> bool:
    try:
        return stores.runs.load(run_id) is not None
    except CorruptRunError:
        return True  # unreadable, but there: it keeps what it may reference
    except Exception:  # an id this store cannot hold names no run here
        return False


def apply_prune(stores: Stores, plan: PrunePlan, *, actor_id: Optional[str] = None,
                lock_timeout: float = 0.0) -> Dict[str, Any]:
    """Do what the plan says (see the module docstring); what was done.

    Returns ``{"pruned": [prune records], "skipped": [{run_id, why}], "artifacts":
    [refs deleted]}``."""
    audit = stores.need("audit")
    if getattr(stores.runs, "delete_run", None) is None:
        from ..errors import StoreCapabilityError

        raise StoreCapabilityError(f"the {stores.kind} store at {stores.location} cannot "
                                   "delete runs")
    cutoff_us = rules.micros(plan.cutoff)
    done: List[Dict[str, Any]] = []
    skipped = list(plan.skipped)
    gone: Set[str] = set()
    for planned in plan.runs:
        rid = planned.run_id
        try:
            with stores.runs.lock(rid, timeout=lock_timeout):
                run = stores.runs.load(rid)
                if run is None:
                    continue  # pruned by someone else meanwhile
                if run.status not in plan.statuses or not _ended_by(run, cutoff_us):
                    skipped.append({"run_id": rid, "why": f"changed since the plan "
                                    f"({run.status.value})"})
                    continue
                why = _why_kept(stores, run)
                if why is not None:
                    skipped.append({"run_id": rid, "why": why})
                    continue
                count, head = stores.ledger.head(rid)
                rec = {"run_id": rid, "workflow_id": run.workflow_id, "status": run.status.value,
                       "ledger_count": count, "ledger_head": head,
                       "pruned_at": datetime.now(timezone.utc).isoformat(), "actor_id": actor_id}
                audit.put_prune_record(rec)
                if stores.snapshots is not None:
                    stores.snapshots.delete_snapshots(rid)
                if stores.logs is not None:
                    stores.logs.delete_log(rid)
                stores.runs.delete_run(rid)
                forget = getattr(stores.artifacts, "forget_run", None)
                if forget is not None:
                    forget(rid)
                done.append(rec)
                gone.add(rid)
        except RunBusyError:
            skipped.append({"run_id": rid, "why": "busy in another process"})
    # Only what the runs actually pruned referenced, and only if no kept run holds it now.
    kept_refs: Set[str] = set().union(*(plan.refs.get(r.run_id, set()) for r in plan.runs
                                        if r.run_id not in gone)) if plan.runs else set()
    deleted = []
    if stores.artifacts is not None:
        for ref in _doomed_artifacts(stores, {r: plan.refs.get(r, set()) for r in gone}, gone):
            if ref in kept_refs:
                continue
            stores.artifacts.delete_artifact(ref)
            deleted.append(ref)
    return {"pruned": done, "skipped": skipped, "artifacts": deleted}


def prune(stores: Stores, *, older_than: timedelta, statuses: Optional[Sequence[Any]] = None,
          now: Optional[datetime] = None, dry_run: bool = False,
          actor_id: Optional[str] = None) -> Dict[str, Any]:
    """Plan, and unless ``dry_run`` apply. The plan (``dry_run``), or what was done."""
    plan = plan_prune(stores, older_than=older_than, statuses=statuses, now=now)
    if dry_run:
        return dict(plan.to_jsonable(), dry_run=True)
    return dict(apply_prune(stores, plan, actor_id=actor_id), dry_run=False)
