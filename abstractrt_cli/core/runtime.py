"""The durable graph runner.

``tick`` progresses a run until it blocks (waiting), ends, or runs out of steps.
``resume`` hands a waiting run its payload and ticks it on. Every effect attempt,
completion, failure, resume, cancellation and limit change is a ledger record, and an
effect's outcome is in the ledger before the run moves past it: after a crash the
replayed step finds that record (by idempotency key, among the few records written
since the last checkpoint) and reuses it instead of running the effect again.
"""

from __future__ import annotations

import hashlib
import inspect
import time
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional

from ..errors import (
    InvalidChoiceError,
    LimitsError,
    PayloadError,
    PromptMovedOnError,
    RunBusyError,
    RunNotWaitingError,
    UnknownRunError,
    UnknownWorkflowError,
    WaitKeyMismatchError,
)
from .config import LIMIT_KEYS, RuntimeConfig
from .models import (
    Effect,
    EffectType,
    LimitWarning,
    RecordKind,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
    effect_type_name,
)
from .policy import DefaultEffectPolicy
from .spec import WorkflowEntry, WorkflowRegistry
from .timeutil import parse_timestamp

Clock = Callable[[], datetime]


class NonRetryableError(Exception):
    """Raise from an effect handler to fail at once, whatever the retry policy says."""


@dataclass(frozen=True)
class EffectOutcome:
    """What an effect handler produced: completed (with a result), waiting, or failed."""

    status: str  # "completed" | "waiting" | "failed"
    result: Optional[Any] = None
    wait: Optional[WaitState] = None
    error: Optional[str] = None
    retryable: bool = True

    @classmethod
    def completed(cls, result: Optional[Any] = None) -> "EffectOutcome":
        return cls(status="completed", result=result)

    @classmethod
    def waiting(cls, wait: WaitState) -> "EffectOutcome":
        return cls(status="waiting", wait=wait)

    @classmethod
    def failed(cls, error: str, *, retryable: bool = True) -> "EffectOutcome":
        return cls(status="failed", error=error, retryable=retryable)


EffectHandler = Callable[..., Any]


@dataclass
class DefaultRunContext:
    clock: Clock

    def now_iso(self) -> str:
        return self.clock().isoformat()

    def now(self) -> datetime:
        return self.clock()


def _utc_clock() -> datetime:
    return datetime.now(timezone.utc)


