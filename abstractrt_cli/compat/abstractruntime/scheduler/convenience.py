"""AbstractRuntime's ``ScheduledRuntime`` and ``create_scheduled_runtime``: a runtime, its
registry and a scheduler in one object, for programs that run workflows in-process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from ....core.models import RunState, RunStatus, WaitReason
from .._errors import NotWaitingError
from ..core.runtime import Runtime
from .registry import WorkflowRegistry
from .scheduler import Scheduler, SchedulerStats

__all__ = ["ScheduledRuntime", "create_scheduled_runtime"]


@dataclass
class ScheduledRuntime:
    """``run`` a workflow, ``respond`` to its waits; the scheduler moves what comes due."""

    runtime: Runtime
    scheduler: Scheduler
    registry: WorkflowRegistry

    def _known(self, workflow: Any) -> None:
        if workflow.workflow_id not in self.registry:
            self.registry.register(workflow)

    def run(self, workflow: Any, *, vars: Optional[Dict[str, Any]] = None,
            actor_id: Optional[str] = None, max_steps: int = 100) -> tuple[str, RunState]:
        """Register (if new), start and tick a workflow: ``(run_id, state)``."""
        self._known(workflow)
        run_id = self.runtime.start(workflow=workflow, vars=vars, actor_id=actor_id)
        return run_id, self.runtime.tick(workflow=workflow, run_id=run_id, max_steps=max_steps)

    def respond(self, run_id: str, payload: Dict[str, Any]) -> RunState:
        """Answer a waiting run with its own wait key (``ValueError`` if it is not waiting)."""
        state = self.runtime.get_state(run_id)
        if state.status != RunStatus.WAITING or state.waiting is None:
            raise NotWaitingError(run_id, state.status.value)
        if state.waiting.wait_key is None:
            raise NotWaitingError(run_id, state.status.value,
                                  detail=f"Run '{run_id}' has no wait_key (a timer: it resumes by itself)")
        return self.scheduler.resume_event(run_id=run_id, wait_key=state.waiting.wait_key,
                                           payload=payload)

    def start(self, *, workflow: Any, vars: Optional[Dict[str, Any]] = None,
              actor_id: Optional[str] = None) -> str:
        self._known(workflow)
        return self.runtime.start(workflow=workflow, vars=vars, actor_id=actor_id)

    def tick(self, run_id: str, *, max_steps: int = 100) -> RunState:
        state = self.runtime.get_state(run_id)
        workflow = self.registry.get_or_raise(state.workflow_id)
        return self.runtime.tick(workflow=workflow, run_id=run_id, max_steps=max_steps)

    def resume_event(self, *, run_id: str, wait_key: str, payload: Dict[str, Any]) -> RunState:
        return self.scheduler.resume_event(run_id=run_id, wait_key=wait_key, payload=payload)

    def get_state(self, run_id: str) -> RunState:
        return self.runtime.get_state(run_id)

    def get_ledger(self, run_id: str) -> List[Dict[str, Any]]:
        return self.runtime.get_ledger(run_id)

    def find_waiting_runs(self, *, wait_reason: Optional[WaitReason] = None,
                          workflow_id: Optional[str] = None, limit: int = 100) -> List[RunState]:
        return self.scheduler.find_waiting_runs(wait_reason=wait_reason, workflow_id=workflow_id,
                                                limit=limit)

    @property
    def stats(self) -> SchedulerStats:
        return self.scheduler.stats

    def resume_subworkflow_parent(self, *, child_run_id: str,
                                  child_output: Optional[Dict[str, Any]] = None) -> Optional[RunState]:
        return self.scheduler.resume_subworkflow_parent(child_run_id=child_run_id,
                                                        child_output=child_output)

    def cancel_run(self, run_id: str, *, reason: Optional[str] = None) -> RunState:
        return self.runtime.cancel_run(run_id, reason=reason)

    def cancel_with_children(self, run_id: str, *, reason: Optional[str] = None) -> List[RunState]:
        return self.scheduler.cancel_with_children(run_id, reason=reason)

    @property
    def is_running(self) -> bool:
        return self.scheduler.is_running

    def start_scheduler(self) -> None:
        if not self.scheduler.is_running:
            self.scheduler.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.scheduler.stop(timeout=timeout)


def create_scheduled_runtime(
    *,
    run_store: Optional[Any] = None,
    ledger_store: Optional[Any] = None,
    artifact_store: Optional[Any] = None,
    effect_policy: Optional[Any] = None,
    workflows: Optional[List[Any]] = None,
    effect_handlers: Optional[Dict[Any, Any]] = None,
    poll_interval_s: float = 1.0,
    auto_start: bool = True,
    on_run_resumed: Optional[Callable[[RunState], None]] = None,
    on_run_failed: Optional[Callable[[str, Exception], None]] = None,
    **runtime_options: Any,
) -> ScheduledRuntime:
    """A runtime (in-memory stores unless given), its registry of ``workflows``, and a
    scheduler, polling in the background unless ``auto_start=False``."""
    from ..storage.in_memory import InMemoryLedgerStore, InMemoryRunStore

    registry = WorkflowRegistry()
    for wf in workflows or []:
        registry.register(wf)
    runtime = Runtime(
        run_store=run_store if run_store is not None else InMemoryRunStore(),
        ledger_store=ledger_store if ledger_store is not None else InMemoryLedgerStore(),
        effect_handlers=effect_handlers,
        workflow_registry=registry,
        artifact_store=artifact_store,
        effect_policy=effect_policy,
        **runtime_options,
    )
    scheduler = Scheduler(runtime=runtime, registry=registry, poll_interval_s=poll_interval_s,
                          on_run_resumed=on_run_resumed, on_run_failed=on_run_failed)
    if auto_start:
        scheduler.start()
    return ScheduledRuntime(runtime=runtime, scheduler=scheduler, registry=registry)
