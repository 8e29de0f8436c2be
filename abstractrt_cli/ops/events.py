"""Events: ``emit`` delivers to every run waiting on a key and keeps the event for runs
that reach their wait later (the mailbox, PRODUCT §8); ``events`` lists and prunes what
is kept.

The kernel (``Runtime.emit``) checks every receiver's schema before it delivers to any
or keeps anything; this module adds what a command needs around it: a TTL given as a
duration, workflows that can be loaded for every receiver before anything changes, the
acting actor, and hints for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

from ..core.models import KeptEvent, RunState, RunStatus, WaitReason
from ..errors import UsageError
from .session import Session, hinted

#: How long an event is kept when ``--ttl`` is not given.
DEFAULT_TTL = "7d"


@dataclass
class EmitResult:
    key: str
    event: Optional[KeptEvent] = None
    runs: List[RunState] = field(default_factory=list)
    busy: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def to_jsonable(self) -> Dict[str, Any]:
        return {"event": self.event.to_jsonable() if self.event else None,
                "delivered": [r.to_jsonable() for r in self.runs],
                "busy": list(self.busy)}


def parse_ttl(text: str) -> timedelta:
    """``--ttl 2h`` → two hours; refused (usage) unless a duration above zero."""
    from ..core.timeutil import parse_duration

    try:
        ttl = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--ttl: {exc}") from None
    if ttl <= timedelta(0):
        raise UsageError("--ttl must be above zero (use --no-keep to keep nothing)")
    return ttl


@hinted
def emit(s: Session, key: str, payload: Dict[str, Any], *, ttl: Optional[str] = None,
         keep: bool = True, max_steps: int = 100) -> EmitResult:
    """Resume every run waiting on ``key`` and keep the event (unless ``keep`` is false).

    Nobody waiting is no error: the event is kept for runs that reach the wait later.
    Every receiver is checked first (its workflow loadable, the payload matching its
    schema): one refusal and nothing is delivered or kept."""
    if not key:
        raise UsageError("KEY must not be empty")
    delta = parse_ttl(ttl if ttl is not None else DEFAULT_TTL)
    if keep:
        s.creates_runs = True  # keeping an event writes to the store, as starting a run does
    waiting = s.run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.EVENT,
                                    wait_key=key)
    result = EmitResult(key=key)
    for run in waiting:
        result.warnings.extend(s.workflow_warnings(run))  # a missing workflow refuses all
    report = s.runtime().emit(key, payload, ttl=delta, keep=keep, actor_id=s.actor(),
                              max_steps=max_steps)
    result.event = report.event
    result.runs = list(report.delivered)
    result.busy = list(report.busy)
    if result.runs:
        from .runs import wake_workers

        wake_workers(s, result.runs[0].run_id)
    return result


@hinted
def list_events(s: Session, *, key_pattern: Optional[str] = None) -> List[KeptEvent]:
    """Kept events, oldest first (``key_pattern`` shell-style), expired ones included
    until ``events --prune`` drops them."""
    if s.store_missing():
        return []
    return s.stores.need("events").list_events(key_pattern=key_pattern)


@hinted
def prune_events(s: Session, *, now: Optional[datetime] = None) -> int:
    """Drop the kept events that have expired; how many were dropped."""
    if s.store_missing():
        return 0
    return s.stores.need("events").prune(now=now or datetime.now(timezone.utc))


def is_expired(event: KeptEvent, now: Optional[datetime] = None) -> bool:
    from ..core.timeutil import parse_timestamp

    return parse_timestamp(event.expires_at) <= (now or datetime.now(timezone.utc))