def set_nested(target: Dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set ``target["a"]["b"] = value`` for ``"a.b"``, creating dicts on the way."""
    parts = dotted_key.split(".")
    cur = target
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


_BUILTIN_TYPES = {t.value: t for t in EffectType}


def _coerce_plan(obj: Any, node_id: str) -> StepPlan:
    """Accept our StepPlan or a look-alike (AbstractRuntime's) and normalise it."""
    if isinstance(obj, StepPlan) and (obj.effect is None or isinstance(obj.effect, Effect)):
        return obj
    if obj is None or not hasattr(obj, "node_id"):
        raise TypeError(f"node {node_id!r} returned {type(obj).__name__}, not a StepPlan")
    eff = getattr(obj, "effect", None)
    if eff is not None and not isinstance(eff, Effect):
        etype: Any = effect_type_name(eff.type)
        # Keep built-in types as our enum: AbstractRuntime's policies read ``type.value``.
        etype = _BUILTIN_TYPES.get(etype, etype)
        eff = Effect(
            type=etype,
            payload=dict(getattr(eff, "payload", None) or {}),
            result_key=getattr(eff, "result_key", None),
        )
    return StepPlan(
        node_id=obj.node_id or node_id,
        effect=eff,
        next_node=getattr(obj, "next_node", None),
        complete_output=getattr(obj, "complete_output", None),
    )


def _coerce_outcome(obj: Any) -> EffectOutcome:
    if isinstance(obj, EffectOutcome):
        return obj
    if obj is None or isinstance(obj, dict):
        return EffectOutcome.completed(obj)
    status = getattr(obj, "status", None)
    if status in ("completed", "waiting", "failed"):
        wait = getattr(obj, "wait", None)
        return EffectOutcome(
            status=status,
            result=getattr(obj, "result", None),
            wait=WaitState.coerce(wait) if wait is not None else None,
            error=getattr(obj, "error", None),
        )
    raise TypeError(f"effect handler returned {type(obj).__name__}: expected a dict or EffectOutcome")


def _check_outcome(outcome: EffectOutcome, etype: str) -> EffectOutcome:
    """Refuse outcomes the runtime cannot act on (they would crash or pass as success)."""
    if outcome.status not in ("completed", "waiting", "failed"):
        return EffectOutcome.failed(
            f"effect handler for {etype!r} returned unknown status {outcome.status!r}",
            retryable=False)
    if outcome.status == "waiting":
        try:
            wait = WaitState.coerce(outcome.wait) if outcome.wait is not None else None
            if wait is not None and not isinstance(wait.reason, WaitReason):  # e.g. "user"
                wait = WaitState.from_dict({f.name: getattr(wait, f.name) for f in fields(wait)})
        except (AttributeError, TypeError, ValueError) as exc:
            return EffectOutcome.failed(
                f"effect handler for {etype!r} returned an invalid wait: {exc}", retryable=False)
        if wait is None:
            return EffectOutcome.failed(
                f"effect handler for {etype!r} returned a waiting outcome without a wait",
                retryable=False)
        if wait is not outcome.wait:
            return EffectOutcome.waiting(wait)
    return outcome


def _call_handler(handler: EffectHandler, run: RunState, effect: Effect, next_node: Optional[str]) -> Any:
    """Handlers take ``(run, effect, default_next_node)`` or the older ``(run, effect)``."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(positional) >= 3 or not params:
        return handler(run, effect, next_node)
    return handler(run, effect)


class Runtime:
    """Durable graph runner over a run store and a ledger store."""

    def __init__(
        self,
        *,
        run_store: Any,
        ledger_store: Any,
        effect_handlers: Optional[Dict[Any, EffectHandler]] = None,
        context: Optional[Any] = None,
        workflow_registry: Optional[Any] = None,
        effect_policy: Optional[Any] = None,
        config: Optional[RuntimeConfig] = None,
        clock: Optional[Clock] = None,
    ) -> None:
        self._run_store = run_store
        self._ledger = ledger_store
        self._clock: Clock = clock or _utc_clock
        self._ctx = context or DefaultRunContext(self._clock)
        self._registry = workflow_registry
        self._policy = effect_policy or DefaultEffectPolicy()
        self._config = config or RuntimeConfig()
        self._handlers: Dict[str, EffectHandler] = {
            EffectType.ASK_USER.value: self._handle_ask_user,
            EffectType.WAIT_EVENT.value: self._handle_wait_event,
            EffectType.WAIT_UNTIL.value: self._handle_wait_until,
            EffectType.START_SUBWORKFLOW.value: self._handle_start_subworkflow,
        }
        for etype, fn in (effect_handlers or {}).items():
            self.register_effect_handler(etype, fn)
        # Set while an effect handler runs, so built-ins can derive stable ids from it.
        self._current_key: Optional[str] = None
        self._actor: Optional[str] = None

    # ------------------------------------------------------------------ accessors

    @property
    def run_store(self) -> Any:
        return self._run_store

    @property
    def ledger_store(self) -> Any:
        return self._ledger

    @property
    def config(self) -> RuntimeConfig:
        return self._config

    @property
    def effect_policy(self) -> Any:
        return self._policy

    def set_effect_policy(self, policy: Any) -> None:
        self._policy = policy

    @property
    def workflow_registry(self) -> Optional[Any]:
        return self._registry

    def set_workflow_registry(self, registry: Any) -> None:
        self._registry = registry

    def register_effect_handler(self, effect_type: Any, handler: EffectHandler) -> None:
        """Register (or replace) the handler of an effect type; any string type is allowed."""
        self._handlers[effect_type_name(effect_type)] = handler

    def now(self) -> datetime:
        return self._clock()

    def _now_iso(self) -> str:
        return self._clock().isoformat()

    # ------------------------------------------------------------------ lifecycle

    def start(
        self,
        *,
        workflow: Any,
        vars: Optional[Dict[str, Any]] = None,
        actor_id: Optional[str] = None,
        session_id: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        run_id: Optional[str] = None,
    ) -> str:
        """Create a run at the workflow's entry node (not ticked) and return its id."""
        if vars is not None and not isinstance(vars, dict):
            raise PayloadError("vars must be a JSON object")
        if run_id is not None and self._run_store.load(run_id) is not None:
            raise ValueError(f"a run with id {run_id!r} already exists")
        run_vars = dict(vars or {})
        run_vars.setdefault("_limits", self._config.to_limits_dict())
        run = RunState.new(
            workflow_id=workflow.workflow_id,
            entry_node=workflow.entry_node,
            vars=run_vars,
            actor_id=actor_id,
            session_id=session_id,
            parent_run_id=parent_run_id,
            run_id=run_id,
        )
        entry = self._entry(workflow.workflow_id)
        if entry is not None:
            run.workflow_source = entry.source
            run.workflow_fingerprint = entry.fingerprint
        run.created_at = run.updated_at = self._now_iso()
        self._run_store.save(run)
        return run.run_id

    def get_state(self, run_id: str) -> RunState:
        run = self._run_store.load(run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def get_ledger(self, run_id: str) -> List[Dict[str, Any]]:
        return self._ledger.list(run_id)

    def tick(self, *, run_id: str, workflow: Optional[Any] = None, max_steps: int = 100) -> RunState:
        """Progress a run until it blocks, ends, or has taken ``max_steps`` steps."""
        with self._run_store.lock(run_id, timeout=self._config.lock_timeout):
            run = self._tick_locked(run_id, workflow, max_steps)
        self._propagate_to_parents(run, max_steps)
        return run

    def resume(
        self,
        *,
        run_id: str,
        payload: Dict[str, Any],
        wait_key: Optional[str] = None,
        workflow: Optional[Any] = None,
        max_steps: int = 100,
        actor_id: Optional[str] = None,
        expect_step: Optional[int] = None,
    ) -> RunState:
        """Unblock a waiting run with ``payload`` and tick it on.

        Refused, with nothing changed, when the run is not waiting, the wait key differs,
        the payload is not a JSON object, or an answer is not among the allowed choices.
        ``expect_step`` (the ``effect_seq`` of the wait that was shown to someone) refuses
        the resume if the run has moved on meanwhile — even to a prompt with the same key.
        """
        if not isinstance(payload, dict):
            raise PayloadError(f"payload must be a JSON object, not {type(payload).__name__}")
        with self._run_store.lock(run_id, timeout=self._config.lock_timeout):
            run = self.get_state(run_id)
            if expect_step is not None and run.effect_seq != expect_step:
                raise PromptMovedOnError(run.run_id)
            self._check_resumable(run, wait_key, payload)
            wf = self._workflow_for(run, workflow)
            self._apply_resume(run, payload, actor_id=actor_id, source="resume")
            run = self._run_loop(run, wf, max_steps)
        self._propagate_to_parents(run, max_steps)
        return run

    def check_resume(self, run: RunState, *, wait_key: Optional[str], payload: Any) -> None:
        """Raise the error ``resume`` would raise for this run and payload, changing nothing."""
        if not isinstance(payload, dict):
            raise PayloadError(f"payload must be a JSON object, not {type(payload).__name__}")
        self._check_resumable(run, wait_key, payload)

    def cancel_run(
        self, run_id: str, *, reason: Optional[str] = None, actor_id: Optional[str] = None
    ) -> RunState:
        """Cancel a running or waiting run and, after it, its unfinished children.

        A terminal run is returned as it is.
        """
        with self._run_store.lock(run_id, timeout=self._config.lock_timeout):
            run = self.get_state(run_id)
            if run.status.is_terminal:
                return run
            self._record(run, kind=RecordKind.CANCEL, status=StepStatus.CANCELLED,
                         result={"reason": reason, "was": run.status.value}, actor_id=actor_id)
            run.status = RunStatus.CANCELLED
            run.error = reason or "cancelled"
            run.waiting = None
            self._checkpoint(run)
        for child in self._run_store.list_children(parent_run_id=run_id):
            if not child.status.is_terminal:
                self.cancel_run(child.run_id, reason=f"parent run {run_id} was cancelled",
                                actor_id=actor_id)
        # A parent waiting on this run can never get its result: fail it now, naming us.
        self._propagate_to_parents(run, 100)
        return run

    # ------------------------------------------------------------------ limits

    def get_limit_status(self, run_id: str) -> Dict[str, Any]:
        run = self.get_state(run_id)
        limits = run.vars.get("_limits") or {}

        def pct(cur: int, mx: int) -> float:
            return round(cur / mx * 100, 1) if mx > 0 else 0.0

        cur_it = int(limits.get("current_iteration", 0) or 0)
        max_it = int(limits.get("max_iterations", 25) or 25)
        used = int(limits.get("estimated_tokens_used", 0) or 0)
        max_tok = int(limits.get("max_tokens", 32768) or 32768)
        return {
            "iterations": {"current": cur_it, "max": max_it, "pct": pct(cur_it, max_it),
                           "warning": pct(cur_it, max_it) >= limits.get("warn_iterations_pct", 80)},
            "tokens": {"estimated_used": used, "max": max_tok, "pct": pct(used, max_tok),
                       "warning": pct(used, max_tok) >= limits.get("warn_tokens_pct", 80)},
            "history": {"max_messages": limits.get("max_history_messages", -1)},
        }

    def check_limits(self, run: RunState) -> List[LimitWarning]:
        """Limits at their warning threshold or exceeded (nodes decide what to do)."""
        warnings: List[LimitWarning] = []
        limits = run.vars.get("_limits") or {}
        cur = int(limits.get("current_iteration", 0) or 0)
        mx = int(limits.get("max_iterations", 25) or 25)
        warn = int(limits.get("warn_iterations_pct", 80) or 80)
        if mx > 0:
            if cur >= mx:
                warnings.append(LimitWarning("iterations", "exceeded", cur, mx))
            elif cur / mx * 100 >= warn:
                warnings.append(LimitWarning("iterations", "warning", cur, mx))
        used = int(limits.get("estimated_tokens_used", 0) or 0)
        mx_tok = int(limits.get("max_tokens", 32768) or 32768)
        warn_tok = int(limits.get("warn_tokens_pct", 80) or 80)
        if mx_tok > 0 and used > 0:
            if used >= mx_tok:
                warnings.append(LimitWarning("tokens", "exceeded", used, mx_tok))
            elif used / mx_tok * 100 >= warn_tok:
                warnings.append(LimitWarning("tokens", "warning", used, mx_tok))
        return warnings

    def update_limits(
        self, run_id: str, updates: Dict[str, Any], *, actor_id: Optional[str] = None
    ) -> RunState:
        """Change a run's limits; unknown keys or wrong types are refused (nothing changes)."""
        for key, value in updates.items():
            if key not in LIMIT_KEYS:
                raise LimitsError(
                    f"unknown limit {key!r}; known limits: {', '.join(sorted(LIMIT_KEYS))}")
            if isinstance(value, bool) or not isinstance(value, LIMIT_KEYS[key]):
                raise LimitsError(f"limit {key!r} must be an integer, not {value!r}")
        with self._run_store.lock(run_id, timeout=self._config.lock_timeout):
            run = self.get_state(run_id)
            limits = run.vars.setdefault("_limits", {})
            changes = {k: {"old": limits.get(k), "new": v} for k, v in updates.items()}
            self._record(run, kind=RecordKind.LIMITS, status=StepStatus.UPDATED,
                         result={"changes": changes}, actor_id=actor_id)
            limits.update(updates)
            self._checkpoint(run)
        return run

    # ------------------------------------------------------------------ internals: ticking

    def _entry(self, workflow_id: str) -> Optional[WorkflowEntry]:
        reg = self._registry
        if isinstance(reg, WorkflowRegistry):
            return reg.entry(workflow_id)
        return None

    def _lookup_workflow(self, workflow_id: str) -> Optional[Any]:
        reg = self._registry
        if reg is None:
            return None
        if isinstance(reg, dict):
            return reg.get(workflow_id)
        return reg.get(workflow_id)

    def _workflow_for(self, run: RunState, workflow: Optional[Any]) -> Any:
        if workflow is not None:
            if workflow.workflow_id != run.workflow_id:
                raise UnknownWorkflowError(run.workflow_id)
            return workflow
        wf = self._lookup_workflow(run.workflow_id)
        if wf is None:
            raise UnknownWorkflowError(run.workflow_id)
        return wf

    def _tick_locked(self, run_id: str, workflow: Optional[Any], max_steps: int) -> RunState:
        run = self.get_state(run_id)
        if run.status.is_terminal:
            return run
        if run.status == RunStatus.WAITING:
            wait = run.waiting
            if wait is None:  # a waiting run without a wait cannot move; leave it
                return run
            if wait.reason == WaitReason.UNTIL and wait.until:
                if parse_timestamp(wait.until) > self._clock():
                    return run
                wf = self._workflow_for(run, workflow)
                retry = (wait.details or {}).get("retry")
                payload = {} if retry else {"until": wait.until, "ready": True}
                self._apply_resume(run, payload, actor_id="timer", source="timer")
                return self._run_loop(run, wf, max_steps)
            if wait.reason == WaitReason.SUBWORKFLOW:
                # Catch up on a child that ended while nobody could resume us.
                child_id = (wait.details or {}).get("sub_run_id")
                child = self._run_store.load(child_id) if child_id else None
                if child is None or not child.status.is_terminal:
                    return run
                wf = self._workflow_for(run, workflow)
                return self._apply_child_end(run, child, wf, max_steps)
            return run
        wf = self._workflow_for(run, workflow)
        return self._run_loop(run, wf, max_steps)

    def _run_loop(self, run: RunState, wf: Any, max_steps: int) -> RunState:
        """Execute nodes from ``run.current_node``; checkpoint at effects, waits and the end.

        Pure transitions are checkpointed together with the next effect, wait or end:
        after a crash they are re-run, which is harmless for pure nodes.
        """
        steps = 0
        while steps < max_steps:
            steps += 1
            node_id = run.current_node
            handler = wf.nodes.get(node_id) if isinstance(wf.nodes, dict) else None
            if handler is None:
                return self._fail(run, f"unknown node {node_id!r} in workflow {wf.workflow_id!r}")
            try:
                plan = _coerce_plan(handler(run, self._ctx), node_id)
            except Exception as exc:  # a broken node fails the run, it does not crash us
                return self._fail(run, f"node {node_id!r} raised {type(exc).__name__}: {exc}")

            if plan.complete_output is not None:
                if not isinstance(plan.complete_output, dict):
                    return self._fail(run, f"node {node_id!r} completed with a non-dict output")
                run.status = RunStatus.COMPLETED
                run.output = plan.complete_output
                run.waiting = None
                self._record(run, kind=RecordKind.COMPLETE, status=StepStatus.COMPLETED,
                             node_id=plan.node_id, result={"completed": True,
                                                           "output": plan.complete_output})
                self._checkpoint(run)
                return run

            if plan.effect is None:
                if not plan.next_node:
                    return self._fail(run, f"node {node_id!r} returned no effect, no next_node "
                                           "and no complete_output")
                run.current_node = plan.next_node
                continue

            outcome = self._execute_effect_step(run, wf, plan)
            if outcome.status == "failed":
                if run.status == RunStatus.WAITING:  # a retry was deferred past its backoff
                    self._checkpoint(run)
                    return run
                return self._fail(run, outcome.error or "effect failed")
            if outcome.status == "waiting":
                assert outcome.wait is not None
                run.status = RunStatus.WAITING
                run.waiting = outcome.wait
                self._checkpoint(run)
                return run
            if plan.effect.result_key and outcome.result is not None:
                set_nested(run.vars, plan.effect.result_key, outcome.result)
            run.effect_seq += 1
            run.pending_retry = None
            if not plan.next_node:
                return self._fail(run, f"node {node_id!r} ran an effect but has no next_node")
            run.current_node = plan.next_node
            self._checkpoint(run)
        self._checkpoint(run)
        return run

    def _execute_effect_step(self, run: RunState, wf: Any, plan: StepPlan) -> EffectOutcome:
        effect = plan.effect
        assert effect is not None
        etype = effect.type_name
        policy = self._policy_for(wf.workflow_id)
        key = policy.idempotency_key(run=run, node_id=plan.node_id, effect=effect)
        if not isinstance(policy, DefaultEffectPolicy):
            # A foreign policy (AbstractRuntime's) keys on node and payload alone: add the
            # step's sequence number so a loop's next visit is not taken for a replay.
            key = hashlib.sha256(f"{key}:{run.effect_seq}".encode()).hexdigest()[:32]

        # A record written after the last checkpoint with our key means we crashed after
        # running this very step: reuse its outcome. Only those few records are read.
        attempts_done = 0
        last_error: Optional[str] = None
        last_failed_at: Optional[str] = None
        if run.pending_retry and run.pending_retry.get("idempotency_key") == key:
            attempts_done = int(run.pending_retry.get("attempt", 0))
        for rec in self._ledger.records_since(run.run_id, run.ledger_count):
            if rec.get("idempotency_key") != key or rec.get("kind", "effect") != "effect":
                continue
            if rec.get("status") == StepStatus.COMPLETED.value:
                return EffectOutcome.completed(rec.get("result"))
            if rec.get("status") == StepStatus.WAITING.value:
                wait = (rec.get("result") or {}).get("wait")
                if isinstance(wait, dict):
                    return EffectOutcome.waiting(WaitState.from_dict(wait))
            attempts_done = max(attempts_done, int(rec.get("attempt") or 0))
            last_error = rec.get("error") or last_error
            last_failed_at = rec.get("ended_at") or last_failed_at

        max_attempts = policy.max_attempts(effect)
        if attempts_done >= max_attempts and last_error is not None:
            # We crashed after the last allowed attempt failed: do not make one more.
            n = f" after {attempts_done} attempts" if attempts_done > 1 else ""
            return EffectOutcome.failed(
                f"effect {etype!r} at node {plan.node_id!r} failed{n}: {last_error}")
        if last_failed_at is not None:
            # We crashed while deferring a retry: its attempt count is in the ledger but its
            # due time was lost. Wait out the rest of the backoff instead of retrying early.
            backoff = float(policy.backoff_seconds(effect=effect, attempt=attempts_done))
            due = parse_timestamp(last_failed_at) + timedelta(seconds=backoff)
            if backoff > self._config.max_inline_backoff and due > self._clock():
                self._defer_retry(run, plan, key, attempts_done, max_attempts, due, last_error)
                return EffectOutcome.failed(last_error or "effect failed")
        attempt = attempts_done
        while True:
            attempt += 1
            started = self._now_iso()
            outcome = self._invoke(run, wf, effect, plan, key)
            if outcome.status == "waiting" and outcome.wait is not None:
                wait = outcome.wait
                if wait.resume_to_node is None:
                    wait.resume_to_node = plan.next_node
                if wait.result_key is None:
                    wait.result_key = effect.result_key
                result: Any = {"wait": wait.to_jsonable()}
            else:
                result = outcome.result
            status = {"completed": StepStatus.COMPLETED, "waiting": StepStatus.WAITING}.get(
                outcome.status, StepStatus.FAILED)
            try:
                self._record(run, kind=RecordKind.EFFECT, status=status, node_id=plan.node_id,
                             effect=effect.to_jsonable(), result=result, error=outcome.error,
                             attempt=attempt, idempotency_key=key, started_at=started)
            except (TypeError, ValueError) as exc:
                # The outcome cannot be recorded (not JSON): record that, and fail clearly
                # rather than crash the tick and run the effect again on the next one.
                error = (f"effect {etype!r} at node {plan.node_id!r}: its payload or result "
                         f"cannot be stored as JSON ({exc})")
                self._record(run, kind=RecordKind.EFFECT, status=StepStatus.FAILED,
                             node_id=plan.node_id, effect={"type": etype}, error=error,
                             attempt=attempt, idempotency_key=key, started_at=started)
                return EffectOutcome.failed(error, retryable=False)
            if outcome.status != "failed":
                return outcome
            if not outcome.retryable or attempt >= max_attempts:
                n = f" after {attempt} attempts" if attempt > 1 else ""
                return EffectOutcome.failed(
                    f"effect {etype!r} at node {plan.node_id!r} failed{n}: {outcome.error}")
            backoff = float(policy.backoff_seconds(effect=effect, attempt=attempt))
            if backoff > self._config.max_inline_backoff:
                # Never block a tick (or a cron job) on a long backoff: wait durably instead.
                due = self._clock() + timedelta(seconds=backoff)
                self._defer_retry(run, plan, key, attempt, max_attempts, due, outcome.error)
                return outcome
            if backoff > 0:
                time.sleep(backoff)

    def _defer_retry(self, run: RunState, plan: StepPlan, key: str, attempt: int,
                     max_attempts: int, due: datetime, error: Optional[str]) -> None:
        """Set the run waiting (reason ``until``) for attempt ``attempt + 1`` at ``due``."""
        assert plan.effect is not None
        run.pending_retry = {"idempotency_key": key, "attempt": attempt}
        run.status = RunStatus.WAITING
        run.waiting = WaitState(
            reason=WaitReason.UNTIL,
            until=due.astimezone(timezone.utc).isoformat(),
            resume_to_node=plan.node_id,
            details={"retry": {"effect": plan.effect.type_name, "next_attempt": attempt + 1,
                               "max_attempts": max_attempts, "last_error": error}},
        )

    def _invoke(self, run: RunState, wf: Any, effect: Effect, plan: StepPlan, key: str) -> EffectOutcome:
        etype = effect.type_name
        entry = self._entry(wf.workflow_id)
        handler = (entry.effect_handlers.get(etype) if entry else None) or self._handlers.get(etype)
        if handler is None:
            if etype in (EffectType.LLM_CALL.value, EffectType.TOOL_CALLS.value):
                return self._passthrough(run, effect, plan.next_node)
            return EffectOutcome.failed(f"no effect handler registered for {etype!r}",
                                        retryable=False)
        self._current_key = key
        try:
            outcome = _coerce_outcome(_call_handler(handler, run, effect, plan.next_node))
        except NonRetryableError as exc:
            return EffectOutcome.failed(f"{type(exc).__name__}: {exc}", retryable=False)
        except Exception as exc:
            return EffectOutcome.failed(f"{type(exc).__name__}: {exc}")
        finally:
            self._current_key = None
        return _check_outcome(outcome, etype)

    def _policy_for(self, workflow_id: str) -> Any:
        entry = self._entry(workflow_id)
        return entry.effect_policy if entry and entry.effect_policy is not None else self._policy

    # ------------------------------------------------------------------ internals: state changes

    def _record(self, run: RunState, *, kind: RecordKind, status: StepStatus,
                node_id: Optional[str] = None, effect: Optional[Dict[str, Any]] = None,
                result: Any = None, error: Optional[str] = None, attempt: int = 1,
                idempotency_key: Optional[str] = None, actor_id: Optional[str] = None,
                started_at: Optional[str] = None) -> Dict[str, Any]:
        now = self._now_iso()
        rec = StepRecord(
            run_id=run.run_id, step_id=str(uuid.uuid4()), node_id=node_id or run.current_node,
            status=status, effect=effect, result=result, error=error,
            started_at=started_at or now, ended_at=now,
            actor_id=actor_id or run.actor_id, session_id=run.session_id, attempt=attempt,
            idempotency_key=idempotency_key, kind=kind,
        )
        return self._ledger.append(rec)

    def _checkpoint(self, run: RunState) -> None:
        run.updated_at = self._now_iso()
        run.ledger_count, run.ledger_head = self._ledger.head(run.run_id)
        self._run_store.save(run)

    def _fail(self, run: RunState, error: str) -> RunState:
        run.status = RunStatus.FAILED
        run.error = error
        run.waiting = None
        self._record(run, kind=RecordKind.FAIL, status=StepStatus.FAILED, error=error)
        self._checkpoint(run)
        return run

    def _check_resumable(self, run: RunState, wait_key: Optional[str], payload: Dict[str, Any]) -> None:
        if run.status != RunStatus.WAITING or run.waiting is None:
            raise RunNotWaitingError(run.run_id, run.status.value)
        wait = run.waiting
        if wait_key is not None and wait_key != wait.wait_key:
            raise WaitKeyMismatchError(run.run_id, wait.wait_key, wait_key)
        if wait.reason == WaitReason.USER and wait.choices and not wait.allow_free_text:
            answer = payload.get("response")
            if answer not in wait.choices:
                raise InvalidChoiceError(run.run_id, answer, wait.choices)

    def _apply_resume(self, run: RunState, payload: Dict[str, Any], *, actor_id: Optional[str],
                      source: str) -> None:
        """Record the resume, store the payload, and set the run running at its next node."""
        wait = run.waiting
        assert wait is not None
        retry = bool((wait.details or {}).get("retry"))
        self._record(run, kind=RecordKind.RESUME, status=StepStatus.RESUMED,
                     result={"source": source, "reason": wait.reason.value,
                             "wait_key": wait.wait_key, "payload": payload},
                     actor_id=actor_id)
        if not retry:
            if wait.result_key:
                set_nested(run.vars, wait.result_key, payload)
            run.effect_seq += 1  # the waiting effect step is done
            run.pending_retry = None
        run.status = RunStatus.RUNNING
        run.waiting = None
        if wait.resume_to_node:
            run.current_node = wait.resume_to_node

    def _apply_child_end(self, parent: RunState, child: RunState, wf: Any, max_steps: int) -> RunState:
        if child.status == RunStatus.COMPLETED:
            payload = {"sub_run_id": child.run_id, "output": child.output}
            self._apply_resume(parent, payload, actor_id=f"subworkflow:{child.run_id}",
                               source="subworkflow")
            return self._run_loop(parent, wf, max_steps)
        return self._fail(parent, f"subworkflow {child.workflow_id!r} (run {child.run_id}) "
                                  f"{child.status.value}: {child.error}")

    def _propagate_to_parents(self, run: RunState, max_steps: int) -> None:
        """When a child ends, resume (or fail) the parent waiting on it, and so on upward.

        Runs after the child's lock is released, so locks are never nested parent-side.
        If the parent is busy, its own next tick catches up (see ``_tick_locked``).
        """
        while run.status.is_terminal and run.parent_run_id:
            parent_id = run.parent_run_id
            try:
                with self._run_store.lock(parent_id, timeout=self._config.lock_timeout):
                    parent = self._run_store.load(parent_id)
                    wait = parent.waiting if parent else None
                    if (parent is None or parent.status != RunStatus.WAITING or wait is None
                            or wait.reason != WaitReason.SUBWORKFLOW
                            or (wait.details or {}).get("sub_run_id") != run.run_id):
                        return
                    wf = self._lookup_workflow(parent.workflow_id)
                    if wf is None:
                        return  # leave it waiting; ticking it names the missing workflow
                    run = self._apply_child_end(parent, run, wf, max_steps)
            except RunBusyError:
                return

    # ------------------------------------------------------------------ built-in effects

    def _handle_ask_user(self, run: RunState, effect: Effect, next_node: Optional[str]) -> EffectOutcome:
        p = effect.payload
        prompt = p.get("prompt")
        if not prompt:
            return EffectOutcome.failed("ask_user requires payload.prompt", retryable=False)
        choices = p.get("choices")
        if choices is not None and (not isinstance(choices, list) or not choices):
            return EffectOutcome.failed("ask_user payload.choices must be a non-empty list",
                                        retryable=False)
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.USER,
            wait_key=str(p.get("wait_key") or f"user:{run.run_id}:{run.current_node}"),
            resume_to_node=p.get("resume_to_node") or next_node,
            result_key=effect.result_key,
            prompt=str(prompt),
            choices=[str(c) for c in choices] if choices else None,
            allow_free_text=bool(p.get("allow_free_text", True)),
        ))

    def _handle_wait_event(self, run: RunState, effect: Effect, next_node: Optional[str]) -> EffectOutcome:
        wait_key = effect.payload.get("wait_key")
        if not wait_key:
            return EffectOutcome.failed("wait_event requires payload.wait_key", retryable=False)
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.EVENT,
            wait_key=str(wait_key),
            resume_to_node=effect.payload.get("resume_to_node") or next_node,
            result_key=effect.result_key,
            prompt=effect.payload.get("prompt"),
            details=effect.payload.get("details"),
        ))

    def _handle_wait_until(self, run: RunState, effect: Effect, next_node: Optional[str]) -> EffectOutcome:
        raw = effect.payload.get("until")
        try:
            until = parse_timestamp(raw)
        except ValueError as exc:
            return EffectOutcome.failed(f"wait_until: {exc}", retryable=False)
        until_iso = until.astimezone(timezone.utc).isoformat()
        if until <= self._clock():
            return EffectOutcome.completed({"until": until_iso, "ready": True})
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.UNTIL,
            until=until_iso,
            resume_to_node=effect.payload.get("resume_to_node") or next_node,
            result_key=effect.result_key,
            details={"requested": raw} if isinstance(raw, str) and raw != until_iso else None,
        ))

    def _passthrough(self, run: RunState, effect: Effect, next_node: Optional[str]) -> EffectOutcome:
        """No handler for llm_call/tool_calls: wait for whoever does the work to resume us."""
        wait_key = effect.payload.get("wait_key") or f"job:{run.run_id}:{run.current_node}:{run.effect_seq}"
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.JOB,
            wait_key=str(wait_key),
            resume_to_node=effect.payload.get("resume_to_node") or next_node,
            result_key=effect.result_key,
            details={"effect_type": effect.type_name, "request": effect.payload},
        ))

    def _handle_start_subworkflow(self, run: RunState, effect: Effect, next_node: Optional[str]) -> EffectOutcome:
        p = effect.payload
        workflow_id = p.get("workflow_id")
        if not workflow_id:
            return EffectOutcome.failed("start_subworkflow requires payload.workflow_id",
                                        retryable=False)
        child_wf = self._lookup_workflow(str(workflow_id))
        if child_wf is None:
            return EffectOutcome.failed(f"subworkflow {workflow_id!r} not found", retryable=False)
        child_vars = p.get("vars") or {}
        if not isinstance(child_vars, dict):
            return EffectOutcome.failed("start_subworkflow payload.vars must be an object",
                                        retryable=False)
        # The child's id derives from this step's idempotency key: replaying the step
        # after a crash finds the child instead of starting a second one.
        child_id = str(uuid.UUID(hashlib.sha256(
            f"{self._current_key}:child".encode()).hexdigest()[:32]))
        child = self._run_store.load(child_id)
        if child is None:
            self.start(workflow=child_wf, vars=dict(child_vars), actor_id=run.actor_id,
                       session_id=run.session_id, parent_run_id=run.run_id, run_id=child_id)
        if p.get("async"):
            return EffectOutcome.completed({"sub_run_id": child_id, "async": True})
        try:
            with self._run_store.lock(child_id, timeout=self._config.lock_timeout):
                child = self._tick_locked(child_id, child_wf, 100)
        except RunBusyError:
            # Another process (say a `tick --all`) is driving the child: wait for it.
            child = self._run_store.load(child_id) or child
        if child.status == RunStatus.COMPLETED:
            return EffectOutcome.completed({"sub_run_id": child_id, "output": child.output})
        if child.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            return EffectOutcome.failed(
                f"subworkflow {workflow_id!r} (run {child_id}) {child.status.value}: {child.error}",
                retryable=False)
        child_wait = child.waiting
        return EffectOutcome.waiting(WaitState(
            reason=WaitReason.SUBWORKFLOW,
            wait_key=f"subworkflow:{child_id}",
            resume_to_node=p.get("resume_to_node") or next_node,
            result_key=effect.result_key,
            details={
                "sub_run_id": child_id,
                "sub_workflow_id": workflow_id,
                "sub_status": child.status.value,
                "sub_waiting": {"reason": child_wait.reason.value, "wait_key": child_wait.wait_key,
                                "prompt": child_wait.prompt} if child_wait else None,
            },
        ))

