"""AbstractRuntime's ``Scheduler``: an in-process loop over the runtime's "which runs can move".

Each poll asks ``Runtime.runnable()`` — the same question ``abstractrt tick --all`` and
``abstractrt worker`` ask the store — and ticks what it names, each under the run's own
lock: runs whose timer or deferred retry is due, waits whose deadline has passed, and
parents of children that ended. Runs that are plainly ``running`` are left to whoever is
ticking them (AbstractRuntime's contract, and it keeps a background poll from taking a
run its starter is about to tick); ``include_running=True`` moves those too, as the
worker does. A run busy in another thread or process is skipped, not counted.

Beyond AbstractRuntime: ``cancel_with_children`` is the kernel's cascading cancel;
``resume_subworkflow_parent`` finds a parent the kernel has already resumed by itself
(abstractrt resumes a parent when its child completes) and returns it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional

from ....core.models import RunState, RunStatus, WaitReason
from ....errors import RunBusyError
from .._errors import NotWaitingError, UnsupportedStoreError
from ..storage.base import QueryableRunStore
from .registry import WorkflowRegistry

__all__ = ["Scheduler", "SchedulerStats", "utc_now_iso"]

logger = logging.getLogger(__name__)

_ACTIVE = (RunStatus.RUNNING, RunStatus.WAITING)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class SchedulerStats:
    runs_resumed: int = 0
    runs_failed: int = 0
    poll_cycles: int = 0
    last_poll_at: Optional[str] = None
    errors: List[str] = field(default_factory=list)


class Scheduler:
    """Polls in a background thread (``start``/``stop``) or on demand (``poll_once``)."""

    def __init__(
        self,
        *,
        runtime: Any,
        registry: WorkflowRegistry,
        poll_interval_s: float = 1.0,
        max_errors_kept: int = 100,
        on_run_resumed: Optional[Callable[[RunState], None]] = None,
        on_run_failed: Optional[Callable[[str, Exception], None]] = None,
        include_running: bool = False,
    ) -> None:
        store = runtime.run_store
        if not isinstance(store, QueryableRunStore):
            shown = getattr(store, "inner", store)
            raise UnsupportedStoreError(
                f"Scheduler requires a QueryableRunStore, but got {type(shown).__name__}: use "
                "InMemoryRunStore or JsonFileRunStore, or add list_runs, list_due_wait_until "
                "and list_children")
        self._runtime = runtime
        self._registry = registry
        self._run_store = store
        self._poll_interval = poll_interval_s
        self._max_errors = max_errors_kept
        self._on_run_resumed = on_run_resumed
        self._on_run_failed = on_run_failed
        self._include_running = include_running
        self._running = False
        self._stop_event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._stats = SchedulerStats()

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def stats(self) -> SchedulerStats:
        return self._stats

    def start(self) -> None:
        """Start polling in a daemon thread; ``RuntimeError`` if it is polling already."""
        with self._lock:
            if self._running:
                raise RuntimeError("Scheduler is already running")
            self._running = True
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._poll_loop, name="abstractrt-scheduler",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the poll in progress (waiting up to ``timeout`` seconds for it)."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._stop_event.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=timeout)
            if thread.is_alive():
                logger.warning("scheduler thread still busy %.1fs after stop()", timeout)

    def poll_once(self) -> int:
        """One poll, now: how many runs it moved."""
        return self._do_poll_cycle()

    def resume_event(self, *, run_id: str, wait_key: str, payload: Dict[str, Any]) -> RunState:
        """Resume a run waiting for an event or a person (``ValueError`` if it is not waiting
        or waits on another key; ``KeyError`` if its workflow is not registered)."""
        run = self._runtime.get_state(run_id)
        if run.status != RunStatus.WAITING or run.waiting is None:
            raise NotWaitingError(run_id, run.status.value)
        workflow = self._registry.get_or_raise(run.workflow_id)
        return self._runtime.resume(workflow=workflow, run_id=run_id, wait_key=wait_key,
                                    payload=payload)

    def find_waiting_runs(self, *, wait_reason: Optional[WaitReason] = None,
                          workflow_id: Optional[str] = None, limit: int = 100) -> List[RunState]:
        """Waiting runs (e.g. the prompts a UI should show), most recently updated first."""
        return self._run_store.list_runs(status=RunStatus.WAITING, wait_reason=wait_reason,
                                         workflow_id=workflow_id, limit=limit)

    def resume_subworkflow_parent(self, *, child_run_id: str,
                                  child_output: Optional[Dict[str, Any]] = None) -> Optional[RunState]:
        """The parent of an ended child, moved on with the child's result; None if no parent
        waits (or waited) on that child.

        abstractrt resumes a parent by itself when its child completes, so usually this
        finds the parent already resumed and returns it as it is now. The parent gets the
        child's recorded output (``{"sub_run_id", "output"}``); ``child_output`` is
        accepted for AbstractRuntime's signature, not trusted over the record."""
        child = self._run_store.load(child_run_id)
        if child is None or not child.parent_run_id:
            return None
        parent = self._run_store.load(child.parent_run_id)
        if parent is None:
            return None
        wait = parent.waiting
        if (parent.status == RunStatus.WAITING and wait is not None
                and wait.reason == WaitReason.SUBWORKFLOW
                and (wait.details or {}).get("sub_run_id") == child_run_id):
            workflow = self._registry.get_or_raise(parent.workflow_id)
            return self._runtime.tick(run_id=parent.run_id, workflow=workflow)
        key = f"subworkflow:{child_run_id}"
        for rec in self._runtime.get_ledger(parent.run_id):
            result = rec.get("result") if isinstance(rec.get("result"), dict) else {}
            if rec.get("kind") == "resume" and result.get("wait_key") == key:
                return parent
        return None

    def cancel_with_children(self, run_id: str, *, reason: Optional[str] = None) -> List[RunState]:
        """Cancel a run and its unfinished descendants; the runs this cancelled, root first.

        The kernel's ``cancel_run`` cascades (children after their parent, each recorded);
        this lists which runs it turned from running or waiting to cancelled."""
        order: List[str] = []
        queue = [run_id]
        while queue:
            current = queue.pop(0)
            order.append(current)
            for child in self._run_store.list_children(parent_run_id=current):
                if child.status in _ACTIVE:
                    queue.append(child.run_id)
        before = {}
        for rid in order:
            run = self._run_store.load(rid)
            if run is not None:
                before[rid] = run.status
        if run_id not in before:
            return []
        self._runtime.cancel_run(run_id, reason=reason)
        cancelled = []
        for rid in order:
            run = self._run_store.load(rid)
            if run is not None and before.get(rid) in _ACTIVE and run.status == RunStatus.CANCELLED:
                cancelled.append(run)
        return cancelled

    # ------------------------------------------------------------------ internals

    def _poll_loop(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._do_poll_cycle()
            except Exception as exc:  # a bad poll (say, an unreadable store) must not end the loop
                logger.exception("scheduler poll failed")
                self._record_error(f"Poll cycle error: {exc}")
            self._stop_event.wait(timeout=self._poll_interval)

    def _do_poll_cycle(self) -> int:
        self._stats.poll_cycles += 1
        self._stats.last_poll_at = utc_now_iso()
        moved = 0
        for item in self._runtime.runnable():
            if item.reason == "running" and not self._include_running:
                continue
            try:
                workflow = self._registry.get_or_raise(item.run.workflow_id)
                state = self._runtime.tick(run_id=item.run_id, workflow=workflow)
            except RunBusyError:
                continue  # moving in another thread or process right now
            except Exception as exc:
                logger.error("scheduler could not move run %s: %s", item.run_id, exc)
                self._stats.runs_failed += 1
                self._record_error(f"Run {item.run_id}: {exc}")
                self._call(self._on_run_failed, item.run_id, exc)
                continue
            moved += 1
            self._stats.runs_resumed += 1
            self._call(self._on_run_resumed, state)
        return moved

    @staticmethod
    def _call(callback: Optional[Callable[..., None]], *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # a caller's callback must not stop the scheduler
            logger.exception("scheduler callback %r failed", callback)

    def _record_error(self, error: str) -> None:
        errors = self._stats.errors
        errors.append(f"{utc_now_iso()}: {error}")
        if len(errors) > self._max_errors:
            del errors[:len(errors) - self._max_errors]
